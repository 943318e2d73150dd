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
"""

import re

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
        if self._receiving is None:
            self._pending += data
        else:
            self._receiving.write(data)

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
            self.transport.write(data)
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

    def buildProtocol(self, addr):
        session = ProxySession(self, self.mode)
        self.sessions.append(session)
        return session

    def connectReceiving(self, protocolInstance):
        """
        Connect C{protocolInstance} to the Receiving Server.
        """
        factory = protocol.ClientFactory.forProtocol(lambda: protocolInstance)
        self._reactor.connectTCP(self._host, self._port, factory)

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
