"""
Tests of exactly-once, in-order delivery per domain pair across connection
losses (L{dna.channel.acks}, "Exactly once, in order"): the epoch and count
of C{<db:result/>}, the Receiving Server's L{DeliveryLedger}, and two
L{dna.app.federation.Federation}s whose connections are cut at random
points with random acknowledgements lost.
"""

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet import error as ierror
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.channel.acks import StreamAcks, smFeature
from dna.channel.features import advertise, peerOffersDelivery
from dna.core.authorization import COUNT, EPOCH, StreamAuthorization, validEpoch
from dna.core.tables import DeliveryLedger, Tables
from dna.namespaces import NS_DELIVERY, NS_SM, NS_STREAMS
from dna.testing.fakes import FakeDelegationChecker
from tests.unit import examples
from tests.unit.streams import makeStream, receive, stanza
from tests.unit.test_model import (
    SENDERS,
    TARGETS,
    FederationModel,
    TwoServers,
    _settings,
)

#: The pairs the model sends on: a1 and a2 are delegated, so nothing of
#: theirs may bounce for want of authorization.
PAIRS = [(sender, target) for sender in SENDERS[:2] for target in TARGETS]


class LedgerTests(SynchronousTestCase):
    """
    L{DeliveryLedger} keeps counts across streams, bounded.
    """

    def test_claimKeepsCount(self):
        """
        A pair claimed on another stream keeps its count, and the new
        stream owns it.
        """
        ledger = DeliveryLedger()
        entry = ledger.claim("b.tld", "a.tld", "e1", "s1", 0)
        entry.count = 5
        again = ledger.claim("b.tld", "a.tld", "e1", "s2", 1)
        self.assertIs(entry, again)
        self.assertEqual((5, "s2"), (again.count, again.owner))
        self.assertEqual(0, ledger.claim("b.tld", "a.tld", "e2", "s2", 1).count)

    def test_expiry(self):
        """
        A count whose stream ended goes after the expiry; one whose stream
        is open stays.
        """
        ledger = DeliveryLedger(expiry=10)
        old = ledger.claim("b.tld", "a.tld", "e1", "s1", 0)
        ledger.claim("b.tld", "a.tld", "e2", "s2", 0)
        ledger.retire([old], 0)
        ledger.claim("b.tld", "a.tld", "e3", "s2", 9)
        self.assertEqual(3, len(ledger))
        ledger.claim("b.tld", "a.tld", "e4", "s2", 11)
        self.assertIsNone(ledger.get("b.tld", "a.tld", "e1"))
        self.assertEqual(3, len(ledger))

    def test_bound(self):
        """
        Past C{maxEntries} the oldest counts go, counted in C{evicted}.
        """
        ledger = DeliveryLedger(maxEntries=2)
        for i in range(4):
            ledger.claim("b.tld", "a.tld", f"e{i}", "s1", 0)
        self.assertEqual(2, len(ledger))
        self.assertEqual(2, ledger.evicted)
        self.assertIsNone(ledger.get("b.tld", "a.tld", "e0"))

    def test_validEpoch(self):
        """
        An epoch is 1 to 32 ASCII letters and digits.
        """
        self.assertTrue(validEpoch("00ff12ab00ff12ab"))
        for bad in (None, "", "x" * 33, "a-b", "\u00e9"):
            self.assertFalse(validEpoch(bad), bad)


class FeatureTests(SynchronousTestCase):
    """
    The delivery feature rides in C{<sm/>}.
    """

    def test_advertisedInsideSM(self):
        """
        L{advertise} puts C{<delivery/>} inside C{<sm/>}, which peers that
        do not know it ignore.
        """
        features = advertise(domish.Element((NS_STREAMS, "features")))
        [sm] = [e for e in features.elements() if (e.uri, e.name) == (NS_SM, "sm")]
        self.assertEqual([(NS_DELIVERY, "delivery")], [(e.uri, e.name) for e in sm.elements()])
        xs = makeStream()
        xs.features = {(e.uri, e.name): e for e in features.elements()}
        self.assertTrue(peerOffersDelivery(xs))

    def test_notOffered(self):
        """
        Acknowledgements alone, or nothing, offer no delivery resumption.
        """
        xs = makeStream()
        xs.features = {}
        self.assertFalse(peerOffersDelivery(xs))
        xs.features = {(NS_SM, "sm"): smFeature()}
        self.assertFalse(peerOffersDelivery(xs))
        xs.features = {(NS_SM, "sm"): None}
        self.assertFalse(peerOffersDelivery(xs))
        xs.features = {(NS_SM, "sm"): smFeature(delivery=True)}
        self.assertTrue(peerOffersDelivery(xs))


def _results(xs):
    return [
        e for e in xs.output
        if isinstance(e, domish.Element) and e.name == "result"
    ]


class ReceivingTests(SynchronousTestCase):
    """
    The Receiving Server counts a pair's stanzas per epoch, on one stream.
    """

    def setUp(self):
        self.clock = Clock()
        self.tables = Tables()
        self.checker = FakeDelegationChecker({"sender.tld": ["xmpp1.originating.tld"]})

    def authorization(self, sid):
        xs = makeStream(sid)
        authorization = StreamAuthorization(
            xs, self.tables, frozenset(["target.tld"]), self.checker,
            initiating=False, serverNames=["xmpp1.originating.tld"], clock=self.clock,
        )
        return xs, authorization

    def request(self, xs, epoch="e1"):
        receive(
            xs,
            "<db:result xmlns:db='jabber:server:dialback' "
            f"xmlns:q='{NS_DELIVERY}' from='sender.tld' to='target.tld' q:epoch='{epoch}'/>",
        )
        return _results(xs)[-1]

    def test_grantCarriesCount(self):
        """
        A request with an epoch is granted with the count of that epoch's
        stanzas handled so far; the count carries over to the next stream,
        which takes the pair from the first.
        """
        xs1, first = self.authorization("s1")
        grant = self.request(xs1)
        self.assertEqual(("valid", "e1", "0"), (grant["type"], grant[EPOCH], grant[COUNT]))
        for i in range(3):
            receive(xs1, stanza(stanzaID=str(i)))
            first.countHandled(stanza(stanzaID=str(i)))
        xs2, second = self.authorization("s2")
        grant = self.request(xs2)
        self.assertEqual("3", grant[COUNT])
        self.assertEqual(("s2",), self.tables.incoming.streams("target.tld", "sender.tld"))
        # Late stanzas on the first stream are not counted.
        first.countHandled(stanza())
        self.assertEqual("3", self.request(xs2)[COUNT])

    def test_noEpochNoCount(self):
        """
        A request without an epoch gets the grant it always got.
        """
        xs, _ = self.authorization("s1")
        receive(xs, "<db:result xmlns:db='jabber:server:dialback' from='sender.tld' to='target.tld'/>")
        [grant] = _results(xs)
        self.assertIsNone(grant.getAttribute(COUNT))
        self.assertEqual(0, len(self.tables.delivery))

    def test_retiredAtEnd(self):
        """
        The counts of a stream that ends are kept for the next one.
        """
        xs1, first = self.authorization("s1")
        self.request(xs1)
        first.countHandled(stanza())
        xs1.connectionLost(Failure(ierror.ConnectionDone()))
        self.assertEqual({}, first.counted)
        xs2, _ = self.authorization("s2")
        self.assertEqual("1", self.request(xs2)[COUNT])

    def test_eagerAnswer(self):
        """
        Once a pair is resumed on a stream, the Receiving Server answers
        C{<a/>} unrequested after each read in which it handled stanzas of
        such pairs, and only then.
        """
        xs, authorization = self.authorization("s1")
        xs.addObserver("/message", authorization.countHandled)
        handled = [0]
        authorization.acks = StreamAcks.accept(xs, lambda: handled[0], lambda s: None, self.clock)
        receive(xs, "<enable xmlns='urn:xmpp:sm:3'/>")
        self.request(xs)
        self.assertTrue(authorization.acks.eager)

        def answers():
            return [e["h"] for e in xs.output if isinstance(e, domish.Element) and e.name == "a"]

        handled[0] = 2
        receive(xs, stanza(sender="romeo@sender.tld", to="juliet@target.tld"))
        self.assertEqual(["2"], answers())
        receive(xs, "<r xmlns='urn:xmpp:sm:3'/>")
        self.assertEqual(["2", "2"], answers())
        receive(xs, " ")
        # A stanza of another pair, rejected: not counted, no answer.
        handled[0] = 3
        receive(xs, stanza(sender="romeo@other.tld", to="juliet@target.tld"))
        self.assertEqual(["2", "2"], answers())


class _Ordered(TwoServers):
    """
    L{TwoServers} that also records, per pair, the order B delivered in.
    """

    def __init__(self, **kw):
        TwoServers.__init__(self, **kw)
        self.order = {}

    def _deliveredAtB(self, element):
        TwoServers._deliveredAtB(self, element)
        stanzaID = element.getAttribute("id")
        if stanzaID in self.sent:
            self.order.setdefault(self.sent[stanzaID][0], []).append(stanzaID)


class ResumptionTests(SynchronousTestCase):
    """
    Two L{Federation}s: what a lost connection does to a pair's delivery.
    """

    def setUp(self):
        self.servers = _Ordered(acks=True, delivery=True)
        self.addCleanup(self.servers.stop)

    def handledUnacknowledged(self):
        """
        Open a connection on which A sends m1, acknowledged, then m2, which
        B handles; B's answer to m2 has not left B.

        @return: The connection.
        """
        servers = self.servers
        first = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.send("a1.tld", "b1.tld")
        servers.moveBytes(first, "ab")
        return first

    def test_handledBeforeBreakNotSentTwice(self):
        """
        A message B handled just before the connection broke, whose
        acknowledgement was lost, is not sent again: the grant on the next
        connection says B handled it.
        """
        servers = self.servers
        first = self.handledUnacknowledged()
        second = servers.connect()
        # B's <a/> is lost with the connection.
        servers.close(first)
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual({"m1": first.sid, "m2": first.sid, "m3": second.sid}, servers.delivered)
        self.assertEqual(1, servers.a.counters["delivery-deduplicated"])
        servers.checkAlways()
        servers.checkQuiescent()

    def test_resentBeforeNewer(self):
        """
        Messages lost with a connection go before every message of their
        pair sent after the loss.
        """
        servers = self.servers
        first = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.send("a1.tld", "b1.tld")
        servers.send("a1.tld", "b1.tld")
        second = servers.connect()
        servers.close(first)
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual(["m1", "m2", "m3", "m4"], servers.order[("a1.tld", "b1.tld")])
        self.assertEqual(second.sid, servers.delivered["m4"])

    def test_retriedWithoutNewStanza(self):
        """
        When the pair cannot be resumed at once (no stream: the peer is
        down), its kept stanzas are tried again on a timer, doubling, and go
        once a stream exists: nothing new need be sent to the pair.
        """
        from dna.app.federation import RESYNC_RETRY

        servers = self.servers
        attempts = []
        establish = servers.a._establish

        def counting(sender, target):
            attempts.append(servers.clock.seconds())
            return establish(sender, target)

        servers.a._establish = counting
        first = self.handledUnacknowledged()
        # B's <a/> for m2 is lost with the connection; no other is open.
        servers.close(first)
        self.assertEqual(1, servers.a.counters["delivery-resume-failed"])
        tried = len(attempts)
        servers.clock.advance(RESYNC_RETRY)
        self.assertEqual(tried + 1, len(attempts))
        servers.clock.advance(RESYNC_RETRY)
        self.assertEqual(tried + 1, len(attempts), "the delay doubles")
        servers.clock.advance(RESYNC_RETRY)
        self.assertEqual(tried + 2, len(attempts))
        # The peer is back: the next try resumes the pair on its own.
        servers.connect()
        servers.clock.advance(4 * RESYNC_RETRY)
        servers.pump()
        self.assertEqual({"m1": first.sid, "m2": first.sid}, servers.delivered)
        self.assertEqual(1, servers.a.counters["delivery-deduplicated"])
        servers.a.stop()
        servers.b.stop()
        self.assertEqual([], servers.clock.getDelayedCalls())

    def test_keptWhileThePeerCannotCheck(self):
        """
        A resumption the peer refuses because it cannot check the
        delegation now (its resolver is down: C{<remote-server-timeout/>})
        keeps the stanzas whose fate only the peer knows and tries again;
        once the peer can check, the grant's count drops what it had
        handled. Nothing bounces, nothing goes twice.
        """
        from twisted.internet.defer import succeed

        from dna.app.federation import RESYNC_RETRY
        from dna.core.proofs import INDETERMINATE, DelegationVerdict

        servers = self.servers
        first = self.handledUnacknowledged()
        # B handled m2; its <a/> is lost with the connection, and B's
        # resolver is down when A asks again.
        isDelegated = servers.checker.isDelegated
        servers.checker.isDelegated = lambda *a, **kw: succeed(DelegationVerdict(
            INDETERMINATE, None, None, [("dnssec-srv", "indeterminate: timed out")]))
        servers.connect()
        servers.close(first)
        servers.pump()
        self.assertEqual(1, servers.a.counters["delivery-resume-failed"])
        self.assertEqual({}, servers.bounced)
        servers.checker.isDelegated = isDelegated
        servers.clock.advance(RESYNC_RETRY)
        servers.pump()
        self.assertEqual({"m1": first.sid, "m2": first.sid}, servers.delivered)
        self.assertEqual(1, servers.a.counters["delivery-deduplicated"])
        self.assertEqual({}, servers.bounced)

    def test_halfOpenOldStream(self):
        """
        When A has given up on a connection B still holds, the pair moves to
        the new one: what arrives late on the old one is not handled there,
        and goes again, once, on the new one.
        """
        servers = self.servers
        first = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.send("a1.tld", "b1.tld")
        late = first.a.transport.value()
        first.a.transport.clear()
        first.aToB = []
        second = servers.connect()
        servers.closeSide(first, "a")
        servers.pump()
        self.assertEqual(("s2",), servers.b.tables.incoming.streams("b1.tld", "a1.tld"))
        first.b.dataReceived(late)
        self.assertEqual({"m1": first.sid, "m2": second.sid}, servers.delivered)
        servers.close(first)
        servers.pump()
        self.assertEqual({"m1": first.sid, "m2": second.sid}, servers.delivered)


class DeliveryModel(FederationModel):
    """
    L{FederationModel}'s steps (connections opened and closed, sends,
    revocations, held checks, time, bytes moved) with
    acknowledgements and the resumption of delivery on, plus connections cut
    at any byte either way (what is cut is lost: acknowledgements too).
    Always, besides L{FederationModel}'s checks: B delivers each message at
    most once, the messages of a pair in the order A was given them, and
    never one A bounced. At the end, once a new connection has carried
    everything (and one more message per pair): each message was delivered
    or bounced (by A, or refused by B), exactly once, and nothing was lost.
    """

    acks = True

    def __init__(self):
        RuleBasedStateMachine.__init__(self)
        self.servers = _Ordered(acks=True, delivery=True)

    @precondition(lambda self: self.servers.links)
    @rule(index=st.integers(0, 2), direction=st.sampled_from(["ab", "ba"]),
          cut=st.floats(0, 1), side=st.sampled_from(["a", "b", "both"]))
    def cut(self, index, direction, cut, side):
        """
        Move a prefix of what one side wrote, then the connection breaks:
        the rest is lost.
        """
        servers = self.servers
        link = servers.links[index % len(servers.links)]
        source, sink = (link.a, link.b) if direction == "ab" else (link.b, link.a)
        data = source.transport.value()
        prefix = data[: int(len(data) * cut)]
        if direction == "ab" and side == "a":
            # B's side stays open and hears nothing more from A (only from
            # hostile injections): no half element left in its parser.
            prefix = data if cut >= 0.5 else b""
        source.transport.clear()
        sinkOpen = link.bOpen if direction == "ab" else link.aOpen
        if prefix and sinkOpen and not sink.transport.disconnecting:
            sink.dataReceived(prefix)
        if side == "both":
            servers.close(link)
        else:
            servers.closeSide(link, side)

    # Hostile injections into A's streams are no steps here: only A can
    # write on them (TLS), and B counts, in acknowledgements and in the
    # pairs' delivery counts, whatever arrives on them as A's.

    def inject(self):
        pass

    def injectRequest(self):
        pass

    def injectBad(self):
        pass

    @invariant()
    def whenQuiescent(self):
        """
        L{FederationModel.whenQuiescent}, except while A keeps stanzas for a
        pair it could not resume (they wait for the next send or stream,
        unasked): the end checks what became of them.
        """
        a = self.servers.a
        if not any(pair not in a._authorizing for pair in a._resyncing):
            FederationModel.whenQuiescent(self)

    @invariant()
    def atMostOnceInOrder(self):
        servers = self.servers
        for stanzaID, sids in servers.deliveries.items():
            assert len(sids) == 1, f"{stanzaID} delivered on {sids}"
        for pair, order in servers.order.items():
            numbers = [servers.sent[i][1] for i in order]
            assert numbers == sorted(numbers), f"{pair} delivered out of order: {order}"
        for stanzaID in servers.bounced:
            assert stanzaID not in servers.delivered, f"{stanzaID} bounced and delivered"

    def teardown(self):
        servers = self.servers
        try:
            servers.releaseChecks()
            # A connection that stays up carries whatever is left.
            for link in list(servers.links):
                servers.close(link)
            servers.connect()
            # Sending to a pair tries again to resume it, if it waits for
            # that (the new connection came after the last attempt).
            for pair in PAIRS:
                servers.send(*pair)
            for _ in range(10):
                servers.pump()
                servers.advance(1)
            servers.pump()
            self.atMostOnceInOrder()
            for stanzaID in servers.sent:
                # (What was lost in transit or rejected went again.)
                final = set(servers.outcomes(stanzaID)) & {"delivered", "bounced", "refused by B"}
                assert len(final) == 1, f"{stanzaID}: {servers.outcomes(stanzaID)}"
            servers.finish()
        finally:
            servers.stop()


class DeliveryModelTests(SynchronousTestCase):
    """
    L{DeliveryModel} as a property test.
    """

    def test_exactlyOnceInOrder(self):
        """
        Whatever the cut points and the acknowledgements lost, each message
        of a delegated pair is delivered exactly once and in order, or
        bounced once (after L{MAX_ATTEMPTS} streams), never both.
        """
        run_state_machine_as_test(
            DeliveryModel,
            settings=_settings(examples(150)),
        )

