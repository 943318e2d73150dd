"""
Tests for L{dna.app.probe}, the certificate probe of C{dna-check --connect}.
"""

from OpenSSL import crypto
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dna.app.probe import RecordingCreator, _Probe, probe, verifyErrorText
from tests.unit.test_tls import CA

LEAF = CA.issue("xmpp.probe.example", dnsNames=["xmpp.probe.example"])


class _FakeConnection:
    def __init__(self, chain):
        self._chain = chain

    def get_peer_cert_chain(self):
        return self._chain


class RecordingCreatorTests(SynchronousTestCase):
    """
    Tests for L{RecordingCreator}'s verify callback.
    """

    def test_recordsAndAccepts(self):
        """
        Every certificate is accepted; PKIX errors are noted once each, the
        chain once, leaf first.
        """
        creator = RecordingCreator("xmpp.probe.example", CA.toCertificate())
        leaf = crypto.X509.from_cryptography(LEAF.certificate)
        connection = _FakeConnection([leaf])
        self.assertTrue(creator.verifyCallback(connection, leaf, 20, 1, False))
        self.assertTrue(creator.verifyCallback(connection, leaf, 20, 1, False))
        self.assertEqual(creator.chain, [])
        self.assertTrue(creator.verifyCallback(connection, leaf, 10, 0, False))
        self.assertEqual(creator.chain, [LEAF.certificate])
        self.assertEqual(creator.pkixErrors, [
            "unable to get local issuer certificate (depth 1)",
            "certificate has expired (depth 0)"])

    def test_errorText(self):
        """
        Unknown OpenSSL error numbers are shown as numbers.
        """
        self.assertEqual(verifyErrorText(4242, 0), "verify error 4242 (depth 0)")



class ProbeTests(SynchronousTestCase):
    """
    Tests for L{probe} and its stream, in memory.
    """

    def attempt(self):
        creator = RecordingCreator("xmpp.probe.example", CA.toCertificate())
        attempt = _Probe("check.example", "xmpp.probe.example", ("127.0.0.1", 5269),
                         creator)
        xs = attempt.buildStream()
        transport = StringTransport()
        xs.makeConnection(transport)
        return attempt, xs, transport

    def test_header(self):
        """
        The stream header goes to the target, from the given name.
        """
        attempt, xs, transport = self.attempt()
        header = transport.value().decode("utf-8")
        self.assertIn("to='xmpp.probe.example'", header)
        self.assertIn("from='check.example'", header)
        self.assertIn("xmlns='jabber:server'", header)

    def test_noStartTLS(self):
        """
        Features without C{<starttls/>} end the probe: "no STARTTLS offered".
        """
        attempt, xs, transport = self.attempt()
        xs.dataReceived(
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' "
            b"from='xmpp.probe.example' id='1' version='1.0'>"
            b"<stream:features/>")
        self.assertTrue(transport.disconnecting)
        xs.connectionLost(ConnectionRefusedError())
        result = self.successResultOf(attempt.deferred)
        self.assertEqual(result.error, "no STARTTLS offered")
        self.assertEqual(result.chain, [])

    def test_closedBeforeTLS(self):
        """
        A peer that closes at once is reported so.
        """
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        attempt, xs, transport = self.attempt()
        xs.connectionLost(Failure(ConnectionDone()))
        result = self.successResultOf(attempt.deferred)
        self.assertTrue(result.error.startswith("connection closed before TLS"))

    def test_refused(self):
        """
        A refused connection is "connection refused".
        """
        reactor = MemoryReactorClock()
        d = probe(reactor, "check.example", "xmpp.probe.example", ("127.0.0.1", 5269),
                  CA.toCertificate(), 3.0)
        host, port, factory, timeout, bindAddress = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 5269, 3.0))
        factory.clientConnectionFailed(None, ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d).error, "connection refused")
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_timeout(self):
        """
        Nothing within the timeout: "timed out after N s".
        """
        reactor = MemoryReactorClock()
        d = probe(reactor, "check.example", "::1", ("::1", 5269), CA.toCertificate(), 3.0)
        self.assertNoResult(d)
        reactor.advance(3)
        self.assertEqual(self.successResultOf(d).error, "timed out after 3 s")
