"""
Piggybacking on incoming bidirectional streams (draft-ietf-xmpp-dna-10
section 4.4), in memory: two L{DNAService}s whose one connection is a pair of
real L{S2SStream}s over L{StringTransport}s, pumped by hand.

Provider A (C{xmpp1.originating.tld}) hosts sender.tld and opens the
connection; provider B (C{xmpp1.receiving.tld}) hosts target.tld and
accepts it. When A asked for XEP-0288, B sends its own stanzas to A's
domains on that stream, after asking for the pairs on it, and A checks those
requests as the Receiving Server of any stream does.
"""

from twisted.internet import error as ierror
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
)
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.app import ctl
from dna.app.control import Control
from dna.app.service import DNAService
from dna.channel.acks import StreamAcks, smFeature
from dna.core.authorization import StreamAuthorization, resultElement
from dna.core.logthrottle import ThrottledLog
from dna.core.tables import INCOMING, OUTGOING, Tables
from dna.dns.addresses import AddressResolver
from dna.error import OneWayStream
from dna.namespaces import NS_BIDI, NS_SM
from dna.testing.fakes import FakeDelegationChecker, chatMessage
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import (
    makeStream,
    receive,
    stanza,
    stanzaErrorOf,
)

SERVER_A = "xmpp1.originating.tld"
SERVER_B = "xmpp1.receiving.tld"
_CA = CertificateAuthority("Piggyback Test CA")
_CERTIFICATES = {name: _CA.issue(name, dnsNames=[name]) for name in (SERVER_A, SERVER_B)}
_TRUST = trustRootFromCertificates([_CA.toCertificate()])

#: Who each domain is delegated to, as both checkers see it.
DELEGATIONS = {
    "sender.tld": [SERVER_A],
    "target.tld": [SERVER_B],
    # Hosted at B too, but delegated to someone else.
    "rogue.tld": ["xmpp.elsewhere.tld"],
    # A domain of A's whose SRV target is not a name A authenticated.
    "rooms.sender.tld": ["xmpp.elsewhere.tld"],
}


def _started(sid, us, peer):
    """
    A stream whose peer's header has been received, as after negotiation,
    with our header out too (stream errors are then really sent).
    """
    xs = makeStream(sid, us=us, peer=peer)
    xs._headerSent = True
    xs.transport.clear()
    return xs


class _Provider:
    """
    A L{DNAService} in memory, and what it delivered.
    """

    def __init__(self, name, domains, reactor):
        self.name = name
        self.delivered = []
        self.checker = FakeDelegationChecker(dict(DELEGATIONS))
        self.service = DNAService(
            domains, {name: _CERTIFICATES[name].toPrivateCertificate()}, _TRUST,
            self.checker,
            AddressResolver(hosts={SERVER_A: ("127.0.0.11", 5269),
                                   SERVER_B: ("127.0.0.12", 5269),
                                   "xmpp.elsewhere.tld": ("127.0.0.13", 5269)}),
            deliver=self.delivered.append, reactor=reactor,
        )
        self.federation = self.service.federation

    def ids(self):
        return [s.getAttribute("id") for s in self.delivered]


class _Connection:
    """
    One connection A opened to B: A's initiating stream and B's accepting
    stream, set up as the service does after negotiation.
    """

    def __init__(self, a, b, sid, bidi=True, acks=True, delivery=False):
        self.sid = sid
        self.a = _started(sid, SERVER_A, SERVER_B)
        self.b = _started(sid, SERVER_B, SERVER_A)
        if acks:
            self.a.features = {(NS_SM, "sm"): smFeature(delivery)}
        a.service._streamConnected(self.a)
        self.aAuth = a.federation.streamAuthenticated(
            self.a, initiating=True, serverNames=[SERVER_B], bidi=bidi)
        b.service._streamConnected(self.b)
        b.service._incomingAuthenticated(self.b, frozenset([SERVER_A]), SERVER_B)
        self.bAuth = b.federation.streams[sid]
        if bidi:
            # BidiInitializer's request, after the features.
            self.a.send(domish.Element((NS_BIDI, "bidi")))
        self.pump()

    def pump(self):
        """
        Move bytes both ways until nothing moves; then, if a side lost the
        connection, close it for both. As over TLS, a side that told its
        transport to close still reads until the peer closes too.
        """
        moved = True
        while moved:
            moved = False
            for source, sink in ((self.a, self.b), (self.b, self.a)):
                data = source.transport.value()
                source.transport.clear()
                if data and sink.transport.connected:
                    sink.dataReceived(data)
                    moved = True
        if self.a.transport.disconnecting or self.b.transport.disconnecting:
            self.close()

    def close(self):
        """
        The connection is gone, on both sides.
        """
        for xs in (self.a, self.b):
            if xs.transport is not None and xs.transport.connected:
                xs.transport.connected = False
                xs.connectionLost(Failure(ierror.ConnectionDone()))


class ServicePiggybackTests(SynchronousTestCase):
    """
    B's service chooses A's incoming bidi stream for its pairs to A's
    domains, and only when that is allowed.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.a = _Provider(SERVER_A, ["sender.tld"], self.reactor)
        self.b = _Provider(SERVER_B, ["target.tld", "rogue.tld"], self.reactor)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self, **kw):
        self.link = _Connection(self.a, self.b, "s1", **kw)
        # A's first message opened it.
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a1"))
        self.link.pump()
        self.assertEqual(["a1"], self.b.ids())
        return self.link

    def test_replyPiggybacked(self):
        """
        With bidi, B asks for target.tld -> sender.tld on the stream A
        opened and sends on it: no connection of its own.
        """
        link = self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        self.assertEqual([], self.reactor.tcpClients)
        link.pump()
        self.assertEqual(["b1"], self.a.ids())
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual({("target.tld", "sender.tld")}, self.b.federation.tables.outgoing.pairs("s1"))
        self.assertEqual({("sender.tld", "target.tld")}, self.a.federation.tables.incoming.pairs("s1"))
        self.assertIn("sender.tld", self.b.federation.tables.connections.get("s1").delegatedNames)
        self.assertEqual((1, 1), (self.a.federation.counters["result-valid"],
                                  self.b.federation.counters["answer-valid"]))
        [event] = [e for e in self.log if e.get("event") == "piggyback"]
        self.assertEqual(("s1", "sender.tld", SERVER_A),
                         (event["streamID"], event["domain"], event["target"]))

    def test_oneWayStreamNotUsed(self):
        """
        Without bidi, B opens a connection of its own to A's SRV target and
        asks nothing on A's stream.
        """
        link = self.connect(bidi=False)
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        [(host, port, *_)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.11", 5269), (host, port))
        self.assertEqual([], [e for e in link.b.output if getattr(e, "name", None) == "message"
                              or getattr(e, "name", None) == "result" and not e.hasAttribute("type")])
        self.assertEqual(set(), self.b.federation.tables.outgoing.pairs("s1"))

    def test_otherOfOurNamesNotUsed(self):
        """
        A bidi stream that reached another of B's server names than the one
        B's own streams come from is not piggybacked: A checks B's sender
        domains against the name it reached, and they are delegated to the
        one B's streams come from. B opens a connection of its own.
        """
        link = self.connect()
        self.assertEqual(SERVER_B, link.bAuth.localName)
        link.bAuth.localName = "xmpp2." + SERVER_B
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        [(host, port, *_)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.11", 5269), (host, port))
        self.assertEqual(set(), self.b.federation.tables.outgoing.pairs("s1"))

    def test_notBeforeBidi(self):
        """
        Until A's C{<bidi/>} arrives, the stream A opened is one-way for B.
        """
        self.link = _Connection(self.a, self.b, "s1", bidi=False)
        self.assertFalse(self.link.bAuth.canSend)
        receive(self.link.b, "<bidi xmlns='urn:xmpp:bidi'/>")
        self.assertTrue(self.link.bAuth.canSend)

    def test_srvTargetNotAuthenticated(self):
        """
        A domain of A's whose SRV target is not among the server names A
        authenticated on the stream is not piggybacked (section 4.4.2: the
        stream's peer must be proven to serve it): B connects to the target.
        """
        self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "bob@rooms.sender.tld", "b1"))
        [(host, port, *_)] = self.reactor.tcpClients
        self.assertEqual(("127.0.0.13", 5269), (host, port))
        self.assertEqual(set(), self.b.federation.tables.outgoing.pairs("s1"))

    def test_peerRefusesUndelegatedSender(self):
        """
        A checks B's request on the stream A opened as any Receiving Server
        does: rogue.tld is not delegated to B's server name, so A refuses
        it with C{<not-authorized/>}, counts and logs it; B bounces the
        stanza, nothing is bound.
        """
        link = self.connect()
        self.b.service.send(chatMessage("mallory@rogue.tld", "romeo@sender.tld", "x1"))
        link.pump()
        [bounce] = self.b.delivered[1:]
        self.assertEqual(("x1", ("not-authorized", None)), (bounce["id"], stanzaErrorOf(bounce)))
        self.assertEqual(1, self.a.federation.counters["result-not-authorized"])
        [event] = [e for e in self.log if e.get("event") == "pair-refused"]
        self.assertEqual(("sender.tld", "rogue.tld", "not-authorized"),
                         (event["local"], event["remote"], event["condition"]))
        self.assertEqual(set(), self.a.federation.tables.incoming.pairs("s1"))
        self.assertEqual([], self.a.ids())

    def test_enforcedOnOutgoingStream(self):
        """
        On the stream A opened, A accepts B's stanzas only for the pairs it
        granted there.
        """
        link = self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        link.pump()
        # A stanza for a pair A never granted, written as a hostile B would.
        link.b.send(stanza(sender="x@target.tld", to="romeo@other.tld", stanzaID="h1"))
        link.pump()
        self.assertEqual(["b1"], self.a.ids())
        self.assertEqual(1, link.aAuth.filter.rejected)

    def test_controlShowsDirections(self):
        """
        The control API says, for each connection, how many pairs go each
        way on it: a stream B accepted carries B's outgoing pairs too.
        """
        link = self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        link.pump()
        [connectionB] = Control(self.b.service, None, self.reactor).connections()
        [connectionA] = Control(self.a.service, None, self.reactor).connections()
        self.assertEqual(("incoming", True, {INCOMING: 1, OUTGOING: 1}),
                         (connectionB["direction"], connectionB["bidi"], connectionB["pairs"]))
        self.assertEqual(("outgoing", True, {INCOMING: 1, OUTGOING: 1}),
                         (connectionA["direction"], connectionA["bidi"], connectionA["pairs"]))

    def test_closedByPeerPairsMove(self):
        """
        A closes the stream while B's stanzas are on their way: A's closing
        acknowledgement says what it handled, A handles nothing after it,
        and B keeps the rest for its next stream to A (here: A's next bidi
        stream), where each arrives once.
        """
        link = self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        link.pump()
        # A has nothing unacknowledged of its own.
        self.reactor.advance(1)
        link.pump()
        self.assertEqual([], list(link.aAuth.acks.unacked))
        for n in range(2, 6):
            self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", f"b{n}"))
        # A closes before B's stanzas reach it; its acknowledgement timer
        # writes nothing after its closing tag. B's delegation look-up for
        # its next stream takes a while.
        self.b.checker.paused = True
        self.a.service.closeStream("s1")
        self.reactor.advance(1)
        link.pump()
        link.close()
        self.assertEqual(["b1"], self.a.ids())
        self.assertNotIn("s1", self.b.federation.tables.connections)
        # Meanwhile A connects again, with bidi: B's stanzas go over A's new
        # stream, once each, in order.
        second = _Connection(self.a, self.b, "s2")
        self.b.checker.release()
        second.pump()
        self.reactor.advance(1)
        second.pump()
        self.assertEqual(["b1", "b2", "b3", "b4", "b5"], self.a.ids())
        self.assertEqual({("target.tld", "sender.tld")},
                         self.b.federation.tables.outgoing.pairs("s2"))
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual([], [s for s in self.b.delivered if s.getAttribute("type") == "error"])
        self.assertEqual(4, self.b.federation.counters["acks-resent"])

    def test_piggybackedResumedByCount(self):
        """
        A peer that asks with epochs on the bidi stream it opened counts
        deliveries: B's requests there carry epochs too, so a stanza A
        handled whose acknowledgement the break swallowed is not sent again
        on the next stream (the grant's count says A had it).
        """
        self.link = link = _Connection(self.a, self.b, "s1", delivery=True)
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a1"))
        link.pump()
        self.assertTrue(link.bAuth.delivery)
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        link.pump()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b2"))
        # b2 reaches A; A's acknowledgement is lost with the connection.
        # B's delegation look-up for a stream of its own takes a while.
        data = link.b.transport.value()
        link.b.transport.clear()
        link.a.dataReceived(data)
        link.a.transport.clear()
        self.b.checker.paused = True
        link.close()
        self.assertEqual(["b1", "b2"], self.a.ids())
        # Meanwhile A connects again, with bidi, and asks with an epoch.
        second = _Connection(self.a, self.b, "s2", delivery=True)
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a2"))
        second.pump()
        self.b.checker.release()
        second.pump()
        self.reactor.advance(1)
        second.pump()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b3"))
        second.pump()
        self.assertEqual(["b1", "b2", "b3"], self.a.ids())
        self.assertEqual(1, self.b.federation.counters["delivery-deduplicated"])
        self.assertEqual([], [s for s in self.b.delivered if s.getAttribute("type") == "error"])

    def test_closeUnregistersProducer(self):
        """
        A stream told to close stops being a producer first: TLS sends no
        C{close_notify} while one is registered, and the close would wait
        for the abort.
        """
        link = self.connect()
        self.assertIsNotNone(link.a.transport.producer)
        self.assertIsNotNone(link.b.transport.producer)
        self.a.service.closeStream("s1")
        self.assertEqual((True, None), (link.a.transport.disconnecting, link.a.transport.producer))
        link.pump()
        self.assertEqual((True, None), (link.b.transport.disconnecting, link.b.transport.producer))

    def test_closedByPeerNewConnection(self):
        """
        When no other stream to A is open, B's pairs and the stanzas A did
        not acknowledge go to a connection B opens to A's SRV target.
        """
        link = self.connect()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        link.pump()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b2"))
        self.a.service.closeStream("s1")
        link.pump()
        link.close()
        # (A connects to B again too: a1 was never acknowledged.)
        self.assertEqual(1, [client[:2] for client in self.reactor.tcpClients].count(
            ("127.0.0.11", 5269)))
        self.assertEqual([], [s for s in self.b.delivered if s.getAttribute("type") == "error"])
        self.assertEqual(["b1"], self.a.ids())


class PeerChecksTests(SynchronousTestCase):
    """
    A request on a stream we opened with bidi is checked exactly as one on a
    stream the peer opened: the same answers, counters and log events.
    """

    def answer(self, initiating, sender, target):
        """
        The answer, counters and log events of one request on a fresh stream.
        """
        clock = Clock()
        incidents = ThrottledLog(clock)
        xs = _started("s1", SERVER_A, SERVER_B)
        checker = FakeDelegationChecker(dict(DELEGATIONS))
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        StreamAuthorization(xs, Tables(), frozenset(["sender.tld"]), checker,
                            initiating=initiating, serverNames=[SERVER_B],
                            bidi=initiating, clock=clock, incidents=incidents)
        receive(xs, resultElement(sender, target))
        answers = [(e["from"], e["to"], e.getAttribute("type"), stanzaErrorOf(e)[0])
                   for e in xs.output if getattr(e, "name", None) == "result"]
        events = [{k: v for k, v in e.items()
                   if k in ("event", "local", "remote", "condition", "reason")}
                  for e in log if e.get("event")]
        return answers, dict(incidents.counters), events

    def assertSameChecks(self, sender, target):
        onOurs = self.answer(True, sender, target)
        onTheirs = self.answer(False, sender, target)
        self.assertEqual(onTheirs, onOurs)
        return onOurs

    def test_granted(self):
        """
        A delegated sender and a hosted target: granted.
        """
        answers, counters, events = self.assertSameChecks("target.tld", "sender.tld")
        self.assertEqual([("sender.tld", "target.tld", "valid", None)], answers)
        self.assertEqual({"result-valid": 1}, counters)

    def test_notDelegated(self):
        """
        A sender not delegated to the peer's server names: C{<not-authorized/>}.
        """
        answers, counters, events = self.assertSameChecks("rogue.tld", "sender.tld")
        self.assertEqual([("sender.tld", "rogue.tld", "invalid", "not-authorized")], answers)
        self.assertEqual({"result-not-authorized": 1}, counters)

    def test_notHosted(self):
        """
        A target we do not host: C{<item-not-found/>}.
        """
        answers, counters, events = self.assertSameChecks("target.tld", "other.tld")
        self.assertEqual([("other.tld", "target.tld", "invalid", "item-not-found")], answers)
        self.assertEqual({"result-item-not-found": 1}, counters)

    def test_oneWayRefused(self):
        """
        Without bidi, a request on a stream we opened closes it, and we may
        not ask on a stream the peer opened.
        """
        xs = _started("s1", SERVER_A, SERVER_B)
        authorization = StreamAuthorization(
            xs, Tables(), frozenset(["sender.tld"]), FakeDelegationChecker(),
            initiating=True, serverNames=[SERVER_B], clock=Clock())
        receive(xs, resultElement("target.tld", "sender.tld"))
        self.assertEqual(["unsupported-stanza-type"], [e.condition for e in xs.streamErrors])
        xs = _started("s2", SERVER_B, SERVER_A)
        authorization = StreamAuthorization(
            xs, Tables(), frozenset(["target.tld"]), FakeDelegationChecker(),
            initiating=False, serverNames=[SERVER_A], clock=Clock())
        self.failureResultOf(authorization.request("target.tld", "sender.tld"), OneWayStream)


class AcksAfterFooterTests(SynchronousTestCase):
    """
    Acknowledgement requests never follow our closing tag.
    """

    def test_noRequestAfterFooter(self):
        """
        A request due after we closed the stream is not sent: the peer would
        take it for junk after the document and refuse the stream, losing
        the acknowledgement we sent with our closing tag.
        """
        clock = Clock()
        xs = _started("s1", SERVER_A, SERVER_B)
        acks = StreamAcks.initiate(xs, lambda: 0, lambda unacked: None, clock)
        acks.sent(stanza(stanzaID="m1"), 10)
        xs.sendFooter()
        xs.transport.clear()
        clock.advance(1)
        self.assertEqual(b"", xs.transport.value())


class ConnectionsTableTests(SynchronousTestCase):
    """
    C{dna-ctl connections} says how many pairs go each way.
    """

    def test_pairsEachWay(self):
        """
        The Direction column has the pairs in and out under the direction.
        """
        xs = _started("s1", SERVER_B, SERVER_A)
        reactor = MemoryReactorClock()
        b = _Provider(SERVER_B, ["target.tld"], reactor)
        b.service._streamConnected(xs)
        b.service._incomingAuthenticated(xs, frozenset([SERVER_A]), SERVER_B)
        receive(xs, "<bidi xmlns='urn:xmpp:bidi'/>")
        b.federation.tables.bind(OUTGOING, "target.tld", "sender.tld", "s1")
        table = ctl.connectionsTable(Control(b.service, None, reactor).connections())
        for line in ("incoming", "bidi", "pairs in 0", "pairs out 1"):
            self.assertIn(f"| {line} ", table)


class ClosingTests(SynchronousTestCase):
    """
    A clean close, either way: each side says what it handled, so that
    what the other sends again is exactly what was not.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.a = _Provider(SERVER_A, ["sender.tld"], self.reactor)
        self.b = _Provider(SERVER_B, ["target.tld"], self.reactor)
        self.link = _Connection(self.a, self.b, "s1")

    def test_closerLearnsWhatPeerHandled(self):
        """
        A closes with a1 and b1 each delivered but not yet acknowledged:
        B answers A's closing tag with its C{<a/>} and its own closing tag,
        A takes the acknowledgement after its closing tag, and neither sends
        anything again.
        """
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a1"))
        self.link.pump()
        self.b.service.send(chatMessage("juliet@target.tld", "romeo@sender.tld", "b1"))
        self.link.pump()
        self.assertEqual((["a1"], ["b1"]), (self.b.ids(), self.a.ids()))
        self.assertEqual((1, 1), (len(self.link.aAuth.acks.unacked),
                                  len(self.link.bAuth.acks.unacked)))
        self.a.service.closeStream("s1")
        self.link.pump()
        self.assertTrue(self.link.b.footerSent)
        self.assertEqual((0, 0), (self.a.federation.counters["acks-resent"],
                                  self.b.federation.counters["acks-resent"]))
        self.assertEqual([], self.reactor.tcpClients)
        self.assertEqual((["a1"], ["b1"]), (self.b.ids(), self.a.ids()))

    def test_nothingAfterFooter(self):
        """
        A stanza routed to a stream whose closing tag went out is not
        written (the peer would refuse the stream for junk after the
        document); kept unacknowledged, it goes again on the next stream.
        """
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a1"))
        self.link.pump()
        self.link.a.sendFooter()
        self.link.a.transport.clear()
        self.a.service.send(chatMessage("romeo@sender.tld", "juliet@target.tld", "a2"))
        self.assertEqual(b"", self.link.a.transport.value())
        self.assertEqual(["a2"], [s["id"] for s in self.link.aAuth.acks.unacked][-1:])
