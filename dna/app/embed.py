"""
dna inside a Wokkel-based server: the S2S of a server built from
L{wokkel.component.Router}, L{wokkel.component.InternalComponent} and
Wokkel's subprotocol handlers, in place of L{wokkel.server.ServerService}.

L{federate} builds the L{DNAService} and makes it the router's default
route: stanzas for domains no local component serves go to peers over DNA
streams (draft-ietf-xmpp-dna-01), and stanzas peers send to the hosted
domains come back through the router. Its settings are a configuration file,
a L{dna.app.config.Configuration}, or plain arguments checked as the file's
keys are (L{configure})::

    s2s = federate(router, domains=["example.org"],
                   serverNames={"xmpp1.example.net": ("xmpp1.pem", "xmpp1.key")},
                   ca="ca.pem", resolvers=["127.0.0.1:53"],
                   wokkelCompatibility=True)
    s2s.setServiceParent(application)

L{Monitor} gives a running service's tables, counters and stream events to
Python, as the control API (L{dna.app.control}) gives them to operators.
"""

import datetime
import os

from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    trustRootFromCertificates,
)
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT

from dna.app import schema
from dna.app.certificates import authorities, buildServerName
from dna.app.config import (
    DEFAULT_LISTEN,
    Configuration,
    _anchors,
    _hosts,
    loadConfiguration,
)
from dna.app.control import Control
from dna.app.service import DNAService
from dna.channel.stream import STREAM_AUTHENTICATED_EVENT
from dna.error import ConfigurationError

#: What messages about plain arguments start with, in place of a file name.
ARGUMENTS = "federate()"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise schema.Invalid(f"cannot read {path}: {e.strerror}") from None


def _serverName(name, certificate, now):
    """
    One server name and its certificate, checked as C{[[server.names]]} are.

    @param certificate: A L{PrivateCertificate}; a PEM file holding the
        certificate, its chain and its key; or C{(certificate file, key
        file)}.
    @rtype: L{dna.app.certificates.ServerName}
    """
    name = schema.serverName(name)
    where = f"serverNames[{name!r}]"
    if isinstance(certificate, PrivateCertificate):
        data = certificate.dumpPEM()
        return buildServerName(where, name, "(object)", data, "(object)", data, now)
    if isinstance(certificate, (str, os.PathLike)):
        certificatePath = keyPath = os.fspath(certificate)
    else:
        certificatePath, keyPath = map(os.fspath, certificate)
    return buildServerName(where, name, certificatePath, _read(certificatePath),
                           keyPath, _read(keyPath), now)


def _authorities(ca):
    """
    @param ca: A PEM file of authorities, or L{Certificate}s.
    @return: C{(path or None, (Certificate, ...))}.
    """
    if isinstance(ca, (str, os.PathLike)):
        path = os.fspath(ca)
        return path, authorities(path, _read(path))
    certificates = (ca,) if isinstance(ca, Certificate) else tuple(ca)
    if not certificates:
        raise schema.Invalid("ca: empty: give the authorities trusted for peers")
    return None, certificates


def _address(value):
    # (host, port) as the file writes it: "host:port", "[v6]:port".
    if isinstance(value, tuple):
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return value


def configure(domains, serverNames, ca, listen=DEFAULT_LISTEN, hosts=None,
              trustAnchors=None, now=None, **settings):
    """
    A L{Configuration} from plain arguments, checked as a configuration file
    is (no TOML file needed).

    @param domains: The hosted domains (C{[server] domains}).
    @param serverNames: C{{server name: certificate}}, the first the default
        (C{[[server.names]]}); each certificate a L{PrivateCertificate}, a
        PEM file with the certificate, its chain and the key, or a
        C{(certificate file, key file)} pair.
    @param ca: The authorities trusted for peers' certificates: a PEM file
        or L{Certificate}s (C{[server] ca}).
    @param listen: Where to listen, a server endpoint description; L{None}
        not to listen (then call L{DNAService.listen}).
    @param hosts: C{{server name: "host[:port]"}} (C{[hosts]}).
    @param trustAnchors: A trust anchor file for C{dnsMode="validate"}.
    @param now: When the certificates must be valid; now by default.
    @param settings: The settings of L{Configuration.override}, as the file
        writes them: C{resolvers=["127.0.0.1:53"]} (or C{(host, port)}
        pairs), C{dnsMode="ad"} or C{"validate"}, C{trustedPath},
        C{delegationPolicy}, C{allowInsecure}, C{srvFallback}, C{fallback}
        (C{"dna"}, C{"dna+pkix"}, ...), C{idleTimeout}, C{connectTimeout},
        C{maxPending}, C{requestTimeout}, C{queueLimit}, C{dnsTimeout}.
    @rtype: L{Configuration}
    @raise ConfigurationError: If anything is wrong, in one line naming the
        argument.
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    if "resolvers" in settings:
        settings["resolvers"] = [_address(value) for value in settings["resolvers"]]
    try:
        names = []
        for name, certificate in dict(serverNames).items():
            names.append(_serverName(name, certificate, now))
        if not names:
            raise schema.Invalid("serverNames: empty: name at least one server name "
                                 "with its certificate")
        caPath, caCertificates = _authorities(ca)
        anchorsPath = anchors = None
        if trustAnchors is not None:
            anchorsPath = os.fspath(trustAnchors)
            anchors = _anchors(anchorsPath, _read(anchorsPath))
        base = Configuration(
            path=ARGUMENTS,
            listen=listen,
            domains=(),
            serverNames=names,
            caPath=caPath,
            caCertificates=caCertificates,
            trustRoot=trustRootFromCertificates(list(caCertificates)),
            hosts=_hosts(None if hosts is None else dict(hosts), "hosts"),
            trustAnchorsPath=anchorsPath,
            trustAnchors=anchors,
        )
    except schema.Invalid as e:
        raise ConfigurationError(ARGUMENTS, str(e)) from None
    if listen is not None:
        settings["listen"] = listen
    return base.override(domains=list(domains), **settings)


def federate(router, domains=None, serverNames=None, ca=None, configuration=None,
             reactor=None, wokkelCompatibility=False, **settings):
    """
    The S2S of a Wokkel-based server: a L{DNAService} that is C{router}'s
    default route. Add it to the application (C{setServiceParent}) to start
    it.

    @param router: The server's L{wokkel.component.Router}. Local services
        are its routes (L{wokkel.component.InternalComponent}s, XEP-0114
        components); every other domain is reached through dna, and what
        peers send to the hosted domains is routed through it.
    @param configuration: A L{Configuration}, or the path of a configuration
        file; or give C{domains}, C{serverNames}, C{ca} and C{settings} as
        L{configure} takes them.
    @param reactor: The reactor; the global one by default.
    @param wokkelCompatibility: Whether to call
        L{dna.app.wokkelcompat.install} first, so that Wokkel's handlers
        (C{wokkel.disco}, C{ping}, C{data_form}, C{pubsub}, C{muc}) import
        on current Twisted.
    @rtype: L{DNAService}
    @raise ConfigurationError: If a setting is wrong.
    @raise TypeError: If both or neither of C{configuration} and the plain
        arguments are given.
    """
    if wokkelCompatibility:
        from dna.app import wokkelcompat

        wokkelcompat.install()
    plain = (domains, serverNames, ca)
    if configuration is None:
        if None in plain:
            raise TypeError("give a configuration, or domains, serverNames and ca")
        configuration = configure(domains, serverNames, ca, **settings)
    elif plain != (None, None, None) or settings:
        raise TypeError("give a configuration or plain settings, not both")
    elif isinstance(configuration, (str, os.PathLike)):
        configuration = loadConfiguration(os.fspath(configuration))
    return DNAService.fromConfiguration(configuration, router=router, reactor=reactor)


class Monitor(Control):
    """
    A running L{DNAService}'s state for Python: the data of the control API
    (L{Control}: C{connections()}, C{bindings(local=, remote=, stream=)},
    C{status()}, C{revoke(local, remote)}, C{close(streamID)},
    C{check(domain)}), its refusal counters, and its stream events.
    """

    def __init__(self, s2s, clock=None):
        """
        @param s2s: The L{DNAService}.
        @param clock: An L{IReactorTime}; the global reactor by default.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        Control.__init__(self, s2s, s2s.configuration, clock)
        self._observers = []
        s2s.streamObservers.append(self._streamConnected)

    def counters(self):
        """
        @return: Refusal name -> how many times it happened, such as
            C{{"filter-rejected": 2}} (see L{dna.app.federation.Federation}).
        @rtype: L{dict}
        """
        return dict(self._federation.counters)

    def addObserver(self, observer):
        """
        Be told of every stream: C{observer} is called with a L{dict}
        C{{"event": "connected" | "authenticated" | "ended", "stream": id}}
        (its id is that of the table's row once authenticated).
        """
        self._observers.append(observer)

    def removeObserver(self, observer):
        self._observers.remove(observer)

    def _emit(self, event, xs):
        for observer in list(self._observers):
            observer({"event": event, "stream": xs.sid})

    def _streamConnected(self, xs):
        self._emit("connected", xs)
        xs.addOnetimeObserver(STREAM_AUTHENTICATED_EVENT,
                              lambda ignored: self._emit("authenticated", xs))
        xs.addOnetimeObserver(STREAM_END_EVENT, lambda reason: self._emit("ended", xs))
