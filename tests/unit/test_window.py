"""
Tests for the request window of L{dna.core.authorization.StreamAuthorization}
and L{dna.legacy.authorization.LegacyAuthorization} (issue 16): at most a
window of our C{<db:result/>} requests is out on a stream, the rest wait in
order, and the window grows with grants and halves on overload refusals,
never on time-outs.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError

from dna.core.authorization import (
    DEFAULT_MAX_PENDING,
    DEFAULT_REQUEST_WINDOW,
    INITIAL_REQUEST_WINDOW,
    dialbackElement,
)
from dna.core.tables import Tables
from dna.error import AuthorizationRefused, ConnectionLost, RequestTimedOut
from dna.legacy.authorization import LegacyAuthorization
from dna.legacy.dialback import DialbackKeys
from dna.legacy.policy import FALLBACK_DIALBACK, FallbackPolicy
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import close, makeStream, receive
from tests.unit.test_dialback import AuthorizationTestMixin, result, results


def senders(count):
    return ["s%d.tld" % (i,) for i in range(count)]


class RequestWindowTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    Our requests on a stream we opened go out a window at a time.
    """

    initiating = True

    def requests(self):
        return [(sender, target) for sender, target, kind, _ in results(self.xs) if kind is None]

    def grant(self, sender, target="sender.tld"):
        receive(self.xs, result(target, sender, "valid"))

    def test_defaultsBelowPeerLimit(self):
        """
        The window starts small and never exceeds a limit below the
        C{max-pending} a DNA peer enforces.
        """
        self.assertLess(DEFAULT_REQUEST_WINDOW, DEFAULT_MAX_PENDING)
        self.assertLessEqual(INITIAL_REQUEST_WINDOW, DEFAULT_REQUEST_WINDOW)
        self.assertEqual(INITIAL_REQUEST_WINDOW, self.authorization.window)
        self.assertLessEqual(INITIAL_REQUEST_WINDOW, 32)

    def test_atMostWindowOut(self):
        """
        Of many requests at once, only a window's worth is sent; the others
        wait.
        """
        for sender in senders(100):
            self.authorization.request(sender, "sender.tld")
        self.assertEqual(
            [(s, "sender.tld") for s in senders(INITIAL_REQUEST_WINDOW)], self.requests()
        )
        self.assertEqual(100 - INITIAL_REQUEST_WINDOW, self.authorization.waitingRequests)

    def test_onRequest(self):
        """
        C{onRequest} is called once for each request as it goes out, not
        for those waiting for the window.
        """
        sent = []
        self.authorization.onRequest = lambda: sent.append(len(self.requests()))
        for sender in senders(INITIAL_REQUEST_WINDOW + 2):
            self.authorization.request(sender, "sender.tld")
        self.assertEqual(list(range(1, INITIAL_REQUEST_WINDOW + 1)), sent)
        # The grant frees a place and widens the window: both waiting go.
        self.grant("s0.tld")
        self.assertEqual(list(range(1, INITIAL_REQUEST_WINDOW + 3)), sent)

    def test_answersReleaseInOrder(self):
        """
        Each answer lets the oldest waiting request go; in the end every
        request went once, in the order asked, and never more than the
        window was out at a time.
        """
        names = senders(200)
        ds = [self.authorization.request(sender, "sender.tld") for sender in names]
        answered = 0
        while answered < len(names):
            sent = self.requests()
            self.assertLessEqual(len(sent) - answered, self.authorization.window)
            self.assertLessEqual(len(sent) - answered, DEFAULT_REQUEST_WINDOW)
            self.grant(sent[answered][0])
            answered += 1
        self.assertEqual([(s, "sender.tld") for s in names], self.requests())
        for d in ds:
            self.assertIsNone(self.successResultOf(d))

    def test_additiveIncrease(self):
        """
        After an overload refusal halved it, each grant widens the window
        by one, up to L{DEFAULT_REQUEST_WINDOW}.
        """
        names = senders(200)
        ds = [self.authorization.request(sender, "sender.tld") for sender in names]
        receive(self.xs, result("sender.tld", names[0], "invalid", "resource-constraint"))
        self.failureResultOf(ds[0], AuthorizationRefused)
        half = INITIAL_REQUEST_WINDOW // 2
        self.assertEqual(half, self.authorization.window)
        self.grant(names[1])
        self.assertEqual(half + 1, self.authorization.window)
        for sender in names[2:100]:
            self.grant(sender)
        self.assertEqual(DEFAULT_REQUEST_WINDOW, self.authorization.window)

    def test_growsFromInitial(self):
        """
        A new stream's window starts at L{INITIAL_REQUEST_WINDOW}, below
        L{DEFAULT_REQUEST_WINDOW}, and grows by one per grant up to it:
        each grant lets the next two waiting requests go until then.
        """
        self.assertLess(INITIAL_REQUEST_WINDOW, DEFAULT_REQUEST_WINDOW)
        names = senders(300)
        for sender in names:
            self.authorization.request(sender, "sender.tld")
        self.assertEqual(INITIAL_REQUEST_WINDOW, len(self.requests()))
        self.grant(names[0])
        self.assertEqual(INITIAL_REQUEST_WINDOW + 2, len(self.requests()))
        for sender in names[1:DEFAULT_REQUEST_WINDOW]:
            self.grant(sender)
        self.assertEqual(DEFAULT_REQUEST_WINDOW, self.authorization.window)
        answered = DEFAULT_REQUEST_WINDOW
        self.assertEqual(answered + DEFAULT_REQUEST_WINDOW, len(self.requests()))
        self.grant(names[answered])
        self.assertEqual(answered + 1 + DEFAULT_REQUEST_WINDOW, len(self.requests()))

    def test_overloadHalves(self):
        """
        A refusal saying the peer is overloaded halves the window; an
        ordinary refusal leaves it alone.
        """
        names = senders(50)
        ds = [self.authorization.request(sender, "sender.tld") for sender in names]
        receive(self.xs, result("sender.tld", names[0], "invalid", "not-authorized"))
        self.failureResultOf(ds[0], AuthorizationRefused)
        self.assertEqual(INITIAL_REQUEST_WINDOW, self.authorization.window)
        receive(self.xs, result("sender.tld", names[1], "invalid", "resource-constraint"))
        self.failureResultOf(ds[1], AuthorizationRefused)
        self.assertEqual(INITIAL_REQUEST_WINDOW // 2, self.authorization.window)
        for sender, d in zip(names[2:10], ds[2:10]):
            receive(self.xs, result("sender.tld", sender, "invalid", "remote-server-timeout"))
            self.failureResultOf(d, AuthorizationRefused)
        self.assertEqual(1, self.authorization.window)

    def test_timeoutDoesNotShrink(self):
        """
        Requests that time out fail and free their slots for the waiting
        ones, but the window stays as it was.
        """
        names = senders(3 * INITIAL_REQUEST_WINDOW)
        ds = [self.authorization.request(sender, "sender.tld") for sender in names]
        self.clock.advance(30)
        for d in ds[:INITIAL_REQUEST_WINDOW]:
            self.failureResultOf(d, RequestTimedOut)
        self.assertEqual(INITIAL_REQUEST_WINDOW, self.authorization.window)
        self.assertEqual(2 * INITIAL_REQUEST_WINDOW, len(self.requests()))
        # The waiting requests' time-outs started when they were sent.
        for d in ds[INITIAL_REQUEST_WINDOW:2 * INITIAL_REQUEST_WINDOW]:
            self.assertNoResult(d)

    def test_sharedWhileWaiting(self):
        """
        A second request for a pair that waits for the window shares it: one
        C{<db:result/>} goes, and both callers learn the answer.
        """
        names = senders(INITIAL_REQUEST_WINDOW + 1)
        for sender in names:
            self.authorization.request(sender, "sender.tld")
        last = names[-1]
        d1 = self.authorization.request(last, "sender.tld")
        self.grant(names[0])
        self.grant(last)
        self.successResultOf(d1)
        self.assertEqual(1, self.requests().count((last, "sender.tld")))

    def test_streamEndFailsWaiting(self):
        """
        When the stream ends, requests waiting for the window fail with
        L{ConnectionLost} and none is sent.
        """
        names = senders(INITIAL_REQUEST_WINDOW + 3)
        ds = [self.authorization.request(sender, "sender.tld") for sender in names]
        sent = len(self.requests())
        close(self.xs)
        for d in ds:
            self.failureResultOf(d, ConnectionLost)
        self.assertEqual(sent, len(self.requests()))
        self.assertEqual(0, self.authorization.waitingRequests)

    def test_configuredWindow(self):
        """
        C{requestWindow} caps the window.
        """
        xs = makeStream("s2")
        authorization = self.attach(xs, requestWindow=2)
        for sender in senders(5):
            authorization.request(sender, "sender.tld")
        self.assertEqual(2, authorization.window)
        self.assertEqual(2, len(results(xs)))


class LegacyWindowTests(SynchronousTestCase):
    """
    Keyed requests on a legacy stream we opened go out a window at a time
    too.
    """

    def test_window(self):
        """
        Of many piggy-backed requests, a window's worth goes; an answer
        (here a dialback error) lets the next go.
        """
        clock = Clock()
        xs = makeStream("s1", us="sender.tld", peer="target.tld")
        names = senders(20)
        policy = FallbackPolicy(FALLBACK_DIALBACK)
        authorization = LegacyAuthorization(
            xs, Tables(), frozenset(names), FakeDelegationChecker(), True,
            keys=DialbackKeys(b"secret"), verifier=None, policy=policy,
            domain="target.tld", mechanism="dialback", offersDialback=True,
            clock=clock, requestWindow=4,
        )
        ds = [authorization.request(sender, "target.tld") for sender in names]
        self.assertEqual(4, len(results(xs)))
        receive(xs, dialbackElement(
            "result", "target.tld", names[0], elementType="error",
            stanzaError=StanzaError("remote-connection-failed", type="cancel"),
        ))
        self.failureResultOf(ds[0], AuthorizationRefused)
        sent = [r[0] for r in results(xs) if r[2] is None]
        self.assertEqual(names[:5], sent)


class SentMemoryTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    The ids of the last stanzas sent on a stream are remembered, so that
    the peer's error replies to them are recognised.
    """

    initiating = True

    def test_lastRemembered(self):
        """
        Of more than twice L{SENT_MEMORY} stanzas, the newest L{SENT_MEMORY}
        are remembered and the oldest forgotten; a stanza without an id is
        not remembered.
        """
        from twisted.words.xish import domish

        from dna.core.authorization import SENT_MEMORY

        pair = ("target.tld", "sender.tld")
        self.authorization._revoked.add(pair)
        total = 2 * SENT_MEMORY + 10
        for n in range(total):
            stanza = domish.Element(("jabber:server", "message"))
            stanza["id"] = "m%d" % (n,)
            self.authorization.rememberSent(stanza, *pair)
        self.authorization.rememberSent(domish.Element(("jabber:server", "message")), *pair)
        self.assertEqual(
            [False, False, True, True],
            [self.authorization._isReply(*pair, "m%d" % (n,))
             for n in (0, SENT_MEMORY - 1, total - SENT_MEMORY, total - 1)])
        self.assertFalse(self.authorization._isReply(*pair, None))
