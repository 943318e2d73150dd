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

docs/configuration.rst describes every key.
"""

import datetime
import difflib
import ipaddress
import math
import os
import tomllib
from contextlib import contextmanager
from types import MappingProxyType

import attr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet.endpoints import serverFromString
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    trustRootFromCertificates,
)

from dna.core.names import normalizeDomain
from dna.error import ConfigurationError, InvalidAddress
from dna.dns.verdict import ALLOW_INSECURE, REQUIRE_SECURE
from dna.core.authorization import DEFAULT_MAX_PENDING, DEFAULT_REQUEST_TIMEOUT
from dna.dns.dnssec.proofs import parseAnchors
from dna.app.federation import DEFAULT_QUEUE_LIMIT
from dna.channel.tls import normalizeServerName, verifyPeerName
from dna.error import CertificateNameMismatch

#: Trust the AD bit of a validating resolver.
MODE_AD = "ad"
#: Validate DNSSEC here, from trust anchors.
MODE_VALIDATE = "validate"
DNS_MODES = (MODE_AD, MODE_VALIDATE)

DELEGATION_POLICIES = (REQUIRE_SECURE, ALLOW_INSECURE)

#: Speak DNA only: a peer that does not is not federated with.
FALLBACK_DNA = "dna"
#: Also use certificates for the domains themselves (plain RFC 6120 PKIX
#: authentication) with peers without DNA (draft-ietf-xmpp-dna-01 section 7,
#: Backward Compatibility).
FALLBACK_PKIX = "dna+pkix"
#: And then Server Dialback (XEP-0220), "subject to local policy" (section 7).
FALLBACK_DIALBACK = "dna+pkix+dialback"
FALLBACKS = (FALLBACK_DNA, FALLBACK_PKIX, FALLBACK_DIALBACK)

#: The port of the XMPP server-to-server service (RFC 6120 section 14.7).
XMPP_SERVER_PORT = 5269
DNS_PORT = 53

DEFAULT_LISTEN = "tcp:5269"
DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RESOLVERS = ("127.0.0.1:53",)
DEFAULT_DNS_TIMEOUT = 5.0


class _Invalid(ValueError):
    """
    A value is wrong.  The message says why; callers put where in front.
    """


_REQUIRED = object()


# Values


_TOML_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    ((list, tuple), "array"),
    (dict, "table"),
    (datetime.datetime, "date-time"),
    (datetime.date, "date"),
    (datetime.time, "time"),
)


def _describe(value):
    """
    Name a TOML value for a message: its type and, when short, itself.
    """
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            break
    else:
        name = type(value).__name__
    if isinstance(value, bool):
        return f"{name} {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{name} {value!r}"
    return name


def _orList(words):
    words = list(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _string(value):
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _seconds(value):
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise _Invalid(
            f"expected a positive number of seconds, got {_describe(value)}")
    return float(value)


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Invalid(f"expected a positive integer, got {_describe(value)}")
    return value


def _word(words):
    """
    A parser accepting one of C{words}.
    """

    def parse(value):
        if not isinstance(value, str):
            raise _Invalid(f"expected {_orList(words)}, got {_describe(value)}")
        if value not in words:
            raise _Invalid(
                f"unknown word {value!r} (expected {_orList(words)})")
        return value

    return parse


def _array(parseItem, empty, what):
    """
    A parser of arrays whose items C{parseItem} parses, refusing an item that
    comes twice (after parsing: C{"Sender.TLD"} is C{"sender.tld"}).

    @param empty: The complaint about an empty array, or L{None} to accept
        one.
    @param what: What the items are, for messages.
    """

    def parse(value):
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"expected an array of {what}, got {_describe(value)}")
        if not value and empty:
            raise _Invalid(empty)
        items = {}
        for item in value:
            parsed = parseItem(item)
            if parsed in items:
                raise _Invalid(
                    f"{item!r} is listed twice (as {items[parsed]!r} before)")
            items[parsed] = item
        return tuple(items)

    return parse


def parseDomain(value):
    """
    A domain, such as a hosted domain, in the form L{normalizeDomain} gives.

    @raise ValueError: If C{value} is not a domain.
    """
    _string(value)
    try:
        return normalizeDomain(value)
    except InvalidAddress:
        raise _Invalid(f"{value!r} is not a valid domain") from None


def parseServerName(value):
    """
    A server name, in the form L{normalizeServerName} gives.

    @raise ValueError: If C{value} is not a domain name.
    """
    _string(value)
    try:
        return normalizeServerName(value)
    except ValueError:
        raise _Invalid(f"{value!r} is not a server name") from None


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
    _string(value)
    if value.split(":", 1)[0].strip().lower() == "ssl":
        raise _Invalid(
            f"{value!r} would start TLS before XMPP does: the server starts "
            f"it with STARTTLS and the certificates of [[server.names]], so "
            f"listen with tcp: or tcp6:")
    try:
        serverFromString(None, value)
    except Exception as e:
        raise _Invalid(
            f"{value!r} is not a Twisted endpoint description such as "
            f"'tcp:5269:interface=127.0.0.1' ({e})") from None
    return value


def parseAddress(value, defaultPort):
    """
    Parse C{host[:port]} where the host is an IP address and an IPv6 address
    with a port is in brackets: C{"127.0.0.1"}, C{"127.0.0.1:5300"},
    C{"::1"}, C{"[::1]:5300"}.

    @param defaultPort: The port when none is given, possibly L{None}.
    @return: C{(host, port)}, the host in its compressed form.
    @rtype: L{tuple} of L{str} and L{int} (or C{defaultPort})
    @raise ValueError: If C{value} is none of these.
    """
    _string(value)
    host, port = value, None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = None
        elif rest:
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        address = ipaddress.ip_address(host)
        if value.startswith("[") and address.version != 6:
            raise ValueError(host)
        if port is None:
            port = defaultPort
        else:
            if not (port.isascii() and port.isdigit()):
                raise ValueError(port)
            port = int(port, 10)
            if not 0 < port < 65536:
                raise ValueError(port)
    except (ValueError, TypeError):
        example = defaultPort or XMPP_SERVER_PORT
        raise _Invalid(
            f"{value!r} is not an IP address with an optional port, such as "
            f"127.0.0.1:{example} or [::1]:{example}") from None
    return (str(address), port)


def _resolver(value):
    return parseAddress(value, DNS_PORT)


def _peerAddress(value):
    # Without a port, the SRV record's applies (dna.dns.addresses.AddressResolver).
    return parseAddress(value, None)


def _suggest(key, keys, elsewhere=()):
    """
    Say what an unknown key may have meant, in parentheses after a space.

    @param keys: The valid keys here.
    @param elsewhere: C{(section, key)} of valid keys of other sections.
    """
    for section, other in elsewhere:
        if other == key:
            return f" (it belongs in {section})"
    close = difflib.get_close_matches(key, list(keys), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected {_orList([repr(k) for k in keys])})"


# Tables


class _Table:
    """
    One TOML table being read: refuses unknown keys and puts the location in
    front of every problem with a value.
    """

    def __init__(self, where, table, keys, elsewhere=()):
        """
        @param where: The location for messages, such as C{"[server]"}.
        @param table: The parsed table, or L{None} when it is missing.
        @param keys: The keys it may have.
        @param elsewhere: C{(section, key)} of other sections, for hints.
        @raise _Invalid: If the table is not a table or has an unknown key.
        """
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise _Invalid(f"{where}: expected a table, got {_describe(table)}")
        for key in table:
            if key not in keys:
                hint = _suggest(key, keys, [
                    (section, other) for section, other in elsewhere
                    if section != where])
                raise _Invalid(f"{where} {key}: unknown key{hint}")
        self.where = where
        self._table = table

    def __contains__(self, key):
        return key in self._table

    def value(self, key, parse, default=_REQUIRED):
        """
        The value of C{key}, parsed.

        @param default: The value when C{key} is missing; without it the key
            is required.
        """
        if key not in self._table:
            if default is _REQUIRED:
                raise _Invalid(f"{self.where} {key}: required, but missing")
            return default
        with _where(f"{self.where} {key}"):
            return parse(self._table[key])


@contextmanager
def _where(location):
    """
    Put C{location} in front of the complaint of a L{_Invalid} raised inside.
    """
    try:
        yield
    except _Invalid as e:
        raise _Invalid(f"{location}: {e}") from None


_SERVER_KEYS = ("listen", "domains", "ca", "idle-timeout", "connect-timeout",
                "max-pending", "request-timeout", "queue-limit", "names",
                "domain-certificates", "dialback-secret")
_NAME_KEYS = ("name", "certificate", "key")
_DNS_KEYS = ("mode", "resolvers", "trust-anchors", "trusted-path", "timeout")
_POLICY_KEYS = ("delegation", "allow-insecure", "srv-fallback", "fallback")
_COMPONENTS_KEYS = ("listen", "secret")
_SECTIONS = ("server", "dns", "policy", "hosts", "components")
_ALL_KEYS = tuple(
    [("[server]", key) for key in _SERVER_KEYS]
    + [("[dns]", key) for key in _DNS_KEYS]
    + [("[policy]", key) for key in _POLICY_KEYS]
    + [("[components]", key) for key in _COMPONENTS_KEYS])

_hostedDomains = _array(
    parseDomain, "empty: name at least one hosted domain", "domains")
_resolvers = _array(_resolver, "empty: name at least one resolver",
                    "addresses")
_remoteDomains = _array(parseDomain, None, "domains")


# Files


def _readFile(path):
    """
    The contents of a file.

    @raise _Invalid: If it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise _Invalid(f"no such file {path}") from None
    except OSError as e:
        raise _Invalid(f"cannot read {path}: {e.strerror}") from None


def _path(base):
    """
    A parser of file names, relative ones against C{base}; the file must be
    readable, and the parser returns C{(path, contents)}.
    """

    def parse(value):
        _string(value)
        if not value:
            raise _Invalid("expected a file name, got an empty string")
        path = os.path.normpath(os.path.join(base, value))
        return path, _readFile(path)

    return parse


def _certificates(path, data):
    """
    All certificates of a PEM file, in order.

    @rtype: L{list} of L{cryptography.x509.Certificate}
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise _Invalid(f"no PEM certificate in {path}")
    return certificates


def _privateKey(path, data):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _Invalid(
            f"the key in {path} is encrypted: give it unencrypted, as "
            f"nobody is there to type a passphrase") from None
    except UnsupportedAlgorithm:
        raise _Invalid(f"unsupported kind of key in {path}") from None
    except ValueError:
        raise _Invalid(f"no PEM private key in {path}") from None


def _spki(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _dateText(when):
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _checkDates(certificate, what, path, now):
    if certificate.not_valid_after_utc < now:
        raise _Invalid(f"{what} in {path} expired on "
                       f"{_dateText(certificate.not_valid_after_utc)}")
    if certificate.not_valid_before_utc > now:
        raise _Invalid(f"{what} in {path} is not valid before "
                       f"{_dateText(certificate.not_valid_before_utc)}")


def _twistedCertificate(certificate):
    return Certificate(crypto.X509.from_cryptography(certificate))


def _presented(names):
    if not names:
        return "it presents no server name"
    return "it presents: " + ", ".join(sorted(names))


@attr.s(frozen=True)
class ServerName:
    """
    One of our server names with the certificate we prove it with.

    @ivar name: The server name, normalised by L{normalizeServerName}.
    @ivar certificate: The certificate and its key.
    @type certificate: L{twisted.internet.ssl.PrivateCertificate}
    @ivar chain: The intermediate certificates to send after it.
    @type chain: L{tuple} of L{twisted.internet.ssl.Certificate}
    @ivar certificatePath: The certificate file.
    @ivar keyPath: The key file.
    @ivar notAfter: When the certificate expires.
    @type notAfter: L{datetime.datetime}
    """

    name = attr.ib()
    certificate = attr.ib(repr=False)
    chain = attr.ib(converter=tuple, repr=False, default=())
    certificatePath = attr.ib(default=None)
    keyPath = attr.ib(default=None)
    notAfter = attr.ib(default=None)


def _serverName(where, entry, base, now, previous, section="[[server.names]]"):
    """
    Read one C{[[server.names]]} (or C{[[server.domain-certificates]]})
    entry and its files.

    @param previous: The names of the entries before, in order.
    @rtype: L{ServerName}
    """
    table = _Table(where, entry, _NAME_KEYS)
    name = table.value("name", parseServerName)
    if name in previous:
        raise _Invalid(f"{where} name: {name} is already {section} "
                       f"#{previous.index(name) + 1}")
    certificatePath, certificateData = table.value("certificate", _path(base))
    if "key" in table:
        keyPath, keyData = table.value("key", _path(base))
    else:
        keyPath, keyData = certificatePath, certificateData

    with _where(f"{where} certificate"):
        certificates = _certificates(certificatePath, certificateData)
    with _where(f"{where} key"):
        key = _privateKey(keyPath, keyData)

    spki = _spki(key.public_key())
    if _spki(certificates[0].public_key()) != spki:
        for number, other in enumerate(certificates[1:], 2):
            if _spki(other.public_key()) == spki:
                raise _Invalid(
                    f"{where}: the key in {keyPath} belongs to certificate "
                    f"#{number} of {certificatePath}, not the first: put the "
                    f"server's own certificate first, then its chain")
        raise _Invalid(f"{where}: the key in {keyPath} does not match the "
                       f"certificate in {certificatePath}")

    for number, certificate in enumerate(certificates, 1):
        what = "the certificate" if number == 1 else (
            f"chain certificate #{number} "
            f"({certificate.subject.rfc4514_string()})")
        with _where(f"{where} certificate"):
            _checkDates(certificate, what, certificatePath, now)

    try:
        verifyPeerName(certificates[0], name)
    except CertificateNameMismatch as e:
        raise _Invalid(
            f"{where}: the certificate in {certificatePath} does not cover "
            f"{name} ({_presented(e.presentedNames)})") from None

    try:
        keyPair = KeyPair(crypto.PKey.from_cryptography_key(key))
    except TypeError:
        raise _Invalid(f"{where} key: unsupported kind of key in {keyPath}") \
            from None
    return ServerName(
        name=name,
        certificate=PrivateCertificate.fromCertificateAndKeyPair(
            _twistedCertificate(certificates[0]), keyPair),
        chain=[_twistedCertificate(c) for c in certificates[1:]],
        certificatePath=certificatePath,
        keyPath=keyPath,
        notAfter=certificates[0].not_valid_after_utc,
    )


def _serverNames(value, base, now, key="names", required=True):
    section = f"[[server.{key}]]"
    if isinstance(value, dict):
        raise _Invalid(
            f"[server] {key}: expected an array of tables, written "
            f"{section}, got a table")
    if not isinstance(value, list) or not all(
            isinstance(entry, dict) for entry in value):
        raise _Invalid(
            f"[server] {key}: expected an array of tables, written "
            f"{section}, got {_describe(value)}")
    if not value and required:
        raise _Invalid(
            f"{section}: none given: name at least one server name "
            "with its certificate and key")
    names = []
    for number, entry in enumerate(value, 1):
        names.append(_serverName(f"{section} #{number}", entry, base,
                                 now, [n.name for n in names], section))
    return tuple(names)


def _authorities(path, data):
    return tuple(_twistedCertificate(c) for c in _certificates(path, data))


def _anchors(path, data):
    try:
        return MappingProxyType(parseAnchors(data.decode("utf-8")))
    except UnicodeDecodeError:
        raise _Invalid(f"{path} is not UTF-8 text") from None
    except ValueError as e:
        raise _Invalid(f"{' '.join(str(e).split())} (in {path})") from None


def _hosts(table, where="[hosts]"):
    if table is None:
        return MappingProxyType({})
    if not isinstance(table, dict):
        raise _Invalid(f"{where}: expected a table, got {_describe(table)}")
    hosts = {}
    spelled = {}
    for key, value in table.items():
        here = f"{where} {key!r}"
        if isinstance(value, dict):
            raise _Invalid(
                f"{here}: expected an address string, got a table (quote "
                f"names with dots: \"xmpp1.example.net\" = \"192.0.2.1:5269\")")
        with _where(here):
            name = parseServerName(key)
            if name in hosts:
                raise _Invalid(f"the same server name as {spelled[name]!r}")
            hosts[name] = _peerAddress(value)
        spelled[name] = key
    return MappingProxyType(hosts)


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
    @type serverNames: L{tuple} of L{ServerName}
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
    @type domainCertificates: L{tuple} of L{ServerName}
    @ivar dialbackSecret: The Server Dialback secret that servers sharing
        the hosted domains share (C{[server] dialback-secret}); L{None}: a
        random one per process.
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
    resolvers = attr.ib(default=(("127.0.0.1", DNS_PORT),), converter=tuple)
    trustAnchorsPath = attr.ib(default=None)
    trustAnchors = attr.ib(default=None, converter=_immutableMapping,
                           eq=False, repr=False)
    trustedPath = attr.ib(default=False)
    dnsTimeout = attr.ib(default=DEFAULT_DNS_TIMEOUT)
    delegationPolicy = attr.ib(default=REQUIRE_SECURE)
    allowInsecure = attr.ib(default=frozenset(), converter=frozenset)
    srvFallback = attr.ib(default=False)
    fallback = attr.ib(default=FALLBACK_DNA)
    hosts = attr.ib(default=MappingProxyType({}), converter=_immutableMapping)
    componentListen = attr.ib(default=None)
    componentSecret = attr.ib(default=None, repr=False)
    domainCertificates = attr.ib(default=(), converter=tuple)
    dialbackSecret = attr.ib(default=None, repr=False)

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
                with _where(f"{section} {key} (overridden)"):
                    parsed[name] = parse(value)
            except _Invalid as e:
                raise ConfigurationError(self.path, str(e)) from None
        configuration = attr.evolve(self, **parsed)
        try:
            _checkTogether(configuration)
        except _Invalid as e:
            raise ConfigurationError(self.path, str(e)) from None
        return configuration


#: The attributes L{Configuration.override} changes: their section, key and
#: parser.
_OVERRIDABLE = {
    "listen": ("[server]", "listen", checkListen),
    "domains": ("[server]", "domains", _hostedDomains),
    "idleTimeout": ("[server]", "idle-timeout", _seconds),
    "connectTimeout": ("[server]", "connect-timeout", _seconds),
    "maxPending": ("[server]", "max-pending", _count),
    "requestTimeout": ("[server]", "request-timeout", _seconds),
    "queueLimit": ("[server]", "queue-limit", _count),
    "dnsMode": ("[dns]", "mode", _word(DNS_MODES)),
    "resolvers": ("[dns]", "resolvers", _resolvers),
    "trustedPath": ("[dns]", "trusted-path", _boolean),
    "dnsTimeout": ("[dns]", "timeout", _seconds),
    "delegationPolicy": ("[policy]", "delegation", _word(DELEGATION_POLICIES)),
    "allowInsecure": ("[policy]", "allow-insecure", _remoteDomains),
    "srvFallback": ("[policy]", "srv-fallback", _boolean),
    "fallback": ("[policy]", "fallback", _word(FALLBACKS)),
}


def _checkTogether(configuration):
    """
    The rules that tie settings together.

    @raise _Invalid: If one is broken.
    """
    if configuration.dnsMode == MODE_AD and not configuration.trustedPath:
        remote = [
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for host, port in configuration.resolvers
            if not ipaddress.ip_address(host).is_loopback]
        if remote:
            raise _Invalid(
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
    except _Invalid as e:
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

    @raise _Invalid: If anything is wrong.
    """
    for key, value in document.items():
        if key not in _SECTIONS:
            if isinstance(value, dict):
                raise _Invalid(f"[{key}]: unknown section"
                               f"{_suggest(key, _SECTIONS)}")
            hint = _suggest(key, _SECTIONS, _ALL_KEYS)
            raise _Invalid(f"{key}: unknown key outside any section{hint}")
    base = os.path.dirname(os.path.abspath(path))

    if "server" not in document:
        raise _Invalid("[server]: missing section")
    server = _Table("[server]", document["server"], _SERVER_KEYS, _ALL_KEYS)
    dns = _Table("[dns]", document.get("dns"), _DNS_KEYS, _ALL_KEYS)
    policy = _Table("[policy]", document.get("policy"), _POLICY_KEYS,
                    _ALL_KEYS)
    components = _Table("[components]", document.get("components"),
                        _COMPONENTS_KEYS, _ALL_KEYS)
    componentListen = components.value("listen", checkListen, None)
    componentSecret = components.value("secret", _string, None)
    if componentListen is not None and not componentSecret:
        raise _Invalid("[components] secret: missing: components must "
                       "authenticate with a shared secret")

    listen = server.value("listen", checkListen, DEFAULT_LISTEN)
    domains = server.value("domains", _hostedDomains)
    caPath, caData = server.value("ca", _path(base))
    with _where("[server] ca"):
        caCertificates = _authorities(caPath, caData)
    if "names" not in server:
        raise _Invalid(
            "[[server.names]]: missing: name at least one server name with "
            "its certificate and key")
    serverNames = _serverNames(document["server"]["names"], base, now)
    domainCertificates = _serverNames(
        document["server"].get("domain-certificates", []), base, now,
        key="domain-certificates", required=False)
    for number, entry in enumerate(domainCertificates, 1):
        if entry.name not in domains:
            raise _Invalid(
                f"[[server.domain-certificates]] #{number} name: {entry.name} "
                f"is not one of [server] domains")
    dialbackSecret = server.value("dialback-secret", _string, None)
    if dialbackSecret is not None and len(dialbackSecret) < 16:
        raise _Invalid("[server] dialback-secret: too short: use at least "
                       "16 random characters")

    trustAnchorsPath = trustAnchors = None
    if "trust-anchors" in dns:
        trustAnchorsPath, data = dns.value("trust-anchors", _path(base))
        with _where("[dns] trust-anchors"):
            trustAnchors = _anchors(trustAnchorsPath, data)

    configuration = Configuration(
        path=path,
        listen=listen,
        domains=domains,
        serverNames=serverNames,
        caPath=caPath,
        caCertificates=caCertificates,
        trustRoot=trustRootFromCertificates(list(caCertificates)),
        idleTimeout=server.value("idle-timeout", _seconds,
                                 DEFAULT_IDLE_TIMEOUT),
        connectTimeout=server.value("connect-timeout", _seconds,
                                    DEFAULT_CONNECT_TIMEOUT),
        maxPending=server.value("max-pending", _count, DEFAULT_MAX_PENDING),
        requestTimeout=server.value("request-timeout", _seconds,
                                    DEFAULT_REQUEST_TIMEOUT),
        queueLimit=server.value("queue-limit", _count, DEFAULT_QUEUE_LIMIT),
        dnsMode=dns.value("mode", _word(DNS_MODES), MODE_AD),
        resolvers=dns.value("resolvers", _resolvers,
                            _resolvers(list(DEFAULT_RESOLVERS))),
        trustAnchorsPath=trustAnchorsPath,
        trustAnchors=trustAnchors,
        trustedPath=dns.value("trusted-path", _boolean, False),
        dnsTimeout=dns.value("timeout", _seconds, DEFAULT_DNS_TIMEOUT),
        delegationPolicy=policy.value("delegation", _word(DELEGATION_POLICIES),
                                      REQUIRE_SECURE),
        allowInsecure=policy.value("allow-insecure", _remoteDomains, ()),
        srvFallback=policy.value("srv-fallback", _boolean, False),
        fallback=policy.value("fallback", _word(FALLBACKS), FALLBACK_DNA),
        hosts=_hosts(document.get("hosts")),
        componentListen=componentListen,
        componentSecret=componentSecret,
        domainCertificates=domainCertificates,
        dialbackSecret=dialbackSecret,
    )
    _checkTogether(configuration)
    return configuration
