"""
Tests for the relays of C{bench/relay.py}: what they forward must be what
the components sent, to the component of each stanza's domain.
"""

from twisted.internet import protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase


class _Transport(StringTransport):
    def setTcpNoDelay(self, enabled):
        pass


HEADER = (b"<stream:stream xmlns='jabber:server' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='b' from='a' version='1.0'>")


class RelayTests(SynchronousTestCase):
    """
    L{bench.relay.ComponentSide} and L{bench.relay.LinkIn}.
    """

    def component(self, factory, domain):
        xs = factory.buildProtocol(None)
        xs.makeConnection(_Transport())
        xs.dataReceived(
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>"
            b"<handshake>x</handshake>" % (domain.encode(),))
        self.assertIn(b"<handshake/>", xs.transport.value())
        xs.transport.clear()
        return xs

    def test_componentToLink(self):
        """
        Relay A writes what its component sends to the link, in the server
        namespace, once per read.
        """
        from bench.relay import ComponentSide

        factory = protocol.Factory.forProtocol(ComponentSide)
        factory.routes = {}
        factory.link = link = protocol.Protocol()
        link.held = []
        link.transport = StringTransport()
        xs = self.component(factory, "s01.prova.example")
        xs.dataReceived(b"<message to='u@t.tld' id='1'><body>a</body></message>"
                        b"<message to='u@t.tld' id='2'/>")
        self.assertEqual(
            b"<message to='u@t.tld' id='1'><body>a</body></message>"
            b"<message to='u@t.tld' id='2'/>",
            link.transport.value())

    def test_linkToComponents(self):
        """
        Relay B writes each stanza to the component of its 'to' domain.
        """
        from bench.relay import ComponentSide, LinkIn

        components = protocol.Factory.forProtocol(ComponentSide)
        components.routes = {}
        components.link = None
        t1 = self.component(components, "t1.tld")
        t2 = self.component(components, "t2.tld")
        links = protocol.Factory.forProtocol(LinkIn)
        links.routes = components.routes
        link = links.buildProtocol(None)
        link.makeConnection(_Transport())
        link.dataReceived(HEADER + b"<message to='u@t1.tld' id='1'/>"
                          b"<message to='v@t2.tld' id='2'><body>b</body></message>"
                          b"<message to='w@t1.tld' id='3'/>")
        self.assertEqual(b"<message to='u@t1.tld' id='1'/><message to='w@t1.tld' id='3'/>",
                         t1.transport.value().replace(b" xmlns='jabber:server'", b""))
        self.assertIn(b"<body>b</body>", t2.transport.value())
