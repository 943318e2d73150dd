"""
Tests for L{dna.channel.tls}: mutual TLS between servers (draft-ietf-xmpp-dna-01 section 5).
"""

from twisted.internet import defer, protocol
from twisted.trial import unittest

from dna.channel.tls import (
    peerServerNames,
)

# Certificates are cheap, but not free: share the authorities.
from tests.unit.test_tls import (
    CA,
    ORIGINATING,
    RECEIVING,
    _clientFactory,
    _serverFactory,
)


class LoopbackTests(unittest.TestCase):
    """
    Mutual TLS over real TCP connections on the loopback interface, started
    the way STARTTLS starts it.
    """

    def test_mutualHandshake(self):
        """
        A client and a server that start TLS over plain TCP authenticate each
        other and exchange the server names they saw.
        """
        from twisted.internet import reactor

        receiving = CA.issue(RECEIVING, dnsNames=[RECEIVING])
        originating = CA.issue(None, srvNames=["_xmpp-server." + ORIGINATING])
        serverCreator = _serverFactory((RECEIVING, receiving))
        clientCreator = _clientFactory(RECEIVING, originating)
        serverLost, clientLost = defer.Deferred(), defer.Deferred()
        serverSaw, clientSaw = defer.Deferred(), defer.Deferred()

        class Server(protocol.Protocol):
            def connectionMade(self):
                self.transport.setTcpNoDelay(True)
                self.transport.startTLS(serverCreator)

            def dataReceived(self, data):
                names = peerServerNames(self.transport)
                serverSaw.callback((data, names))
                self.transport.write(b" ".join(sorted(
                    n.encode("ascii") for n in names)))

            def connectionLost(self, reason):
                serverLost.callback(None)

        class Client(protocol.Protocol):
            def connectionMade(self):
                self.transport.setTcpNoDelay(True)
                self.transport.startTLS(clientCreator)
                self.transport.write(b"hello")

            def dataReceived(self, data):
                clientSaw.callback(
                    (data, peerServerNames(self.transport),
                     self.transport.getHandle().get_alpn_proto_negotiated()))
                self.transport.loseConnection()

            def connectionLost(self, reason):
                clientLost.callback(None)

        port = reactor.listenTCP(
            0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reactor.connectTCP("127.0.0.1", port.getHost().port,
                           protocol.ClientFactory.forProtocol(Client))

        d = defer.gatherResults(
            [serverSaw, clientSaw, serverLost, clientLost],
            consumeErrors=True)

        def check(results):
            (serverData, serverNames), clientResult = results[:2]
            self.assertEqual(serverData, b"hello")
            self.assertEqual(serverNames, {ORIGINATING})
            self.assertEqual(
                clientResult,
                (ORIGINATING.encode("ascii"), {RECEIVING}, b"xmpp-server"))

        d.addCallback(check)
        return d.addTimeout(10, reactor)
