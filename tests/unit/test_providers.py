"""
Tests for L{dna.testing.providers}: the two providers the demo, the
benchmarks and the integration tests share.
"""

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from dna.app.service import DNAService
from dna.dns.addresses import AddressResolver
from dna.testing import providers
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.providers import ORIGINATING, RECEIVING, ProviderPKI, startProvider


class _TakenReactor(MemoryReactorClock):
    """
    A memory reactor where every TCP port is taken.
    """

    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise CannotListenError(interface, port, OSError("in use"))


class ProviderTests(SynchronousTestCase):
    """
    The PKI and the starting of a provider.
    """

    def setUp(self):
        self.pki = ProviderPKI("Providers Test CA")

    def start(self, reactor, **kw):
        return startProvider(
            reactor, ["sender.tld"], {ORIGINATING: self.pki.certificates[ORIGINATING]},
            self.pki.trustRoot, FakeDelegationChecker({}), AddressResolver(hosts={}),
            lambda stanza: None, **kw)

    def test_pki(self):
        """
        The CA issues one certificate for each server name, naming it alone.
        """
        self.assertEqual({ORIGINATING, RECEIVING}, set(self.pki.certificates))
        self.assertEqual("Providers Test CA", self.pki.ca.name)
        for name, certificate in self.pki.certificates.items():
            self.assertEqual(name, certificate.toCertificate().getSubject().commonName.decode())

    def test_listening(self):
        """
        The provider is started and listens where it is told.
        """
        reactor = MemoryReactorClock()
        service, port = self.successResultOf(
            self.start(reactor, interface="127.0.0.2", port=5269, backlog=7))
        self.assertTrue(service.running)
        [(number, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((5269, service.factory, 7, "127.0.0.2"),
                         (number, factory, backlog, interface))
        self.assertIs(service.port, port)

    def test_cannotListen(self):
        """
        When it cannot listen, the provider is stopped and the failure
        passed on.
        """
        made = []

        def recording(*args, **kw):
            made.append(DNAService(*args, **kw))
            return made[-1]

        self.patch(providers, "DNAService", recording)
        self.failureResultOf(self.start(_TakenReactor()), CannotListenError)
        [service] = made
        self.assertFalse(service.running)
