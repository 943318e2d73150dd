"""
Tests for the lean message counter of the end-to-end bench
(C{bench/e2e.py}): what it counts must be what arrives.
"""

from twisted.trial.unittest import SynchronousTestCase


class _Stream:
    """
    Stands for an authenticated component stream: L{MessageCounter}
    takes over its C{dataReceived}.
    """


class MessageCounterTests(SynchronousTestCase):
    """
    L{bench.e2e.MessageCounter}.
    """

    def setUp(self):
        from bench.e2e import Inbox, MessageCounter

        self.inbox = Inbox()
        self.reached = []
        reached = self.inbox.reached
        self.inbox.reached = lambda count: (self.reached.append(count), reached(count))
        self.xs = _Stream()
        MessageCounter(self.xs, self.inbox)

    def test_topLevelMessages(self):
        """
        Each top-level C{<message/>} counts once, whole or split across
        reads; other stanzas and a message nested in a message do not; the
        inbox hears once per read that brought messages.
        """
        data = (b"<message to='a'><body>1</body></message><iq type='get'/>"
                b"<message to='b'><forwarded><message to='c'/></forwarded></message>"
                b"<message/>")
        self.xs.dataReceived(data[:20])
        self.assertEqual(0, self.inbox.count)
        self.xs.dataReceived(data[20:])
        self.assertEqual(3, self.inbox.count)
        self.assertEqual([3], self.reached)
        self.xs.dataReceived(b"<presence/><message to='d'/>")
        self.assertEqual([3, 4], self.reached)

    def test_notWellFormed(self):
        """
        What is not well-formed XML raises: the stream stops counting.
        """
        from xml.parsers import expat

        self.assertRaises(expat.ExpatError, self.xs.dataReceived, b"<message></iq>")


class _Transport:
    """
    Records what L{bench.e2e.sendAll} writes, and how many were in flight
    after each write.
    """

    def __init__(self, inbox, base):
        self.inbox = inbox
        self.base = base
        self.sent = 0
        self.inFlight = []

    def write(self, data):
        self.sent += data.count(b"<m/>")
        self.inFlight.append(self.base + self.sent - self.inbox.count)


class SendAllTests(SynchronousTestCase):
    """
    L{bench.e2e.sendAll}: a sliding window.
    """

    def setUp(self):
        from bench.e2e import Inbox

        self.inbox = Inbox()
        self.inbox.reached(7)
        self.xs = _Stream()
        self.xs.transport = _Transport(self.inbox, 7)

    def send(self, count, window):
        from bench.e2e import sendAll

        return sendAll(self.xs, ["<m/>"] * count, self.inbox, 7, window=window)

    def test_toppedUp(self):
        """
        The window fills at once; then each time a chunk's worth arrives,
        a chunk goes, and never more than the window is in flight.
        """
        d = self.send(450, 200)
        self.assertEqual([100, 200], self.xs.transport.inFlight)
        self.inbox.reached(7 + 99)
        self.assertEqual(200, self.xs.transport.sent)
        self.inbox.reached(7 + 100)
        self.assertEqual([100, 200, 200], self.xs.transport.inFlight)
        # 50 in flight: a chunk, then 150 are.
        self.inbox.reached(7 + 250)
        self.assertEqual(400, self.xs.transport.sent)
        self.assertEqual([100, 200, 200, 150], self.xs.transport.inFlight)
        self.inbox.reached(7 + 350)
        self.assertEqual(450, self.xs.transport.sent)
        self.assertLessEqual(max(self.xs.transport.inFlight), 200)
        self.successResultOf(d)

    def test_smallWindow(self):
        """
        A window under two chunks is topped up by half of it.
        """
        d = self.send(90, 60)
        self.assertEqual([30, 60], self.xs.transport.inFlight)
        self.inbox.reached(7 + 29)
        self.assertEqual(60, self.xs.transport.sent)
        self.inbox.reached(7 + 30)
        self.assertEqual(90, self.xs.transport.sent)
        self.successResultOf(d)


class ComponentsReceiverTests(SynchronousTestCase):
    """
    L{bench.e2e.ComponentsReceiver} reads the receiving process's lines.
    """

    def test_lines(self):
        """
        C{ready} fires the start; each count, whole or split across reads,
        reaches the inbox.
        """
        from twisted.internet import defer

        from bench.e2e import ComponentsReceiver, Inbox

        inbox = Inbox()
        receiver = ComponentsReceiver(inbox)
        receiver._ready = ready = defer.Deferred()
        receiver.outReceived(b"rea")
        self.assertNoResult(ready)
        receiver.outReceived(b"dy\n12")
        self.successResultOf(ready)
        self.assertEqual(0, inbox.count)
        receiver.outReceived(b"0\n130\n14")
        self.assertEqual(130, inbox.count)

    def test_endedFailsWaiters(self):
        """
        A process that ends on its own fails what waits for its counts with
        L{bench.e2e.Lost}, saying so; one we stopped does not.
        """
        from twisted.internet import defer
        from twisted.python.failure import Failure

        from bench.e2e import ComponentsReceiver, Inbox, Lost

        inbox = Inbox()
        receiver = ComponentsReceiver(inbox)
        receiver._ready = defer.succeed(None)
        d = defer.Deferred()
        inbox._waiters.append((10, d))
        receiver.processEnded(Failure(RuntimeError("gone")))
        self.assertIn("process ended", str(self.failureResultOf(d, Lost).value))
        stopped = ComponentsReceiver(inbox)
        stopped._ready = defer.succeed(None)
        stopped._stopping = True
        later = defer.Deferred()
        inbox._waiters.append((10, later))
        stopped.processEnded(Failure(RuntimeError("killed")))
        self.assertNoResult(later)
