"""
Behaviour kept by the hot-path optimisations of issue 13 (C{bench/e2e.py}).
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dna.app.router import ComponentServerFactory, QuietRouter


class NoDelayTransport(StringTransport):
    """
    A L{StringTransport} that records C{setTcpNoDelay}.
    """

    noDelay = False

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled


class ComponentServerFactoryTests(SynchronousTestCase):
    """
    Tests for L{ComponentServerFactory}.
    """

    def test_noDelay(self):
        """
        A component link has Nagle's algorithm off as soon as it is
        connected.
        """
        factory = ComponentServerFactory(QuietRouter(), "secret")
        xs = factory.buildProtocol(None)
        transport = NoDelayTransport()
        xs.makeConnection(transport)
        self.assertTrue(transport.noDelay)

    def test_tapUsesIt(self):
        """
        C{twistd dna} accepts components with L{ComponentServerFactory}.
        """
        from dna.app import tap
        from tests.unit.test_config import MINIMAL, ConfigurationFiles

        path = ConfigurationFiles(self).write(
            "dna.toml",
            MINIMAL + '\n[components]\nlisten = "tcp:5347:interface=127.0.0.1"\nsecret = "s"\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        root = tap.makeService(options)
        from twisted.application.internet import StreamServerEndpointService

        [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
        self.assertIsInstance(listener.factory, ComponentServerFactory)


class ToServerNamespaceTests(SynchronousTestCase):
    """
    Tests for L{dna.app.federation.toServerNamespace}.
    """

    def test_nested(self):
        """
        The stanza and every descendant in the component's namespace move
        to C{jabber:server}; text and elements of other namespaces stay.
        """
        from twisted.words.xish import domish

        from dna.app.federation import toServerNamespace
        from dna.namespaces import NS_SERVER

        component = "jabber:component:accept"
        stanza = domish.Element((component, "message"))
        body = stanza.addElement("body", content="hi")
        inner = body.addElement("span")
        inner.addContent("there")
        other = stanza.addElement(("urn:example", "x"))
        deep = other.addElement(("urn:example", "y"))
        toServerNamespace(stanza)
        self.assertEqual(
            [NS_SERVER, NS_SERVER, NS_SERVER, "urn:example", "urn:example"],
            [stanza.uri, body.uri, inner.uri, other.uri, deep.uri])
        self.assertEqual(NS_SERVER, stanza.defaultUri)
        self.assertEqual(["hi", inner], body.children)
        self.assertEqual(
            "<message xmlns='jabber:server'><body>hi<span>there</span></body>"
            "<x xmlns='urn:example'><y/></x></message>", stanza.toXml())
