"""
Exactly-once, in-order delivery per domain pair across broken connections
(issue 14, C{docs/delivery.rst}), end to end: two real C{twistd dna}
processes over real DNSSEC-signed DNS (L{tests.integration.flowpair}), with
a TCP proxy between them (L{dna.testing.proxy}) that cuts the connection
mid-flow, with an RST or silently, while components at both ends count
every message by its sequence number.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from dna.testing.proxy import PASS, ProxySession, StrippingProxy
from tests.integration.flowpair import (
    FlowPair,
    Inbox,
    connectComponent,
    connectComponents,
    disconnectComponents,
)
from tests.integration.interop import S2S_PORT, InteropDNS, xmppZone
from tests.integration.processes import freePort


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class _CuttableSession(ProxySession):
    """
    A proxy session that can also go silent: from then on it forwards
    nothing either way, as a link that drops every packet.
    """

    silent = False

    def dataReceived(self, data):
        if not self.silent:
            ProxySession.dataReceived(self, data)

    def receivingData(self, data):
        if not self.silent:
            ProxySession.receivingData(self, data)

    def connectionLost(self, reason):
        # Silent: the Receiving Server's side stays open, hearing nothing.
        if not self.silent:
            ProxySession.connectionLost(self, reason)


class CuttingProxy(StrippingProxy):
    """
    A pass-through proxy whose live connections a test cuts.
    """

    def buildProtocol(self, addr):
        session = _CuttableSession(self, PASS)
        self.sessions.append(session)
        return session

    def live(self):
        return [s for s in self.sessions
                if s.transport is not None and s.transport.connected and not s.silent]

    def silence(self):
        """
        Stop forwarding on every live connection, and reset only the
        Originating Server's side of it: the Receiving Server still
        believes in its connection (half open), whatever arrives late on it.

        @return: The sessions silenced.
        """
        sessions = self.live()
        for session in sessions:
            session.silent = True
            session.transport.abortConnection()
        return sessions


class DeliveryPair(FlowPair):
    """
    L{FlowPair} whose DNS sends A to the proxy in front of B.
    """

    def __init__(self, workdir):
        FlowPair.__init__(self, workdir, senders=2, targets=2)
        self.proxyPort = freePort()
        label = lambda names: [n.split(".")[0] for n in names]  # noqa: E731
        zones = {
            "flowa.example": xmppZone("xmpp.flowa.example", self.addressA, label(self.senders)),
            "flowb.example": xmppZone("xmpp.flowb.example", self.addressB, label(self.targets),
                                      port=self.proxyPort),
        }
        self.dns = InteropDNS(os.path.join(workdir, "dns"), zones)


class DeliveryTests(unittest.TestCase):
    """
    Provider A's components send numbered messages on four pairs to provider
    B's components while the connection between A and B is cut.
    """

    timeout = 240

    @defer.inlineCallbacks
    def setUp(self):
        self.pair = DeliveryPair(self.mktemp())
        self.addCleanup(self.pair.stop)
        self.pair.start()
        self.proxy = CuttingProxy(reactor, self.pair.addressB, S2S_PORT)
        port = reactor.listenTCP(self.pair.proxyPort, self.proxy, interface=self.pair.addressB)
        self.addCleanup(port.stopListening)
        self.addCleanup(self.closeSessions)
        self.inbox = Inbox()
        receivers = yield connectComponents(
            self.pair.b.componentPort, self.pair.targets, self.inbox
        )
        self.addCleanup(disconnectComponents, receivers)
        self.errors = []
        self.senders = []
        for sender in self.pair.senders:
            attached = yield connectComponent(self.pair.a.componentPort, sender)
            attached[0].addObserver("/message[@type='error']", self.errors.append)
            self.senders.append(attached[0])
            self.addCleanup(disconnectComponents, [attached])

    def closeSessions(self):
        for session in self.proxy.sessions:
            for transport in (session.transport, session._receiving):
                if transport is not None and transport.connected:
                    transport.abortConnection()

    def write(self, start, count):
        """
        Each sender writes messages C{start} to C{start + count - 1} to
        each target, interleaved; id C{sender|target|n}.
        """
        for xs, sender in zip(self.senders, self.pair.senders):
            chunk = []
            for n in range(start, start + count):
                for target in self.pair.targets:
                    chunk.append(
                        f"<message from='u@{sender}' to='u@{target}' "
                        f"id='{sender}|{target}|{n}' type='chat'><body>{n}</body></message>"
                    )
            xs.transport.write("".join(chunk).encode("utf-8"))

    def assertExactlyOnceInOrder(self, count):
        """
        Every pair got messages 0 to C{count - 1}, each once, in order.
        """
        perPair = {}
        for stanzaID in self.inbox.ids:
            sender, target, n = stanzaID.split("|")
            perPair.setdefault((sender, target), []).append(int(n))
        expected = list(range(count))
        for sender in self.pair.senders:
            for target in self.pair.targets:
                got = perPair.get((sender, target), [])
                lost = sorted(set(expected) - set(got))
                duplicated = len(got) - len(set(got))
                reordered = sum(1 for a, b in zip(got, got[1:]) if b < a)
                self.assertEqual(
                    (0, 0, 0), (len(lost), duplicated, reordered),
                    f"{sender} -> {target}: lost {lost[:10]}, {duplicated} duplicated, "
                    f"{reordered} reordered",
                )
        self.assertEqual([], [e.toXml() for e in self.errors])

    @defer.inlineCallbacks
    def cutAndCarryOn(self, cut):
        """
        Send in bursts, cutting the connection with C{cut} in the middle of
        each burst but the last, then check every pair's sequence.
        """
        burst, bursts = 500, 4
        pairs = len(self.pair.senders) * len(self.pair.targets)
        for i in range(bursts):
            self.write(i * burst, burst)
            if i < bursts - 1:
                # Let part of the burst through, then cut.
                yield self.inbox.waitFor(i * burst * pairs + burst, timeout=60)
                self.assertTrue(self.proxy.live(), "no connection to cut")
                cut()
        yield self.inbox.waitFor(bursts * burst * pairs, timeout=120)
        # Anything sent twice would come now.
        yield sleep(2)
        self.assertExactlyOnceInOrder(bursts * burst)
        self.assertGreaterEqual(len(self.proxy.sessions), bursts)
        # The cuts did leave stanzas unacknowledged, resumed by count.
        log = self.pair.a.logText()
        self.assertIn("unacknowledged stanzas: sending again", log)
        self.assertIn("Resumed s01.flowa.example -> t01.flowb.example", log)

    def test_reset(self):
        """
        With the connection reset (RST both ways) mid-flow three times,
        nothing is lost, duplicated or reordered, and nothing bounces.
        """
        return self.cutAndCarryOn(self.proxy.dropAll)

    def test_silentDrop(self):
        """
        With the connection going silent mid-flow three times (A resets its
        side, B keeps a half-open one that never hears again), nothing is
        lost, duplicated or reordered, and nothing bounces.
        """
        return self.cutAndCarryOn(self.proxy.silence)
