"""
The faults L{dna.testing.proxy.ProxySession} injects for the soak harness
(C{bench/soak.py}, issue 14), over real loopback sockets: a client, the
proxy and an echo server.
"""

import time

from twisted.internet import defer, error, protocol, reactor, task
from twisted.trial import unittest

from dna.testing.proxy import StrippingProxy


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Client(protocol.Protocol):
    """
    Keeps what it receives; fires C{lost} when the connection is lost, the
    reason in C{reason}.
    """

    def __init__(self):
        self.received = bytearray()
        self.lost = defer.Deferred()
        self.ready = defer.Deferred()

    def connectionMade(self):
        self.ready.callback(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


def wait(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class ProxyFaultTests(unittest.TestCase):

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        echo = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        self.proxy = StrippingProxy(reactor, "127.0.0.1", echo.getHost().port)
        listening = reactor.listenTCP(0, self.proxy, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.client = Client()
        self.addCleanup(self.disconnect)
        factory = protocol.ClientFactory.forProtocol(lambda: self.client)
        reactor.connectTCP("127.0.0.1", listening.getHost().port, factory)
        yield self.client.ready
        self.client.transport.write(b"hello")
        yield self.until(lambda: bytes(self.client.received) == b"hello")
        [self.session] = self.proxy.sessions
        self.assertTrue(self.session.open)

    @defer.inlineCallbacks
    def disconnect(self):
        self.proxy.dropAll()
        if self.client.transport is not None:
            self.client.transport.abortConnection()
        yield self.client.lost
        yield wait(0.05)

    @defer.inlineCallbacks
    def until(self, condition, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not condition():
            self.assertLess(time.monotonic(), deadline, "condition never met")
            yield wait(0.01)

    @defer.inlineCallbacks
    def test_reset(self):
        """
        L{ProxySession.reset} cuts the connection with an RST: the client
        sees its connection reset, not a clean close.
        """
        self.session.reset()
        yield self.client.lost
        reason = self.client.reason
        self.assertTrue(reason.check(error.ConnectionLost, error.ConnectionDone))
        self.assertFalse(reason.check(error.ConnectionDone),
                         "an RST must not look like a clean close")
        self.assertFalse(self.session.open)

    @defer.inlineCallbacks
    def test_blackhole(self):
        """
        After L{ProxySession.blackhole} nothing passes either way and both
        connections stay open.
        """
        self.session.blackhole()
        self.client.transport.write(b"lost")
        yield wait(0.3)
        self.assertEqual(bytes(self.client.received), b"hello")
        self.assertTrue(self.session.open)
        self.assertFalse(self.client.lost.called)

    @defer.inlineCallbacks
    def test_slow(self):
        """
        L{ProxySession.slow} delays each direction and throttles it, in order;
        C{slow()} makes the link fast again.
        """
        self.session.slow(latency=0.1, rate=20000)
        t0 = time.monotonic()
        for i in range(10):
            self.client.transport.write(b"%d" % (i,) + b"x" * 199)
        expected = b"hello" + b"".join(b"%d" % (i,) + b"x" * 199 for i in range(10))
        yield self.until(lambda: bytes(self.client.received) == expected)
        # Two delays of 0.1 s (there and back) and 2,000 bytes at 20,000 B/s
        # each way.
        self.assertGreater(time.monotonic() - t0, 0.35)
        self.session.slow()
        t0 = time.monotonic()
        self.client.transport.write(b"fast")
        yield self.until(lambda: bytes(self.client.received).endswith(b"fast"))
        self.assertLess(time.monotonic() - t0, 0.2)

    @defer.inlineCallbacks
    def test_stopReading(self):
        """
        While the proxy does not read, nothing passes; once it reads again
        everything does, in order.
        """
        self.session.stopReading()
        self.client.transport.write(b"held")
        yield wait(0.3)
        self.assertEqual(bytes(self.client.received), b"hello")
        self.session.resumeReading()
        yield self.until(lambda: bytes(self.client.received) == b"helloheld")


class UnreachableTests(unittest.TestCase):

    timeout = 20

    @defer.inlineCallbacks
    def test_refusedIsDropped(self):
        """
        When the Receiving Server refuses the proxy's connection, the
        Originating Server's connection to the proxy is dropped at once.
        """
        probe = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        port = probe.getHost().port
        yield probe.stopListening()
        proxy = StrippingProxy(reactor, "127.0.0.1", port)
        listening = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client = Client()
        factory = protocol.ClientFactory.forProtocol(lambda: client)
        reactor.connectTCP("127.0.0.1", listening.getHost().port, factory)
        t0 = time.monotonic()
        yield client.lost
        self.assertLess(time.monotonic() - t0, 2)
