"""
Tests for L{dna.channel.stream}: the one stream class of every S2S
connection.
"""

from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from dna.channel.originating import DNAConnectAuthenticator, _StreamFactory
from dna.channel.receiving import S2SServerFactory
from dna.channel.stream import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STANZA_SIZE,
    DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH,
    S2SStream,
)
from dna.namespaces import NS_STREAMS, NS_XMPP_STREAMS
from tests.unit.streams import HEADER, makeStream, receive, stanza


class _Refuser:
    """
    A stanza filter that refuses every element and records it.
    """

    def __init__(self):
        self.refused = []

    def admit(self, element):
        self.refused.append(element)
        return False


class S2SStreamTests(SynchronousTestCase):
    """
    Tests for L{S2SStream}.
    """

    def test_declaredDefaults(self):
        """
        A new stream is one-way, unfiltered and not authenticated by a
        legacy mechanism.
        """
        xs = S2SStream(xmlstream.Authenticator())
        self.assertEqual(
            (False, None, None, False, False, False),
            (xs.bidi, xs.stanzaFilter, xs.legacyMechanism, xs.peerVerified,
             xs.peerDeclaresDialback, xs.headerSent),
        )

    def test_headerSent(self):
        """
        L{S2SStream.headerSent} is true once our header went out, and false
        again after a restart.
        """
        xs = makeStream()
        xs.sendHeader()
        self.assertTrue(xs.headerSent)
        xs.reset()
        self.assertFalse(xs.headerSent)

    def test_filterBeforeObservers(self):
        """
        An element the filter refuses reaches no observer, however high its
        priority; without a filter it does.
        """
        xs = makeStream()
        seen = []
        xs.addObserver("/*", seen.append, priority=1000)
        refuser = xs.stanzaFilter = _Refuser()
        receive(xs, stanza())
        self.assertEqual(([], 1), (seen, len(refuser.refused)))
        xs.stanzaFilter = None
        receive(xs, stanza())
        self.assertEqual(1, len(seen))

    def test_filterSurvivesRestart(self):
        """
        After a stream restart (STARTTLS, SASL) the filter still sees every
        element first.
        """
        xs = makeStream()
        seen = []
        xs.addObserver("/*", seen.append)
        refuser = xs.stanzaFilter = _Refuser()
        xs.reset()
        xs.dataReceived(HEADER.format(peer="a.tld", us="b.tld", sid="s2").encode("utf-8"))
        receive(xs, stanza())
        self.assertEqual(([], 1), (seen, len(refuser.refused)))

    def test_factoriesBuildS2SStreams(self):
        """
        The receiving and the originating factories both build
        L{S2SStream}s.
        """
        server = S2SServerFactory(frozenset(["b.tld"]), None, lambda *a: None)
        client = _StreamFactory(DNAConnectAuthenticator("a.tld", "b.tld"), [], None, None)
        for factory in (server, client):
            xs = factory.buildProtocol(None)
            self.assertIsInstance(xs, S2SStream)
            xs.makeConnection(StringTransport())


class _Admitter:
    """
    A stanza filter that admits everything: the stream is authenticated.
    """

    def admit(self, element):
        return True


def _written(transport):
    """
    The top-level elements a stream wrote, parsed.
    """
    elements = []
    parser = domish.elementStream()
    parser.DocumentStartEvent = lambda root: None
    parser.ElementEvent = elements.append
    parser.DocumentEndEvent = lambda: elements.append("</stream:stream>")
    parser.parse(transport.value())
    return elements


def _message(body="hi", before="", after=""):
    return (
        "<message from='romeo@sender.tld' to='juliet@target.tld'>"
        + before + "<body>" + body + "</body>" + after + "</message>"
    )


class ParserTests(SynchronousTestCase):
    """
    Tests for the guarded parser of L{S2SStream}: RFC 6120 section 11.1's
    restrictions and the size and depth limits, fed through
    C{dataReceived}.
    """

    def setUp(self):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def authenticated(self):
        """
        A stream with our header sent and a stanza filter installed.
        """
        xs = makeStream("s1")
        xs.sendHeader()
        xs.stanzaFilter = _Admitter()
        return self.watch(xs)

    def receiving(self):
        """
        A Receiving Server's stream before TLS: header answered, STARTTLS
        offered, nothing authenticated.
        """
        factory = S2SServerFactory(frozenset(["xmpp1.receiving.tld"]), None, lambda *a: None)
        xs = factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        xs.dataReceived(
            HEADER.format(peer="xmpp1.originating.tld", us="xmpp1.receiving.tld",
                          sid="").encode("utf-8")
        )
        return self.watch(xs)

    def watch(self, xs):
        self.dispatched = []
        xs.addObserver("/*", self.dispatched.append, priority=1000)
        return xs

    def assertRefused(self, xs, condition):
        """
        C{xs} sent exactly one stream error, C{condition}, closed the stream
        and dropped the connection; one log event tells why.
        """
        elements = _written(xs.transport)
        errors = [e for e in elements
                  if not isinstance(e, str) and (e.uri, e.name) == (NS_STREAMS, "error")]
        self.assertEqual(1, len(errors), elements)
        [streamError] = errors
        self.assertEqual(
            [(NS_XMPP_STREAMS, condition), (NS_XMPP_STREAMS, "text")],
            [(c.uri, c.name) for c in streamError.elements()],
        )
        self.assertEqual("</stream:stream>", elements[-1])
        self.assertTrue(xs.transport.disconnecting)
        self.assertEqual((condition, 1), (xs.refusal, xs.refusals))
        events = [e for e in self.log if e.get("condition") is not None]
        self.assertEqual(1, len(events))
        self.assertEqual(
            (xs.sid, condition), (events[0]["streamID"], events[0]["condition"])
        )
        self.assertTrue(events[0]["reason"])
        self.assertEqual("info", events[0]["log_level"].name)

    def assertNothingDispatched(self, names=("message",)):
        self.assertEqual([], [e for e in self.dispatched if e.name in names])

    def test_doctype(self):
        """
        A DOCTYPE (here the start of a billion-laughs bomb) before the
        stream header is refused with C{<restricted-xml/>}; its entities are
        never declared.
        """
        factory = S2SServerFactory(frozenset(["xmpp1.receiving.tld"]), None, lambda *a: None)
        xs = self.watch(factory.buildProtocol(None))
        xs.makeConnection(StringTransport())
        xs.dataReceived(
            b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='&lol2;'>"
        )
        self.assertRefused(xs, "restricted-xml")

    def test_doctypeAfterHeader(self):
        """
        A DOCTYPE inside the stream is not even XML: C{<not-well-formed/>},
        and its entity is never declared.
        """
        xs = self.authenticated()
        receive(xs, "<!DOCTYPE message [<!ENTITY x 'y'>]>" + _message("&x;"))
        self.assertRefused(xs, "not-well-formed")
        self.assertNothingDispatched()

    def test_comment(self):
        """
        A comment inside a stanza is refused with C{<restricted-xml/>}; the
        stanza is not dispatched.
        """
        xs = self.authenticated()
        receive(xs, _message(before="<!-- hello -->"))
        self.assertRefused(xs, "restricted-xml")
        self.assertNothingDispatched()

    def test_processingInstruction(self):
        """
        A processing instruction is refused with C{<restricted-xml/>}.
        """
        xs = self.authenticated()
        receive(xs, _message(after="<?evil data?>"))
        self.assertRefused(xs, "restricted-xml")
        self.assertNothingDispatched()

    def test_xmlDeclarationAllowed(self):
        """
        The XML declaration is no processing instruction: a peer may send it
        before its header.
        """
        xs = self.receiving()
        self.assertIsNone(xs.refusal)
        factory = S2SServerFactory(frozenset(["xmpp1.receiving.tld"]), None, lambda *a: None)
        xs = factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        xs.dataReceived(
            b"<?xml version='1.0'?>"
            + HEADER.format(peer="xmpp1.originating.tld", us="xmpp1.receiving.tld",
                            sid="").encode("utf-8")
        )
        self.assertIsNone(xs.refusal)
        self.assertIn(b"starttls", xs.transport.value())

    def test_notWellFormed(self):
        """
        Bad XML gets C{<not-well-formed/>} before the connection closes, and
        the observers hear of it as before.
        """
        xs = self.authenticated()
        streamErrors = []
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, streamErrors.append)
        receive(xs, "<message from='a@b.tld' to='c@d.tld'><body></message>")
        self.assertRefused(xs, "not-well-formed")
        self.assertNothingDispatched()
        self.assertEqual(1, len(streamErrors))
        self.assertIsInstance(streamErrors[0].value, domish.ParserError)

    def test_undefinedEntity(self):
        """
        An entity other than the five predefined ones is not well-formed:
        nothing can declare it.
        """
        xs = self.authenticated()
        receive(xs, _message("&lt;&amp;&bomb;"))
        self.assertRefused(xs, "not-well-formed")
        self.assertNothingDispatched()

    def test_nothingAfterRefusal(self):
        """
        Once refused, the stream parses nothing more.
        """
        xs = self.authenticated()
        receive(xs, "<!-- -->")
        receive(xs, _message())
        self.assertRefused(xs, "restricted-xml")
        self.assertNothingDispatched()

    def test_sizeBeforeAuthentication(self):
        """
        Before authentication a top-level element may take 16 KiB; a larger
        one is refused with C{<policy-violation/>} and not dispatched.
        """
        self.assertEqual(16 * 1024, DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH)
        xs = self.receiving()
        xs.dataReceived(_message("x" * (16 * 1024)).encode("ascii"))
        self.assertRefused(xs, "policy-violation")
        self.assertNothingDispatched()

    def test_sizeAfterAuthentication(self):
        """
        Once authenticated, a 100 KiB stanza passes and one over 512 KiB is
        refused with C{<policy-violation/>}.
        """
        self.assertEqual(512 * 1024, DEFAULT_MAX_STANZA_SIZE)
        xs = self.authenticated()
        receive(xs, _message("x" * (100 * 1024)))
        self.assertEqual(1, len(self.dispatched))
        self.assertEqual(100 * 1024, len(str(self.dispatched[0].body)))
        receive(xs, _message("x" * (512 * 1024)))
        self.assertRefused(xs, "policy-violation")
        self.assertEqual(1, len(self.dispatched))

    def test_sizeCountedWhileFed(self):
        """
        An element that grows past the limit is refused as soon as the
        bytes fed exceed it, before it is complete.
        """
        xs = self.authenticated()
        xs.maxStanzaSize = 4096
        receive(xs, "<message from='a@b.tld' to='c@d.tld'><body>")
        for _ in range(4):
            receive(xs, "x" * 1000)
        self.assertIsNone(xs.refusal)
        receive(xs, "x" * 1000)
        self.assertRefused(xs, "policy-violation")

    def test_sizePerElement(self):
        """
        The count starts again with each top-level element: many small
        stanzas in one chunk, together far over the limit, all pass.
        """
        xs = self.authenticated()
        xs.maxStanzaSize = 4096
        receive(xs, _message("x" * 1000) * 50)
        self.assertEqual(50, len(self.dispatched))
        self.assertIsNone(xs.refusal)

    def test_refusedAfterLimitParsed(self):
        """
        A read far larger than the limit is refused after parsing at most
        the limit and one byte: the rest of the read is never fed to expat.
        """
        xs = self.receiving()
        stream = xs.stream
        before = stream._fed
        xs.dataReceived(_message("x" * (64 * 1024)).encode("ascii"))
        self.assertRefused(xs, "policy-violation")
        self.assertLessEqual(stream._fed - before, DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH + 1)

    def test_slicedReadLosesNothing(self):
        """
        A read holding many small stanzas, together far over the limit, and
        ending in the middle of one, is fed in pieces without losing or
        splitting any: all complete stanzas pass, the last one once it ends.
        """
        xs = self.authenticated()
        xs.maxStanzaSize = 1500
        data = _message("x" * 1000) * 20
        receive(xs, data + "<message from='romeo@sender.tld' to='juliet@target.tld'><body>y")
        self.assertEqual(20, len(self.dispatched))
        receive(xs, "</body></message>")
        self.assertEqual(21, len(self.dispatched))
        self.assertEqual("y", str(self.dispatched[-1].body))
        self.assertIsNone(xs.refusal)

    def test_depth(self):
        """
        A stanza may nest 64 elements, itself included; one more is a
        C{<policy-violation/>}.
        """
        self.assertEqual(64, DEFAULT_MAX_DEPTH)
        xs = self.authenticated()
        receive(xs, _message(before="<x>" * 63 + "</x>" * 63))
        self.assertEqual(1, len(self.dispatched))
        receive(xs, _message(before="<x>" * 64 + "</x>" * 64))
        self.assertRefused(xs, "policy-violation")
        self.assertEqual(1, len(self.dispatched))

    def test_tooDeepToSerialise(self):
        """
        A stanza nested deeper than the interpreter could serialise is
        refused at the parser, never built and dispatched.
        """
        xs = self.authenticated()
        receive(xs, _message(before="<x>" * 5000 + "</x>" * 5000))
        self.assertRefused(xs, "policy-violation")
        self.assertNothingDispatched()

    def test_textBuffered(self):
        """
        expat buffers text, so that a long text with many entity references
        reaches the element in a few pieces, not one per reference (domish
        concatenates each piece onto the last).
        """
        xs = self.authenticated()
        self.assertTrue(xs.stream.parser.buffer_text)
        receive(xs, _message("&amp;x" * 1000))
        self.assertEqual("&x" * 1000, str(self.dispatched[0].body))

    def test_guardSurvivesRestart(self):
        """
        After a stream restart the new parser is guarded too.
        """
        xs = self.authenticated()
        xs.reset()
        xs.transport.clear()
        xs.sendHeader()
        xs.dataReceived(HEADER.format(peer="a.tld", us="b.tld", sid="s2").encode("utf-8"))
        receive(xs, "<!-- after TLS -->")
        self.assertRefused(xs, "restricted-xml")
