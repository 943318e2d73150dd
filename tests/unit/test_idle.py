"""
Tests for L{dna.app.service.IdleWatch}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dna.app.service import IdleWatch
from tests.unit.streams import close, makeStream, receive, stanza


class IdleWatchTests(SynchronousTestCase):
    """
    Idle connections close after the configured time; traffic either way
    keeps them open.
    """

    def setUp(self):
        self.clock = Clock()
        self.xs = makeStream("s1")
        IdleWatch(self.xs, 60, self.clock)

    def test_closesWhenIdle(self):
        """
        Without traffic the stream is closed (footer, then the connection)
        after the timeout.
        """
        self.clock.advance(59)
        self.assertFalse(self.xs.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.xs.transport.disconnecting)
        self.assertTrue(self.xs.transport.value().endswith(b"</stream:stream>"))

    def test_trafficInKeepsOpen(self):
        """
        Received data restarts the clock.
        """
        self.clock.advance(50)
        receive(self.xs, stanza())
        self.clock.advance(50)
        self.assertFalse(self.xs.transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(self.xs.transport.disconnecting)

    def test_trafficOutKeepsOpen(self):
        """
        Sent data restarts the clock too.
        """
        self.clock.advance(50)
        self.xs.send(stanza())
        self.clock.advance(59)
        self.assertFalse(self.xs.transport.disconnecting)

    def test_stopsWithStream(self):
        """
        When the stream ends, its timer goes.
        """
        close(self.xs)
        self.assertEqual([], self.clock.getDelayedCalls())
