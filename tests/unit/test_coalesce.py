"""
Tests for L{dna.core.coalesce}.
"""

from twisted.internet import defer
from twisted.trial import unittest

from dna.core.coalesce import Coalescer


class CoalescerTests(unittest.TestCase):
    """
    L{Coalescer} shares one attempt per key among concurrent callers.
    """

    def setUp(self):
        self.coalescer = Coalescer()
        self.started = []

    def start(self, key):
        d = defer.Deferred()
        self.started.append((key, d))
        return d

    def test_sharesAttempt(self):
        """
        A second caller for a key in flight does not start another attempt and
        gets the same result in a Deferred of its own.
        """
        first = self.coalescer.wait("a", self.start, "a")
        second = self.coalescer.wait("a", self.start, "a")
        self.assertIsNot(first, second)
        self.assertEqual(1, len(self.started))
        self.assertIn("a", self.coalescer)
        self.started[0][1].callback("result")
        self.assertEqual("result", self.successResultOf(first))
        self.assertEqual("result", self.successResultOf(second))
        self.assertNotIn("a", self.coalescer)

    def test_keysApart(self):
        """
        Different keys get different attempts.
        """
        self.coalescer.wait("a", self.start, "a")
        self.coalescer.wait("b", self.start, "b")
        self.assertEqual(["a", "b"], [key for key, _ in self.started])
        self.assertEqual(["a", "b"], sorted(self.coalescer.keys()))
        self.assertEqual(2, len(self.coalescer))

    def test_failureReachesEveryWaiter(self):
        """
        A failed attempt fails every waiter, and a later call starts anew.
        """
        first = self.coalescer.wait("a", self.start, "a")
        second = self.coalescer.wait("a", self.start, "a")
        self.started[0][1].errback(ValueError("no"))
        self.failureResultOf(first, ValueError)
        self.failureResultOf(second, ValueError)
        self.coalescer.wait("a", self.start, "a")
        self.assertEqual(2, len(self.started))

    def test_callbacksDoNotLeak(self):
        """
        A callback one caller adds does not change what another gets.
        """
        first = self.coalescer.wait("a", self.start, "a")
        second = self.coalescer.wait("a", self.start, "a")
        first.addCallback(lambda r: r + "!")
        self.started[0][1].callback("r")
        self.assertEqual("r!", self.successResultOf(first))
        self.assertEqual("r", self.successResultOf(second))

    def test_cancelOneWaiter(self):
        """
        Cancelling one waiter leaves the attempt running for the others.
        """
        first = self.coalescer.wait("a", self.start, "a")
        second = self.coalescer.wait("a", self.start, "a")
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        attempt = self.started[0][1]
        self.assertFalse(attempt.called)
        attempt.callback("r")
        self.assertEqual("r", self.successResultOf(second))

    def test_cancelLastWaiter(self):
        """
        Cancelling the last waiter cancels the attempt and forgets the key.
        """
        cancelled = []
        attempt = defer.Deferred(cancelled.append)
        waiter = self.coalescer.wait("a", lambda: attempt)
        waiter.cancel()
        self.failureResultOf(waiter, defer.CancelledError)
        self.assertEqual([attempt], cancelled)
        self.assertNotIn("a", self.coalescer)

    def test_synchronousResult(self):
        """
        A start callable that returns a plain value or raises is taken as an
        attempt that already ended.
        """
        self.assertEqual(3, self.successResultOf(self.coalescer.wait("a", lambda: 3)))

        def boom():
            raise KeyError("x")

        self.failureResultOf(self.coalescer.wait("a", boom), KeyError)
        self.assertEqual(0, len(self.coalescer))
