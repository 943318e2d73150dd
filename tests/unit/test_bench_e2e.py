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
