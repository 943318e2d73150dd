"""
A man in the middle for tests: a TCP proxy between an Originating and a
Receiving Server that rewrites, before TLS, what a downgrade attacker would
(issue 9 section 5), and records every byte that passed.

Each connection it accepts takes the proxy's L{StrippingProxy.mode} at that
moment:

  - L{PASS}: forward both ways untouched (TLS then hides the rest);
  - L{STRIP_STARTTLS}: forward, but remove C{<starttls/>} from the
    Receiving Server's first C{<stream:features/>};
  - L{INJECT_HOST_UNKNOWN}: never reach the Receiving Server; answer the
    Originating Server's stream header with a forged
    C{<stream:error><host-unknown/></stream:error>} in plaintext.

Faults for the soak harness (C{bench/soak.py}, issue 14), per session at any
moment: L{ProxySession.reset} (a TCP RST to both ends),
L{ProxySession.blackhole} (silently drop everything from then on, both
connections left open), L{ProxySession.slow} (delay and throttle both
directions, order kept) and L{ProxySession.stopReading} (stop reading one
or both ends, so that their writes back up: a peer that stops reading).
"""

import collections
import re
import socket
import struct

from twisted.internet import protocol
from twisted.logger import Logger

_log = Logger()

#: Forward untouched.
PASS = "pass"
#: Remove C{<starttls/>} from the plaintext features.
STRIP_STARTTLS = "strip-starttls"
#: Answer the stream header with a forged host-unknown.
INJECT_HOST_UNKNOWN = "inject-host-unknown"

_STARTTLS = re.compile(rb"<starttls\b[^>]*?(?:/>|>.*?</starttls>)", re.DOTALL)
_FEATURES_END = b"</stream:features>"
_HEADER = re.compile(rb"<stream:stream\b[^>]*>")
_FORGED_REFUSAL = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='forged' version='1.0'>"
    b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    b"</stream:error></stream:stream>"
)


class _ToReceiving(protocol.Protocol):
    """
    The proxy's connection to the Receiving Server, for one session.
    """

    def __init__(self, session):
        self._session = session

    def connectionMade(self):
        self._session.receivingConnected(self.transport)

    def dataReceived(self, data):
        self._session.receivingData(data)

    def connectionLost(self, reason):
        self._session.receivingLost()


class _ReceivingFactory(protocol.ClientFactory):
    """
    Connect one L{_ToReceiving}; when the Receiving Server cannot be
    reached, drop the Originating Server's connection at once, as the
    refused connection would have been without the proxy.
    """

    def __init__(self, toReceiving):
        self._toReceiving = toReceiving

    def buildProtocol(self, addr):
        return self._toReceiving

    def clientConnectionFailed(self, connector, reason):
        self._toReceiving._session.receivingFailed()


class ProxySession(protocol.Protocol):
    """
    One connection from the Originating Server, and its counterpart.

    @ivar mode: What this session does (L{PASS}, L{STRIP_STARTTLS} or
        L{INJECT_HOST_UNKNOWN}).
    @ivar fromOriginating: Every byte the Originating Server sent, as it
        passed.
    @ivar fromReceiving: Every byte the Receiving Server sent, before any
        rewriting.
    @ivar stripped: How many C{<starttls/>} elements were removed.
    """

    def __init__(self, proxy, mode):
        self._proxy = proxy
        self.mode = mode
        self.fromOriginating = bytearray()
        self.fromReceiving = bytearray()
        self.stripped = 0
        self._receiving = None
        self._pending = bytearray()
        self._features = bytearray()
        self._rewriting = mode == STRIP_STARTTLS
        self.blackholed = False
        self._latency = 0.0
        self._rate = None
        # direction (True: to the Receiving Server) -> deque of (due, bytes)
        self._queues = {True: collections.deque(), False: collections.deque()}
        self._timers = {True: None, False: None}

    def connectionMade(self):
        if self.mode != INJECT_HOST_UNKNOWN:
            self._proxy.connectReceiving(_ToReceiving(self))

    def dataReceived(self, data):
        self.fromOriginating += data
        if self.mode == INJECT_HOST_UNKNOWN:
            if not self.transport.disconnecting and _HEADER.search(self.fromOriginating):
                self.transport.write(_FORGED_REFUSAL)
                self.transport.loseConnection()
            return
        self._forward(True, data)

    def receivingConnected(self, transport):
        self._receiving = transport
        if self.transport is None or self.transport.disconnecting:
            transport.loseConnection()
            return
        if self._pending:
            transport.write(bytes(self._pending))
            self._pending = bytearray()

    def receivingData(self, data):
        self.fromReceiving += data
        if not self._rewriting:
            self._forward(False, data)
            return
        # Hold the bytes until the first features are whole, then strip.
        self._features += data
        if _FEATURES_END not in self._features:
            return
        rewritten, count = _STARTTLS.subn(b"", bytes(self._features))
        self.stripped += count
        self._rewriting = False
        self._features = bytearray()
        self.transport.write(rewritten)

    def receivingFailed(self):
        if self.transport is not None:
            self.transport.abortConnection()

    def receivingLost(self):
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._receiving is not None:
            self._receiving.loseConnection()

    def abort(self):
        """
        Drop both connections at once.
        """
        self.transport.abortConnection()
        if self._receiving is not None:
            self._receiving.abortConnection()

    # Faults (bench/soak.py)

    def _forward(self, toReceiving, data):
        """
        Pass C{data} on in one direction, unless black-holed; after the
        delay and at the rate L{slow} set, in order.
        """
        if self.blackholed:
            return
        queue = self._queues[toReceiving]
        if not self._latency and self._rate is None and not queue:
            self._write(toReceiving, data)
            return
        clock = self._proxy._reactor
        due = clock.seconds() + self._latency
        if queue:
            due = max(due, queue[-1][0])
        if self._rate:
            due += len(data) / self._rate
        queue.append((due, data))
        if self._timers[toReceiving] is None:
            self._schedule(toReceiving)

    def _schedule(self, toReceiving):
        clock = self._proxy._reactor
        queue = self._queues[toReceiving]
        delay = max(0.0, queue[0][0] - clock.seconds())
        self._timers[toReceiving] = clock.callLater(delay, self._drain, toReceiving)

    def _drain(self, toReceiving):
        self._timers[toReceiving] = None
        queue = self._queues[toReceiving]
        now = self._proxy._reactor.seconds()
        while queue and queue[0][0] <= now:
            self._write(toReceiving, queue.popleft()[1])
        if queue:
            self._schedule(toReceiving)

    def _write(self, toReceiving, data):
        if self.blackholed:
            return
        if not toReceiving:
            if self.transport is not None:
                self.transport.write(data)
        elif self._receiving is None:
            self._pending += data
        else:
            self._receiving.write(data)

    def reset(self):
        """
        Cut both connections with a TCP RST (C{SO_LINGER} 0), as a middlebox
        that forgets them does.
        """
        for transport in (self.transport, self._receiving):
            if transport is None or not transport.connected:
                continue
            try:
                transport.getHandle().setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            transport.abortConnection()

    def blackhole(self):
        """
        From now on, drop every byte both ways without a word: both ends
        keep their connections open and hear nothing more.
        """
        self.blackholed = True
        for toReceiving, queue in self._queues.items():
            queue.clear()
            timer, self._timers[toReceiving] = self._timers[toReceiving], None
            if timer is not None:
                timer.cancel()

    def slow(self, latency=0.0, rate=None):
        """
        Delay both directions by C{latency} seconds and throttle each to
        C{rate} bytes per second (L{None}: no limit); C{slow()} restores a
        fast link for the bytes that arrive from then on.
        """
        self._latency = latency
        self._rate = rate

    def stopReading(self, originating=True, receiving=True):
        """
        Stop reading from the Originating and/or Receiving Server: its
        writes back up in the kernel and then in its own buffers.
        """
        if originating and self.transport is not None:
            self.transport.pauseProducing()
        if receiving and self._receiving is not None:
            self._receiving.pauseProducing()

    def resumeReading(self):
        """
        Read both ends again.
        """
        for transport in (self.transport, self._receiving):
            if transport is not None and transport.connected:
                transport.resumeProducing()

    @property
    def open(self):
        """
        Whether both connections are up.
        """
        return (self.transport is not None and self.transport.connected
                and self._receiving is not None and self._receiving.connected)


class StrippingProxy(protocol.Factory):
    """
    A proxy to one Receiving Server; listen with it on the address the
    Originating Server finds in DNS.

    @ivar mode: The mode of the next connection accepted.
    @ivar sessions: Every L{ProxySession}, in order.
    """

    def __init__(self, reactor, host, port, mode=PASS):
        """
        @param reactor: The L{IReactorTCP} to reach the Receiving Server.
        @param host: The Receiving Server's address.
        @param port: Its port.
        @param mode: The initial L{mode}.
        """
        self._reactor = reactor
        self._host = host
        self._port = port
        self.mode = mode
        self.sessions = []
        #: C{(host, port)} the connections to the Receiving Server come
        #: from, or L{None} for the system's choice.
        self.bindAddress = None

    def buildProtocol(self, addr):
        session = ProxySession(self, self.mode)
        self.sessions.append(session)
        return session

    def connectReceiving(self, protocolInstance):
        """
        Connect C{protocolInstance} to the Receiving Server.
        """
        factory = _ReceivingFactory(protocolInstance)
        self._reactor.connectTCP(self._host, self._port, factory,
                                 bindAddress=self.bindAddress)

    def fromOriginating(self):
        """
        Everything every Originating Server's connection sent through the
        proxy, concatenated.

        @rtype: L{bytes}
        """
        return b"".join(bytes(s.fromOriginating) for s in self.sessions)

    def dropAll(self):
        """
        Abort every connection.
        """
        for session in self.sessions:
            if session.transport is not None and session.transport.connected:
                session.abort()
