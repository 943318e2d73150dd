"""
Piggybacking on incoming bidirectional streams (draft-ietf-xmpp-dna-10
section 4.4) between two real providers, with real DNS (knotd serving
DNSSEC-signed zones, a validating unbound: L{tests.integration.dnsenv}) and
real mutual TLS.

Provider A (xmpp1.originating.example, 127.0.0.11:5269) hosts
sender.example and b.example; provider B (xmpp1.receiving.example,
127.0.0.12:5269) hosts target.example. A opens the connection; B, which
accepted it, sends its own stanzas to A's domains over it when it is
bidirectional (XEP-0288), and opens a connection of its own when it is not.
"""

import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.app.control import Control
from dna.channel import originating
from dna.channel.features import BidiInitializer
from dna.core.tables import INCOMING, OUTGOING
from tests.integration.dnsenv import startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"


class _OneWay(BidiInitializer):
    """
    A L{BidiInitializer} that never asks for bidi, as a peer without
    XEP-0288 does.
    """

    def initialize(self):
        self.xmlstream.bidi = False


class PiggybackTests(ProvidersMixin, unittest.TestCase):
    """
    Both directions over the one connection A opened, or not.
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self)

    @defer.inlineCallbacks
    def startPair(self, domainsB=("target.example",)):
        self.setUpPKI()
        self.a, self.inboxA = yield self.startOnTestZones(
            self.env, ORIGINATING, ["sender.example", "b.example"])
        self.b, self.inboxB = yield self.startOnTestZones(self.env, RECEIVING, list(domainsB))
        # A opens the connection.
        self.a.send(message("romeo@sender.example", "juliet@target.example", stanzaID="a1"))
        yield self.inboxB.waitFor(1)

    def connections(self, service):
        return Control(service, None, reactor).connections()

    @defer.inlineCallbacks
    def test_oneConnectionBothDirections(self):
        """
        B, which accepted A's bidi stream, asks for its pairs to A's domains
        on that stream and sends on it: one TCP connection on each side
        carries both directions, and each side's control API says which
        pairs go which way on it.
        """
        yield self.startPair()
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="b1"))
        self.b.send(message("juliet@target.example", "tybalt@b.example", stanzaID="b2"))
        received = yield self.inboxA.waitFor(2)
        self.assertEqual({"b1", "b2"}, {s["id"] for s in received})
        # One TCP connection each, the same one, opened by A.
        self.assertEqual((1, 1), (len(self.a.meters), len(self.b.meters)))
        [connectionA] = self.connections(self.a)
        [connectionB] = self.connections(self.b)
        self.assertEqual(connectionA["stream"], connectionB["stream"])
        streamID = connectionA["stream"]
        self.assertEqual(
            ("outgoing", True, {"incoming": 2, "outgoing": 1}),
            (connectionA["direction"], connectionA["bidi"], connectionA["pairs"]))
        self.assertEqual(
            ("incoming", True, {"incoming": 1, "outgoing": 2}),
            (connectionB["direction"], connectionB["bidi"], connectionB["pairs"]))
        tablesB = self.b.federation.tables
        self.assertEqual(
            {("target.example", "sender.example"), ("target.example", "b.example")},
            set(tablesB.outgoing.pairs(streamID)))
        self.assertEqual(
            {("sender.example", "target.example"), ("b.example", "target.example")},
            set(self.a.federation.tables.incoming.pairs(streamID)))
        # A answered B's requests as any Receiving Server does.
        self.assertEqual(2, self.a.federation.counters["result-valid"])
        self.assertEqual(2, self.b.federation.counters["answer-valid"])
        self.assertEqual([], [s for s in self.inboxB.stanzas if s.getAttribute("type") == "error"])

    @defer.inlineCallbacks
    def test_oneWayStreamNotUsed(self):
        """
        When A's stream is not bidirectional, B opens a connection of its
        own to reach A's domains: two connections, one each way.
        """
        self.patch(originating, "BidiInitializer", _OneWay)
        yield self.startPair()
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="b1"))
        [reply] = yield self.inboxA.waitFor(1)
        self.assertEqual("b1", reply["id"])
        self.assertEqual((2, 2), (len(self.a.meters), len(self.b.meters)))
        connectionsB = {c["direction"]: c for c in self.connections(self.b)}
        self.assertEqual(
            {"incoming": (False, {"incoming": 1, "outgoing": 0}),
             "outgoing": (False, {"incoming": 0, "outgoing": 1})},
            {direction: (c["bidi"], c["pairs"]) for direction, c in connectionsB.items()})

    @defer.inlineCallbacks
    def test_peerChecksPiggybackedRequests(self):
        """
        A checks B's requests on the stream A opened as on any stream it
        accepts: a sender domain not delegated to B's server name is
        refused with C{<not-authorized/>}, a target A does not host with
        C{<item-not-found/>}; B bounces the stanzas, nothing is bound.
        """
        # c.b.example is delegated to xmpp1.c.b.example, not to B.
        yield self.startPair(["target.example", "c.b.example"])
        self.b.send(message("mallory@c.b.example", "romeo@sender.example", stanzaID="x1"))
        self.b.send(message("juliet@target.example", "nobody@originating.example",
                            stanzaID="x2"))
        bounces = yield self.inboxB.waitFor(3)
        errors = {s["id"]: stanzaErrorOf(s)[0] for s in bounces if s.getAttribute("type") == "error"}
        self.assertEqual({"x1": "not-authorized", "x2": "remote-server-not-found"}, errors)
        self.assertEqual(1, self.a.federation.counters["result-not-authorized"])
        self.assertEqual(1, self.a.federation.counters["result-item-not-found"])
        self.assertEqual([], self.inboxA.stanzas)
        self.assertEqual((1, 1), (len(self.a.meters), len(self.b.meters)))
        [streamID] = list(self.a.federation.tables.connections)
        self.assertEqual([], list(self.b.federation.tables.outgoing.pairs(streamID)))
        self.assertEqual([], list(self.a.federation.tables.incoming.pairs(streamID)))

    @defer.inlineCallbacks
    def test_streamClosedPairsMove(self):
        """
        When A closes the stream B piggybacked on, B's stanzas in flight are
        not lost: what A did not handle goes again, once, over the connection
        B opens, where its pairs are asked for first; A's own stanza, which
        B handled, is not sent again.
        """
        yield self.startPair()
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="b0"))
        yield self.inboxA.waitFor(1)
        [streamID] = list(self.a.federation.tables.connections)
        sent = ["b%d" % n for n in range(1, 51)]
        for stanzaID in sent:
            self.b.send(message("juliet@target.example", "romeo@sender.example",
                                stanzaID=stanzaID))
        started = time.monotonic()
        yield self.a.closeStream(streamID)
        # Closed cleanly, not aborted after the grace of 3 s (TLS waits for
        # no producer: dna.app.flow).
        self.assertLess(time.monotonic() - started, 2.0)
        yield self.until(
            lambda: set(sent) <= {s["id"] for s in self.inboxA.stanzas}, 20,
            "every stanza of B delivered")
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="after"))
        yield self.until(
            lambda: "after" in {s["id"] for s in self.inboxA.stanzas}, 20,
            "a stanza after the close delivered")
        # A's footer said how many of B's stanzas it handled; it handled
        # none after it, and B sent exactly the rest again.
        idsA = [s["id"] for s in self.inboxA.stanzas]
        self.assertEqual(sorted(["b0"] + sent + ["after"]), sorted(idsA))
        # B answered A's closing tag with what it handled: A sent nothing
        # again, and opened no new connection.
        self.assertEqual(["a1"], [s["id"] for s in self.inboxB.stanzas])
        self.assertEqual(0, self.a.federation.counters["acks-resent"])
        # B's pairs now go over a connection B opened; the old one is gone.
        connectionsB = self.connections(self.b)
        self.assertNotIn(streamID, [c["stream"] for c in connectionsB])
        [moved] = [c for c in connectionsB if c["pairs"]["outgoing"]]
        self.assertEqual(("outgoing", {"incoming": 0, "outgoing": 1}),
                         (moved["direction"], moved["pairs"]))
        self.assertEqual([], [s for s in self.inboxB.stanzas if s.getAttribute("type") == "error"])
        self.assertTrue(self.b.federation.tables.isBound(OUTGOING, "target.example", "sender.example"))
        self.assertFalse(self.b.federation.tables.isBound(INCOMING, "target.example", "sender.example"))

