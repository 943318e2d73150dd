"""
Tests for interoperation with servers that do not speak DNA
(draft-ietf-xmpp-dna-01 section 7): L{dna.legacy.policy}, L{dna.legacy.sasl},
L{dna.legacy.dialback}, L{dna.legacy.authorization}, L{dna.legacy.receiving} and
L{dna.legacy.originating}, in memory (real L{XmlStream}s over L{StringTransport}); the
last tests run two DNA providers over loopback to show that they never fall
back. L{tests.integration.test_prosody} interoperates with a real Prosody.
"""


from twisted.internet import defer
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from dna.legacy.policy import FALLBACK_DIALBACK
from dna.testing.fakes import FakeDelegationChecker
from tests.integration.providers import ORIGINATING, RECEIVING, ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

SENDERS = ["sender.tld"]


TARGETS = ["target.tld"]


class NoDowngradeTests(ProvidersMixin, unittest.TestCase):
    """
    Two DNA providers, both accepting legacy peers (C{dna+pkix+dialback}),
    over loopback.
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.setUpPKI()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.checker = FakeDelegationChecker(
            {"sender.tld": {ORIGINATING}, "target.tld": {RECEIVING}}
        )
        self.b, self.inboxB, portB = yield self.startProvider(
            TARGETS, {RECEIVING: self.certB}, self.checker, fallback=FALLBACK_DIALBACK
        )
        self.a, self.inboxA, portA = yield self.startProvider(
            SENDERS, {ORIGINATING: self.certA}, self.checker, fallback=FALLBACK_DIALBACK,
            hosts={RECEIVING: ("127.0.0.1", portB), "alias.receiving.tld": ("127.0.0.1", portB)},
        )
        self.b.connector._resolve._hosts[ORIGINATING] = ("127.0.0.1", portA)

    def events(self, fragment):
        return [e for e in self.log if fragment in e.get("log_format", "")]

    @defer.inlineCallbacks
    def test_refusalIsFinal(self):
        """
        A pair the DNA peer refuses bounces: no legacy stream is tried.
        """
        self.a.federation.hostedDomains |= {"rogue.tld"}
        self.a.send(message("romeo@rogue.tld", "juliet@target.tld", stanzaID="r1"))
        [bounce] = yield self.inboxA.waitFor(1)
        self.assertEqual(("not-authorized", None), stanzaErrorOf(bounce))
        self.assertEqual([], self.events("Falling back"))
        self.assertEqual(1, len(self.a.federation.tables.connections))

    @defer.inlineCallbacks
    def test_forgedRefusal(self):
        """
        When the stream to the server name is refused (here B does not
        serve the name A's SRV record gives, as an attacker's forged
        host-unknown would look), A falls back; B's legacy stream offers
        C{<dna/>}, so A refuses to go on and the stanza bounces.
        """
        self.checker.delegations["target.tld"] = {"alias.receiving.tld"}
        self.a.send(message("romeo@sender.tld", "juliet@target.tld", stanzaID="f1"))
        [bounce] = yield self.inboxA.waitFor(1)
        self.assertEqual("error", bounce["type"])
        self.assertEqual(1, len(self.events("Falling back")))
        self.assertEqual(1, len(self.events("Not falling back")))
        self.assertEqual([], self.inboxB.stanzas)
        self.assertEqual(0, len(self.b.federation.tables.incoming))
        self.assertEqual(0, len(self.a.federation.tables.outgoing))
