"""
Tests for L{dna.channel.stream}: the one stream class of every S2S
connection.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream

from dna.channel.originating import DNAConnectAuthenticator, _StreamFactory
from dna.channel.receiving import S2SServerFactory
from dna.channel.stream import S2SStream

from tests.streams import HEADER, makeStream, receive, stanza


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
