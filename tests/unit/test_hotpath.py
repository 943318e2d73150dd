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


class SimpleXmlTests(SynchronousTestCase):
    """
    L{S2SStream.send} writes the same text as C{Element.toXml} whether or
    not its fast path applies.
    """

    def sentText(self, element):
        from twisted.internet.testing import StringTransport
        from twisted.words.protocols.jabber import xmlstream

        from dna.channel.stream import S2SStream

        xs = S2SStream(xmlstream.Authenticator())
        xs.namespace = "jabber:server"
        xs.prefixes = {"http://etherx.jabber.org/streams": "stream"}
        xs.transport = StringTransport()
        before = xs.bytesSent
        xs.send(element)
        text = xs.transport.value()
        self.assertEqual(len(text), xs.bytesSent - before)
        return text.decode("utf-8")

    def expected(self, element):
        return element.toXml(
            prefixes={"http://etherx.jabber.org/streams": "stream"},
            defaultUri="jabber:server",
            prefixesInScope=["stream"])

    def elements(self):
        from twisted.words.xish import domish

        server = "jabber:server"
        plain = domish.Element((server, "message"))
        plain["from"] = "romeo@sender.example/o<r>ch&rd'\""
        plain["to"] = "juliet@target.example"
        plain.addElement("body", content="<hi> & 'there' \"\u00e9\u2603")
        yield plain
        yield domish.Element((server, "presence"))
        foreign = domish.Element((server, "message"))
        foreign.addElement(("urn:xmpp:receipts", "request"))
        yield foreign
        foreign["id"] = "x"
        yield foreign
        noUri = domish.Element((None, "iq"))
        noUri["type"] = "get"
        yield noUri
        lang = domish.Element((server, "message"))
        lang[("http://www.w3.org/XML/1998/namespace", "lang")] = "en"
        yield lang
        prefixed = domish.Element((server, "message"), localPrefixes={"x": "urn:x"})
        prefixed.addElement(("urn:x", "y"))
        yield prefixed
        other = domish.Element(("jabber:client", "message"))
        other.addElement("body", content="hi")
        yield other
        raw = domish.Element((server, "message"))
        raw.addRawXml("<body>raw &amp; kept</body>")
        yield raw
        defaultDiffers = domish.Element((server, "message"), defaultUri="urn:other")
        defaultDiffers.addElement((server, "body"), content="hi")
        yield defaultDiffers

    def test_sameAsToXml(self):
        """
        Every kind of element, on the fast path or not, is written as
        C{toXml} writes it.
        """
        for element in self.elements():
            self.assertEqual(self.expected(element), self.sentText(element))

    def test_fastPathTaken(self):
        """
        The fast path takes plain stanzas (text, raw XML) and leaves the
        rest (other namespaces, prefixes, qualified attributes, no
        namespace) to C{toXml}.
        """
        from dna.channel.stream import _simpleXml

        self.assertEqual(
            [True, True, False, False, False, False, False, False, True, False],
            [_simpleXml(e, "jabber:server", [].append) for e in self.elements()])
