"""
The Receiving Server's side of a DNA connection: streams between server
names over mutual TLS.

draft-ietf-xmpp-dna-01 section 5 (receiving a connection): accept a stream
addressed to one of our server names, require STARTTLS with a client
certificate, check the stream's 'from' against that certificate (RFC 6125),
then offer the DNA and bidi features and hand the stream to the
L{dna.app.federation.Federation}, which authorizes domain pairs on it
(section 6). The connection id is the stream id of the stream after TLS.
"""

import secrets

from twisted.internet import interfaces
from twisted.logger import Logger
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.xish import domish

from dna.channel.features import advertise, requireStartTLS, watchBidiRequest
from dna.channel.identity import verifyPeerName
from dna.channel.stream import S2SStream
from dna.channel.tls import peerCertificate, peerServerNames
from dna.core.names import normalizeDomain
from dna.error import CertificateNameMismatch, InvalidAddress
from dna.namespaces import NS_DIALBACK, NS_SERVER, NS_STREAMS, NS_TLS

_log = Logger()


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


class DNAListenAuthenticator(xmlstream.ListenAuthenticator):
    """
    Receiving Server: negotiate a stream between server names.

    Before TLS the only feature offered is a required C{<starttls/>}; after
    it, the peer's certificate must be valid for the stream's 'from', and the
    stream is authenticated as soon as the features C{<dna/>} and C{<bidi/>}
    are sent.
    """

    namespace = NS_SERVER

    def __init__(self, serverNames, contextFactory, onAuthenticated, legacy=None):
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
        """
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
        if self._tls:
            try:
                verifyPeerName(peerCertificate(xs.transport), peerName)
            except CertificateNameMismatch as e:
                _log.info(
                    "Refused stream from {peer}: its certificate presents {names}",
                    peer=peerName,
                    names=sorted(e.presentedNames),
                )
                xs.sendStreamError(
                    error.StreamError(
                        "invalid-from", text="certificate does not match 'from'"
                    )
                )
                return
        xs.sendHeader()
        if not self._tls:
            offerStartTLS(xs, self._onStartTLS)
            return
        features = domish.Element((NS_STREAMS, "features"))
        watchBidiRequest(xs)
        xs.send(advertise(features))
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
        xs.reset()


class S2SServerFactory(xmlstream.XmlStreamServerFactory):
    """
    Accept DNA S2S connections (and, through C{legacy}, legacy ones).
    """

    protocol = S2SStream
    logTraffic = False

    def __init__(self, serverNames, contextFactory, onAuthenticated, onConnected=None,
                 legacy=None):
        """
        @param onConnected: Called with each new stream, before its header
            arrives (the service uses it for idle time-outs).
        @param legacy: See L{DNAListenAuthenticator}.
        """

        def authenticatorFactory():
            return DNAListenAuthenticator(
                serverNames, contextFactory, onAuthenticated, legacy=legacy
            )

        xmlstream.XmlStreamServerFactory.__init__(self, authenticatorFactory)
        self._onConnected = onConnected
        self.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._connected)

    def _connected(self, xs):
        if interfaces.ITCPTransport.providedBy(xs.transport):
            # Nagle stalls the TLS handshake's last flight (~40 ms per link).
            xs.transport.setTcpNoDelay(True)
        if self.logTraffic:
            xs.rawDataInFn = lambda data: _log.debug("RECV {data!r}", data=data)
            xs.rawDataOutFn = lambda data: _log.debug("SEND {data!r}", data=data)
        if self._onConnected is not None:
            self._onConnected(xs)
