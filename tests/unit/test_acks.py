"""
Tests for L{dna.channel.acks}: acknowledgements so that a broken stream loses no
stanza.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StreamError
from twisted.words.xish import domish

from dna.channel.acks import DEFAULT_ACK_TIMEOUT, StreamAcks, peerOffersAcks
from dna.namespaces import NS_SM
from tests.unit.streams import close, makeStream, receive, stanza


def smElements(xs, name):
    return [e for e in xs.output if isinstance(e, domish.Element) and (e.uri, e.name) == (NS_SM, name)]


class StreamAcksTests(SynchronousTestCase):
    """
    Tests for L{StreamAcks}.
    """

    def setUp(self):
        self.clock = Clock()
        self.xs = makeStream("s1")
        self.handled = 0
        self.returned = []
        self.acks = StreamAcks.initiate(
            self.xs, lambda: self.handled, self.returned.extend, self.clock, every=3, delay=0.1
        )

    def test_enableSent(self):
        """
        The Originating Server enables acknowledgements at once.
        """
        self.assertEqual(1, len(smElements(self.xs, "enable")))
        self.assertTrue(self.acks.enabled)

    def test_requestAfterEvery(self):
        """
        An acknowledgement is requested after C{every} unacknowledged stanzas.
        """
        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)))
        self.assertEqual(1, len(smElements(self.xs, "r")))
        # The delay's timer is gone; the request's answer time-out runs.
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(DEFAULT_ACK_TIMEOUT, call.getTime())

    def test_unansweredRequestCloses(self):
        """
        A peer that answers no request for C{ackTimeout} seconds while
        stanzas are unacknowledged is taken as gone (a black hole), however
        few they are: the stream is closed with C{<connection-timeout/>} and
        what it kept goes again. An answer that acknowledges something
        stops the clock.
        """
        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)))
        self.clock.advance(DEFAULT_ACK_TIMEOUT - 1)
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='1'/>")
        self.clock.advance(1)
        self.assertIsNone(self.xs.streamError)
        self.acks.sent(stanza(stanzaID="3"))
        self.clock.advance(0.1)
        self.clock.advance(DEFAULT_ACK_TIMEOUT)
        self.assertEqual("connection-timeout", self.xs.streamError)

    def test_silentAfterPartialAnswer(self):
        """
        A peer that acknowledges part of what is kept, then goes silent (a
        black hole starting in the middle of a burst), is noticed too: after
        C{ackTimeout} without a word it is asked again (the answer may have
        left before the rest arrived), and after another the stream closes.
        """
        for i in range(6):
            self.acks.sent(stanza(stanzaID=str(i)))
        self.assertEqual(2, len(smElements(self.xs, "r")))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='3'/>")
        self.assertEqual(3, len(self.acks.unacked))
        self.clock.advance(DEFAULT_ACK_TIMEOUT)
        self.assertIsNone(self.xs.streamError)
        self.assertEqual(3, len(smElements(self.xs, "r")))
        self.clock.advance(DEFAULT_ACK_TIMEOUT - 1)
        self.assertIsNone(self.xs.streamError)
        self.clock.advance(1)
        self.assertEqual("connection-timeout", self.xs.streamError)

    def test_partialAnswerThenRest(self):
        """
        A peer that answers only requests, and answered one before the rest
        arrived, is asked again and keeps its stream by answering.
        """
        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='1'/>")
        self.clock.advance(DEFAULT_ACK_TIMEOUT)
        self.assertEqual(2, len(smElements(self.xs, "r")))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='3'/>")
        self.clock.advance(10 * DEFAULT_ACK_TIMEOUT)
        self.assertIsNone(self.xs.streamError)
        self.assertEqual([], list(self.acks.unacked))

    def test_answerOfAllStopsTheClock(self):
        """
        Once everything kept is acknowledged, no time-out runs.
        """
        for i in range(3):
            self.acks.sent(stanza(stanzaID=str(i)))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='3'/>")
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_oneRequestPerEvery(self):
        """
        A burst asks once per C{every} stanzas, not once per stanza while
        answers are outstanding.
        """
        for i in range(9):
            self.acks.sent(stanza(stanzaID=str(i)))
        self.assertEqual(3, len(smElements(self.xs, "r")))

    def test_requestAfterDelay(self):
        """
        A single unacknowledged stanza gets a request after C{delay}.
        """
        self.acks.sent(stanza())
        self.assertEqual(0, len(smElements(self.xs, "r")))
        self.clock.advance(0.1)
        self.assertEqual(1, len(smElements(self.xs, "r")))

    def test_answerDropsAcknowledged(self):
        """
        C{<a h='N'/>} drops the N oldest stanzas kept.
        """
        for i in range(5):
            self.acks.sent(stanza(stanzaID=str(i)))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='2'/>")
        self.assertEqual(["2", "3", "4"], [s["id"] for s in self.acks.unacked])
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='5'/>")
        self.assertEqual([], list(self.acks.unacked))

    def test_answerTooHigh(self):
        """
        Acknowledging more than was sent is a stream error.
        """
        self.acks.sent(stanza())
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='2'/>")
        self.assertEqual(["undefined-condition"], [e.condition for e in self.xs.streamErrors])

    def test_answerMalformed(self):
        """
        A non-numeric count is a C{<bad-format/>} stream error.
        """
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='lots'/>")
        self.assertEqual(["bad-format"], [e.condition for e in self.xs.streamErrors])

    def test_requestAnswered(self):
        """
        C{<r/>} is answered with the count of handled stanzas since enabling.
        """
        self.handled = 7
        receive(self.xs, "<r xmlns='urn:xmpp:sm:3'/>")
        [answer] = smElements(self.xs, "a")
        self.assertEqual("7", answer["h"])

    def test_unackedReturnedAtEnd(self):
        """
        When the stream ends, stanzas never acknowledged are handed back, in
        order, and timers are cancelled.
        """
        for i in range(2):
            self.acks.sent(stanza(stanzaID=str(i)))
        receive(self.xs, "<a xmlns='urn:xmpp:sm:3' h='1'/>")
        close(self.xs)
        self.assertEqual(["1"], [s["id"] for s in self.returned])
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_closingAnswers(self):
        """
        Our closing tag is preceded by an unrequested C{<a/>} with what we
        handled; after it, nothing the peer sends is handled or answered,
        so that it sends again exactly what we did not count.
        """
        seen = []
        self.xs.addObserver("/message", seen.append)
        receive(self.xs, stanza(stanzaID="before"))
        self.handled = 1
        self.xs.sendFooter()
        self.xs.sendFooter()
        [answer] = smElements(self.xs, "a")
        self.assertEqual("1", answer["h"])
        written = self.xs.transport.value()
        self.assertEqual(1, written.count(b"</stream:stream>"))
        self.assertTrue(written.endswith(b"h='1'/></stream:stream>")
                        or written.endswith(b'h="1"/></stream:stream>'), written)
        receive(self.xs, stanza(stanzaID="after"))
        receive(self.xs, "<r xmlns='urn:xmpp:sm:3'/>")
        self.assertEqual(["before"], [s["id"] for s in seen])
        self.assertEqual(1, len(smElements(self.xs, "a")))

    def test_noAnswerAfterStreamError(self):
        """
        A stream closed with a stream error gets no C{<a/>} before its
        closing tag.
        """
        self.assertFalse(self.xs.headerSent)
        self.xs.sendHeader()
        self.xs.sendStreamError(StreamError("policy-violation"))
        self.assertEqual([], smElements(self.xs, "a"))
        self.assertTrue(self.xs.transport.value().endswith(b"</stream:stream>"))


class AcceptTests(SynchronousTestCase):
    """
    The Receiving Server's side.
    """

    def test_countsFromEnable(self):
        """
        The Receiving Server answers C{<enabled/>} and counts only what was
        handled after C{<enable/>}; nothing is kept before it is enabled.
        """
        xs = makeStream("s1")
        handled = [4]
        acks = StreamAcks.accept(xs, lambda: handled[0], lambda s: None, Clock())
        acks.sent(stanza())
        self.assertEqual(0, len(acks.unacked))
        receive(xs, "<enable xmlns='urn:xmpp:sm:3'/>")
        self.assertEqual(1, len(smElements(xs, "enabled")))
        handled[0] = 6
        self.assertEqual(2, acks.handled)

    def test_peerOffersAcks(self):
        """
        L{peerOffersAcks} looks for the C{<sm/>} feature.
        """
        xs = makeStream("s1")
        self.assertFalse(peerOffersAcks(xs))
        xs.features = {(NS_SM, "sm"): None}
        self.assertTrue(peerOffersAcks(xs))
