"""
Flow control end to end (issue 16), with two real C{twistd dna} processes,
real DNSSEC-signed DNS and XEP-0114 components at both ends
(L{tests.integration.flowpair}): a thousand new pairs at once are set up on
one connection without tripping the peer's pending-request limit, and a
receiving component that stops reading stops the sending component, with
the servers' memory bounded, and nothing lost or reordered.
"""

import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.integration.flowpair import (
    FlowPair,
    Inbox,
    connectComponent,
    connectComponents,
    disconnectComponents,
    matrix,
    message,
    rss,
)

#: The marks of both servers in the back-pressure test.
HIGH_WATER = 64 * 1024


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class FlowTests(unittest.TestCase):
    """
    Provider A's component sends to provider B's components.
    """

    timeout = 180

    def setUp(self):
        self.pair = FlowPair(self.mktemp(), limits=f"high-water = {HIGH_WATER}\n")
        self.addCleanup(self.pair.stop)
        self.pair.start()

    @defer.inlineCallbacks
    def attach(self, targets):
        inbox = Inbox()
        receivers = yield connectComponents(self.pair.b.componentPort, targets, inbox)
        self.addCleanup(disconnectComponents, receivers)
        sender = yield connectComponent(self.pair.a.componentPort, self.pair.senders[0])
        self.addCleanup(disconnectComponents, [sender])
        return sender[0], receivers, inbox

    @defer.inlineCallbacks
    def test_thousandPairsOneConnection(self):
        """
        A component sending to 1,000 new domain pairs at once gets every
        message through over exactly one S2S connection: A keeps its
        requests within B's limit, so B never closes the stream.
        """
        xs, _, inbox = yield self.attach(self.pair.targets)
        stanzas = matrix(self.pair.senders, self.pair.targets)
        self.assertEqual(1000, len(stanzas))
        xs.transport.write("".join(stanzas).encode("utf-8"))
        yield inbox.waitFor(1000, timeout=90)
        self.assertEqual(sorted("m%d" % (i,) for i in range(1000)), sorted(inbox.ids))
        self.assertEqual(1, self.pair.opened())
        self.assertEqual(1, self.pair.connections())
        self.assertEqual([], self.pair.streamErrors())

    @defer.inlineCallbacks
    def test_stoppedReaderPausesSender(self):
        """
        While B's component reads nothing, A stops reading the sending
        component (whose writes back up), both servers' memory stays within
        a few marks, and once the reader resumes every message arrives
        once, in order.
        """
        target = self.pair.targets[0]
        xs, [(reader, _, _)], inbox = yield self.attach([target])
        sender = self.pair.senders[0]
        # Set up the pair first.
        xs.send(message(sender, target, "-1"))
        yield inbox.waitFor(1, timeout=30)
        yield sleep(0.5)
        before = {p.pid: rss(p.pid) for p in (self.pair.a, self.pair.b)}
        reader.transport.pauseProducing()
        count = 40000
        payload = "".join(message(sender, target, n, padding=1000) for n in range(count))
        xs.transport.write(payload.encode("utf-8"))
        # Let everything that can move, move.
        yield sleep(5)
        self.assertEqual(1, len(inbox.ids))
        backedUp = len(xs.transport.dataBuffer) - xs.transport.offset + xs.transport._tempDataLen
        self.assertGreater(backedUp, len(payload) // 2, "the sending component was not paused")
        growth = {pid: rss(pid) - value for pid, value in before.items()}
        for pid, grown in growth.items():
            self.assertLess(grown, 20 * 1024 * 1024, f"RSS of {pid} grew by {grown} bytes")
        reader.transport.resumeProducing()
        start = time.monotonic()
        yield inbox.waitFor(count + 1, timeout=120)
        self.assertEqual(["m%d" % (n,) for n in range(count)], inbox.ids[1:])
        self.assertLess(time.monotonic() - start, 120)
        self.assertEqual(1, self.pair.opened())
