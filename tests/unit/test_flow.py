"""
Tests for L{dna.app.flow} and its use by L{dna.app.federation.Federation}
(issue 16): a full transport pauses the connection feeding it and resumes it
once drained; the pairs waiting for a full stream take turns.
"""

import collections

from twisted.internet import abstract
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream

from dna.app.federation import Federation
from dna.app.flow import DEFAULT_HIGH_WATER, FlowControl
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import close, makeStream, receive, stanza
from tests.unit.test_federation import messages


class BlockedTransport(abstract.FileDescriptor):
    """
    A transport with Twisted's real buffering and producer rules whose peer
    reads nothing until L{drain}.
    """

    connected = True

    def __init__(self):
        abstract.FileDescriptor.__init__(self, reactor=MemoryReactorClock())
        self.written = []
        self.reading = False

    def writeSomeData(self, data):
        if not self.reading:
            return 0
        self.written.append(bytes(data))
        return len(data)

    def drain(self):
        self.reading = True
        self.doWrite()
        self.reading = False

    def buffered(self):
        return len(self.dataBuffer) - self.offset + self._tempDataLen


def componentStream():
    """
    A component-side XmlStream whose header went by, over a StringTransport.
    """
    xs = xmlstream.XmlStream(xmlstream.Authenticator())
    xs.makeConnection(StringTransport())
    xs.dataReceived(
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='sender.tld'>"
    )
    return xs


class FlowControlTests(SynchronousTestCase):
    """
    L{FlowControl} between sources and sinks.
    """

    def setUp(self):
        self.counters = collections.Counter()
        self.flow = FlowControl(self.counters, Clock(), highWater=1000)

    def sinkStream(self, transport):
        xs = xmlstream.XmlStream(xmlstream.Authenticator())
        xs.makeConnection(transport)
        return xs

    def test_defaultMark(self):
        """
        The default high-water mark is bounded, and set as the transport's
        buffer size.
        """
        self.assertEqual(256 * 1024, DEFAULT_HIGH_WATER)
        transport = BlockedTransport()
        self.flow.sink(self.sinkStream(transport))
        self.assertEqual(1000, transport.bufferSize)

    def test_pauseAboveHighWaterResumeWhenDrained(self):
        """
        What a source's data makes us write to a sink whose peer reads
        nothing pauses the source once the sink's buffer passes the
        high-water mark, not before; once drained, the source is read again.
        """
        source = componentStream()
        self.flow.source(source)
        transport = BlockedTransport()
        sink = self.sinkStream(transport)
        self.flow.sink(sink)
        source.addObserver("/message", lambda e: sink.send(e))
        small = "<message to='a@b' id='%d'>" + "x" * 100 + "</message>"
        receive(source, small % (0,))
        self.assertEqual("producing", source.transport.producerState)
        for i in range(1, 12):
            receive(source, small % (i,))
        self.assertGreater(transport.buffered(), 1000)
        self.assertEqual("paused", source.transport.producerState)
        self.assertEqual(1, self.counters["flow-paused"])
        self.assertTrue(self.flow.isFull(sink))
        self.assertEqual(1, self.flow.pausedSources)
        transport.drain()
        self.assertEqual("producing", source.transport.producerState)
        self.assertEqual(1, self.counters["flow-resumed"])
        self.assertEqual(0, self.flow.pausedSources)

    def test_otherWritersHeldWhileFull(self):
        """
        A sink that holds on send pauses every source that writes to it
        while it is full, and resumes them all when drained.
        """
        first, second = componentStream(), componentStream()
        for source in (first, second):
            self.flow.source(source)
        transport = BlockedTransport()
        sink = self.sinkStream(transport)
        self.flow.sink(sink, holdOnSend=True)
        for source in (first, second):
            source.addObserver("/message", lambda e: sink.send(e))
        receive(first, "<message>" + "x" * 2000 + "</message>")
        receive(second, "<message>y</message>")
        self.assertEqual("paused", first.transport.producerState)
        self.assertEqual("paused", second.transport.producerState)
        transport.drain()
        self.assertEqual("producing", first.transport.producerState)
        self.assertEqual("producing", second.transport.producerState)

    def test_heldByTwoSinks(self):
        """
        A source held by two full sinks resumes only when both let go.
        """
        source = componentStream()
        self.flow.current = self.flow.source(source)
        self.flow.hold("a")
        self.flow.hold("b")
        self.flow.current = None
        self.flow.release("a")
        self.assertEqual("paused", source.transport.producerState)
        self.flow.release("b")
        self.assertEqual("producing", source.transport.producerState)

    def test_notHeldByItself(self):
        """
        A stream whose own writes back up while it is read is still read: a
        peer doing the same would otherwise never read again either.
        """
        xs = self.sinkStream(StringTransport())
        self.flow.sink(xs)
        self.flow.current = self.flow.source(xs)
        xs.transport.producer.pauseProducing()
        self.flow.current = None
        self.assertEqual("producing", xs.transport.producerState)
        self.assertEqual(0, self.counters["flow-paused"])

    def test_sinkEndReleases(self):
        """
        A sink whose stream ends releases what it held.
        """
        source = componentStream()
        held = self.flow.source(source)
        sink = self.sinkStream(StringTransport())
        self.flow.sink(sink)
        self.flow.current = held
        sink.transport.producer.pauseProducing()
        self.flow.current = None
        self.assertEqual("paused", source.transport.producerState)
        sink.connectionLost(None)
        self.assertEqual("producing", source.transport.producerState)


class Turns:
    """
    An C{IReactorTime} whose calls run a reactor turn at a time: what a call
    schedules runs in the next turn, not in the same L{turn}.
    """

    def __init__(self):
        self.calls = []

    def callLater(self, delay, f, *args, **kwargs):
        call = Clock().callLater(delay, f, *args, **kwargs)
        call.canceller = self.calls.remove
        self.calls.append(call)
        return call

    def turn(self):
        due, self.calls = self.calls, []
        for call in due:
            call.called = True
            call.func(*call.args, **call.kw)


class ClosingTransport(StringTransport):
    """
    A L{StringTransport} that, as TCP and TLS transports do, may be paused
    and resumed once told to close.
    """

    def _checkState(self):
        pass


class SliceTests(SynchronousTestCase):
    """
    A source's data goes to the parser a slice per reactor turn, so that
    what each slice produced is written before the next is handled.
    """

    def setUp(self):
        self.clock = Turns()
        self.counters = collections.Counter()
        self.flow = FlowControl(self.counters, self.clock, highWater=1000, slice=100)
        self.source = componentStream()
        self.flow.source(self.source)
        self.handled = []
        self.source.addObserver("/message", lambda e: self.handled.append(e["id"]))

    def messages(self, *ids):
        return "".join("<message id='%s'>%s</message>" % (i, "x" * 40) for i in ids)

    def test_onePerTurn(self):
        """
        Data longer than a slice is handled a slice now and the rest in the
        next turns, with the transport paused until all went; then it is
        read again.
        """
        receive(self.source, self.messages("a", "b", "c", "d"))
        self.assertEqual(["a"], self.handled)
        self.assertEqual("paused", self.source.transport.producerState)
        self.clock.turn()
        self.assertEqual(["a", "b", "c"], self.handled)
        self.clock.turn()
        self.assertEqual(["a", "b", "c", "d"], self.handled)
        self.assertEqual("producing", self.source.transport.producerState)
        self.assertEqual([], self.clock.calls)
        self.assertEqual(0, self.counters["flow-paused"])

    def test_smallerAfterRequests(self):
        """
        A slice during which a request for a pair went out
        (L{FlowControl.requested}) is followed by one of C{setupSlice}
        bytes; a slice that sent none, by one of C{slice} bytes again.
        """
        self.flow.setupSlice = 50
        self.source.addObserver(
            "/message[@id='a']", lambda e: self.flow.requested())
        # Each message is 66 bytes, "b" ends at byte 132, "c" at 198: after
        # the slice that handled "a" (bytes 0-100), one of 50 bytes, then
        # of 100.
        receive(self.source, self.messages("a", "b", "c", "d", "e"))
        self.assertEqual(["a"], self.handled)
        self.clock.turn()
        self.assertEqual(["a", "b"], self.handled)
        self.clock.turn()
        self.assertEqual(["a", "b", "c"], self.handled)
        self.clock.turn()
        self.assertEqual(["a", "b", "c", "d", "e"], self.handled)
        self.assertEqual("producing", self.source.transport.producerState)

    def test_requestedOutsideReads(self):
        """
        A request sent while no source's data is handled (a timer, a
        connection made) changes no slice.
        """
        self.flow.requested()
        self.assertIsNone(self.flow.current)

    def test_shortDataAtOnce(self):
        """
        Data no longer than a slice is handled at once, and the transport is
        not paused.
        """
        receive(self.source, self.messages("a"))
        self.assertEqual(["a"], self.handled)
        self.assertEqual("producing", self.source.transport.producerState)
        self.assertEqual([], self.clock.calls)

    def test_moreDataWaitsItsTurn(self):
        """
        Data arriving while earlier data waits (a TLS transport hands on
        all it decrypted, paused or not) goes after it, in order.
        """
        receive(self.source, self.messages("a", "b", "c"))
        receive(self.source, self.messages("d"))
        self.assertEqual(["a"], self.handled)
        while self.clock.calls:
            self.clock.turn()
        self.assertEqual(["a", "b", "c", "d"], self.handled)
        self.assertEqual("producing", self.source.transport.producerState)

    def test_heldSourceWaits(self):
        """
        A source held by a full sink in the middle of its data handles no
        more of it until the sink releases it, and is read again only once
        all went.
        """
        self.source.addObserver("/message", lambda e: self.flow.hold("sink"))
        receive(self.source, self.messages("a", "b", "c", "d"))
        self.assertEqual(["a"], self.handled)
        self.assertEqual([], self.clock.calls)
        self.assertEqual("paused", self.source.transport.producerState)
        self.assertEqual(1, self.counters["flow-paused"])
        self.flow.release("sink")
        self.assertEqual(["a"], self.handled)
        self.clock.turn()
        self.assertEqual(["a", "b", "c"], self.handled)
        self.assertEqual([], self.clock.calls)
        self.assertEqual("paused", self.source.transport.producerState)
        self.flow.release("sink")
        self.clock.turn()
        self.assertEqual(["a", "b", "c", "d"], self.handled)
        self.assertEqual("paused", self.source.transport.producerState)
        self.flow.release("sink")
        self.assertEqual("producing", self.source.transport.producerState)

    def test_connectionLostHandlesWhatWaits(self):
        """
        When the connection is lost, what was read and waits is handled
        before the stream ends, as if read whole.
        """
        ended = []
        self.source.addObserver(
            xmlstream.STREAM_END_EVENT, lambda reason: ended.append(list(self.handled)))
        receive(self.source, self.messages("a", "b", "c", "d"))
        self.source.connectionLost(None)
        self.assertEqual([["a", "b", "c", "d"]], ended)
        self.assertEqual([], self.clock.calls)

    def test_closingHandlesAtOnce(self):
        """
        Once the stream is told to close (a stream error, say), the rest of
        what was read is handled at once, not in later turns, and the
        transport is read again (a TLS close reads the peer's
        C{close_notify}).
        """
        self.source.transport = ClosingTransport()
        receive(self.source, self.messages("a", "b", "c", "d"))
        self.source.transport.loseConnection()
        self.clock.turn()
        self.assertEqual(["a", "b", "c", "d"], self.handled)
        self.assertEqual([], self.clock.calls)
        self.assertEqual(["producing"], [self.source.transport.producerState])


class FederationFlowTests(SynchronousTestCase):
    """
    L{Federation} with a L{FlowControl}: a full stream takes no stanzas, the
    component feeding it pauses, and the pairs waiting take turns.
    """

    def setUp(self):
        self.clock = Clock()
        self.delivered = []
        self.federation = Federation(
            ["sender.tld", "sender2.tld"], FakeDelegationChecker(), self.delivered.append,
            clock=self.clock,
        )
        self.flow = FlowControl(self.federation.counters, self.clock, highWater=1000)
        self.federation.flow = self.flow
        self.xs = makeStream("s1", us="xmpp1.originating.tld", peer="xmpp1.receiving.tld")
        self.federation.streamAuthenticated(
            self.xs, initiating=True, serverNames=["xmpp1.receiving.tld"])
        self.federation.tables.connections.addDelegatedNames("s1", ["target.tld"])
        for sender in ("sender.tld", "sender2.tld"):
            self.federation.send(stanza(sender="r@" + sender, to="j@target.tld", stanzaID="x"))
            receive(self.xs, "<db:result from='target.tld' to='%s' type='valid'/>" % (sender,))
        del self.xs.output[:]
        self.component = componentStream()
        self.flow.source(self.component)
        self.component.addObserver("/message", self.federation.send)

    def fromComponent(self, stanzaID, sender="sender.tld"):
        receive(self.component, stanza(sender="r@" + sender, to="j@target.tld",
                                       stanzaID=stanzaID).toXml())

    def test_fullStreamPausesComponent(self):
        """
        While the stream's transport is past the mark, stanzas wait and the
        component is not read; when it drains, they go in order and the
        component is read again.
        """
        self.xs.transport.producer.pauseProducing()
        for i in range(3):
            self.fromComponent(str(i))
        self.assertEqual([], messages(self.xs))
        self.assertEqual(3, self.federation.waitingCount)
        self.assertEqual("paused", self.component.transport.producerState)
        self.xs.transport.producer.resumeProducing()
        self.assertEqual(["0", "1", "2"], messages(self.xs))
        self.assertEqual("producing", self.component.transport.producerState)
        self.assertEqual(1, self.federation.counters["flow-paused"])
        self.assertEqual(1, self.federation.counters["flow-resumed"])

    def test_roundRobin(self):
        """
        Pairs waiting for a full stream take turns, one stanza each, in
        their own order; what does not fit waits for the next drain, and
        the component stays paused until all went.
        """
        self.xs.transport.producer.pauseProducing()
        for i in range(4):
            self.fromComponent("a%d" % (i,))
        self.fromComponent("b0", sender="sender2.tld")
        self.fromComponent("b1", sender="sender2.tld")
        sent = []

        def fillAfter(count):
            def send(obj, original=self.xs.send):
                original(obj)
                sent.append(obj)
                if len(sent) == count:
                    self.xs.transport.producer.pauseProducing()
            return send

        self.xs.send = fillAfter(3)
        self.xs.transport.producer.resumeProducing()
        self.assertEqual(["a0", "b0", "a1"], messages(self.xs))
        self.assertEqual("paused", self.component.transport.producerState)
        self.xs.transport.producer.resumeProducing()
        self.assertEqual(["a0", "b0", "a1", "b1", "a2", "a3"], messages(self.xs))
        self.assertEqual("producing", self.component.transport.producerState)

    def test_otherComponentsGoOn(self):
        """
        A component sending to a full stream pauses; another, sending on a
        stream with room, is still read and its stanzas go.
        """
        xs2 = makeStream("s2", us="xmpp1.originating.tld", peer="xmpp2.receiving.tld")
        self.federation.streamAuthenticated(
            xs2, initiating=True, serverNames=["xmpp2.receiving.tld"])
        self.federation.tables.connections.addDelegatedNames("s2", ["other.tld"])
        self.federation.send(stanza(sender="r@sender.tld", to="j@other.tld", stanzaID="x"))
        receive(xs2, "<db:result from='other.tld' to='sender.tld' type='valid'/>")
        quiet = componentStream()
        self.flow.source(quiet)
        quiet.addObserver("/message", self.federation.send)
        self.xs.transport.producer.pauseProducing()
        self.fromComponent("busy")
        receive(quiet, stanza(sender="r@sender.tld", to="j@other.tld", stanzaID="quiet").toXml())
        self.assertEqual("paused", self.component.transport.producerState)
        self.assertEqual("producing", quiet.transport.producerState)
        self.assertEqual(["x", "quiet"], messages(xs2))

    def test_streamEndResumes(self):
        """
        When a full stream ends, the component feeding it is read again and
        what waited looks for another stream.
        """
        self.xs.transport.producer.pauseProducing()
        self.fromComponent("0")
        close(self.xs)
        self.assertEqual("producing", self.component.transport.producerState)


class ServiceFlowTests(SynchronousTestCase):
    """
    L{dna.app.service.DNAService} wires its L{FlowControl}: every
    authenticated stream and every component is a sink at the configured
    mark, and the control API's status shows the mark and the counts.
    """

    def setUp(self):
        from tests.unit.test_control import _Server

        self.server = _Server()
        self.service = self.server.service

    def test_streamIsSink(self):
        """
        An authenticated stream's transport has the high-water mark as its
        buffer size and the federation's sink as its producer.
        """
        xs = self.server.incoming("s1")
        self.assertEqual(DEFAULT_HIGH_WATER, xs.transport.bufferSize)
        self.assertIs(self.service.flow.sinks["s1"], xs.transport.producer)
        close(xs)
        self.assertNotIn("s1", self.service.flow.sinks)

    def test_requestsMakeSlicesSmaller(self):
        """
        Each authenticated stream's requests for pairs tell the flow
        control.
        """
        xs = self.server.incoming("s1")
        authorization = self.service.federation.streams["s1"]
        self.assertEqual(self.service.flow.requested, authorization.onRequest)
        close(xs)

    def test_componentPausesIncomingStream(self):
        """
        A component whose transport is full stops the S2S stream delivering
        to it from being read, and every other one that writes to it while
        it is full; they are read again once it drains.
        """
        component = componentStream()
        self.service.componentConnected(component)
        xs = self.server.incoming("s1")
        self.server.grant(xs, "sender.tld", "target.tld")
        # The delivery of this stanza fills the component's transport.
        xs.addObserver("/message", lambda e: component.transport.producer.pauseProducing())
        receive(xs, stanza())
        self.assertEqual("paused", xs.transport.producerState)
        other = self.server.incoming("s2")
        self.server.grant(other, "sender.tld", "target.tld")
        other.addObserver("/message", lambda e: component.send(e))
        receive(other, stanza())
        self.assertEqual("paused", other.transport.producerState)
        component.transport.producer.resumeProducing()
        self.assertEqual("producing", xs.transport.producerState)
        self.assertEqual("producing", other.transport.producerState)

    def test_status(self):
        """
        The control API's status has the mark, how many sources are paused,
        and how many times flow control paused and resumed one.
        """
        from dna.app.control import Control

        status = Control(self.service, None, self.server.reactor).status()
        self.assertEqual(
            {"highWater": DEFAULT_HIGH_WATER, "pausedSources": 0, "paused": 0, "resumed": 0},
            status["flow"])

    def test_statusText(self):
        """
        C{dna-ctl status} prints the flow line.
        """
        from dna.app.control import Control
        from dna.app.ctl import statusText

        self.service.federation.counters["flow-paused"] += 2
        status = Control(self.service, None, self.server.reactor).status()
        self.assertIn(
            "flow:           0 paused now; 2 pauses, 0 resumptions (high-water 262144 bytes)",
            statusText(status).splitlines())
