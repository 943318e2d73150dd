"""
The Receiving Server's side of a DNA connection: streams between server
names over mutual TLS.

draft-ietf-xmpp-dna-01 section 5 (receiving a connection): accept a stream
addressed to one of our server names, require STARTTLS with a client
certificate, check the stream's 'from' against that certificate (RFC 6125),
then offer the DNA and bidi features and hand the stream to the
L{dna.app.federation.Federation}, which authorizes domain pairs on it
(section 6). The connection id is the stream id of the stream after TLS.

Until a connection is authenticated it costs us and proves nothing, so
L{ConnectionGate} bounds what unauthenticated connections may take (issue 9,
"Connections and buffers"): a source address may hold a few at once and all
together a few hundred, beyond which a new connection is closed as soon as
it is accepted, before any TLS; and each must be authenticated within a
deadline counted from the moment it was accepted, which no whitespace or
trickled byte extends, or it gets a C{<connection-timeout/>} stream error and
is closed. The legacy listener (L{dna.legacy.receiving}) negotiates on the
streams of the same factory, so the same limits apply to it.
"""

import secrets

from twisted.internet import interfaces
from twisted.logger import Logger
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from twisted.words.xish import domish

from dna.channel.features import advertise, requireStartTLS, watchBidiRequest
from dna.channel.identity import verifyPeerName
from dna.channel.stream import STREAM_AUTHENTICATED_EVENT, S2SStream, StreamLimits
from dna.channel.tls import peerCertificate, peerServerNames, tlsFailure
from dna.core.names import normalizeDomain
from dna.error import (
    CertificateNameMismatch,
    DANEMismatch,
    DANEUnavailable,
    InvalidAddress,
)
from dna.namespaces import NS_DIALBACK, NS_SERVER, NS_STREAMS, NS_TLS

_log = Logger()

#: Seconds an incoming connection has, from the moment it is accepted, to
#: finish TLS and authenticate.
DEFAULT_AUTH_TIMEOUT = 30.0
#: Unauthenticated connections one source address may hold at once.
DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS = 8
#: Unauthenticated connections all addresses together may hold at once.
DEFAULT_MAX_UNAUTHENTICATED = 256
#: Seconds a connection closed at its deadline may take to go before it is
#: aborted (a peer that never reads would hold it open).
CLOSE_GRACE = 5.0
#: Connections the kernel may queue before we accept them (Twisted's default,
#: 50, dropped SYNs when 200 peers connected at once).
DEFAULT_BACKLOG = 511


def withBacklog(description, backlog=DEFAULT_BACKLOG):
    """
    A TCP strports description that sets a listen backlog: C{description}
    itself when it sets one already or is not C{tcp:}/C{tcp6:}, else with
    C{:backlog=N} added.

    @param description: Such as C{"tcp:5269:interface=127.0.0.1"}.
    @rtype: L{str}
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in ("tcp", "tcp6") or "backlog=" in description:
        return description
    return "{}:backlog={}".format(description, backlog)


def newStreamID():
    """
    A stream id no peer can guess: 128 random bits, hex.
    """
    return secrets.token_hex(16)


def acceptHeader(xs, rootElement, checkHeader):
    """
    The Receiving Server's first steps on any S2S stream header: our
    namespaces, a fresh stream id, and the header's names.

    @param checkHeader: Called with the header; returns (our name, the
        peer's name) or raises L{error.StreamError}.
    @return: (our name, the peer's name), or L{None} when the header was
        refused with a stream error.
    """
    xs.namespace = NS_SERVER
    xs.prefixes = {NS_STREAMS: "stream", NS_DIALBACK: "db"}
    xs.sid = newStreamID()
    try:
        local, remote = checkHeader(rootElement)
    except error.StreamError as e:
        xs.sendStreamError(e)
        return None
    xs.thisEntity = jid.JID(local)
    xs.otherEntity = jid.JID(remote)
    return local, remote


def offerStartTLS(xs, onStartTLS):
    """
    Send stream features that offer only a required STARTTLS, and call
    C{onStartTLS} with the peer's C{<starttls/>} (anything else closes the
    stream: L{requireStartTLS}).
    """
    features = domish.Element((NS_STREAMS, "features"))
    features.addElement((NS_TLS, "starttls")).addElement("required")
    requireStartTLS(xs, onStartTLS)
    xs.send(features)


#: Why the Receiving Server refused a peer in or right after TLS, as counted
#: by L{DNAListenAuthenticator} (C{"tls-refused-"} + reason): the handshake
#: failed (C{"certificate"}: the client certificate did not verify;
#: C{"handshake"}: any other TLS error), the certificate does not cover the
#: stream's 'from' (C{"name-mismatch"}), or DANE refused it
#: (C{"dane-mismatch"}, C{"dane-unavailable"}).
REFUSED_TLS_REASONS = ("certificate", "handshake", "name-mismatch", "dane-mismatch",
                       "dane-unavailable")


def refusedTLS(failure):
    """
    The reason (of L{REFUSED_TLS_REASONS}) the certificate check after TLS
    failed with C{failure}.
    """
    if failure.check(DANEMismatch):
        return "dane-mismatch"
    if failure.check(DANEUnavailable):
        return "dane-unavailable"
    return "name-mismatch"


class DNAListenAuthenticator(xmlstream.ListenAuthenticator):
    """
    Receiving Server: negotiate a stream between server names.

    Before TLS the only feature offered is a required C{<starttls/>}; after
    it, the peer's certificate must be valid for the stream's 'from', and the
    stream is authenticated as soon as the features C{<dna/>} and C{<bidi/>}
    are sent.
    """

    namespace = NS_SERVER

    def __init__(self, serverNames, contextFactory, onAuthenticated, legacy=None, dane=None,
                 counters=None):
        """
        @param serverNames: Our server names (normalised); streams addressed
            elsewhere are refused with C{<host-unknown/>}, unless C{legacy}
            takes them.
        @param contextFactory: The server TLS context factory
            (L{dna.channel.tls.ServerContextFactory}).
        @param onAuthenticated: Called with (xs, peerServerNames, ourName)
            when the stream is authenticated.
        @param legacy: A L{dna.legacy.receiving.LegacyListener} for streams
            addressed to hosted domains (section 7), or L{None}.
        @param dane: A L{dna.channel.tls.DANEPeerVerifier} checking the
            peer's certificate for its 'from' (TLSA first, then PKIX), or
            L{None} to check it by name alone (PKIX passed in the handshake).
        @param counters: The L{collections.Counter} that counts this side's
            TLS failures as C{"tls-refused-"} + the reason (L{refusedTLS}),
            or L{None}.
        """
        self._dane = dane
        self._counters = counters
        self._authenticated = False
        xmlstream.ListenAuthenticator.__init__(self)
        self._serverNames = serverNames
        self._contextFactory = contextFactory
        self._onAuthenticated = onAuthenticated
        self._tls = False
        self._legacy = legacy
        self._legacyStream = None

    def streamStarted(self, rootElement):
        """
        Check the stream header, answer it, and offer STARTTLS or, after TLS,
        the DNA features; hand a stream to a hosted domain to the legacy
        listener.
        """
        xmlstream.Authenticator.streamStarted(self, rootElement)
        if (self._legacyStream is None and not self._tls and self._legacy is not None
                and self._legacy.accepts(rootElement)):
            self._legacyStream = self._legacy.negotiate(self.xmlstream)
        if self._legacyStream is not None:
            self._legacyStream.streamStarted(rootElement)
            return
        xs = self.xmlstream
        names = acceptHeader(xs, rootElement, self._checkHeader)
        if names is None:
            return
        ourName, peerName = names
        if self._tls and self._dane is not None:
            d = self._dane.verify(xs.transport, peerName)
            d.addCallbacks(self._checked, self._refuse, callbackArgs=(xs, ourName),
                           errbackArgs=(xs, peerName))
            d.addErrback(lambda f: _log.failure("Checking the certificate of {peer}", f,
                                                peer=peerName))
            return
        if self._tls:
            try:
                verifyPeerName(peerCertificate(xs.transport), peerName)
            except CertificateNameMismatch as e:
                self._count("name-mismatch")
                _log.info(
                    "Refused stream from {peer}: its certificate presents {names}",
                    event="stream-refused",
                    streamID=xs.sid,
                    remote=peerName,
                    condition="invalid-from",
                    reason="certificate does not match 'from'",
                    peer=peerName,
                    names=sorted(e.presentedNames),
                )
                xs.sendStreamError(
                    error.StreamError(
                        "invalid-from", text="certificate does not match 'from'"
                    )
                )
                return
        self._accept(xs, ourName)

    def _checked(self, proof, xs, ourName):
        if xs.transport is not None and getattr(xs.transport, "connected", True):
            self._accept(xs, ourName)

    def _refuse(self, failure, xs, peerName):
        failure.trap(CertificateNameMismatch, DANEMismatch, DANEUnavailable)
        self._count(refusedTLS(failure))
        _log.info("Refused stream from {peer}: {reason}", peer=peerName,
                  reason=failure.value)
        if xs.transport is not None and getattr(xs.transport, "connected", True):
            xs.sendStreamError(error.StreamError(
                "invalid-from", text="certificate does not match 'from'"))

    def _accept(self, xs, ourName):
        """
        Answer the header of a peer whose certificate is valid for its
        'from' (or of any peer before TLS): STARTTLS before TLS, the DNA
        features after.
        """
        xs.sendHeader()
        if not self._tls:
            offerStartTLS(xs, self._onStartTLS)
            return
        features = domish.Element((NS_STREAMS, "features"))
        watchBidiRequest(xs)
        xs.send(advertise(features, maxBytes=xs.maxStanzaSize, idleSeconds=xs.idleSeconds))
        self._authenticated = True
        self._onAuthenticated(xs, peerServerNames(xs.transport), ourName)

    def _checkHeader(self, rootElement):
        """
        The (our server name, peer server name) of a stream header.

        @raise error.StreamError: When the header is not one we serve.
        """
        if rootElement.uri != NS_STREAMS or rootElement.defaultUri != NS_SERVER:
            raise error.StreamError("invalid-namespace")
        try:
            ourName = normalizeDomain(rootElement.getAttribute("to"))
        except InvalidAddress:
            raise error.StreamError("host-unknown")
        if ourName not in self._serverNames:
            raise error.StreamError("host-unknown")
        try:
            peerName = normalizeDomain(rootElement.getAttribute("from"))
        except InvalidAddress:
            raise error.StreamError(
                "invalid-from", text="a server name is required in 'from'"
            )
        return ourName, peerName

    def _onStartTLS(self, element):
        xs = self.xmlstream
        element.handled = True
        xs.send(domish.Element((NS_TLS, "proceed")))
        xs.transport.startTLS(self._contextFactory)
        self._tls = True
        xs.addOnetimeObserver(STREAM_END_EVENT, self._ended)
        xs.reset()

    def _ended(self, reason):
        """
        Count a connection lost to TLS before it was authenticated: the
        handshake failed (our CA did not verify its client certificate, or
        any other TLS error).
        """
        if self._authenticated or self._legacyStream is not None:
            return
        why = tlsFailure(reason) if hasattr(reason, "check") else None
        if why is not None:
            self._count(why)

    def _count(self, reason):
        if self._counters is not None:
            self._counters["tls-refused-" + reason] += 1


class _Unauthenticated:
    """
    One connection that has not authenticated yet: its address and timer.
    """

    __slots__ = ("host", "timer")

    def __init__(self, host, timer):
        self.host = host
        self.timer = timer


class ConnectionGate:
    """
    The limits on incoming connections that have not authenticated yet: how
    many one source address and all together may hold, and how long each
    may take.

    A connection stops counting once its stream dispatches
    L{STREAM_AUTHENTICATED_EVENT} or ends.

    @ivar unauthenticated: How many connections count now.
    """

    def __init__(self, clock, incidents, authTimeout=DEFAULT_AUTH_TIMEOUT,
                 maxPerAddress=DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
                 maxInAll=DEFAULT_MAX_UNAUTHENTICATED):
        """
        @param clock: The L{IReactorTime} of the deadlines.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} that counts
            and logs refusals (C{"unauthenticated-cap-address"},
            C{"unauthenticated-cap"}, C{"auth-timeout"}).
        @param authTimeout: Seconds from accept to authentication.
        @param maxPerAddress: Unauthenticated connections per source address.
        @param maxInAll: Unauthenticated connections in all.
        """
        self._clock = clock
        self._incidents = incidents
        self._authTimeout = authTimeout
        self._maxPerAddress = maxPerAddress
        self._maxInAll = maxInAll
        # source host -> how many of its connections count
        self._byHost = {}
        self.unauthenticated = 0

    def admit(self, address):
        """
        Whether a connection just accepted from C{address} may go on.
        """
        host = getattr(address, "host", None)
        if self.unauthenticated >= self._maxInAll:
            name, limit, where = "unauthenticated-cap", self._maxInAll, "in all"
        elif self._byHost.get(host, 0) >= self._maxPerAddress:
            name, limit, where = "unauthenticated-cap-address", self._maxPerAddress, "from it"
        else:
            return True
        self._incidents.report(
            name, _log,
            "Closed a connection from {address} at once: {limit} connections "
            "{where} are not authenticated yet",
            address=host, limit=limit, where=where,
        )
        return False

    def watch(self, xs, address):
        """
        Count C{xs}, admitted from C{address}, until it authenticates or
        ends, and close it if it has not authenticated by the deadline.
        """
        host = getattr(address, "host", None)
        self._byHost[host] = self._byHost.get(host, 0) + 1
        self.unauthenticated += 1
        entry = _Unauthenticated(host, None)

        def release(ignored):
            xs.removeObserver(STREAM_AUTHENTICATED_EVENT, release)
            xs.removeObserver(STREAM_END_EVENT, release)
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            entry.timer = None
            self.unauthenticated -= 1
            left = self._byHost.pop(entry.host) - 1
            if left:
                self._byHost[entry.host] = left

        xs.addObserver(STREAM_AUTHENTICATED_EVENT, release)
        xs.addObserver(STREAM_END_EVENT, release)
        entry.timer = self._clock.callLater(self._authTimeout, self._expired, xs, entry)

    def _expired(self, xs, entry):
        entry.timer = None
        self._incidents.report(
            "auth-timeout", _log,
            "Closing a connection from {address}: not authenticated after {timeout:.0f} s",
            address=entry.host, timeout=self._authTimeout,
        )
        if xs.transport is None:
            return
        entry.timer = self._clock.callLater(CLOSE_GRACE, xs.transport.abortConnection)
        if xs.streamError is None:
            xs.sendStreamError(
                error.StreamError("connection-timeout", text="not authenticated in time")
            )


class S2SServerFactory(xmlstream.XmlStreamServerFactory):
    """
    Accept DNA S2S connections (and, through C{legacy}, legacy ones).
    """

    protocol = S2SStream
    logTraffic = False

    def __init__(self, serverNames, contextFactory, onAuthenticated, onConnected=None,
                 legacy=None, gate=None, limits=None, incidents=None, dane=None):
        """
        @param onConnected: Called with each new stream, before its header
            arrives (the service uses it for idle time-outs).
        @param legacy: See L{DNAListenAuthenticator}.
        @param gate: The L{ConnectionGate} that admits connections, or
            L{None} to admit all.
        @param limits: The L{StreamLimits} of every stream; the defaults if
            L{None}.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} of the
            streams' refusals, or L{None}; its C{counters} also count the
            TLS failures of incoming connections (L{REFUSED_TLS_REASONS}).
        @param dane: See L{DNAListenAuthenticator}.
        """

        def authenticatorFactory():
            return DNAListenAuthenticator(
                serverNames, contextFactory, onAuthenticated, legacy=legacy, dane=dane,
                counters=None if incidents is None else incidents.counters,
            )

        xmlstream.XmlStreamServerFactory.__init__(self, authenticatorFactory)
        self._onConnected = onConnected
        self._gate = gate
        self._limits = limits if limits is not None else StreamLimits()
        self._incidents = incidents
        self.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._connected)

    def buildProtocol(self, addr):
        """
        A stream for a connection just accepted from C{addr}, or L{None} (the
        connection is closed at once) when the gate refuses it.
        """
        if self._gate is not None and not self._gate.admit(addr):
            return None
        xs = xmlstream.XmlStreamServerFactory.buildProtocol(self, addr)
        self._limits.apply(xs, self._incidents)
        if self._gate is not None:
            self._gate.watch(xs, addr)
        return xs

    def _connected(self, xs):
        if interfaces.ITCPTransport.providedBy(xs.transport):
            # Nagle stalls the TLS handshake's last flight (~40 ms per link).
            xs.transport.setTcpNoDelay(True)
        if self.logTraffic:
            xs.rawDataInFn = lambda data: _log.debug("RECV {data!r}", data=data)
            xs.rawDataOutFn = lambda data: _log.debug("SEND {data!r}", data=data)
        if self._onConnected is not None:
            self._onConnected(xs)
