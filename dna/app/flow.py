"""
Back-pressure between the XEP-0114 components and the S2S streams (issue 16),
with Twisted's producer/consumer interfaces.

Each connection we write to (an S2S stream, a component) is a I{sink}: a
L{Sink} is registered as the streaming producer of its transport, whose
C{bufferSize} is the high-water mark, so the transport says when its buffer
passes the mark (C{pauseProducing}) and when it has drained
(C{resumeProducing}: Twisted's low-water mark is an empty buffer). Each
connection we read from is a I{source}. Stanzas are handled synchronously
while their source's data is parsed, so the source feeding a sink that is
full is the one being read at that moment: L{FlowControl.hold} pauses it
(C{IPushProducer.pauseProducing} of its transport: it is no longer read), and
L{FlowControl.release} resumes every source a sink held once the sink has
room again. A source held by several sinks resumes when the last lets go.

A source's data is handed to the parser in slices, one per reactor turn
(L{Source}), so that what each slice produced is written, and the next
process works on it, while the rest is handled: the processes on a path
overlap instead of taking turns (issue 13). A source held by a sink handles
no more slices until released.

What handling a slice sends is written when the slice is done, one write per
stream (L{dna.channel.stream.WriteBatch}): a read of a few hundred stanzas
makes one TLS record per S2S stream and one socket write per component, not
one of each per stanza.

So a burst from a component that the federation link cannot carry stops
that component, not the others, and a receiving component that stops reading
stops the S2S stream feeding it, whose peer then stops its own components:
what each server buffers stays near the marks. Pauses and resumptions are
counted in L{dna.app.federation.Federation.counters} (C{"flow-paused"},
C{"flow-resumed"}).
"""

import collections

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from zope.interface import implementer

from dna.channel.stream import WriteBatch

_log = Logger()

#: Bytes a transport we write to may buffer before we stop feeding it
#: (C{[limits] high-water}).
DEFAULT_HIGH_WATER = 256 * 1024

#: Bytes of a source's data handed to the parser per reactor turn (see
#: L{Source}).
DEFAULT_SLICE = 16 * 1024

#: Bytes per reactor turn of a source whose last slice sent requests for
#: pairs (L{FlowControl.requested}): the first stanza of a new pair, or a
#: grant that makes room in the request window, sends a request, which
#: leaves only when the reactor runs again; in smaller slices the peer gets
#: the first requests sooner, and works on them while we read on (1,000 new
#: pairs: set up in about a fifth less time). Once a slice sends none, the
#: next is L{DEFAULT_SLICE} again: each turn costs a poll and the writes,
#: which small slices pay on every stanza.
DEFAULT_SETUP_SLICE = 4 * 1024


def _unregisterOnClose(transport):
    """
    Unregister the producer of C{transport} when it is told to close,
    whoever tells it (our closing tag, a stream error, the peer's closing
    tag): TLS postpones its C{close_notify}, and so the close, for as long
    as a producer is registered (C{TLSMemoryBIOProtocol.loseConnection}),
    and every close would wait for an abort.
    """
    loseConnection = transport.loseConnection

    def unregisterThenLose():
        transport.loseConnection = loseConnection
        transport.unregisterProducer()
        loseConnection()

    transport.loseConnection = unregisterThenLose


@implementer(IPushProducer)
class Sink:
    """
    The producer registered on the transport of a connection we write to.

    @ivar key: What names the sink in L{FlowControl} (a stream id, a
        component stream).
    @ivar full: Whether the transport's buffer passed the high-water mark
        and has not drained since.
    """

    full = False

    def __init__(self, flow, key, xs, onFull=None, onRoom=None):
        self._flow = flow
        self.key = key
        self.xs = xs
        self._onFull = onFull
        self._onRoom = onRoom

    def pauseProducing(self):
        self.full = True
        if self._onFull is not None:
            self._onFull()
        self._flow.hold(self.key)

    def resumeProducing(self):
        self.full = False
        if self._onRoom is not None:
            # The owner sends what waited, and releases when all went.
            self._onRoom()
        else:
            self._flow.release(self.key)

    def stopProducing(self):
        self.full = False
        self._flow.release(self.key)


class Source:
    """
    A connection we read from, paused while any sink holds it, and read in
    slices: its data goes to the parser at most L{FlowControl.slice} bytes
    per reactor turn (L{FlowControl.setupSlice} after a slice that sent
    requests for pairs).

    Twisted hands a protocol all it read at once (up to the transport's
    C{bufferSize}, the high-water mark: a few hundred stanzas), and what
    handling them writes reaches the sockets only when the reactor runs
    again. Handled whole, a read leaves the next process (the peer server,
    a component) idle until its last stanza is handled, then this one idle
    while that one works: the processes take turns. Between slices the
    reactor writes what the slice produced, so the next process works on it
    while we handle the rest.

    @ivar holders: The keys of the sinks holding it.
    @ivar requested: Whether the slice being handled sent requests for
        pairs (L{FlowControl.requested}).
    """

    requested = False

    def __init__(self, flow, xs, handle):
        """
        @param flow: The L{FlowControl}.
        @param xs: The stream read.
        @param handle: Hands data to the stream's parser.
        """
        self.xs = xs
        self.holders = set()
        self._flow = flow
        self._handle = handle
        # Data read and not yet handed to the parser, oldest first.
        self._pending = collections.deque()
        self._call = None
        # Whether we stopped reading to come back to what waits.
        self._yielding = False

    def dataReceived(self, data):
        """
        Hand C{data} to the parser, a slice now and the rest in later turns;
        behind what waits already, if anything does.
        """
        if self._pending:
            # A TLS transport hands on all it decrypted, paused or not.
            self._pending.append(data)
            return
        self._pending.append(data)
        self._next()

    def _next(self):
        """
        Hand the parser the next slice; if more waits, stop reading and
        come back in the next reactor turn (unless a sink holds us: its
        release comes back).
        """
        self._call = None
        data = self._pending.popleft()
        flow = self._flow
        size = flow.setupSlice if self.requested else flow.slice
        self.requested = False
        if len(data) > size:
            self._pending.appendleft(data[size:])
            data = data[:size]
        self._handle(data)
        transport = self.xs.transport
        if transport is None or getattr(transport, "disconnecting", False):
            # Closing (a stream error, say): what was read goes on at once,
            # as if read whole; and the transport is read again (TLS reads
            # the peer's close_notify to close).
            self.flush()
        if not self._pending:
            if self._yielding and not self.holders:
                self._yielding = False
                self.resume()
            return
        self._yielding = True
        self.pause()
        if not self.holders:
            self._schedule()

    def _schedule(self):
        if self._call is None:
            self._call = self._flow.clock.callLater(0, self._next)

    def flush(self):
        """
        Hand the parser all that waits, now (the connection is lost: what
        was read is handled as if read whole).
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None
        while self._pending:
            self._handle(self._pending.popleft())

    def pause(self):
        transport = self.xs.transport
        if transport is not None:
            transport.pauseProducing()

    def resume(self):
        """
        Go on: with what waits, if anything does, else read again.
        """
        if self._pending:
            self._schedule()
            return
        transport = self.xs.transport
        if transport is not None:
            transport.resumeProducing()


class FlowControl:
    """
    Which source feeds which full sink, across all connections of a server.

    @ivar highWater: See L{DEFAULT_HIGH_WATER}.
    @ivar slice: See L{DEFAULT_SLICE}.
    @ivar setupSlice: See L{DEFAULT_SETUP_SLICE}.
    @ivar clock: The L{IReactorTime} that schedules the next slice.
    @ivar current: The L{Source} whose data is being handled, or L{None}.
    @ivar sinks: Key -> L{Sink} of every connection we write to.
    @ivar batch: The L{WriteBatch} open while a source's data is handled.
    """

    def __init__(self, counters, clock, highWater=DEFAULT_HIGH_WATER, slice=DEFAULT_SLICE,
                 setupSlice=DEFAULT_SETUP_SLICE):
        """
        @param counters: The L{collections.Counter} of pauses and
            resumptions.
        @param clock: The L{IReactorTime} that schedules the next slice.
        @param highWater: Bytes a transport may buffer before its sink is
            full.
        @param slice: See L{slice}.
        @param setupSlice: See L{setupSlice}.
        """
        self.highWater = highWater
        self.slice = slice
        self.setupSlice = setupSlice
        self.clock = clock
        self.current = None
        self.sinks = {}
        self.batch = WriteBatch()
        self._counters = counters
        # sink key -> the Sources it holds
        self._held = {}

    def source(self, xs):
        """
        Read C{xs} as a source: while its data is handled, it is
        L{current}. Forgotten when the stream ends.

        @rtype: L{Source}
        """
        inner = xs.dataReceived
        batch = self.batch
        xs.writeBatch = batch

        def handle(data):
            previous, self.current = self.current, source
            batch.open()
            try:
                inner(data)
            finally:
                # Written while this source is current: a sink that fills
                # holds it.
                try:
                    batch.close()
                finally:
                    self.current = previous

        source = Source(self, xs, handle)
        xs.dataReceived = source.dataReceived
        connectionLost = xs.connectionLost

        def flushThenLose(reason):
            source.flush()
            connectionLost(reason)

        xs.connectionLost = flushThenLose
        xs.addOnetimeObserver(STREAM_END_EVENT, lambda reason: self._sourceGone(source))
        return source

    def sink(self, xs, key=None, onFull=None, onRoom=None, holdOnSend=False):
        """
        Register a L{Sink} as the streaming producer of C{xs}'s transport,
        whose buffer may then hold L{highWater} bytes before it is full.
        Released and forgotten when the stream ends.

        @param key: The sink's key; C{xs} if L{None}.
        @param onFull: Called when the transport passes the mark.
        @param onRoom: Called when it has drained; it must call
            L{release} once what waited for the sink went (without it the
            sink releases its sources at once).
        @param holdOnSend: Whether each element sent while the sink is full
            holds the source being read (for sinks written to by others,
            such as a component the router writes to).
        @rtype: L{Sink}
        """
        key = xs if key is None else key
        xs.writeBatch = self.batch
        sink = Sink(self, key, xs, onFull, onRoom)
        transport = xs.transport
        if getattr(transport, "producer", None) is not None:
            # Someone else feeds this transport: it never says "full" to us.
            _log.debug("Flow: {xs} has a producer already", xs=xs)
            return sink
        transport.bufferSize = self.highWater
        transport.registerProducer(sink, True)
        _unregisterOnClose(transport)
        self.sinks[key] = sink
        if holdOnSend:
            send = xs.send

            def holdingSend(obj):
                send(obj)
                if sink.full:
                    self.hold(key)

            xs.send = holdingSend

        def gone(reason):
            if self.sinks.get(key) is sink:
                del self.sinks[key]
            self.release(key)

        xs.addOnetimeObserver(STREAM_END_EVENT, gone)
        return sink

    def requested(self):
        """
        A request for a pair went out while the L{current} source's data was
        handled: its next slice is L{setupSlice} bytes.
        """
        if self.current is not None:
            self.current.requested = True

    def isFull(self, key):
        """
        Whether the sink C{key} is full.
        """
        sink = self.sinks.get(key)
        return sink is not None and sink.full

    def hold(self, key):
        """
        What is being handled now goes to the sink C{key}, which has no
        room: pause the source it came from until the sink releases it.
        """
        source = self.current
        if source is None or key in source.holders:
            return
        sink = self.sinks.get(key)
        if sink is not None and sink.xs is source.xs:
            # Never stop reading a stream because what we write on it backs
            # up: if the peer did the same, neither would read again.
            return
        self._held.setdefault(key, set()).add(source)
        source.holders.add(key)
        if len(source.holders) == 1:
            self._counters["flow-paused"] += 1
            _log.debug("Flow: pausing {source} (for {sink})", source=source.xs, sink=key)
            source.pause()

    def release(self, key):
        """
        The sink C{key} has room again: resume the sources it held that no
        other sink holds.
        """
        for source in self._held.pop(key, ()):
            source.holders.discard(key)
            if not source.holders:
                self._counters["flow-resumed"] += 1
                source.resume()

    @property
    def pausedSources(self):
        """
        How many sources are paused now.
        """
        return len(set().union(*self._held.values())) if self._held else 0

    def _sourceGone(self, source):
        for key in source.holders:
            self._held.get(key, set()).discard(source)
        source.holders.clear()
