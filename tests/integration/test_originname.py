"""
A provider with two server names, between real providers, with real DNS
(knotd serving DNSSEC-signed zones, a validating unbound:
L{tests.integration.dnsenv}) and real mutual TLS.

Provider A has two server names, xmpp1.originating.example (its first) and
xmpp2.hosted2.example, both at 127.0.0.11:5269; it hosts sender.example
(delegated to the first) and hosted2.example (delegated to the second).
Provider B (xmpp1.receiving.example) hosts target.example. B checks each of
A's sender domains against the server name A's stream comes from, so A sends
for hosted2.example on a stream from its second name.
"""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.app.control import Control
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message

ORIGINATING = "xmpp1.originating.example"
SECOND = "xmpp2.hosted2.example"
RECEIVING = "xmpp1.receiving.example"

#: The zone of the domain delegated to A's second name.
HOSTED2 = {
    "hosted2.example": ("nsec", [
        f"_xmpp-server._tcp SRV 0 5 5269 {SECOND}.",
        f"xmpp2 A {HOSTS[ORIGINATING]}",
    ], f"SRV 0 5 5269 {SECOND}. (A {HOSTS[ORIGINATING]}): delegated to the "
       "second server name of the Originating Server's provider."),
}


class OriginNameTests(ProvidersMixin, unittest.TestCase):
    """
    A's streams come from the server name each sender domain is delegated
    to, and B grants the pairs.
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self, extraZones=HOSTED2)

    @defer.inlineCallbacks
    def startPair(self):
        from dna.app.delegation import makeDelegationChecker
        from dna.dns.client import DNSClient

        self.setUpPKI()
        self.a, self.inboxA, _ = yield self.startProvider(
            ["sender.example", "hosted2.example"],
            {name: self.ca.issue(name, dnsNames=[name]) for name in (ORIGINATING, SECOND)},
            makeDelegationChecker(reactor, [self.env.resolver], "ad"),
            client=DNSClient([self.env.resolver], reactor),
            interface=HOSTS[ORIGINATING], port=5269,
        )
        self.b, self.inboxB = yield self.startOnTestZones(
            self.env, RECEIVING, ["target.example"])

    def connections(self, service):
        return Control(service, None, reactor).connections()

    @defer.inlineCallbacks
    def test_secondNameGranted(self):
        """
        A stanza from hosted2.example goes on a stream from A's second name,
        and B grants the pair and delivers it; B's reply comes back.
        """
        yield self.startPair()
        self.a.send(message("romeo@hosted2.example", "juliet@target.example", stanzaID="a1"))
        [received] = yield self.inboxB.waitFor(1)
        self.assertEqual("a1", received["id"])
        [connection] = self.connections(self.b)
        self.assertEqual([SECOND], connection["remoteServerNames"])
        self.assertEqual([], [k for k in self.a.federation.counters if k.startswith("bounced-")])
        [outgoing] = self.connections(self.a)
        self.assertEqual(SECOND, outgoing["localServerName"])
        self.b.send(message("juliet@target.example", "romeo@hosted2.example", stanzaID="b1"))
        [reply] = yield self.inboxA.waitFor(1)
        self.assertEqual("b1", reply["id"])

    @defer.inlineCallbacks
    def test_eachNameItsStream(self):
        """
        Senders delegated to A's two names get a stream each, from their
        name; B grants both pairs.
        """
        yield self.startPair()
        self.a.send(message("romeo@sender.example", "juliet@target.example", stanzaID="a1"))
        yield self.inboxB.waitFor(1)
        self.a.send(message("romeo@hosted2.example", "juliet@target.example", stanzaID="a2"))
        received = yield self.inboxB.waitFor(2)
        self.assertEqual(["a1", "a2"], [s["id"] for s in received])
        names = sorted(name for c in self.connections(self.b) for name in c["remoteServerNames"])
        self.assertEqual(sorted([ORIGINATING, SECOND]), names)
        self.assertEqual({ORIGINATING, SECOND},
                         {c["localServerName"] for c in self.connections(self.a)})
