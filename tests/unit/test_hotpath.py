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


def sentBy(testCase, element, namespace="jabber:server", streamClass=None):
    """
    What a stream (an L{S2SStream} unless C{streamClass}) whose default
    namespace is C{namespace} writes for C{element}, checking that it
    counts those bytes in C{bytesSent}.
    """
    from twisted.words.protocols.jabber import xmlstream

    from dna.channel.stream import S2SStream

    xs = (streamClass or S2SStream)(xmlstream.Authenticator())
    xs.namespace = namespace
    xs.prefixes = {"http://etherx.jabber.org/streams": "stream"}
    xs.transport = StringTransport()
    before = xs.bytesSent
    xs.send(element)
    text = xs.transport.value()
    testCase.assertEqual(len(text), xs.bytesSent - before)
    return text


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
        return sentBy(self, element).decode("utf-8")

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


class RawStanzaTests(SynchronousTestCase):
    """
    Stanzas received as L{RawStanza}s and forwarded as they came
    (L{ForwardingStream}, L{S2SStream}).
    """

    SERVER_HEADER = (
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        b"xmlns:stream='http://etherx.jabber.org/streams' "
        b"from='a.example' to='b.example' id='s1' version='1.0'>")
    COMPONENT_HEADER = (
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='c.example'>")

    def received(self, data, header=SERVER_HEADER, streamClass=None, chunk=None):
        """
        Feed C{header} then C{data} to a new stream, C{chunk} bytes at a
        time (all at once if L{None}), and return the top-level elements
        it dispatched.
        """
        from twisted.words.protocols.jabber import xmlstream

        from dna.channel.stream import S2SStream

        xs = (streamClass or S2SStream)(xmlstream.Authenticator())
        xs.makeConnection(StringTransport())
        elements = []
        xs.addObserver("/*", elements.append)
        xs.dataReceived(header)
        if chunk is None:
            xs.dataReceived(data)
        else:
            for i in range(0, len(data), chunk):
                xs.dataReceived(data[i:i + chunk])
        self.assertEqual([], self.flushLoggedErrors())
        return elements

    def sent(self, element, namespace="jabber:server", streamClass=None):
        return sentBy(self, element, namespace, streamClass)

    def reparsed(self, data, header=SERVER_HEADER):
        """
        The elements Twisted's own parser makes of C{header} + C{data}.
        """
        from twisted.words.xish import domish

        elements = []
        stream = domish.ExpatElementStream()
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = elements.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(header + data)
        return elements

    def test_verbatim(self):
        """
        A stanza in the stream's namespace is dispatched as a
        L{RawStanza} with its attributes, and written as it came on a
        stream with the same default namespace.
        """
        from dna.channel.stream import RawStanza

        data = (b"<message from='u@a.example' to='v@b.example' type='chat' id='1'>"
                b"<body>hi &amp; \xc3\xa9 > there</body>"
                b"<x xmlns='urn:x'><y a='1'/></x></message>")
        [stanza] = self.received(data)
        self.assertIsInstance(stanza, RawStanza)
        self.assertEqual(("jabber:server", "message"), (stanza.uri, stanza.name))
        self.assertEqual("v@b.example", stanza.getAttribute("to"))
        self.assertEqual(data, stanza.raw)
        self.assertEqual(data, self.sent(stanza))

    def test_splitAcrossReads(self):
        """
        A stanza split across reads, down to one byte per read, and
        several stanzas in one read, are kept whole and apart.
        """
        one = b"<message to='v@b.example'><body>\xe2\x98\x83 one</body></message>"
        two = b"<iq type='get' id='2' to='b.example'><ping xmlns='urn:xmpp:ping'/></iq>"
        data = one + b"\n " + two
        for chunk in (None, 1, 3, 7, 40):
            stanzas = self.received(data, chunk=chunk)
            self.assertEqual([one, two], [s.raw for s in stanzas])

    def test_childrenOnDemand(self):
        """
        The children of a L{RawStanza} are parsed when asked for, the same
        as Twisted's parser makes them; from then on it is serialised, not
        copied.
        """
        data = (b"<message to='v@b.example' xml:lang='en'><body>h\xc3\xa9</body>"
                b"<x xmlns='urn:x' xmlns:p='urn:p'><p:y p:a='1'>t</p:y></x></message>")
        [stanza] = self.received(data)
        [expected] = self.reparsed(data)
        self.assertEqual(data, stanza.raw)
        self.assertEqual(expected.toXml(), stanza.toXml())
        self.assertEqual("h\u00e9", str(stanza.body))
        self.assertIs(stanza, stanza.body.parent)
        self.assertEqual(["urn:x"], [c.uri for c in stanza.elements() if c.name == "x"])
        self.assertIsNone(stanza.verbatim("jabber:server"))
        stanza.body.children[0] = "changed"
        self.assertIn(b"<body>changed</body>", self.sent(stanza))

    def test_changedAttributes(self):
        """
        A stanza whose attributes changed is serialised, not copied.
        """
        [stanza] = self.received(b"<message to='v@b.example'><body>hi</body></message>")
        stanza["to"] = "w@b.example"
        self.assertEqual(
            b"<message to='w@b.example'><body>hi</body></message>", self.sent(stanza))

    def test_explicitNamespace(self):
        """
        A stanza that declares its namespace itself is parsed as before,
        into elements.
        """
        from dna.channel.stream import RawStanza

        data = b"<message xmlns='jabber:server' to='v@b.example'><body>hi</body></message>"
        [stanza] = self.received(data)
        self.assertNotIsInstance(stanza, RawStanza)
        self.assertEqual(self.reparsed(data)[0].toXml(), stanza.toXml())

    def test_prefixFromStreamHeader(self):
        """
        A stanza that uses a prefix the stream header declares is not
        copied (its bytes mean nothing without the header), and its
        children are parsed with the header's prefixes.
        """
        data = b"<message to='v@b.example'><db:x db:a='1'>hi</db:x></message>"
        [stanza] = self.received(data)
        self.assertIsNone(stanza.raw)
        [expected] = self.reparsed(data)
        self.assertEqual(expected.toXml(), stanza.toXml())
        self.assertEqual(("jabber:server:dialback", "x"), (stanza.x.uri, stanza.x.name))
        self.assertNotIn(b"db:", self.sent(stanza).replace(b"xmlns:", b""))

    def test_prefixOutOfScope(self):
        """
        A prefix declared inside the stanza but not where it is used (the
        header's binding applies there) makes the stanza not copied.
        """
        data = (b"<message to='v@b.example'><a xmlns:db='urn:other'><db:y/></a>"
                b"<db:z/></message>")
        [stanza] = self.received(data)
        self.assertIsNone(stanza.raw)
        data = b"<message to='v@b.example'><a xmlns:p='urn:p'><p:y/></a></message>"
        [stanza] = self.received(data)
        self.assertEqual(data, stanza.raw)

    def test_prefixDeclaredInEarlierStanza(self):
        """
        A prefix declared inside one stanza is not taken as declared in the
        next: a prefix the next uses from the header makes it not copied.
        """
        data = (b"<message to='v@b.example'><a xmlns:db='urn:other'><db:y/></a></message>"
                b"<message to='v@b.example'><db:z/></message>")
        first, second = self.received(data)
        self.assertIsNotNone(first.raw)
        self.assertIsNone(second.raw)

    def test_streamNamespaceInside(self):
        """
        A stanza that declares the stream's namespace inside itself is not
        copied: moving the stanza to another namespace would not move what
        that declaration names.
        """
        [stanza] = self.received(
            b"<message to='v@b.example'><b xmlns='jabber:server'/></message>")
        self.assertIsNone(stanza.raw)

    def test_empty(self):
        """
        An empty stanza right before the stream's closing tag is received
        whole, and written as Twisted writes it.
        """
        elements = self.received(b"<presence to='v@b.example'/></stream:stream>")
        [stanza] = elements
        self.assertEqual(b"<presence to='v@b.example'/>", self.sent(stanza))
        self.assertEqual([], stanza.children)

    def test_componentToServer(self):
        """
        A component's stanza, moved to C{jabber:server}, is written on an
        S2S stream as the component wrote it; a comment in it makes it
        serialised instead (a peer would refuse the stream).
        """
        from dna.app.federation import toServerNamespace
        from dna.channel.stream import ForwardingStream
        from dna.namespaces import NS_SERVER

        data = b"<message to='v@b.example'><body>hi</body></message>"
        [stanza] = self.received(data, self.COMPONENT_HEADER, ForwardingStream)
        toServerNamespace(stanza)
        self.assertEqual(NS_SERVER, stanza.uri)
        self.assertEqual(data, self.sent(stanza))
        self.assertEqual(NS_SERVER, stanza.body.uri)

        [stanza] = self.received(
            b"<message to='v@b.example'><!-- c --><body>hi</body></message>",
            self.COMPONENT_HEADER, ForwardingStream)
        toServerNamespace(stanza)
        self.assertEqual(data, self.sent(stanza))

    def test_serverToComponent(self):
        """
        A stanza from a peer is written to a component with its namespace
        declared, as Twisted writes it.
        """
        from dna.channel.stream import ForwardingStream

        [stanza] = self.received(b"<message to='v@b.example'><body>hi</body></message>")
        self.assertEqual(
            b"<message xmlns='jabber:server' to='v@b.example'><body>hi</body></message>",
            self.sent(stanza, "jabber:component:accept", ForwardingStream))


    def test_doctype(self):
        """
        On a stream that declared a document type (a component's: S2S
        streams refuse it), stanzas are built as Twisted builds them: their
        entities and default attributes are not in their bytes.
        """
        from dna.channel.stream import ForwardingStream, RawStanza

        header = (b"<!DOCTYPE stream:stream [<!ENTITY e 'x'>]>" + self.COMPONENT_HEADER)
        [stanza] = self.received(
            b"<message to='v@b.example'><body>&e;</body></message>", header, ForwardingStream)
        self.assertNotIsInstance(stanza, RawStanza)
        self.assertEqual(b"<message to='v@b.example'><body>x</body></message>",
                         self.sent(stanza, "jabber:component:accept", ForwardingStream))

class DefaultRouteTests(SynchronousTestCase):
    """
    Tests for L{dna.app.router.DefaultRoute}.
    """

    def test_routesToCallable(self):
        """
        What a router routes to its default route goes to the callable.
        """
        from twisted.words.xish import domish

        from dna.app.router import DefaultRoute

        router = QuietRouter()
        sent = []
        router.addRoute(None, DefaultRoute(sent.append))
        stanza = domish.Element(("jabber:component:accept", "message"))
        stanza["to"] = "juliet@remote.example"
        router.route(stanza)
        self.assertEqual([stanza], sent)
        router.removeRoute(None, router.routes[None])
        self.assertNotIn(None, router.routes)


class DispatchTests(SynchronousTestCase):
    """
    L{ForwardingStream.dispatch} calls the same observers in the same
    order as Twisted's.
    """

    def test_sameAsTwisted(self):
        """
        Observers of every kind (any element, another element, predicates,
        child paths, priorities, one-time) are called as Twisted's
        dispatcher calls them; observers added while dispatching wait for
        the next element, and observers added or removed between elements
        count from the next.
        """
        from twisted.words.protocols.jabber import xmlstream
        from twisted.words.xish import domish, utility

        from dna.channel.stream import ForwardingStream

        def observe(dispatcher, calls):
            def observer(tag):
                return lambda element: calls.append((tag, element.name))

            dispatcher.addObserver("/*", observer("any"), -1)
            dispatcher.observed = observer("message")
            dispatcher.addObserver("/message", dispatcher.observed)
            dispatcher.addObserver("/iq", observer("iq"), 5)
            dispatcher.addObserver("/message[@type='chat']", observer("chat"), 5)
            dispatcher.addObserver("/message/body", observer("body"))
            dispatcher.addOnetimeObserver("/presence", observer("once"))
            dispatcher.addObserver("/result", observer("result"))

            def adding(element):
                calls.append(("adding", element.name))
                dispatcher.addObserver("/presence", observer("added"))

            dispatcher.addOnetimeObserver("/iq", adding, 1)

            def withArguments(first, element, second=None):
                calls.append(("arguments", first, element.name, second))

            dispatcher.addObserver("/message", withArguments, 2, "one", second="two")
            dispatcher.addObserver("/presence", withArguments, 2, "three")

            def failing(element):
                calls.append(("failing", element.name))
                raise ZeroDivisionError()

            dispatcher.addObserver("/iq", failing, 3)

        elements = []
        for name, kind, body in [("message", "chat", True), ("iq", None, False),
                                 ("presence", None, False), ("message", None, False),
                                 ("presence", None, False), ("result", None, False),
                                 ("junk", None, False), ("result", None, False)]:
            element = domish.Element(("jabber:server", name))
            if kind:
                element["type"] = kind
            if body:
                element.addElement("body", content="hi")
            elements.append(element)

        ours, theirs = [], []
        xs = ForwardingStream(xmlstream.Authenticator())
        reference = utility.EventDispatcher()
        observe(xs, ours)
        observe(reference, theirs)
        for element in elements:
            self.assertEqual(reference.dispatch(element), xs.dispatch(element))
        self.assertEqual(theirs, ours)
        self.assertIn(("added", "presence"), ours)
        self.assertIn(("arguments", "one", "message", "two"), ours)
        self.assertIn(("arguments", "three", "presence", None), ours)
        # Logged, each time, by both; the observers after it still ran.
        self.assertEqual(2, len(self.flushLoggedErrors(ZeroDivisionError)))
        self.assertIn(("iq", "iq"), ours)

        # Observers removed and added between elements count from the next.
        for dispatcher in (xs, reference):
            dispatcher.removeObserver("/message", dispatcher.observed)
            dispatcher.addObserver("/message", lambda e: None, 10)
        del ours[:], theirs[:]
        for element in elements:
            self.assertEqual(reference.dispatch(element), xs.dispatch(element))
        self.assertEqual(theirs, ours)
        self.assertNotIn(("message", "message"), ours)
        self.assertIn(("result", "result"), ours)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_plansBounded(self):
        """
        A dispatch plan is kept for each stanza name and each name an
        observer's query names, and for no other: names a peer makes up
        cost a plan each time, and keep nothing.
        """
        from twisted.words.protocols.jabber import xmlstream
        from twisted.words.xish import domish

        from dna.channel.stream import ForwardingStream

        xs = ForwardingStream(xmlstream.Authenticator())
        calls = []
        xs.addObserver("/*", lambda element: calls.append(("any", element.name)), -1)
        xs.addObserver("/result", lambda element: calls.append(("result", element.name)))
        names = ["result", "message"] + ["junk%d" % (i,) for i in range(100)] + ["result"]
        for name in names:
            xs.dispatch(domish.Element(("jabber:server", name)))
        self.assertEqual({"result", "message"}, set(xs._plans))
        self.assertEqual(2, calls.count(("result", "result")))
        self.assertEqual(len(names), len([c for c in calls if c[0] == "any"]))



    def test_oneTimeFiredInside(self):
        """
        A one-time observer fired by an element dispatched from inside
        another observer is not called again for the outer element.
        """
        from twisted.words.protocols.jabber import xmlstream
        from twisted.words.xish import domish

        from dna.channel.stream import ForwardingStream

        xs = ForwardingStream(xmlstream.Authenticator())
        calls = []
        inner = domish.Element(("jabber:server", "iq"))

        def first(element):
            calls.append(("first", element.name))
            if element.name == "message":
                xs.dispatch(inner)

        xs.addObserver("/*", first, 10)
        xs.addOnetimeObserver("/*", lambda element: calls.append(("once", element.name)))
        xs.dispatch(domish.Element(("jabber:server", "message")))
        xs.dispatch(domish.Element(("jabber:server", "message")))
        self.assertEqual(
            [("first", "message"), ("first", "iq"), ("once", "iq"),
             ("first", "message"), ("first", "iq")], calls)

class WriteBatchTests(SynchronousTestCase):
    """
    L{WriteBatch}: the stanzas a stream sends while a read is handled go out
    in one write when it ends, in order with everything else it sends.
    """

    HEADER = RawStanzaTests.SERVER_HEADER

    def stream(self, batch):
        from twisted.words.protocols.jabber import xmlstream

        from dna.channel.stream import S2SStream

        class Recording(StringTransport):
            def __init__(self):
                StringTransport.__init__(self)
                self.writes = []

            def write(self, data):
                self.writes.append(data)
                StringTransport.write(self, data)

        xs = S2SStream(xmlstream.Authenticator())
        xs.namespace = "jabber:server"
        xs.prefixes = {"http://etherx.jabber.org/streams": "stream"}
        xs.makeConnection(Recording())
        xs.writeBatch = batch
        return xs

    def message(self, n):
        from twisted.words.xish import domish

        element = domish.Element(("jabber:server", "message"))
        element["to"] = "v@b.example"
        element["id"] = str(n)
        return element

    def test_heldUntilClosed(self):
        """
        Stanzas sent while the batch is open are counted in C{bytesSent} at
        once, and written in one piece, stream by stream, when it closes;
        once closed, each goes out when sent.
        """
        from dna.channel.stream import WriteBatch

        batch = WriteBatch()
        one, two = self.stream(batch), self.stream(batch)
        batch.open()
        one.send(self.message(1))
        two.send(self.message(2))
        one.send(self.message(3))
        self.assertEqual(([], []), (one.transport.writes, two.transport.writes))
        expected = (b"<message to='v@b.example' id='1'/>"
                    b"<message to='v@b.example' id='3'/>")
        self.assertEqual(len(expected), one.bytesSent)
        batch.close()
        self.assertEqual([expected], one.transport.writes)
        self.assertEqual([b"<message to='v@b.example' id='2'/>"], two.transport.writes)
        one.send(self.message(4))
        self.assertEqual(b"<message to='v@b.example' id='4'/>", one.transport.writes[-1])

    def test_heldBounded(self):
        """
        A stream holds at most L{HOLD_LIMIT} bytes: past it, what it holds
        is written at once (flow control watches the transport's buffer,
        which must say how much waits), and it holds anew after.
        """
        from dna.channel import stream
        from dna.channel.stream import WriteBatch

        self.patch(stream, "HOLD_LIMIT", 100)
        size = len(b"<message to='v@b.example' id='1'/>")
        batch = WriteBatch()
        xs = self.stream(batch)
        batch.open()
        for n in range(1, 4):
            xs.send(self.message(n))
        self.assertEqual([size * 3], [len(w) for w in xs.transport.writes])
        xs.send(self.message(4))
        self.assertEqual(1, len(xs.transport.writes))
        batch.close()
        self.assertEqual([size * 3, size], [len(w) for w in xs.transport.writes])

    def test_nested(self):
        """
        A batch opened again while open writes when the outer one closes.
        """
        from dna.channel.stream import WriteBatch

        batch = WriteBatch()
        xs = self.stream(batch)
        batch.open()
        batch.open()
        xs.send(self.message(1))
        batch.close()
        self.assertEqual([], xs.transport.writes)
        batch.close()
        self.assertEqual(1, len(xs.transport.writes))

    def test_othersWriteHeldFirst(self):
        """
        What is not a stanza (an acknowledgement request, a stream error, a
        footer) is written when sent, after the stanzas held: nothing is
        reordered, and nothing is left behind when the stream closes.
        """
        from twisted.words.protocols.jabber import error
        from twisted.words.xish import domish

        from dna.channel.stream import WriteBatch

        batch = WriteBatch()
        xs = self.stream(batch)
        xs.sendHeader()
        batch.open()
        xs.send(self.message(1))
        xs.send(domish.Element(("urn:xmpp:sm:3", "r")))
        xs.send(self.message(2))
        xs.sendStreamError(error.StreamError("system-shutdown"))
        written = b"".join(xs.transport.writes)
        self.assertLess(written.index(b"id='1'"), written.index(b"<r xmlns"))
        self.assertLess(written.index(b"<r xmlns"), written.index(b"id='2'"))
        self.assertLess(written.index(b"id='2'"), written.index(b"system-shutdown"))
        self.assertTrue(xs.transport.disconnecting)
        batch.close()
        self.assertEqual(written, b"".join(xs.transport.writes))

    def test_flowSourceBatchesItsReads(self):
        """
        What handling one read of a L{dna.app.flow} source sends goes out as
        one write per stream, before the read returns.
        """
        import collections

        from twisted.internet.task import Clock
        from twisted.words.protocols.jabber import xmlstream

        from dna.app.flow import FlowControl
        from dna.channel.stream import S2SStream

        flow = FlowControl(collections.Counter(), Clock())
        out = self.stream(None)
        flow.sink(out)
        source = S2SStream(xmlstream.Authenticator())
        source.makeConnection(StringTransport())
        flow.source(source)
        source.addObserver("/message", out.send)
        source.dataReceived(self.HEADER)
        source.dataReceived(b"".join(
            b"<message from='u@a.example' to='v@b.example' id='%d'/>" % (n,)
            for n in range(5)))
        self.assertEqual(1, len(out.transport.writes))
        self.assertEqual(5, out.transport.writes[0].count(b"<message "))

    def test_failedWriteForgetsNoStream(self):
        """
        When writing what one stream held raises, the streams after it are
        written at the next close, and the failing one holds nothing more.
        """
        from dna.channel.stream import WriteBatch

        batch = WriteBatch()
        one, two = self.stream(batch), self.stream(batch)

        def broken(data):
            raise OSError("broken")

        one.transport.write = broken
        batch.open()
        one.send(self.message(1))
        two.send(self.message(2))
        self.assertRaises(OSError, batch.close)
        self.assertEqual([], two.transport.writes)
        batch.open()
        batch.close()
        self.assertEqual([b"<message to='v@b.example' id='2'/>"], two.transport.writes)
        self.assertIsNone(one._held)

