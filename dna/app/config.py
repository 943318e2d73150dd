"""
The operator's configuration: a TOML file read into a checked, immutable
L{Configuration}.

Everything C{twistd dna} needs before it listens is checked here, at start-up,
and not at the first connection: the listener description parses, every
hosted domain and server name is a domain name, each server name has a
readable certificate that covers it (draft-ietf-xmpp-dna-01 section 5: a
server proves its server name with its certificate), has not expired and
matches its key, the peers' certificate authorities load, and the DNSSEC
set-up can be trusted (RFC 4033 section 4.9.3: the AD bit of a resolver is
only worth anything over a trusted path).

Every mistake is one L{ConfigurationError} whose text is a single line naming
the file, the section, the key and the problem, such as::

    dna.toml: [[server.names]] #1 key: no such file /etc/dna/xmpp1.key

The generic parsers of TOML values are in L{dna.app.schema}, the reading
and checking of certificates and keys in L{dna.app.certificates}; the
defaults are those of the modules that use the settings, imported from them.
docs/configuration.rst describes every key.
"""

import datetime
import os
import tomllib
from types import MappingProxyType

import attr
from twisted.internet.endpoints import serverFromString
from twisted.internet.ssl import trustRootFromCertificates

from dna.app import schema
from dna.app.certificates import authorities, buildServerName
from dna.app.delegation import DNS_MODES, MODE_AD
from dna.app.federation import DEFAULT_QUEUE_LIMIT
from dna.app.limits import Limits
from dna.app.schema import Invalid, located
from dna.app.service import DEFAULT_IDLE_TIMEOUT
from dna.channel.originating import DEFAULT_CONNECT_TIMEOUT
from dna.core.authorization import DEFAULT_MAX_PENDING, DEFAULT_REQUEST_TIMEOUT
from dna.core.hostport import isLoopback, parseAddressPort
from dna.core.proofs import (
    DEFAULT_GRACE,
    PROOF_DANE,
    PROOF_DNSSEC_SRV,
    PROOF_PKIX,
    PROOF_POSH,
)
from dna.dns.client import DEFAULT_DEADLINE
from dna.dns.dnssec.proofs import parseAnchors
from dna.dns.lookup import offLoopback
from dna.dns.verdict import ALLOW_INSECURE, REQUIRE_SECURE
from dna.error import ConfigurationError, InvalidHostPort
from dna.legacy.policy import FALLBACK_PKIX, FALLBACKS, XMPP_SERVER_PORT

DELEGATION_POLICIES = (REQUIRE_SECURE, ALLOW_INSECURE)

#: The port of DNS servers (RFC 1035 section 4.2).
DNS_PORT = 53

DEFAULT_LISTEN = f"tcp:{XMPP_SERVER_PORT}"
DEFAULT_RESOLVERS = (("127.0.0.1", DNS_PORT),)
#: Seconds one delegation check may take in all.
DEFAULT_DNS_TIMEOUT = DEFAULT_DEADLINE

#: What a fresh configuration does with peers without DNA: federate with
#: today's network by certificates for the domains themselves (RFC 6120),
#: never by unauthenticated Server Dialback. L{DNAService} itself, built from
#: Python, still defaults to DNA only.
DEFAULT_FALLBACK = FALLBACK_PKIX

#: The control endpoint's UNIX socket when C{[control]} names none: in the
#: runtime directory systemd makes (C{RuntimeDirectory=dna}).
DEFAULT_CONTROL_SOCKET = "/run/dna/control.sock"

#: The metrics listener the documentation suggests (Prometheus' port
#: allocation for dna).
EXAMPLE_METRICS_LISTEN = "tcp:9469:interface=127.0.0.1"

#: One human line per event (twistd's own), or one JSON object per line.
LOG_TEXT = "text"
LOG_JSON = "json"
LOG_FORMATS = (LOG_TEXT, LOG_JSON)

#: The least level of the events written (twisted.logger's level names):
#: routine events, such as each pair granted, are at debug, the decisions
#: and incidents an operator acts on at info and above.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
DEFAULT_LOG_LEVEL = "info"


def checkListen(value):
    """
    Check that a Twisted server endpoint description such as
    C{"tcp:5269:interface=127.0.0.1"} parses, without listening.

    L{serverFromString} only stores the reactor in the endpoint it makes, to
    be used when C{listen} is called, which it never is here: so no reactor
    is needed, and none is imported.

    An C{ssl:} endpoint is refused: XMPP servers start TLS inside the stream
    (STARTTLS, RFC 6120 section 5), with the certificates of
    C{[[server.names]]}.

    @return: C{value}
    @raise ValueError: If it does not parse, or is C{ssl:}.
    """
    schema.string(value)
    if value.split(":", 1)[0].strip().lower() == "ssl":
        raise Invalid(
            f"{value!r} would start TLS before XMPP does: the server starts "
            f"it with STARTTLS and the certificates of [[server.names]], so "
            f"listen with tcp: or tcp6:")
    try:
        serverFromString(None, value)
    except Exception as e:
        raise Invalid(
            f"{value!r} is not a Twisted endpoint description such as "
            f"'tcp:5269:interface=127.0.0.1' ({e})") from None
    return value


def parseAddress(value, defaultPort):
    """
    Parse C{host[:port]} where the host is an IP address and an IPv6 address
    with a port is in brackets: C{"127.0.0.1"}, C{"127.0.0.1:5300"},
    C{"::1"}, C{"[::1]:5300"} (L{dna.core.hostport.parseAddressPort}).

    @param defaultPort: The port when none is given, possibly L{None}.
    @return: C{(host, port)}, the host in its compressed form.
    @rtype: L{tuple} of L{str} and L{int} (or C{defaultPort})
    @raise ValueError: If C{value} is none of these.
    """
    schema.string(value)
    try:
        return parseAddressPort(value, defaultPort)
    except InvalidHostPort:
        example = defaultPort or XMPP_SERVER_PORT
        raise Invalid(
            f"{value!r} is not an IP address with an optional port, such as "
            f"127.0.0.1:{example} or [::1]:{example}") from None


def _resolver(value):
    return parseAddress(value, DNS_PORT)


def _peerAddress(value):
    # Without a port, the SRV record's applies (dna.dns.addresses.AddressResolver).
    return parseAddress(value, None)


_SERVER_KEYS = ("listen", "domains", "ca", "idle-timeout", "connect-timeout",
                "max-pending", "request-timeout", "queue-limit", "names",
                "domain-certificates", "dialback-secret")
_NAME_KEYS = ("name", "certificate", "key")
_DNS_KEYS = ("mode", "resolvers", "trust-anchors", "trusted-path", "timeout")
_POLICY_KEYS = ("delegation", "allow-insecure", "srv-fallback", "fallback",
                "delegation-proofs", "identity-proofs")

#: Prooftypes of draft-ietf-xmpp-dna-10 (section 5) for delegations and for
#: server identity (named in L{dna.core.proofs}), and the defaults: today's
#: behaviour plus DANE when TLSA records exist.
DELEGATION_PROOFS = (PROOF_DNSSEC_SRV, PROOF_POSH)
IDENTITY_PROOFS = (PROOF_DANE, PROOF_PKIX)
DEFAULT_DELEGATION_PROOFS = (PROOF_DNSSEC_SRV,)
DEFAULT_IDENTITY_PROOFS = (PROOF_DANE, PROOF_PKIX)
_delegationProofs = schema.array(schema.word(DELEGATION_PROOFS),
                                 "name at least one prooftype", "delegation prooftypes")
_identityProofs = schema.array(schema.word(IDENTITY_PROOFS),
                               "name at least one prooftype", "identity prooftypes")
_COMPONENTS_KEYS = ("listen", "secret")
_CONTROL_KEYS = ("socket", "listen", "token-file")
_LOG_KEYS = ("format", "level")
_METRICS_KEYS = ("listen",)

#: The keys of C{[limits]}, the L{Limits} attributes they set, and their
#: parsers.
_LIMITS = {
    "auth-timeout": ("authTimeout", schema.seconds),
    "max-unauthenticated-per-address": ("maxUnauthenticatedPerAddress", schema.count),
    "max-unauthenticated": ("maxUnauthenticated", schema.count),
    "listen-backlog": ("backlog", schema.count),
    "max-stanza-size": ("maxStanzaSize", schema.count),
    "max-stanza-size-unauthenticated": ("maxStanzaSizeUnauthenticated", schema.count),
    "max-depth": ("maxDepth", schema.count),
    "max-unacked": ("maxUnacked", schema.count),
    "max-unacked-bytes": ("maxUnackedBytes", schema.count),
    "ack-timeout": ("ackTimeout", schema.seconds),
    "max-waiting": ("maxWaiting", schema.count),
    "high-water": ("highWater", schema.count),
}
#: Read into L{Configuration.revalidationGrace}, not into L{Limits}.
_REVALIDATION_GRACE = "revalidation-grace"
_LIMITS_KEYS = tuple(_LIMITS) + (_REVALIDATION_GRACE,)
_SECTIONS = ("server", "dns", "policy", "hosts", "components", "limits", "control", "log",
             "metrics")
_ALL_KEYS = tuple(
    [("[server]", key) for key in _SERVER_KEYS]
    + [("[dns]", key) for key in _DNS_KEYS]
    + [("[policy]", key) for key in _POLICY_KEYS]
    + [("[components]", key) for key in _COMPONENTS_KEYS]
    + [("[control]", key) for key in _CONTROL_KEYS]
    + [("[log]", key) for key in _LOG_KEYS]
    + [("[metrics]", key) for key in _METRICS_KEYS]
    + [("[limits]", key) for key in _LIMITS_KEYS])

_hostedDomains = schema.array(
    schema.domain, "empty: name at least one hosted domain", "domains")
_resolvers = schema.array(_resolver, "empty: name at least one resolver",
                          "addresses")
_remoteDomains = schema.array(schema.domain, None, "domains")


def _serverName(where, entry, base, now, previous, section="[[server.names]]"):
    """
    Read one C{[[server.names]]} (or C{[[server.domain-certificates]]})
    entry and its files.

    @param previous: The names of the entries before, in order.
    @rtype: L{dna.app.certificates.ServerName}
    """
    table = schema.Table(where, entry, _NAME_KEYS)
    name = table.value("name", schema.serverName)
    if name in previous:
        raise Invalid(f"{where} name: {name} is already {section} "
                      f"#{previous.index(name) + 1}")
    readable = schema.readableFile(base)
    certificatePath, certificateData = table.value("certificate", readable)
    if "key" in table:
        keyPath, keyData = table.value("key", readable)
    else:
        keyPath, keyData = certificatePath, certificateData

    return buildServerName(where, name, certificatePath, certificateData,
                           keyPath, keyData, now)


def _serverNames(value, base, now, key="names", required=True):
    section = f"[[server.{key}]]"
    if isinstance(value, dict):
        raise Invalid(
            f"[server] {key}: expected an array of tables, written "
            f"{section}, got a table")
    if not isinstance(value, list) or not all(
            isinstance(entry, dict) for entry in value):
        raise Invalid(
            f"[server] {key}: expected an array of tables, written "
            f"{section}, got {schema.describe(value)}")
    if not value and required:
        raise Invalid(
            f"{section}: none given: name at least one server name "
            "with its certificate and key")
    names = []
    for number, entry in enumerate(value, 1):
        names.append(_serverName(f"{section} #{number}", entry, base,
                                 now, [n.name for n in names], section))
    return tuple(names)


def _anchors(path, data):
    try:
        return MappingProxyType(parseAnchors(data.decode("utf-8")))
    except UnicodeDecodeError:
        raise Invalid(f"{path} is not UTF-8 text") from None
    except ValueError as e:
        raise Invalid(f"{' '.join(str(e).split())} (in {path})") from None


def _hosts(table, where="[hosts]"):
    if table is None:
        return MappingProxyType({})
    if not isinstance(table, dict):
        raise Invalid(f"{where}: expected a table, got {schema.describe(table)}")
    hosts = {}
    spelled = {}
    for key, value in table.items():
        here = f"{where} {key!r}"
        if isinstance(value, dict):
            raise Invalid(
                f"{here}: expected an address string, got a table (quote "
                f"names with dots: \"xmpp1.example.net\" = \"192.0.2.1:5269\")")
        with located(here):
            name = schema.serverName(key)
            if name in hosts:
                raise Invalid(f"the same server name as {spelled[name]!r}")
            hosts[name] = _peerAddress(value)
        spelled[name] = key
    return MappingProxyType(hosts)


def checkLoopbackListen(value, notTCP="", example="tcp:8080:interface=127.0.0.1"):
    """
    Check a TCP listener that must stay on this host: a C{tcp:} or C{tcp6:}
    description bound to a loopback interface.

    @param notTCP: Said after the complaint that C{value} is not TCP.
    @param example: A description to suggest.
    @return: C{value}
    @raise ValueError: If it does not parse, is not TCP, or is not on
        loopback.
    """
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    checkListen(value)
    endpoint = serverFromString(None, value)
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        raise Invalid(f"{value!r} is not a tcp: or tcp6: description{notTCP}")
    if not isLoopback(endpoint._interface):
        raise Invalid(f"{value!r} is not on loopback: name a loopback "
                      f"interface, such as {example!r}")
    return value


def checkControlListen(value):
    """
    Check a control endpoint's TCP listener (L{checkLoopbackListen}).
    Anyone who reaches the control endpoint can close connections and revoke
    pairs; a port off loopback would offer that to the network.
    """
    return checkLoopbackListen(value, " (the UNIX socket is [control] socket)")


def checkMetricsListen(value):
    """
    Check the metrics listener (L{checkLoopbackListen}): the metrics tell
    who federates with whom and how much, which is not the network's
    business; a scraper elsewhere goes through a proxy or a tunnel.
    """
    return checkLoopbackListen(value, example=EXAMPLE_METRICS_LISTEN)


def _token(base):
    readable = schema.readableFile(base)

    def parse(value):
        path, data = readable(value)
        try:
            token = data.decode("ascii").strip()
        except UnicodeDecodeError:
            raise Invalid(f"{path} is not ASCII text") from None
        if len(token) < 16 or any(c.isspace() for c in token):
            raise Invalid(f"{path}: the token must be one word of at least "
                          f"16 characters")
        return path, token

    return parse


@attr.s(frozen=True)
class ControlSettings:
    """
    Where the control endpoint (L{dna.app.control}) listens: C{[control]}.

    @ivar socket: The absolute path of its UNIX socket (mode 0600).
    @ivar listen: A loopback TCP description, or L{None}.
    @ivar tokenPath: The file of the TCP listener's bearer token, or L{None}.
    @ivar token: The token itself (L{str}), or L{None}.
    """

    socket = attr.ib()
    listen = attr.ib(default=None)
    tokenPath = attr.ib(default=None)
    token = attr.ib(default=None, repr=False)


def _control(table, base):
    """
    Read C{[control]}: L{None} when the section is missing.
    """
    if table is None:
        return None
    control = schema.Table("[control]", table, _CONTROL_KEYS, _ALL_KEYS)

    def socketPath(value):
        schema.string(value)
        if not value:
            raise Invalid("expected a file name, got an empty string")
        return os.path.normpath(os.path.join(base, value))

    socket = control.value("socket", socketPath, DEFAULT_CONTROL_SOCKET)
    listen = control.value("listen", checkControlListen, None)
    tokenPath, token = control.value("token-file", _token(base), (None, None))
    if listen is not None and token is None:
        raise Invalid("[control] token-file: missing: a TCP control endpoint "
                      "needs a bearer token (every local user can reach it)")
    return ControlSettings(socket, listen, tokenPath, token)


def loadControlSettings(path):
    """
    Read only the C{[control]} section of a configuration file, as
    C{dna-ctl} does: it needs neither the certificates nor their keys.

    @return: The L{ControlSettings}, or L{None} without a C{[control]}.
    @raise ConfigurationError: If the file or the section is wrong.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigurationError(path, "no such file") from None
    except OSError as e:
        raise ConfigurationError(path, f"cannot read: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(path, f"TOML syntax error: {e}") from None
    try:
        return _control(document.get("control"),
                        os.path.dirname(os.path.abspath(path)))
    except Invalid as e:
        raise ConfigurationError(path, str(e)) from None


def _limits(table):
    """
    The L{Limits} of a C{[limits]} table: its keys, and the defaults.

    @raise Invalid: If a value is wrong, or the limits contradict each other.
    """
    limits = Limits(**{attribute: table.value(key, parse)
                       for key, (attribute, parse) in _LIMITS.items() if key in table})
    if limits.maxStanzaSizeUnauthenticated > limits.maxStanzaSize:
        raise Invalid(
            f"[limits] max-stanza-size-unauthenticated: "
            f"{limits.maxStanzaSizeUnauthenticated} is more than max-stanza-size "
            f"({limits.maxStanzaSize}): a stream may take more once authenticated, "
            f"not less")
    return limits


# The configuration


def _immutableMapping(value):
    if value is None or isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(dict(value))


@attr.s(frozen=True)
class Configuration:
    """
    Everything C{twistd dna} was told, checked.

    Read one with L{loadConfiguration}; C{docs/configuration.rst} explains
    each attribute's key in the file.

    @ivar path: The configuration file, as named.
    @ivar listen: The Twisted server endpoint description of the S2S listener
        (C{[server] listen}).
    @ivar domains: The hosted domains, normalised (C{[server] domains}).
    @type domains: L{frozenset} of L{str}
    @ivar serverNames: Our server names with their certificates, in the
        file's order; the first is the default (C{[[server.names]]}).
    @type serverNames: L{tuple} of L{dna.app.certificates.ServerName}
    @ivar caPath: The file of the authorities trusted for peers' certificates
        (C{[server] ca}).
    @ivar caCertificates: Those authorities.
    @type caCertificates: L{tuple} of L{twisted.internet.ssl.Certificate}
    @ivar trustRoot: The same, for L{dna.channel.tls}.
    @type trustRoot: L{twisted.internet.ssl.IOpenSSLTrustRoot}
    @ivar idleTimeout: Seconds before an idle S2S connection closes.
    @ivar connectTimeout: Seconds to wait for an outgoing TCP connection.
    @ivar maxPending: Most C{<db:result/>} requests pending per stream.
    @ivar requestTimeout: Seconds to wait for an answer to a request.
    @ivar queueLimit: Most stanzas waiting for one domain pair.
    @ivar dnsMode: L{MODE_AD} or L{MODE_VALIDATE} (C{[dns] mode}).
    @ivar resolvers: C{(host, port)} of the DNS servers to ask.
    @type resolvers: L{tuple} of L{tuple}
    @ivar trustAnchorsPath: The trust anchor file, or L{None} for the IANA
        root anchors shipped in L{dna.dns.dnssec.proofs}.
    @ivar trustAnchors: The anchors read from it, as
        L{dna.dns.dnssec.proofs.parseAnchors} gives them, or L{None}.
    @ivar trustedPath: Whether the path to a non-loopback resolver is
        secured, so that C{mode = "ad"} may use it.
    @ivar dnsTimeout: Seconds a delegation check may take in all.
    @ivar delegationPolicy: C{"require-secure"} or C{"allow-insecure"}.
    @ivar allowInsecure: Domains for which an unsigned delegation counts.
    @type allowInsecure: L{frozenset} of L{str}
    @ivar srvFallback: Whether a domain without SRV records counts as its
        own server name (RFC 6120 section 3.2.2).
    @ivar fallback: One of L{FALLBACKS}: what to do with peers without DNA.
    @ivar delegationProofs: The prooftypes accepted for delegations, in
        order (C{[policy] delegation-proofs}): L{DELEGATION_PROOFS}.
    @ivar identityProofs: The prooftypes accepted for a server's identity,
        in order (C{[policy] identity-proofs}): L{IDENTITY_PROOFS}; with
        C{"dane"}, TLSA records decide when there are some.
    @ivar hosts: Static addresses of server names, C{{name: (host, port)}}
        with a port of L{None} where the SRV record's applies, as
        L{dna.dns.addresses.AddressResolver} takes them.
    @type hosts: read-only mapping
    @ivar componentListen: Where local XMPP services connect as XEP-0114
        components to exchange stanzas for the hosted domains
        (C{[components] listen}), or L{None}.
    @ivar componentSecret: The components' shared secret.
    @ivar domainCertificates: Certificates for hosted domains, presented on
        streams to servers without DNA (C{[[server.domain-certificates]]}).
    @type domainCertificates: L{tuple} of L{dna.app.certificates.ServerName}
    @ivar dialbackSecret: The Server Dialback secret that servers sharing
        the hosted domains share (C{[server] dialback-secret}); L{None}: a
        random one per process.
    @ivar control: Where the control endpoint listens, a
        L{ControlSettings}; L{None} (no C{[control]}): nowhere.
    @ivar logFormat: L{LOG_TEXT} or L{LOG_JSON} (C{[log] format}).
    @ivar logLevel: The least level of the events written, one of
        L{LOG_LEVELS} (C{[log] level}).
    @ivar metricsListen: Where Prometheus metrics are served
        (C{[metrics] listen}), a loopback TCP description; L{None}: nowhere.
    @ivar limits: The limits of connections, streams and buffers
        (C{[limits]}).
    @type limits: L{dna.app.limits.Limits}
    @ivar revalidationGrace: Seconds past its proof's expiry that a binding
        whose re-check is indeterminate is kept (C{[limits]
        revalidation-grace}, L{dna.app.revalidation}).
    """

    path = attr.ib()
    listen = attr.ib()
    domains = attr.ib(converter=frozenset)
    serverNames = attr.ib(converter=tuple)
    caPath = attr.ib()
    caCertificates = attr.ib(converter=tuple, repr=False)
    trustRoot = attr.ib(eq=False, repr=False)
    idleTimeout = attr.ib(default=DEFAULT_IDLE_TIMEOUT)
    connectTimeout = attr.ib(default=DEFAULT_CONNECT_TIMEOUT)
    maxPending = attr.ib(default=DEFAULT_MAX_PENDING)
    requestTimeout = attr.ib(default=DEFAULT_REQUEST_TIMEOUT)
    queueLimit = attr.ib(default=DEFAULT_QUEUE_LIMIT)
    dnsMode = attr.ib(default=MODE_AD)
    resolvers = attr.ib(default=DEFAULT_RESOLVERS, converter=tuple)
    trustAnchorsPath = attr.ib(default=None)
    trustAnchors = attr.ib(default=None, converter=_immutableMapping,
                           eq=False, repr=False)
    trustedPath = attr.ib(default=False)
    dnsTimeout = attr.ib(default=DEFAULT_DNS_TIMEOUT)
    delegationPolicy = attr.ib(default=REQUIRE_SECURE)
    allowInsecure = attr.ib(default=frozenset(), converter=frozenset)
    srvFallback = attr.ib(default=False)
    fallback = attr.ib(default=DEFAULT_FALLBACK)
    delegationProofs = attr.ib(default=DEFAULT_DELEGATION_PROOFS, converter=tuple)
    identityProofs = attr.ib(default=DEFAULT_IDENTITY_PROOFS, converter=tuple)
    hosts = attr.ib(default=MappingProxyType({}), converter=_immutableMapping)
    componentListen = attr.ib(default=None)
    componentSecret = attr.ib(default=None, repr=False)
    domainCertificates = attr.ib(default=(), converter=tuple)
    dialbackSecret = attr.ib(default=None, repr=False)
    control = attr.ib(default=None)
    logFormat = attr.ib(default=LOG_TEXT)
    logLevel = attr.ib(default=DEFAULT_LOG_LEVEL)
    metricsListen = attr.ib(default=None)
    limits = attr.ib(default=Limits())
    revalidationGrace = attr.ib(default=DEFAULT_GRACE)

    @property
    def defaultServerName(self):
        """
        The server name whose certificate a peer gets when its SNI names none
        of ours: the first of C{[[server.names]]}.
        """
        return self.serverNames[0].name

    @property
    def certificates(self):
        """
        C{{server name: PrivateCertificate}}, for
        L{dna.channel.tls.ServerContextFactory}.
        """
        return {s.name: s.certificate for s in self.serverNames}

    @property
    def chains(self):
        """
        C{{server name: [Certificate]}}: the intermediates of each, for
        L{dna.channel.tls.ServerContextFactory}.
        """
        return {s.name: list(s.chain) for s in self.serverNames}

    def delegationCheckerArguments(self):
        """
        The keyword arguments of L{dna.app.delegation.makeDelegationChecker}
        that this configuration determines (add C{reactor}).

        @rtype: L{dict}
        """
        return dict(
            servers=list(self.resolvers),
            mode=self.dnsMode,
            anchors=None if self.trustAnchors is None else dict(self.trustAnchors),
            trustedPath=self.trustedPath,
            policy=self.delegationPolicy,
            domainPolicies={domain: ALLOW_INSECURE
                            for domain in self.allowInsecure},
            fallback=self.srvFallback,
            deadline=self.dnsTimeout,
        )

    def override(self, **changes):
        """
        A copy with some settings changed, such as those given on the command
        line, checked as those of the file are.

        @param changes: Attribute names and values in the form the file
            gives them: C{domains=["sender.tld"]},
            C{resolvers=["127.0.0.1:5300"]}, C{dnsMode="validate"},
            C{idleTimeout=60}.  The settings of L{_OVERRIDABLE} can be
            changed; the others name files.

        @rtype: L{Configuration}
        @raise ConfigurationError: If a value is wrong, naming the section
            and key it overrides.
        @raise TypeError: If an attribute cannot be overridden.
        """
        parsed = {}
        for name, value in changes.items():
            try:
                section, key, parse = _OVERRIDABLE[name]
            except KeyError:
                raise TypeError(f"{name!r} cannot be overridden") from None
            try:
                with located(f"{section} {key} (overridden)"):
                    parsed[name] = parse(value)
            except Invalid as e:
                raise ConfigurationError(self.path, str(e)) from None
        configuration = attr.evolve(self, **parsed)
        try:
            _checkTogether(configuration)
        except Invalid as e:
            raise ConfigurationError(self.path, str(e)) from None
        return configuration


#: The attributes L{Configuration.override} changes: their section, key and
#: parser.
_OVERRIDABLE = {
    "listen": ("[server]", "listen", checkListen),
    "domains": ("[server]", "domains", _hostedDomains),
    "idleTimeout": ("[server]", "idle-timeout", schema.seconds),
    "connectTimeout": ("[server]", "connect-timeout", schema.seconds),
    "maxPending": ("[server]", "max-pending", schema.count),
    "requestTimeout": ("[server]", "request-timeout", schema.seconds),
    "queueLimit": ("[server]", "queue-limit", schema.count),
    "dnsMode": ("[dns]", "mode", schema.word(DNS_MODES)),
    "resolvers": ("[dns]", "resolvers", _resolvers),
    "trustedPath": ("[dns]", "trusted-path", schema.boolean),
    "dnsTimeout": ("[dns]", "timeout", schema.seconds),
    "delegationPolicy": ("[policy]", "delegation", schema.word(DELEGATION_POLICIES)),
    "allowInsecure": ("[policy]", "allow-insecure", _remoteDomains),
    "srvFallback": ("[policy]", "srv-fallback", schema.boolean),
    "fallback": ("[policy]", "fallback", schema.word(FALLBACKS)),
    "revalidationGrace": ("[limits]", _REVALIDATION_GRACE, schema.seconds),
    "delegationProofs": ("[policy]", "delegation-proofs", _delegationProofs),
    "identityProofs": ("[policy]", "identity-proofs", _identityProofs),
    "logFormat": ("[log]", "format", schema.word(LOG_FORMATS)),
    "logLevel": ("[log]", "level", schema.word(LOG_LEVELS)),
}


def _checkTogether(configuration):
    """
    The rules that tie settings together.

    @raise Invalid: If one is broken.
    """
    if configuration.dnsMode == MODE_AD and not configuration.trustedPath:
        remote = offLoopback(configuration.resolvers)
        if remote:
            raise Invalid(
                f"[dns] resolvers: mode 'ad' trusts the AD bit of the "
                f"resolver, which anyone on the path can set, and "
                f"{', '.join(remote)} is not on loopback: run a validating "
                f"resolver on loopback, use mode 'validate', or set "
                f"trusted-path = true if the path is secured "
                f"(RFC 4033 section 4.9.3)")


def parseConfiguration(text, path, now=None):
    """
    Read a configuration from TOML text.

    @param text: The text of the file.
    @type text: L{str}
    @param path: The file it came from, as named: messages start with it and
        relative file names in it are taken from its directory.
    @type path: L{str}
    @param now: The time certificates must be valid at, timezone-aware; now
        by default.
    @type now: L{datetime.datetime} or L{None}

    @rtype: L{Configuration}
    @raise ConfigurationError: If anything is wrong.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(path, f"TOML syntax error: {e}") from None
    try:
        return _configuration(document, path, now)
    except Invalid as e:
        raise ConfigurationError(path, str(e)) from None


def loadConfiguration(path, now=None):
    """
    Read a configuration file.

    @param path: The TOML file.
    @type path: L{str}
    @param now: See L{parseConfiguration}.

    @rtype: L{Configuration}
    @raise ConfigurationError: If the file cannot be read or anything in it
        is wrong.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigurationError(path, "no such file") from None
    except OSError as e:
        raise ConfigurationError(path, f"cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigurationError(
            path, f"not UTF-8 text (byte {e.start})") from None
    return parseConfiguration(text, path, now)


def _configuration(document, path, now):
    """
    Check a parsed document.

    @raise Invalid: If anything is wrong.
    """
    for key, value in document.items():
        if key not in _SECTIONS:
            if isinstance(value, dict):
                raise Invalid(f"[{key}]: unknown section"
                              f"{schema.suggest(key, _SECTIONS)}")
            hint = schema.suggest(key, _SECTIONS, _ALL_KEYS)
            raise Invalid(f"{key}: unknown key outside any section{hint}")
    base = os.path.dirname(os.path.abspath(path))

    if "server" not in document:
        raise Invalid("[server]: missing section")
    server = schema.Table("[server]", document["server"], _SERVER_KEYS, _ALL_KEYS)
    dns = schema.Table("[dns]", document.get("dns"), _DNS_KEYS, _ALL_KEYS)
    policy = schema.Table("[policy]", document.get("policy"), _POLICY_KEYS,
                    _ALL_KEYS)
    components = schema.Table("[components]", document.get("components"),
                        _COMPONENTS_KEYS, _ALL_KEYS)
    limitsTable = schema.Table("[limits]", document.get("limits"), _LIMITS_KEYS, _ALL_KEYS)
    limits = _limits(limitsTable)
    logTable = schema.Table("[log]", document.get("log"), _LOG_KEYS, _ALL_KEYS)
    componentListen = components.value("listen", checkListen, None)
    componentSecret = components.value("secret", schema.string, None)
    if componentListen is not None and not componentSecret:
        raise Invalid("[components] secret: missing: components must "
                       "authenticate with a shared secret")

    listen = server.value("listen", checkListen, DEFAULT_LISTEN)
    domains = server.value("domains", _hostedDomains)
    caPath, caData = server.value("ca", schema.readableFile(base))
    with located("[server] ca"):
        caCertificates = authorities(caPath, caData)
    if "names" not in server:
        raise Invalid(
            "[[server.names]]: missing: name at least one server name with "
            "its certificate and key")
    serverNames = _serverNames(document["server"]["names"], base, now)
    domainCertificates = _serverNames(
        document["server"].get("domain-certificates", []), base, now,
        key="domain-certificates", required=False)
    for number, entry in enumerate(domainCertificates, 1):
        if entry.name not in domains:
            raise Invalid(
                f"[[server.domain-certificates]] #{number} name: {entry.name} "
                f"is not one of [server] domains")
    dialbackSecret = server.value("dialback-secret", schema.string, None)
    if dialbackSecret is not None and len(dialbackSecret) < 16:
        raise Invalid("[server] dialback-secret: too short: use at least "
                       "16 random characters")

    trustAnchorsPath = trustAnchors = None
    if "trust-anchors" in dns:
        trustAnchorsPath, data = dns.value("trust-anchors",
                                           schema.readableFile(base))
        with located("[dns] trust-anchors"):
            trustAnchors = _anchors(trustAnchorsPath, data)

    configuration = Configuration(
        path=path,
        listen=listen,
        domains=domains,
        serverNames=serverNames,
        caPath=caPath,
        caCertificates=caCertificates,
        trustRoot=trustRootFromCertificates(list(caCertificates)),
        idleTimeout=server.value("idle-timeout", schema.seconds,
                                 DEFAULT_IDLE_TIMEOUT),
        connectTimeout=server.value("connect-timeout", schema.seconds,
                                    DEFAULT_CONNECT_TIMEOUT),
        maxPending=server.value("max-pending", schema.count, DEFAULT_MAX_PENDING),
        requestTimeout=server.value("request-timeout", schema.seconds,
                                    DEFAULT_REQUEST_TIMEOUT),
        queueLimit=server.value("queue-limit", schema.count, DEFAULT_QUEUE_LIMIT),
        dnsMode=dns.value("mode", schema.word(DNS_MODES), MODE_AD),
        resolvers=dns.value("resolvers", _resolvers, DEFAULT_RESOLVERS),
        trustAnchorsPath=trustAnchorsPath,
        trustAnchors=trustAnchors,
        trustedPath=dns.value("trusted-path", schema.boolean, False),
        dnsTimeout=dns.value("timeout", schema.seconds, DEFAULT_DNS_TIMEOUT),
        delegationPolicy=policy.value("delegation", schema.word(DELEGATION_POLICIES),
                                      REQUIRE_SECURE),
        allowInsecure=policy.value("allow-insecure", _remoteDomains, ()),
        srvFallback=policy.value("srv-fallback", schema.boolean, False),
        fallback=policy.value("fallback", schema.word(FALLBACKS), DEFAULT_FALLBACK),
        delegationProofs=policy.value("delegation-proofs", _delegationProofs,
                                      DEFAULT_DELEGATION_PROOFS),
        identityProofs=policy.value("identity-proofs", _identityProofs,
                                    DEFAULT_IDENTITY_PROOFS),
        hosts=_hosts(document.get("hosts")),
        componentListen=componentListen,
        componentSecret=componentSecret,
        domainCertificates=domainCertificates,
        dialbackSecret=dialbackSecret,
        control=_control(document.get("control"), base),
        logFormat=logTable.value("format", schema.word(LOG_FORMATS), LOG_TEXT),
        logLevel=logTable.value("level", schema.word(LOG_LEVELS), DEFAULT_LOG_LEVEL),
        metricsListen=schema.Table("[metrics]", document.get("metrics"), _METRICS_KEYS,
                                   _ALL_KEYS).value("listen", checkMetricsListen, None),
        limits=limits,
        revalidationGrace=limitsTable.value(_REVALIDATION_GRACE, schema.seconds,
                                            DEFAULT_GRACE),
    )
    _checkTogether(configuration)
    return configuration
