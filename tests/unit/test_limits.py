"""
Tests for the limits of issue 9, "Connections and buffers": the deadline and
caps of unauthenticated connections (L{dna.channel.receiving.ConnectionGate}),
the listen backlog, the bounded acknowledgement buffer and waiting queues,
the counters and the throttled log (L{dna.core.logthrottle}), XEP-0478, and
the router that logs no stanza.
"""

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from dna.app.federation import Federation
from dna.app.limits import Limits
from dna.app.router import QuietRouter, route
from dna.channel.acks import StreamAcks
from dna.channel.features import PeerLimits, advertise, peerLimits
from dna.channel.receiving import (
    CLOSE_GRACE,
    DEFAULT_BACKLOG,
    ConnectionGate,
    S2SServerFactory,
    withBacklog,
)
from dna.channel.stream import STREAM_AUTHENTICATED_EVENT, S2SStream, StreamLimits
from dna.core.authorization import StreamAuthorization
from dna.core.logthrottle import ThrottledLog
from dna.core.tables import Tables
from dna.namespaces import NS_SM, NS_STREAM_LIMITS, NS_STREAMS
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import close, makeStream, receive, stanza, stanzaErrorOf

_log = Logger()

HEADER = (
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='xmpp1.receiving.tld' from='xmpp1.originating.tld' version='1.0'>"
)


def address(host, port=40000):
    return IPv4Address("TCP", host, port)


def lines(observer, incident=None):
    """
    The events an L{EventLoggingObserver} saw, or those of one incident.
    """
    return [e for e in observer if incident is None or e.get("incident") == incident]


class ThrottledLogTests(SynchronousTestCase):
    """
    Tests for L{ThrottledLog}.
    """

    def setUp(self):
        self.clock = Clock()
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.log = ThrottledLog(self.clock, window=60)

    def test_floodIsTwoLines(self):
        """
        A flood of one event logs its first in full, then one summary with
        the count once the window is over; every one is counted.
        """
        for i in range(1000):
            self.log.report("flood", _log, "event {number}", number=i)
        self.assertEqual(1, len(self.observer))
        self.assertEqual(0, self.observer[0]["number"])
        self.clock.advance(60)
        self.log.report("flood", _log, "event {number}", number=1000)
        self.assertEqual(3, len(self.observer))
        self.assertEqual(999, self.observer[1]["more"])
        self.assertEqual(1000, self.observer[2]["number"])
        self.assertEqual(1001, self.log.counters["flood"])

    def test_namesApart(self):
        """
        Each name has its own burst.
        """
        self.log.report("a", _log, "a")
        self.log.report("b", _log, "b")
        self.log.report("a", _log, "a")
        self.assertEqual(["a", "b"], [e["incident"] for e in self.observer])
        self.assertEqual({"a": 2, "b": 1}, dict(self.log.counters))

    def test_flush(self):
        """
        L{ThrottledLog.flush} writes pending summaries; a burst without
        repeats has none.
        """
        self.log.report("a", _log, "a")
        self.log.report("b", _log, "b")
        self.log.report("b", _log, "b")
        self.log.flush()
        self.assertEqual([None, None, 1], [e.get("more") for e in self.observer])

    def test_fieldsNamedLikeParameters(self):
        """
        A field may be called C{name} or C{logger}.
        """
        self.log.report("x", _log, "{name} {logger}", name="n", logger="l")
        self.assertEqual("n", self.observer[0]["name"])


class GateTests(SynchronousTestCase):
    """
    Tests for L{ConnectionGate} in an L{S2SServerFactory}.
    """

    def setUp(self):
        self.clock = Clock()
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.incidents = ThrottledLog(self.clock)
        self.gate = ConnectionGate(
            self.clock, self.incidents, authTimeout=30, maxPerAddress=3, maxInAll=5
        )
        self.factory = S2SServerFactory(
            frozenset(["xmpp1.receiving.tld"]), object(), lambda *a: None, gate=self.gate
        )

    def connect(self, host):
        """
        Accept a connection from C{host}: the stream, or L{None} when it is
        closed at once.
        """
        xs = self.factory.buildProtocol(address(host))
        if xs is not None:
            xs.makeConnection(StringTransport())
        return xs

    def test_perAddressCap(self):
        """
        A source address may hold C{maxPerAddress} unauthenticated
        connections; the next is closed at once, counted, and logged once
        for the whole burst; another address is still admitted.
        """
        streams = [self.connect("192.0.2.1") for _ in range(3)]
        self.assertNotIn(None, streams)
        refused = [self.connect("192.0.2.1") for _ in range(50)]
        self.assertEqual([None] * 50, refused)
        self.assertEqual(50, self.incidents.counters["unauthenticated-cap-address"])
        [event] = lines(self.observer, "unauthenticated-cap-address")
        self.assertEqual("192.0.2.1", event["address"])
        self.assertIsNotNone(self.connect("192.0.2.2"))

    def test_totalCap(self):
        """
        All addresses together may hold C{maxInAll}.
        """
        for i in range(5):
            self.assertIsNotNone(self.connect("192.0.2.%d" % (i,)))
        self.assertIsNone(self.connect("192.0.2.99"))
        self.assertEqual(1, self.incidents.counters["unauthenticated-cap"])
        self.assertEqual(5, self.gate.unauthenticated)

    def test_authenticatedDoNotCount(self):
        """
        A connection that authenticated, or ended, no longer counts.
        """
        streams = [self.connect("192.0.2.1") for _ in range(3)]
        streams[0].dispatch(streams[0], STREAM_AUTHENTICATED_EVENT)
        close(streams[1])
        self.assertEqual(1, self.gate.unauthenticated)
        self.assertIsNotNone(self.connect("192.0.2.1"))
        self.assertIsNotNone(self.connect("192.0.2.1"))
        self.assertIsNone(self.connect("192.0.2.1"))
        self.clock.advance(30)
        self.assertIsNone(streams[0].streamError)

    def test_dialbackPendingStillCounts(self):
        """
        A legacy stream whose first C{<db:result/>} is still to be verified
        by dialback has proved nothing: it keeps counting among the
        unauthenticated connections, and its deadline runs, until a pair is
        granted on it.
        """
        from dna.legacy.authorization import LegacyAuthorization
        from dna.legacy.policy import FALLBACK_DIALBACK, FallbackPolicy

        federation = Federation(
            ["target.tld"], FakeDelegationChecker(), lambda stanza: None, clock=self.clock)
        xs = self.connect("192.0.2.1")
        xs.sid = "legacy1"
        authorization = federation.streamAuthenticated(
            xs, initiating=False, factory=LegacyAuthorization, proven=False,
            policy=FallbackPolicy(FALLBACK_DIALBACK), domain="sender.tld", mechanism=None)
        self.assertFalse(xs.proven)
        self.assertEqual(1, self.gate.unauthenticated)
        authorization.authenticated("target.tld", "sender.tld", "dialback")
        self.assertTrue(xs.proven)
        self.assertEqual(0, self.gate.unauthenticated)
        self.clock.advance(30)
        self.assertIsNone(xs.streamError)

    def test_dialbackNeverVerified(self):
        """
        A legacy stream whose dialback is never verified meets the deadline.
        """
        from dna.legacy.authorization import LegacyAuthorization
        from dna.legacy.policy import FALLBACK_DIALBACK, FallbackPolicy

        federation = Federation(
            ["target.tld"], FakeDelegationChecker(), lambda stanza: None, clock=self.clock)
        xs = self.connect("192.0.2.1")
        xs.sid = "legacy2"
        federation.streamAuthenticated(
            xs, initiating=False, factory=LegacyAuthorization, proven=False,
            policy=FallbackPolicy(FALLBACK_DIALBACK), domain="sender.tld", mechanism=None)
        self.clock.advance(30)
        self.assertEqual("connection-timeout", xs.streamError)

    def test_deadlineNotExtended(self):
        """
        A connection not authenticated 30 s after it was accepted gets
        C{<connection-timeout/>} and is closed, however much whitespace it
        trickled meanwhile; it is aborted if it lingers.
        """
        xs = self.connect("192.0.2.1")
        xs.dataReceived(HEADER)
        for _ in range(29):
            self.clock.advance(1)
            xs.dataReceived(b" ")
        self.assertIsNone(xs.streamError)
        aborted = []
        xs.transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(1)
        self.assertEqual("connection-timeout", xs.streamError)
        self.assertIn(b"connection-timeout", xs.transport.value())
        self.assertTrue(xs.transport.disconnecting)
        self.assertEqual(1, self.incidents.counters["auth-timeout"])
        self.clock.advance(CLOSE_GRACE)
        self.assertEqual([True], aborted)
        close(xs)
        self.assertEqual([], self.clock.getDelayedCalls())
        self.assertEqual(0, self.gate.unauthenticated)

    def test_deadlineWithoutHeader(self):
        """
        A connection that never sent a byte gets the stream error too.
        """
        xs = self.connect("192.0.2.1")
        self.clock.advance(30)
        self.assertIn(b"connection-timeout", xs.transport.value())

    def test_noTimerAfterEnd(self):
        """
        A connection that ends leaves no timer behind.
        """
        close(self.connect("192.0.2.1"))
        self.assertEqual([], self.clock.getDelayedCalls())


class OriginatingDeadlineTests(SynchronousTestCase):
    """
    The Originating side's deadline for TCP, TLS and authentication.
    """

    def test_trickleDoesNotExtend(self):
        """
        A peer that answers the header and then trickles whitespace does not
        extend the connect time-out.
        """
        from twisted.internet.ssl import trustRootFromCertificates

        from dna.channel.originating import Connector
        from dna.dns.addresses import AddressResolver
        from dna.testing.pki import CertificateAuthority

        ca = CertificateAuthority("Deadline CA")
        certificate = ca.issue("xmpp1.originating.tld", dnsNames=["xmpp1.originating.tld"])
        reactor = MemoryReactorClock()
        connector = Connector(
            FakeDelegationChecker(),
            AddressResolver(hosts={"xmpp1.receiving.tld": ("127.0.0.2", None)}),
            "xmpp1.originating.tld",
            certificate.toPrivateCertificate(),
            trustRootFromCertificates([ca.toCertificate()]),
            reactor=reactor,
            connectTimeout=10,
        )
        d = connector.connect("xmpp1.receiving.tld", 5269)
        [(host, port, factory, timeout, bindAddress)] = reactor.tcpClients
        xs = factory.buildProtocol(None)._wrappedProtocol
        xs.makeConnection(StringTransport())
        xs.dataReceived(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
            b" from='xmpp1.receiving.tld' id='x' version='1.0'>"
        )
        for _ in range(9):
            reactor.advance(1)
            xs.dataReceived(b" ")
        self.assertNoResult(d)
        reactor.advance(1)
        self.failureResultOf(d, ierror.TimeoutError)


class BacklogTests(SynchronousTestCase):
    """
    The listen backlog.
    """

    def test_default(self):
        """
        A TCP description without a backlog gets 511; one with a backlog
        keeps it; others are left alone.
        """
        self.assertEqual(511, DEFAULT_BACKLOG)
        self.assertEqual("tcp:5269:backlog=511", withBacklog("tcp:5269"))
        self.assertEqual(
            "tcp6:5269:interface=\\:\\:1:backlog=511", withBacklog("tcp6:5269:interface=\\:\\:1")
        )
        self.assertEqual("tcp:5269:backlog=20", withBacklog("tcp:5269:backlog=20"))
        self.assertEqual("unix:/tmp/s", withBacklog("unix:/tmp/s"))
        endpoint = serverFromString(MemoryReactorClock(), withBacklog("tcp:5269"))
        self.assertEqual(511, endpoint._backlog)

    def test_serviceListens(self):
        """
        The service listens with backlog 511 by default, and with the
        description's own when it sets one.
        """
        from dna.app.service import DNAService
        from dna.testing.providers import RECEIVING, ProviderPKI

        pki = ProviderPKI("Backlog CA")
        for listen, backlog in (("tcp:5269", 511), ("tcp:5269:backlog=77", 77)):
            reactor = MemoryReactorClock()
            service = DNAService(
                ["target.tld"], {RECEIVING: pki.certificates[RECEIVING].toPrivateCertificate()},
                pki.trustRoot, FakeDelegationChecker(), lambda name, port: None,
                deliver=lambda stanza: None, listen=listen, reactor=reactor,
            )
            service.startService()
            [(port, factory, queued, interface)] = reactor.tcpServers
            self.assertEqual((5269, backlog), (port, queued))
            self.assertIs(service.factory, factory)


def smElements(xs, name):
    return [e for e in xs.output if isinstance(e, domish.Element) and (e.uri, e.name) == (NS_SM, name)]


class AckBoundTests(SynchronousTestCase):
    """
    The bound of L{StreamAcks}: pause, request, time-out.
    """

    def setUp(self):
        self.clock = Clock()
        self.xs = makeStream("s1")
        self.returned = []
        self.rooms = []
        self.incidents = ThrottledLog(self.clock)
        self.acks = StreamAcks.initiate(
            self.xs, lambda: 0, self.returned.extend, self.clock, every=1000,
            maxUnacked=3, maxUnackedBytes=1000, ackTimeout=30,
            onRoom=lambda: self.rooms.append(True), incidents=self.incidents,
        )

    def test_fullByCount(self):
        """
        At C{maxUnacked} stanzas the stream is full and asks for an
        acknowledgement at once; an answer that frees room says so.
        """
        for i in range(2):
            self.acks.sent(stanza(stanzaID=str(i)), 10)
        self.assertFalse(self.acks.full)
        self.acks.sent(stanza(stanzaID="2"), 10)
        self.assertTrue(self.acks.full)
        self.assertEqual(1, len(smElements(self.xs, "r")))
        self.assertEqual(1, self.incidents.counters["acks-full"])
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='1'/>")
        self.assertFalse(self.acks.full)
        self.assertEqual([True], self.rooms)
        self.clock.advance(30)
        self.assertIsNone(self.xs.streamError)

    def test_fullByBytes(self):
        """
        At C{maxUnackedBytes} the stream is full too.
        """
        self.acks.sent(stanza(), 999)
        self.assertFalse(self.acks.full)
        self.acks.sent(stanza(), 1)
        self.assertTrue(self.acks.full)
        self.assertEqual(1000, self.acks.unackedBytes)

    def test_timeout(self):
        """
        A full stream whose peer acknowledges nothing within C{ackTimeout}
        is closed with C{<connection-timeout/>}, and what it kept is handed
        back to be sent again.
        """
        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)), 10)
        self.clock.advance(29)
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='0'/>")
        self.clock.advance(1)
        self.assertEqual("connection-timeout", self.xs.streamError)
        self.assertEqual(1, self.incidents.counters["ack-timeout"])
        close(self.xs)
        self.assertEqual(["0", "1", "2"], [s["id"] for s in self.returned])
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_timeoutAborts(self):
        """
        A stream closed for want of acknowledgements whose connection does
        not close (over TLS the close waits for the peer's close_notify,
        which a black hole never sends) is aborted after
        L{acks.CLOSE_GRACE} seconds, so that what it kept goes again.
        """
        from dna.channel.acks import CLOSE_GRACE

        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)), 10)
        self.clock.advance(30)
        self.assertEqual("connection-timeout", self.xs.streamError)
        self.assertFalse(self.xs.transport.disconnected)
        self.clock.advance(CLOSE_GRACE)
        self.assertTrue(self.xs.transport.disconnected)
        close(self.xs)
        self.assertEqual(["0", "1", "2"], [s["id"] for s in self.returned])
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_progressExtends(self):
        """
        An answer that acknowledges some but leaves the stream full gives the
        peer another C{ackTimeout}.
        """
        for i in range(4):
            self.acks.sent(stanza(stanzaID=str(i)), 10)
        self.clock.advance(20)
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='1'/>")
        self.assertTrue(self.acks.full)
        self.clock.advance(20)
        self.assertIsNone(self.xs.streamError)
        self.clock.advance(10)
        self.assertEqual("connection-timeout", self.xs.streamError)


def messages(xs):
    return [e["id"] for e in xs.output if isinstance(e, domish.Element) and e.name == "message"]


class FederationBoundTests(SynchronousTestCase):
    """
    L{Federation} at the bounds: a paused stream, the waiting limits.
    """

    def setUp(self):
        self.clock = Clock()
        self.delivered = []
        self.federation = Federation(
            ["sender.tld"], FakeDelegationChecker(), self.delivered.append, clock=self.clock,
            ackLimits=dict(maxUnacked=2, ackTimeout=30), waitingLimit=3, queueLimit=100,
        )
        self.xs = self.open("s1")

    def open(self, streamID):
        xs = makeStream(streamID, us="xmpp1.originating.tld", peer="xmpp1.receiving.tld")
        xs.features = {(NS_SM, "sm"): domish.Element((NS_SM, "sm"))}
        self.federation.streamAuthenticated(xs, initiating=True, serverNames=["xmpp1.receiving.tld"])
        self.federation.tables.connections.addDelegatedNames(streamID, ["target.tld", "other.tld"])
        return xs

    def grant(self, xs=None):
        receive(xs or self.xs, "<db:result from='target.tld' to='sender.tld' type='valid'/>")

    def send(self, stanzaID, to="juliet@target.tld"):
        self.federation.send(stanza(sender="romeo@sender.tld", to=to, stanzaID=stanzaID))

    def test_pauseAndResume(self):
        """
        A stream that keeps as many unacknowledged stanzas as it may stops
        sending; the rest wait, and go, in order, once the peer acknowledges.
        """
        self.send("0")
        self.grant()
        for i in range(1, 4):
            self.send(str(i))
        self.assertEqual(["0", "1"], messages(self.xs))
        self.assertEqual(2, self.federation.waitingCount)
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='2'/>")
        self.assertEqual(["0", "1", "2", "3"], messages(self.xs))
        self.assertEqual(0, self.federation.waitingCount)
        self.assertEqual([], self.delivered)

    def test_pausedStreamTimesOut(self):
        """
        When the paused stream's peer never answers, the stream is closed
        and every stanza, kept or waiting, goes on another stream in order.
        """
        self.send("0")
        self.grant()
        for i in range(1, 4):
            self.send(str(i))
        other = self.open("s2")
        self.clock.advance(30)
        self.assertEqual("connection-timeout", self.xs.streamError)
        close(self.xs)
        self.grant(other)
        receive(other, "<a xmlns='urn:xmpp:sm:3' h='2'/>")
        self.assertEqual(["0", "1", "2", "3"], messages(other))
        self.assertEqual(0, self.federation.waitingCount)
        self.assertEqual(1, self.federation.counters["ack-timeout"])

    def test_waitingLimit(self):
        """
        Past the limit of stanzas waiting for all pairs together, new ones
        bounce with C{<resource-constraint/>} (type wait), counted.
        """
        self.send("0")
        self.send("1", to="juliet@other.tld")
        self.send("2")
        self.send("3")
        self.send("4", to="juliet@third.tld")
        self.assertEqual(["3", "4"], [b["id"] for b in self.delivered])
        self.assertEqual(("resource-constraint", None), stanzaErrorOf(self.delivered[0]))
        self.assertEqual("wait", self.delivered[0].error["type"])
        self.assertEqual(2, self.federation.counters["waiting-limit"])

    def test_authenticatedEvent(self):
        """
        A stream the federation takes dispatches
        L{STREAM_AUTHENTICATED_EVENT}.
        """
        xs = makeStream("s9")
        seen = []
        xs.addObserver(STREAM_AUTHENTICATED_EVENT, seen.append)
        self.federation.streamAuthenticated(xs, initiating=False, serverNames=["a.tld"])
        self.assertEqual([xs], seen)

    def test_peerLimitsRead(self):
        """
        The limits the Receiving Server advertised are kept on the stream.
        """
        xs = makeStream("s9")
        features = advertise(domish.Element((NS_STREAMS, "features")), maxBytes=1000, idleSeconds=60)
        xs.features = {(e.uri, e.name): e for e in features.elements()}
        self.federation.streamAuthenticated(xs, initiating=True, serverNames=["a.tld"])
        self.assertEqual(PeerLimits(1000, 60), xs.peerLimits)


class FloodLoggingTests(SynchronousTestCase):
    """
    Floods of refusals write O(1) log lines.
    """

    def setUp(self):
        self.clock = Clock()
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.incidents = ThrottledLog(self.clock)

    def authorization(self, sid, maxPending=2):
        xs = makeStream(sid)
        checker = FakeDelegationChecker()
        # Every check stays pending.
        checker.isDelegated = lambda domain, names: defer.Deferred()
        auth = StreamAuthorization(
            xs, Tables(), frozenset(["target.tld"]), checker, initiating=False,
            serverNames=["xmpp1.originating.tld"], maxPending=maxPending, clock=self.clock,
            incidents=self.incidents,
        )
        return xs, auth

    def test_pendingLimit(self):
        """
        Hundreds of C{<db:result/>} requests past the pending limit, in one
        chunk and on many streams, close each stream with one stream error
        and log one line.
        """
        for n in range(20):
            xs, auth = self.authorization("s%d" % (n,))
            requests = "".join(
                "<db:result from='s%d.tld' to='target.tld'/>" % (i,) for i in range(400)
            )
            receive(xs, requests)
            self.assertEqual(1, len(xs.streamErrors))
        self.assertEqual(1, len(lines(self.observer, "pending-limit")))
        self.assertEqual(20, self.incidents.counters["pending-limit"])

    def test_filterRejections(self):
        """
        Stanzas for pairs that are not bound are each answered, counted,
        and logged once.
        """
        xs, auth = self.authorization("s1")
        for i in range(300):
            receive(xs, stanza(sender="a@evil.tld", to="b@target.tld", stanzaID=str(i)))
        self.assertEqual(300, auth.filter.rejected)
        self.assertEqual(300, self.incidents.counters["filter-rejected"])
        self.assertEqual(1, len(lines(self.observer, "filter-rejected")))

    def test_parserRefusals(self):
        """
        Parser refusals on many streams that share a log are one line.
        """
        for n in range(100):
            xs = S2SStream(xmlstream.Authenticator())
            StreamLimits().apply(xs, self.incidents)
            xs.makeConnection(StringTransport())
            xs.dataReceived(HEADER + b"<!-- hostile -->")
            self.assertEqual("restricted-xml", xs.refusal)
        self.assertEqual(1, len(self.observer))
        self.assertEqual(100, self.incidents.counters["stream-refused-restricted-xml"])


class StreamLimitsTests(SynchronousTestCase):
    """
    Configured limits reach the streams, and are advertised.
    """

    def test_factoryApplies(self):
        """
        The listener's streams enforce the limits it was given.
        """
        limits = Limits(maxStanzaSize=2048, maxStanzaSizeUnauthenticated=1024, maxDepth=4)
        factory = S2SServerFactory(
            frozenset(["xmpp1.receiving.tld"]), object(), lambda *a: None,
            limits=limits.streamLimits(idleSeconds=600),
        )
        xs = factory.buildProtocol(address("192.0.2.1"))
        self.assertEqual((2048, 1024, 4, 600), (
            xs.maxStanzaSize, xs.maxStanzaSizeBeforeAuth, xs.maxDepth, xs.idleSeconds))
        xs.makeConnection(StringTransport())
        xs.dataReceived(HEADER + b"<x>" + b"a" * 1100)
        self.assertEqual("policy-violation", xs.refusal)

    def test_parserFreedAfterRefusal(self):
        """
        A refused stream lets go of its parser, and with it of what the peer
        sent, while the connection closes; later data is ignored.
        """
        xs = makeStream()
        receive(xs, "<message a='" + "x" * 20000)
        self.assertEqual("policy-violation", xs.refusal)
        self.assertIsNone(xs.stream)
        receive(xs, "more")
        self.assertEqual(1, xs.refusals)

    def test_depthConfigured(self):
        """
        The depth limit is the stream's own.
        """
        xs = makeStream()
        xs.maxDepth = 3
        receive(xs, "<message><a><b/></a></message>")
        self.assertIsNone(xs.refusal)
        receive(xs, "<message><a><b><c/></b></a></message>")
        self.assertEqual("policy-violation", xs.refusal)

    def test_defaultsUnchanged(self):
        """
        Building a listener with limits changes no other stream.
        """
        S2SServerFactory(
            frozenset(), object(), lambda *a: None,
            limits=StreamLimits(maxStanzaSize=10),
        ).buildProtocol(address("192.0.2.1"))
        self.assertEqual(512 * 1024, S2SStream(xmlstream.Authenticator()).maxStanzaSize)

    def test_advertisement(self):
        """
        XEP-0478: C{<limits/>} with C{<max-bytes/>} and C{<idle-seconds/>}.
        """
        features = advertise(domish.Element((NS_STREAMS, "features")), maxBytes=524288,
                             idleSeconds=600)
        [limits] = [e for e in features.elements() if e.uri == NS_STREAM_LIMITS]
        self.assertEqual(
            "<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>524288</max-bytes>"
            "<idle-seconds>600</idle-seconds></limits>",
            limits.toXml(),
        )

    def test_peerLimitsTolerant(self):
        """
        Nonsense in a peer's advertisement reads as unknown; none at all as
        L{None}.
        """
        xs = makeStream()
        self.assertIsNone(peerLimits(xs))
        limits = domish.Element((NS_STREAM_LIMITS, "limits"))
        limits.addElement("max-bytes", content="-5")
        limits.addElement("idle-seconds", content="x")
        xs.features = {(NS_STREAM_LIMITS, "limits"): limits}
        self.assertEqual(PeerLimits(None, None), peerLimits(xs))


class _Route:
    def __init__(self):
        self.sent = []

    def send(self, stanza):
        self.sent.append(stanza)

    def addObserver(self, *args, **kw):
        pass


class RouterTests(SynchronousTestCase):
    """
    L{route} and L{QuietRouter}: wokkel's routing without stanzas in the log.
    """

    def setUp(self):
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.router = QuietRouter()
        self.component = _Route()
        self.default = _Route()
        self.router.addRoute("target.tld", self.component)
        self.router.addRoute(None, self.default)

    def test_routes(self):
        """
        A stanza goes to the route of its 'to' domain, else the default
        route; nothing is logged.
        """
        route(self.router, stanza(to="juliet@target.tld", body="secret"))
        self.router.route(stanza(to="romeo@elsewhere.tld", body="secret"))
        self.assertEqual((1, 1), (len(self.component.sent), len(self.default.sent)))
        self.assertEqual(0, len(self.observer))

    def test_noRoute(self):
        """
        Without a default route, a stanza is answered with
        C{<remote-server-timeout/>}, and its content is not logged.
        """
        del self.router.routes[None]
        self.router.addRoute("sender.tld", self.default)
        self.router.route(stanza(sender="romeo@sender.tld", to="x@nowhere.tld", body="secret"))
        [bounce] = self.default.sent
        self.assertEqual(("remote-server-timeout", None), stanzaErrorOf(bounce))
        for event in self.observer:
            self.assertNotIn("secret", repr(event))
