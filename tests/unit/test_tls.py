"""
Tests for L{dna.channel.tls}: mutual TLS between servers (draft-ietf-xmpp-dna-01 section 5).
"""

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import protocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test.iosim import connectedServerAndClient
from twisted.trial import unittest

from dna.channel import tls
from dna.channel.identity import serverNamesFromCertificate, verifyPeerName
from dna.channel.tls import (
    ServerContextFactory,
    clientContextFactory,
    peerCertificate,
    peerServerNames,
)
from dna.error import CertificateNameMismatch, InvalidAddress
from dna.testing.pki import CertificateAuthority
from tests.unit.test_identity import _past

# Certificates are cheap, but not free: share the authorities.
CA = CertificateAuthority("DNA Test Root CA")


STRANGER = CertificateAuthority("Untrusted Test CA")


RECEIVING = "xmpp1.receiving.example"


RECEIVING2 = "xmpp2.receiving.example"


ORIGINATING = "xmpp1.originating.example"



class CertificateAuthorityTests(unittest.TestCase):
    """
    Tests for L{dna.testing.pki}.
    """

    def test_issue(self):
        """
        An issued certificate carries the requested names and purposes, and
        is signed by its authority.
        """
        issued = CA.issue("a.example", dnsNames=["a.example"],
                          srvNames=["_xmpp-server.b.example"],
                          xmppAddrs=["c.example"], clientAuth=True)
        certificate = issued.certificate
        certificate.verify_directly_issued_by(CA.certificate)
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"a.example", "b.example", "c.example"})
        usage = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value
        self.assertEqual(
            list(usage),
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
             x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(len(issued.spkiSHA256()), 64)

    def test_expired(self):
        """
        A C{notAfter} in the past is all an expired certificate needs.
        """
        certificate = CA.issue("a.example", notAfter=_past(1)).certificate
        self.assertLess(certificate.not_valid_before_utc,
                        certificate.not_valid_after_utc)
        self.assertLess(certificate.not_valid_after_utc, _past(0))

    def test_intermediate(self):
        """
        A certificate from an intermediate carries the intermediate in its
        chain, and the PEM chain lists the leaf first.
        """
        intermediate = CA.intermediate("Issuing CA", serverAuth=True)
        issued = intermediate.issue("a.example", dnsNames=["a.example"])
        self.assertEqual(issued.chain, (intermediate.certificate,))
        issued.certificate.verify_directly_issued_by(intermediate.certificate)
        intermediate.certificate.verify_directly_issued_by(CA.certificate)
        self.assertEqual(
            x509.load_pem_x509_certificates(issued.chainPEM),
            [issued.certificate, intermediate.certificate])
        self.assertEqual([c.original.to_cryptography()
                          for c in issued.toChain()],
                         [intermediate.certificate])

    def test_writeTo(self):
        """
        C{writeTo} writes the chain and the key, readable by everyone (a
        Prosody under test runs as its own user).
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        issued = CA.issue("a.example", dnsNames=["a.example"])
        certificateFile, keyFile = issued.writeTo(directory, "a.example")
        self.assertEqual(certificateFile.basename(), "a.example.pem")
        self.assertEqual(keyFile.basename(), "a.example.key")
        self.assertEqual(certificateFile.getContent(), issued.chainPEM)
        self.assertEqual(keyFile.getPermissions().shorthand(), "rw-r--r--")
        loaded = PrivateCertificate.loadPEM(
            certificateFile.getContent() + keyFile.getContent())
        self.assertEqual(loaded, issued.toPrivateCertificate())



class _Recorder(protocol.Protocol):
    """
    An application protocol over TLS that greets and records.
    """

    lostReason = None

    def __init__(self, greeting):
        self.greeting = greeting
        self.data = b""

    def connectionMade(self):
        self.transport.write(self.greeting)

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lostReason = reason



class _Handshake:
    """
    Both ends of a TLS connection in memory.
    """

    def __init__(self, serverCreator, clientCreator):
        self.serverApp = _Recorder(b"from server")
        self.clientApp = _Recorder(b"from client")
        clock = Clock()
        serverFactory = TLSMemoryBIOFactory(
            serverCreator, False,
            protocol.Factory.forProtocol(lambda: self.serverApp), clock=clock)
        clientFactory = TLSMemoryBIOFactory(
            clientCreator, True,
            protocol.Factory.forProtocol(lambda: self.clientApp), clock=clock)
        self.clientTLS, self.serverTLS, pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(None),
            lambda: clientFactory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()

    @property
    def succeeded(self):
        return (self.serverApp.data == b"from client"
                and self.clientApp.data == b"from server"
                and self.serverApp.lostReason is None
                and self.clientApp.lostReason is None)



def _serverFactory(*issued, trustRoot=CA, default=None):
    """
    A L{ServerContextFactory} with a certificate for each server name of
    C{issued}.
    """
    certificates, chains = {}, {}
    for name, certificate in issued:
        certificates[name] = certificate.toPrivateCertificate()
        chains[name] = certificate.toChain()
    return ServerContextFactory(
        certificates, trustRoot.toCertificate(), default or issued[0][0],
        chains=chains)



def _clientFactory(serverName, certificate, trustRoot=CA):
    return clientContextFactory(
        serverName, trustRoot.toCertificate(),
        certificate and certificate.toPrivateCertificate(),
        chain=certificate.toChain() if certificate else ())



class MutualTLSTests(unittest.TestCase):
    """
    Tests for L{clientContextFactory} and L{ServerContextFactory} against
    each other, in memory.
    """

    def setUp(self):
        self.receiving = CA.issue(RECEIVING, dnsNames=[RECEIVING])
        self.receiving2 = CA.issue(RECEIVING2, dnsNames=[RECEIVING2])
        self.originating = CA.issue(ORIGINATING, dnsNames=[ORIGINATING])
        self.server = _serverFactory((RECEIVING, self.receiving),
                                     (RECEIVING2, self.receiving2))

    def assertRefusedBy(self, handshake, side):
        """
        The handshake failed, because C{side} (C{"client"} or C{"server"})
        refused the other side's certificate.
        """
        self.assertFalse(handshake.succeeded)
        self.assertEqual(handshake.serverApp.data, b"")
        self.assertEqual(handshake.clientApp.data, b"")
        refuser = getattr(handshake, side + "App")
        self.assertIsNotNone(refuser.lostReason)
        if not refuser.lostReason.check(CertificateNameMismatch):
            refuser.lostReason.trap(SSL.Error)
            self.assertIn("certificate verify failed",
                          str(refuser.lostReason.value))

    def test_success(self):
        """
        Both sides verify each other, exchange data and see each other's
        certificate; ALPN negotiates C{xmpp-server}.
        """
        handshake = _Handshake(
            self.server, _clientFactory(RECEIVING, self.originating))
        self.assertTrue(handshake.succeeded)
        self.assertEqual(peerServerNames(handshake.serverTLS), {ORIGINATING})
        self.assertEqual(peerServerNames(handshake.clientTLS), {RECEIVING})
        verifyPeerName(peerCertificate(handshake.serverTLS), ORIGINATING)
        self.assertEqual(peerCertificate(handshake.clientTLS),
                         self.receiving.certificate)
        self.assertEqual(handshake.serverTLS.negotiatedProtocol,
                         b"xmpp-server")
        self.assertEqual(handshake.clientTLS.negotiatedProtocol,
                         b"xmpp-server")

    def test_sniChoosesCertificate(self):
        """
        The server presents the certificate of the name the client sends in
        SNI, whichever of its names that is.
        """
        for name, issued in [(RECEIVING, self.receiving),
                             (RECEIVING2, self.receiving2),
                             (RECEIVING2.upper(), self.receiving2)]:
            handshake = _Handshake(
                self.server, _clientFactory(name, self.originating))
            self.assertTrue(handshake.succeeded, name)
            self.assertEqual(peerCertificate(handshake.clientTLS),
                             issued.certificate)

    def test_defaultWithoutSNI(self):
        """
        Without SNI, the server presents the certificate of its default name.
        """
        server = _serverFactory((RECEIVING, self.receiving),
                                (RECEIVING2, self.receiving2),
                                default=RECEIVING2)
        client = self.originating.toPrivateCertificate()
        options = CertificateOptions(
            privateKey=client.privateKey.original,
            certificate=client.original,
            trustRoot=CA.toCertificate(),
            acceptableProtocols=[b"xmpp-server"],
        )
        handshake = _Handshake(server, options)
        self.assertTrue(handshake.succeeded)
        self.assertEqual(peerCertificate(handshake.clientTLS),
                         self.receiving2.certificate)

    def test_unknownSNIGetsDefault(self):
        """
        For a name it has no certificate for, the server presents its default
        certificate, which the client then refuses.
        """
        handshake = _Handshake(
            self.server,
            _clientFactory("xmpp3.receiving.example", self.originating))
        self.assertRefusedBy(handshake, "client")
        handshake.clientApp.lostReason.trap(CertificateNameMismatch)
        self.assertEqual(handshake.clientApp.lostReason.value.presentedNames,
                         {RECEIVING})

    def test_srvIDOnly(self):
        """
        A server certificate with nothing but an SRV-ID for C{_xmpp-server}
        is accepted for its domain.
        """
        issued = CA.issue(None, srvNames=["_xmpp-server." + RECEIVING])
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertTrue(handshake.succeeded)

    def test_xmppAddrOnly(self):
        """
        A server certificate with nothing but an XmppAddr is accepted for
        it.
        """
        issued = CA.issue(None, xmppAddrs=[RECEIVING])
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertTrue(handshake.succeeded)

    def test_wrongName(self):
        """
        A server certificate that is valid, but not for the name the client
        expects, is refused: the client's protocol learns why.
        """
        issued = CA.issue(RECEIVING, dnsNames=["other.example"],
                          srvNames=["_xmpp-client." + RECEIVING])
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertRefusedBy(handshake, "client")
        reason = handshake.clientApp.lostReason
        reason.trap(CertificateNameMismatch)
        self.assertEqual(reason.value.name, RECEIVING)
        self.assertEqual(reason.value.presentedNames, {"other.example"})

    def test_noSubjectAltNameOtherCommonName(self):
        """
        A certificate without subject alternative names, whose common name is
        another server's, is refused.  (Twisted's C{optionsForClientTLS}
        only logs this case and lets the handshake succeed.)
        """
        issued = CA.issue("other.example")
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertRefusedBy(handshake, "client")
        handshake.clientApp.lostReason.trap(CertificateNameMismatch)

    def test_unexpectedErrorFailsClosed(self):
        """
        An unexpected error while checking the name refuses the certificate
        and is logged.
        """
        def broken(certificate, name):
            raise RuntimeError("broken")
        self.patch(tls, "verifyPeerName", broken)
        handshake = _Handshake(
            self.server, _clientFactory(RECEIVING, self.originating))
        self.assertFalse(handshake.succeeded)
        self.assertEqual(handshake.serverApp.data, b"")
        handshake.clientApp.lostReason.trap(RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_untrustedServer(self):
        """
        A server certificate from an authority the client does not trust is
        refused.
        """
        issued = STRANGER.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertRefusedBy(handshake, "client")

    def test_untrustedClient(self):
        """
        A client certificate from an authority the server does not trust is
        refused, whichever name the client asked for in SNI.
        """
        issued = STRANGER.issue(ORIGINATING, dnsNames=[ORIGINATING])
        for name in [RECEIVING, RECEIVING2]:
            handshake = _Handshake(self.server, _clientFactory(name, issued))
            self.assertRefusedBy(handshake, "server")

    def test_expiredServer(self):
        """
        An expired server certificate is refused.
        """
        issued = CA.issue(RECEIVING, dnsNames=[RECEIVING], notAfter=_past(1))
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertRefusedBy(handshake, "client")

    def test_expiredClient(self):
        """
        An expired client certificate is refused.
        """
        issued = CA.issue(ORIGINATING, dnsNames=[ORIGINATING],
                          notAfter=_past(1))
        handshake = _Handshake(self.server, _clientFactory(RECEIVING, issued))
        self.assertRefusedBy(handshake, "server")

    def test_notYetValidClient(self):
        """
        A client certificate that is not valid yet is refused.
        """
        issued = CA.issue(ORIGINATING, dnsNames=[ORIGINATING],
                          notBefore=_past(-1), notAfter=_past(-90))
        handshake = _Handshake(self.server, _clientFactory(RECEIVING, issued))
        self.assertRefusedBy(handshake, "server")

    def test_noClientCertificate(self):
        """
        A client that presents no certificate is refused.
        """
        handshake = _Handshake(self.server, _clientFactory(RECEIVING, None))
        self.assertFalse(handshake.succeeded)
        self.assertEqual(handshake.serverApp.data, b"")
        handshake.serverApp.lostReason.trap(SSL.Error)
        self.assertIn("peer did not return a certificate",
                      str(handshake.serverApp.lostReason.value))

    def test_serverAuthOnlyClientCertificate(self):
        """
        The initiating server's certificate is accepted when it is a server
        certificate: C{serverAuth} and no C{clientAuth} in its extended key
        usage, even under an intermediate restricted to C{serverAuth}, as
        public CAs issue them since 2026.
        """
        intermediate = CA.intermediate("Server Issuing CA", serverAuth=True)
        for issuer in [CA, intermediate]:
            issued = issuer.issue(ORIGINATING, dnsNames=[ORIGINATING],
                                  serverAuth=True, clientAuth=False)
            for name in [RECEIVING, RECEIVING2]:
                handshake = _Handshake(
                    self.server, _clientFactory(name, issued))
                self.assertTrue(handshake.succeeded, (issuer.name, name))
                self.assertEqual(peerServerNames(handshake.serverTLS),
                                 {ORIGINATING})

    def test_otherExtendedKeyUsages(self):
        """
        Client certificates for both purposes or without extended key usage
        are accepted; one for C{clientAuth} alone is no server certificate and
        is refused.
        """
        for kw, accepted in [(dict(serverAuth=True, clientAuth=True), True),
                             (dict(serverAuth=False, clientAuth=False), True),
                             (dict(serverAuth=False, clientAuth=True), False)]:
            issued = CA.issue(ORIGINATING, dnsNames=[ORIGINATING], **kw)
            handshake = _Handshake(
                self.server, _clientFactory(RECEIVING, issued))
            if accepted:
                self.assertTrue(handshake.succeeded, kw)
            else:
                self.assertRefusedBy(handshake, "server")

    def test_clientIntermediateNotForServers(self):
        """
        The client's chain is verified for the server purpose throughout: an
        intermediate restricted to C{clientAuth} cannot vouch for a server.
        """
        intermediate = CA.intermediate("Client Issuing CA", clientAuth=True)
        issued = intermediate.issue(ORIGINATING, dnsNames=[ORIGINATING])
        handshake = _Handshake(self.server, _clientFactory(RECEIVING, issued))
        self.assertRefusedBy(handshake, "server")

    def test_stockServerRefusesServerAuthOnly(self):
        """
        Without L{ServerContextFactory}'s change of purpose, OpenSSL refuses
        a C{serverAuth}-only client certificate for an invalid purpose: the
        reason for that change.
        """
        errors = []
        certificate = self.receiving.toPrivateCertificate()
        options = CertificateOptions(
            privateKey=certificate.privateKey.original,
            certificate=certificate.original,
            trustRoot=CA.toCertificate(),
            acceptableProtocols=[b"xmpp-server"],
        )
        context = options.getContext()

        def recordingCallback(connection, certificate, errno, depth, ok):
            if not ok:
                errors.append(errno)
            return ok

        context.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            recordingCallback)
        issued = CA.issue(ORIGINATING, dnsNames=[ORIGINATING],
                          serverAuth=True, clientAuth=False)
        handshake = _Handshake(options, _clientFactory(RECEIVING, issued))
        self.assertRefusedBy(handshake, "server")
        X509_V_ERR_INVALID_PURPOSE = 26
        self.assertEqual(errors, [X509_V_ERR_INVALID_PURPOSE])

    def test_serverChain(self):
        """
        A server whose certificate comes from an intermediate sends the
        intermediate, and the client verifies through it.
        """
        intermediate = CA.intermediate("Server Issuing CA", serverAuth=True)
        issued = intermediate.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = _Handshake(
            _serverFactory((RECEIVING, issued)),
            _clientFactory(RECEIVING, self.originating))
        self.assertTrue(handshake.succeeded)

    def test_serverDefaultNameRequired(self):
        """
        The default name must be one of the server's names.
        """
        self.assertRaises(
            ValueError, ServerContextFactory,
            {RECEIVING: self.receiving.toPrivateCertificate()},
            CA.toCertificate(), RECEIVING2)

    def test_clientServerNameRequired(self):
        """
        The client's server name must be a domain name.
        """
        self.assertRaises(
            InvalidAddress, clientContextFactory, "192.0.2.1", CA.toCertificate(),
            self.originating.toPrivateCertificate())
