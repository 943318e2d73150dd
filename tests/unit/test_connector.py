"""
Tests for L{dna.channel.originating}: the Originating Server's decisions and
connection attempts, with an in-memory reactor.
"""

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from dna.channel.originating import Connector
from dna.dns.addresses import AddressResolver
from dna.error import NotDelegated
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority

CA = CertificateAuthority("Connector Test CA")
CERTIFICATE = CA.issue("xmpp1.originating.tld", dnsNames=["xmpp1.originating.tld"])


class ConnectorTests(SynchronousTestCase):
    """
    Tests for L{Connector}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.checker = FakeDelegationChecker({"target.tld": {"xmpp1.receiving.tld"}})
        self.connector = Connector(
            self.checker,
            AddressResolver(hosts={"xmpp1.receiving.tld": ("127.0.0.2", None)}),
            "xmpp1.originating.tld",
            CERTIFICATE.toPrivateCertificate(),
            trustRootFromCertificates([CA.toCertificate()]),
            reactor=self.reactor,
            connectTimeout=10,
        )

    def test_secureDelegation(self):
        """
        A secure delegation gives its SRV records.
        """
        result = self.successResultOf(self.connector.delegation("target.tld"))
        self.assertEqual(["xmpp1.receiving.tld"], [r.target for r in result.records])

    def test_insecureRefused(self):
        """
        An insecure delegation is refused under require-secure, with its
        status.
        """
        self.checker.insecure.add("target.tld")
        failure = self.failureResultOf(self.connector.delegation("target.tld"), NotDelegated)
        self.assertEqual("insecure", failure.value.status)

    def test_insecureAllowed(self):
        """
        The checker's policy may allow it.
        """
        self.checker.insecure.add("target.tld")
        self.checker.allowInsecure = True
        self.successResultOf(self.connector.delegation("target.tld"))

    def test_noRecords(self):
        """
        A domain without SRV records is not a delegation.
        """
        self.failureResultOf(self.connector.delegation("nothing.tld"), NotDelegated)

    def test_bogusRefused(self):
        """
        Bogus DNS data never passes.
        """
        self.checker.bogus.add("target.tld")
        self.failureResultOf(self.connector.delegation("target.tld"), NotDelegated)

    def test_connectsToResolvedAddress(self):
        """
        The SRV target's address and the SRV port are used.
        """
        self.connector.connect("xmpp1.receiving.tld", 5270)
        [(host, port, factory, timeout, bindAddress)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.2", 5270), (host, port))

    def test_concurrentAttemptsShared(self):
        """
        Concurrent connections to one server name share one attempt.
        """
        d1 = self.connector.connect("xmpp1.receiving.tld", 5269)
        d2 = self.connector.connect("xmpp1.receiving.tld", 5269)
        self.assertEqual(1, len(self.reactor.tcpClients))
        self.reactor.advance(10)
        self.failureResultOf(d1, ierror.TimeoutError)
        self.failureResultOf(d2, ierror.TimeoutError)

    def test_cancelOneWaiter(self):
        """
        A caller that cancels its wait withdraws alone: the other caller
        still gets the shared attempt's outcome, and a later caller joins it.
        """
        d1 = self.connector.connect("xmpp1.receiving.tld", 5269)
        d2 = self.connector.connect("xmpp1.receiving.tld", 5269)
        d1.cancel()
        self.failureResultOf(d1, defer.CancelledError)
        d3 = self.connector.connect("xmpp1.receiving.tld", 5269)
        self.assertEqual(1, len(self.reactor.tcpClients))
        self.reactor.advance(10)
        self.failureResultOf(d2, ierror.TimeoutError)
        self.failureResultOf(d3, ierror.TimeoutError)

    def test_afterAttemptNewOne(self):
        """
        Once an attempt is over, the next call starts another.
        """
        first = self.connector.connect("xmpp1.receiving.tld", 5269)
        self.reactor.advance(10)
        self.failureResultOf(first, ierror.TimeoutError)
        second = self.connector.connect("xmpp1.receiving.tld", 5269)
        self.assertEqual(2, len(self.reactor.tcpClients))
        self.reactor.advance(10)
        self.failureResultOf(second, ierror.TimeoutError)

    def test_timeout(self):
        """
        An attempt that does not reach an authenticated stream in time fails
        with L{ierror.TimeoutError}, once, and leaves no timer behind; a
        later end of the stream changes nothing.
        """
        d = self.connector.connect("xmpp1.receiving.tld", 5269)
        [(host, port, factory, timeout, bindAddress)] = self.reactor.tcpClients
        protocol = factory.buildProtocol(None)._wrappedProtocol
        self.reactor.advance(10)
        self.failureResultOf(d, ierror.TimeoutError)
        self.assertEqual([], self.reactor.getDelayedCalls())
        from twisted.python.failure import Failure

        protocol.dispatch(Failure(ierror.ConnectionLost()), "//event/stream/end")

    def test_noAddress(self):
        """
        A server name without an address fails the attempt.
        """
        d = self.connector.connect("unknown.tld", 5269)
        self.failureResultOf(d)
        self.assertEqual([], self.reactor.tcpClients)


class _TLSA:
    """
    A TLSA lookup with a fixed outcome per server name.
    """

    def __init__(self, results):
        self.results = results

    def lookup(self, serverName, port):
        return defer.succeed(self.results[serverName])


class DANEConnectorTests(SynchronousTestCase):
    """
    L{Connector} with a TLSA lookup (RFC 7673).
    """

    def connector(self, result, pkix=True):
        from dna.dns.tlsa import TLSAResult

        self.reactor = MemoryReactorClock()
        return Connector(
            FakeDelegationChecker({"target.tld": {"xmpp1.receiving.tld"}}),
            AddressResolver(hosts={"xmpp1.receiving.tld": ("127.0.0.2", None)}),
            "xmpp1.originating.tld",
            CERTIFICATE.toPrivateCertificate(),
            trustRootFromCertificates([CA.toCertificate()]),
            reactor=self.reactor,
            connectTimeout=10,
            tlsaLookup=_TLSA({"xmpp1.receiving.tld": TLSAResult(
                "xmpp1.receiving.tld", 5269, *result)}),
            pkix=pkix,
        )

    def test_failedLookupRefused(self):
        """
        A TLSA lookup that failed (bogus, SERVFAIL, timeout) fails the
        attempt before any connection: no downgrade to PKIX.
        """
        from dna.error import DANEUnavailable

        connector = self.connector(("failed", (), "bogus TLSA"))
        failure = self.failureResultOf(connector.connect("xmpp1.receiving.tld", 5269),
                                       DANEUnavailable)
        self.assertIn("bogus TLSA", str(failure.value))
        self.assertEqual([], self.reactor.tcpClients)

    def test_noDANEConnectsWithPKIX(self):
        """
        A secure denial of TLSA lets the attempt go on.
        """
        connector = self.connector(("no-dane", (), "securely denied"))
        connector.connect("xmpp1.receiving.tld", 5269)
        [(host, port, _, _, _)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.2", 5269), (host, port))

    def test_tlsaWithAddresses(self):
        """
        Whether DANE applies is asked along with the addresses, not after
        them; the connection waits for both.
        """
        from dna.dns.tlsa import TLSAResult

        self.reactor = MemoryReactorClock()
        addresses = defer.Deferred()
        outcome = defer.Deferred()
        asked = []

        class TLSA:
            def lookup(self, serverName, port):
                asked.append(("tlsa", serverName, port))
                return outcome

        def resolve(serverName, port):
            asked.append(("addresses", serverName, port))
            return addresses

        connector = Connector(
            FakeDelegationChecker({"target.tld": {"xmpp1.receiving.tld"}}), resolve,
            "xmpp1.originating.tld", CERTIFICATE.toPrivateCertificate(),
            trustRootFromCertificates([CA.toCertificate()]), reactor=self.reactor,
            connectTimeout=10, tlsaLookup=TLSA(),
        )
        connector.connect("xmpp1.receiving.tld", 5269)
        self.assertEqual([("addresses", "xmpp1.receiving.tld", 5269),
                          ("tlsa", "xmpp1.receiving.tld", 5269)], asked)
        outcome.callback(TLSAResult("xmpp1.receiving.tld", 5269, "no-dane"))
        self.assertEqual([], self.reactor.tcpClients)
        addresses.callback([("127.0.0.2", 5269)])
        [(host, port, _, _, _)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.2", 5269), (host, port))

    def test_noAddressBeforeDANE(self):
        """
        A server name without an address fails the attempt as
        L{NoAddress}, whatever the TLSA lookup says.
        """
        from dna.dns.tlsa import TLSAResult
        from dna.error import NoAddress

        connector = self.connector(("failed", (), "bogus TLSA"))
        connector._tlsaLookup.results["unknown.tld"] = TLSAResult(
            "unknown.tld", 5269, "failed", (), "bogus TLSA")
        self.failureResultOf(connector.connect("unknown.tld", 5269), NoAddress)

    def test_noDANEWithoutPKIXRefused(self):
        """
        Without PKIX among the identity proofs, a target without TLSA
        records is refused.
        """
        from dna.error import DANEUnavailable

        connector = self.connector(("no-dane", (), "securely denied"), pkix=False)
        self.failureResultOf(connector.connect("xmpp1.receiving.tld", 5269), DANEUnavailable)
        self.assertEqual([], self.reactor.tcpClients)
