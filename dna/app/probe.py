"""
Fetch the certificate an XMPP server presents, without trusting it: the
C{--connect} of C{dna-check} (L{dna.app.check}).

L{probe} opens a TCP connection to one address of an SRV target, sends an
S2S stream header (L{dna.channel.originating.DNAConnectAuthenticator}), asks for STARTTLS (L{dna.channel.features.StartTLSInitializer},
which refuses a stream without C{<starttls/>}), and completes the TLS
handshake with a verify callback that records the presented chain and what
PKIX thought of it (against the platform's trusted authorities or a given
CA) but never aborts. Once the stream restarted over TLS, it closes the
stream with its closing tag. A peer that aborts the handshake after
presenting its certificate (as a DNA Receiving Server does to a client
without a certificate) still gives the chain. Everything ends by a
deadline.
"""

import attr
from OpenSSL import SSL
from twisted.internet import defer, endpoints, error
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish.xmlstream import STREAM_END_EVENT, STREAM_ERROR_EVENT
from zope.interface import implementer

from dna.channel.features import StartTLSInitializer
from dna.channel.originating import DNAConnectAuthenticator
from dna.channel.stream import S2SStream
from dna.channel.tls import ALPN_XMPP_SERVER
from dna.error import StartTLSStripped

#: What OpenSSL's most frequent verification errors mean (X509_V_ERR_*).
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


def verifyErrorText(errno, depth):
    """
    A person's words for an OpenSSL certificate verification error.

    @param errno: The C{X509_V_ERR_*} number.
    @param depth: Where in the chain: 0 is the leaf.
    @rtype: C{str}
    """
    what = _VERIFY_ERRORS.get(errno, f"verify error {errno}")
    return f"{what} (depth {depth})"


@attr.s(frozen=True, slots=True)
class ProbeResult:
    """
    What connecting to one address of a server gave.

    @ivar serverName: The name sent in the stream header and in SNI.
    @ivar address: C{(host, port)} connected to.
    @ivar chain: The presented certificates, leaf first
        (L{cryptography.x509.Certificate}); empty when none was received.
    @ivar pkixErrors: Why PKIX refused the chain (C{str} each); empty when
        it verified against the trust root.
    @ivar error: Why the probe failed or ended badly (C{str}), or L{None}:
        refused, timed out, no STARTTLS, handshake failure.
    """

    serverName = attr.ib()
    address = attr.ib()
    chain = attr.ib(factory=list)
    pkixErrors = attr.ib(factory=list)
    error = attr.ib(default=None)


@implementer(IOpenSSLClientConnectionCreator)
class RecordingCreator:
    """
    TLS client connections that send C{serverName} in SNI and accept any
    certificate, recording the chain and the PKIX verification errors.

    @ivar chain: The presented chain, leaf first, once the handshake got it.
    @ivar pkixErrors: Verification errors against the trust root.
    """

    def __init__(self, serverName, trustRoot):
        """
        @param serverName: The name to send in SNI (ASCII).
        @param trustRoot: The authorities PKIX is judged against
            (L{twisted.internet.ssl.IOpenSSLTrustRoot} or a
            L{twisted.internet.ssl.Certificate}).
        """
        self._serverName = serverName
        self._options = CertificateOptions(trustRoot=trustRoot,
                                           acceptableProtocols=[ALPN_XMPP_SERVER])
        self.chain = []
        self.pkixErrors = []

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        connection.set_tlsext_host_name(self._serverName.encode("ascii"))
        connection.set_verify(SSL.VERIFY_PEER, self.verifyCallback)
        return connection

    def verifyCallback(self, connection, certificate, errno, depth, preverifyOK):
        """
        Note what OpenSSL found and accept the certificate: the verdicts
        are made afterwards.
        """
        if not preverifyOK:
            text = verifyErrorText(errno, depth)
            if text not in self.pkixErrors:
                self.pkixErrors.append(text)
        if depth == 0 and not self.chain:
            presented = connection.get_peer_cert_chain() or [certificate]
            self.chain = [c.to_cryptography() for c in presented]
        return True


class _Probe:
    """
    One attempt: its stream's events decide the L{ProbeResult}.
    """

    def __init__(self, thisName, serverName, address, creator):
        self.thisName = thisName
        self.serverName = serverName
        self.address = address
        self.creator = creator
        self.deferred = defer.Deferred()
        self.xs = None
        self._error = None

    def buildStream(self):
        authenticator = DNAConnectAuthenticator(self.thisName, self.serverName)
        xs = self.xs = S2SStream(authenticator)
        xs.initializers = [StartTLSInitializer(xs, self.creator)]
        xs.addOnetimeObserver(xmlstream.STREAM_AUTHD_EVENT, self._restarted)
        xs.addOnetimeObserver(xmlstream.INIT_FAILED_EVENT, self._initFailed)
        xs.addOnetimeObserver(STREAM_ERROR_EVENT, self._streamError)
        xs.addOnetimeObserver(STREAM_END_EVENT, self._ended)
        return xs

    def _restarted(self, xs):
        # TLS is up and the peer answered the new header: close politely.
        xs.sendFooter()
        xs.transport.loseConnection()

    def _initFailed(self, failure):
        if failure.check(StartTLSStripped):
            self._note("no STARTTLS offered")
        else:
            self._note(f"STARTTLS failed: {failure.getErrorMessage()}")
        self.xs.transport.loseConnection()

    def _streamError(self, failure):
        self._note(f"stream error: {failure.getErrorMessage()}")

    def _note(self, text):
        if self._error is None:
            self._error = text

    def _ended(self, reason):
        if self._error is None and not self.creator.chain:
            if reason.check(SSL.Error):
                self._error = f"TLS handshake failure: {reason.getErrorMessage()}"
            else:
                self._error = f"connection closed before TLS: {reason.getErrorMessage()}"
        self.finish(self._error)

    def timedOut(self, seconds):
        self._note(f"timed out after {seconds:g} s")
        if self.xs is not None and self.xs.transport is not None:
            self.xs.transport.abortConnection()
        self.finish(self._error)

    def finish(self, errorText):
        if not self.deferred.called:
            self.deferred.callback(ProbeResult(
                self.serverName, self.address, list(self.creator.chain),
                list(self.creator.pkixErrors), errorText))


def _connectError(failure):
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.TimeoutError, defer.CancelledError):
        return "connection timed out"
    return f"cannot connect: {failure.getErrorMessage()}"


def probe(reactor, thisName, serverName, address, trustRoot, timeout):
    """
    Fetch the certificate presented at C{address} for C{serverName}.

    @param reactor: An L{IReactorTCP} and L{IReactorTime}.
    @param thisName: The name for the stream header's C{from}: a DNA
        Receiving Server requires one.
    @param serverName: The name for the stream header's C{to} and SNI.
    @param address: C{(host, port)}, the host an IP literal.
    @param trustRoot: What PKIX is judged against (see L{RecordingCreator}).
    @param timeout: Seconds for the whole attempt.
    @return: A L{Deferred} firing with a L{ProbeResult}; it never fails.
    """
    host, port = address
    attempt = _Probe(thisName, serverName, address, RecordingCreator(serverName, trustRoot))
    factory = xmlstream.XmlStreamFactory(None)
    factory.buildProtocol = lambda addr: attempt.buildStream()
    if ":" in host:
        endpoint = endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    else:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    connecting = endpoint.connect(factory)

    def timedOut():
        attempt.timedOut(timeout)
        connecting.cancel()

    timer = reactor.callLater(timeout, timedOut)

    def failed(failure):
        attempt.finish(_connectError(failure))

    connecting.addErrback(failed)

    def cancelTimer(result):
        if timer.active():
            timer.cancel()
        return result

    return attempt.deferred.addBoth(cancelTimer)
