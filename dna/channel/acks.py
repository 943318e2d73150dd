"""
Stanza acknowledgements on S2S streams (XEP-0198 Stream Management, without
resumption), so that a connection that dies loses no stanza.

TCP says nothing about what the peer has processed: stanzas written just
before a connection breaks may never have been read. Once both sides have
enabled acknowledgements, each counts the stanzas it has handled and answers
C{<r/>} with C{<a h='N'/>}; the sender keeps what is not yet acknowledged and,
when the stream ends, hands it back to be sent again over another stream
(draft-ietf-xmpp-dna-01 section 4: when a connection closes, both servers
remove it from the tables; the stanzas still go), at the front of their
pair's queue. With acknowledgements alone, delivery is at least once: a
stanza handled just before the break, whose acknowledgement was lost, is
sent twice.

Exactly once, in order (issue 14; the whole protocol and its limits are in
C{docs/delivery.rst}). A Receiving Server that also offers
C{<delivery xmlns='urn:xmpp:dna:delivery:0'/>} inside C{<sm/>} counts, per
(sender, target, epoch), the stanzas it handled, on one stream at a time,
and keeps the counts after the stream ends (L{dna.core.tables.DeliveryLedger}).
The Originating Server's C{<db:result/>} carries its random epoch of the
pair (C{dnaq:epoch}), the grant the count (C{dnaq:count}): the Originating
Server drops the stanzas it kept that the count covers, and sends the rest
before anything newer of the pair (L{dna.app.federation.Federation}). No
byte is added to any stanza. Once a pair is counted on a stream, the
Receiving Server also sends C{<a/>} unrequested after each read in which it
handled stanzas of such pairs (L{StreamAcks.answerEagerly}), so that little
is left unacknowledged if it dies. Processes that die lose what they held: the
guarantee holds while both run.

The Receiving Server offers C{<sm xmlns='urn:xmpp:sm:3'/>}; the Originating
Server sends C{<enable/>} and starts counting at once; the Receiving Server
answers C{<enabled/>} and counts from there.

What is kept is bounded, in stanzas and in bytes (issue 9, "Connections and
buffers": a peer that never answers must not make us keep everything we
send). At the bound the stream is L{StreamAcks.full}: the sender stops
sending on it (L{dna.app.federation.Federation} keeps the stanzas waiting
for their pairs), an acknowledgement is requested at once, and the peer has
C{ackTimeout} seconds to acknowledge something; when it does, the sender is
told there is room again, and when it does not, the stream is closed with
C{<connection-timeout/>}, so that what it kept goes the way of every stream
that ends unacknowledged: sent again on another stream, or bounced. Any
C{<r/>} sent while stanzas are kept has the same C{ackTimeout}, full or not:
a black hole under light traffic never fills the stream, and must not keep
its stanzas until the peer restarts (which would deliver them again). After
an answer that leaves stanzas kept, C{ackTimeout} of silence brings one more
C{<r/>}, and that one's C{ackTimeout} the close.
"""

import collections

from twisted.logger import Logger, LogLevel
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from twisted.words.xish import domish

from dna.channel.stream import STREAM_CLOSING_EVENT
from dna.core.logthrottle import report
from dna.namespaces import NS_DELIVERY, NS_SM

_log = Logger()

#: Ask for an acknowledgement after this many unacknowledged stanzas...
DEFAULT_ACK_EVERY = 64
#: ...or this many seconds after the first one, whichever comes first.
DEFAULT_ACK_DELAY = 0.05

#: Most stanzas kept unacknowledged on one stream before it stops sending...
DEFAULT_MAX_UNACKED = 5000
#: ...or most bytes of them.
DEFAULT_MAX_UNACKED_BYTES = 8 * 1024 * 1024
#: Seconds a peer has, once the bound is reached, to acknowledge something.
DEFAULT_ACK_TIMEOUT = 30.0
#: Seconds a stream closed for want of acknowledgements has to finish
#: closing before its connection is aborted: over TLS the close waits for the
#: peer's close_notify, which a black hole never sends, and what the stream
#: kept is handed back only once the connection is gone.
CLOSE_GRACE = 3.0

_MODULUS = 2 ** 32

ENABLE = "/enable[@xmlns='%s']" % (NS_SM,)
REQUEST = "/r[@xmlns='%s']" % (NS_SM,)
ANSWER = "/a[@xmlns='%s']" % (NS_SM,)

#: The one request element, sent as often as needed (never changed).
_REQUEST_ELEMENT = domish.Element((NS_SM, "r"))


def smFeature(delivery=False):
    """
    The stream feature a Receiving Server offers.

    @param delivery: Whether to offer the resumption of pairs' delivery in
        it (L{dna.channel.features.deliveryFeature}).
    """
    sm = domish.Element((NS_SM, "sm"))
    if delivery:
        sm.addChild(domish.Element((NS_DELIVERY, "delivery")))
    return sm


def peerOffersAcks(xs):
    """
    Whether the Receiving Server offered acknowledgements on C{xs}.
    """
    return (NS_SM, "sm") in xs.features


class StreamAcks:
    """
    Both directions of acknowledgement on one stream.

    @ivar unacked: Stanzas sent and not yet acknowledged, oldest first.
    @ivar unackedBytes: Their size in bytes, as sent.
    """

    def __init__(self, xs, handledCount, onUnacked, clock, every=DEFAULT_ACK_EVERY,
                 delay=DEFAULT_ACK_DELAY, maxUnacked=DEFAULT_MAX_UNACKED,
                 maxUnackedBytes=DEFAULT_MAX_UNACKED_BYTES, ackTimeout=DEFAULT_ACK_TIMEOUT,
                 onRoom=None, incidents=None):
        """
        @param xs: The authenticated stream.
        @param handledCount: Returns how many stanzas the stream has received
            and handled so far, delivered or rejected: C{h} counts from the
            moment acknowledgements are enabled.
        @param onUnacked: Called once, when the stream ends, with the list of
            stanzas the peer never acknowledged.
        @param clock: An L{IReactorTime}.
        @param maxUnacked: Stanzas kept before the stream is L{full}.
        @param maxUnackedBytes: Bytes kept before the stream is L{full}.
        @param ackTimeout: Seconds a full stream waits for an acknowledgement
            before it is closed.
        @param onRoom: Called with no arguments when a full stream has room
            again.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} that counts
            and logs C{"acks-full"} and C{"ack-timeout"}, or L{None}.
        """
        self._xs = xs
        self._handledCount = handledCount
        self._base = 0
        self._onUnacked = onUnacked
        self._clock = clock
        self._every = every
        self._delay = delay
        self._maxUnacked = maxUnacked
        self._maxUnackedBytes = maxUnackedBytes
        self._ackTimeout = ackTimeout
        self._onRoom = onRoom
        self._incidents = incidents
        self.unacked = collections.deque()
        self._sizes = collections.deque()
        self.unackedBytes = 0
        self._acked = 0
        self._sinceRequest = 0
        self._timer = None
        self._deadline = None
        self._abort = None
        # the time-out of an unanswered request (L{_request})
        self._silence = None
        # whether an <r/> went out since the last answer
        self._askedSinceAnswer = False
        self._enabled = False
        self._lastAnswered = None
        self._progress = None
        self._lastProgress = None
        xs.addObserver(REQUEST, self._onRequest)
        xs.addObserver(ANSWER, self._onAnswer)
        xs.addOnetimeObserver(STREAM_CLOSING_EVENT, self._onClosing)
        xs.addOnetimeObserver(STREAM_END_EVENT, self._onEnd)

    @classmethod
    def initiate(cls, xs, handledCount, onUnacked, clock, **kw):
        """
        Originating Server: enable acknowledgements now.
        """
        acks = cls(xs, handledCount, onUnacked, clock, **kw)
        acks._enable()
        xs.send(domish.Element((NS_SM, "enable")))
        return acks

    @classmethod
    def accept(cls, xs, handledCount, onUnacked, clock, **kw):
        """
        Receiving Server: enable acknowledgements when the peer asks.
        """
        acks = cls(xs, handledCount, onUnacked, clock, **kw)

        def onEnable(element):
            element.handled = True
            acks._enable()
            xs.send(domish.Element((NS_SM, "enabled")))

        xs.addOnetimeObserver(ENABLE, onEnable)
        return acks

    def _enable(self):
        self._enabled = True
        self._base = self._handledCount()
        self._lastAnswered = 0

    def answerEagerly(self, progress):
        """
        From now on, send an unrequested C{<a/>} after each read in which
        C{progress()} changed: once the peer resumes a pair's delivery on
        this stream, C{progress} counts the stanzas of such pairs handled,
        so that a Receiving Server that dies leaves as few of them
        unacknowledged as it can.

        @param progress: A callable returning a number.
        """
        self._progress = progress
        self._lastProgress = progress()
        self._xs.afterRead = self._afterRead

    @property
    def eager(self):
        """
        Whether L{answerEagerly} was called.
        """
        return self._xs.afterRead is not None

    def _afterRead(self):
        progress = self._progress()
        if progress != self._lastProgress:
            self._lastProgress = progress
            if self._enabled and self.handled != self._lastAnswered and self._xs.transport is not None:
                self._answer()

    @property
    def enabled(self):
        """
        Whether acknowledgements are on.
        """
        return self._enabled

    @property
    def handled(self):
        """
        C{h} of XEP-0198: stanzas handled since acknowledgements were enabled.
        """
        return self._handledCount() - self._base if self._enabled else 0

    @property
    def full(self):
        """
        Whether the stream keeps as much as it may: nothing more should be
        sent on it until the peer acknowledges some.
        """
        return self._enabled and (
            len(self.unacked) >= self._maxUnacked
            or self.unackedBytes >= self._maxUnackedBytes
        )

    def sent(self, stanza, size=0):
        """
        Keep a stanza just sent until it is acknowledged.

        @param size: Its size in bytes, as sent.
        """
        if not self._enabled:
            return
        self.unacked.append(stanza)
        self._sizes.append(size)
        self.unackedBytes += size
        self._sinceRequest += 1
        if self._deadline is None and self.full:
            self._report(
                "acks-full",
                "Stream {streamID}: {count} stanzas ({size} bytes) unacknowledged: "
                "pausing it, and asking for an acknowledgement",
                count=len(self.unacked),
                size=self.unackedBytes,
            )
            self._deadline = self._clock.callLater(self._ackTimeout, self._timedOut)
            self._request()
        elif self._sinceRequest >= self._every:
            # One request per `every` stanzas, however many are unanswered:
            # during a burst the answers cannot come back in time.
            self._request()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._delay, self._request)

    def _request(self):
        self._sinceRequest = 0
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        # Nothing may follow our closing tag (a request would be junk after
        # the document to the peer, which then refuses the whole stream).
        if self._xs.transport is not None and not getattr(self._xs, "footerSent", False):
            self._xs.send(_REQUEST_ELEMENT)
            self._askedSinceAnswer = True
            if self.unacked and self._silence is None:
                # A peer that answers nothing for ackTimeout while we keep
                # stanzas is gone (a black hole), full or not.
                self._silence = self._clock.callLater(self._ackTimeout, self._silent)

    def _onRequest(self, element):
        element.handled = True
        self._answer()

    def _answer(self):
        """
        Tell the peer how many stanzas we handled: C{<a h='N'/>}.
        """
        answer = domish.Element((NS_SM, "a"))
        self._lastAnswered = self.handled
        answer["h"] = str(self._lastAnswered % _MODULUS)
        self._xs.send(answer)

    def _onClosing(self, xs):
        """
        We are about to close the stream, and will handle nothing the peer
        sends after: tell it what we handled, so that it sends again exactly
        the rest.
        """
        if self._enabled and xs.transport is not None:
            self._answer()

    def _onAnswer(self, element):
        element.handled = True
        try:
            h = int(element.getAttribute("h"))
        except (TypeError, ValueError):
            self._xs.sendStreamError(error.StreamError("bad-format"))
            return
        newly = (h - self._acked) % _MODULUS
        if newly > len(self.unacked):
            _log.info(
                "Stream {streamID}: peer acknowledged {h}, more than we sent",
                streamID=self._xs.sid,
                h=h,
            )
            self._xs.sendStreamError(
                error.StreamError("undefined-condition", text="handled-count-too-high")
            )
            return
        if newly == len(self.unacked):
            self.unacked.clear()
            self._sizes.clear()
            self.unackedBytes = 0
        elif newly:
            dropStanza, dropSize = self.unacked.popleft, self._sizes.popleft
            dropped = 0
            for _ in range(newly):
                dropStanza()
                dropped += dropSize()
            self.unackedBytes -= dropped
        self._acked = h
        self._askedSinceAnswer = False
        if newly:
            self._stopSilence()
            if self.unacked:
                # Progress, but stanzas are still kept: if the peer says
                # nothing more for ackTimeout, ask once more (it may have
                # answered before the rest arrived, and a plain XEP-0198
                # peer answers only requests), then give up after another.
                self._silence = self._clock.callLater(self._ackTimeout, self._silent)
        if newly and self._deadline is not None:
            self._stopDeadline()
            if self.full:
                # Progress, but still no room: the peer has another while.
                self._deadline = self._clock.callLater(self._ackTimeout, self._timedOut)
                self._request()
            elif self._onRoom is not None:
                self._onRoom()

    def _silent(self):
        """
        Nothing acknowledged for ackTimeout while stanzas are kept: closed
        if a request went unanswered all that time, else asked once more.
        """
        self._silence = None
        if self._askedSinceAnswer or self._xs.transport is None:
            self._timedOut()
            return
        self._request()
        if self._silence is None and self.unacked:
            self._silence = self._clock.callLater(self._ackTimeout, self._silent)

    def _stopSilence(self):
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        self._silence = None

    def _timedOut(self):
        self._stopDeadline()
        self._stopSilence()
        self._report(
            "ack-timeout",
            "Stream {streamID}: nothing acknowledged in {timeout:.0f} s with "
            "{count} stanzas kept: closing it",
            timeout=self._ackTimeout,
            count=len(self.unacked),
            level=LogLevel.warn,
        )
        self._xs.sendStreamError(
            error.StreamError("connection-timeout", text="no acknowledgement")
        )
        transport = self._xs.transport
        if transport is not None and getattr(transport, "connected", True):
            self._abort = self._clock.callLater(CLOSE_GRACE, transport.abortConnection)

    def _stopDeadline(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _report(self, name, message, level=LogLevel.info, **fields):
        report(self._incidents, name, _log, message, level=level,
               streamID=self._xs.sid, **fields)

    def _onEnd(self, reason):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        self._stopSilence()
        self._stopDeadline()
        self._xs.removeObserver(REQUEST, self._onRequest)
        self._xs.removeObserver(ANSWER, self._onAnswer)
        self._xs.removeObserver(STREAM_CLOSING_EVENT, self._onClosing)
        self._xs.afterRead = None
        unacked, self.unacked = list(self.unacked), collections.deque()
        self._sizes.clear()
        self.unackedBytes = 0
        if unacked:
            _log.info(
                "Stream {streamID} ended with {count} unacknowledged stanzas: sending again",
                event="acks-resend",
                streamID=self._xs.sid,
                count=len(unacked),
            )
        self._onUnacked(unacked)
