"""
Tests for L{dna.channel.receiving}: the Receiving Server's stream negotiation, in
memory.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dna.channel.receiving import DNAListenAuthenticator, newStreamID
from dna.channel.stream import S2SStream
from dna.namespaces import NS_TLS


class TLSStringTransport(StringTransport):
    """
    A StringTransport that records C{startTLS}.
    """

    tlsStarted = None

    def startTLS(self, contextFactory):
        self.tlsStarted = contextFactory


HEADER = (
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    "{attributes} version='1.0'>"
)


class ListenAuthenticatorTests(SynchronousTestCase):
    """
    Tests for L{DNAListenAuthenticator} before TLS.
    """

    def setUp(self):
        self.authenticated = []
        self.context = object()
        authenticator = DNAListenAuthenticator(
            frozenset(["xmpp1.receiving.tld"]),
            self.context,
            lambda *args: self.authenticated.append(args),
        )
        self.xs = S2SStream(authenticator)
        self.transport = TLSStringTransport()
        self.xs.makeConnection(self.transport)

    def header(self, **attributes):
        text = " ".join("%s='%s'" % (k.rstrip("_"), v) for k, v in attributes.items())
        self.xs.dataReceived(HEADER.format(attributes=text).encode("utf-8"))

    def output(self):
        return self.transport.value().decode("utf-8")

    def test_offersOnlyStartTLS(self):
        """
        A stream to one of our server names gets a fresh 128-bit id and only
        a required C{<starttls/>}; it is not authenticated.
        """
        self.header(to="xmpp1.receiving.tld", from_="xmpp1.originating.tld")
        output = self.output()
        self.assertIn("id='%s'" % (self.xs.sid,), output)
        self.assertEqual(32, len(self.xs.sid))
        self.assertIn("<starttls xmlns='%s'><required/></starttls>" % (NS_TLS,), output)
        self.assertNotIn("urn:xmpp:dna:1", output)
        self.assertEqual([], self.authenticated)

    def test_startTLS(self):
        """
        C{<starttls/>} is answered with C{<proceed/>} and TLS starts with our
        context factory.
        """
        self.header(to="xmpp1.receiving.tld", from_="xmpp1.originating.tld")
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIn("<proceed xmlns='%s'/>" % (NS_TLS,), self.output())
        self.assertIs(self.context, self.transport.tlsStarted)

    def test_unknownHost(self):
        """
        A stream to a name we do not serve is refused with
        C{<host-unknown/>}.
        """
        self.header(to="elsewhere.tld", from_="xmpp1.originating.tld")
        self.assertIn("host-unknown", self.output())
        self.assertTrue(self.transport.disconnecting)

    def test_malformedTo(self):
        """
        A malformed 'to' is C{<host-unknown/>}, not a crash.
        """
        self.header(to="a..b", from_="xmpp1.originating.tld")
        self.assertIn("host-unknown", self.output())

    def test_missingFrom(self):
        """
        A stream without a server name in 'from' is refused with
        C{<invalid-from/>}.
        """
        self.header(to="xmpp1.receiving.tld")
        self.assertIn("invalid-from", self.output())
        self.assertTrue(self.transport.disconnecting)

    def test_wrongNamespace(self):
        """
        A client stream is refused with C{<invalid-namespace/>}.
        """
        self.xs.dataReceived(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            b"to='xmpp1.receiving.tld' from='x.tld' version='1.0'>"
        )
        self.assertIn("invalid-namespace", self.output())

    def test_malformedXML(self):
        """
        Malformed XML ends the stream; nothing was authenticated.
        """
        self.header(to="xmpp1.receiving.tld", from_="xmpp1.originating.tld")
        self.xs.dataReceived(b"<message <<>>")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual([], self.authenticated)

    def test_newStreamIDsDiffer(self):
        """
        Stream ids are random.
        """
        self.assertEqual(100, len({newStreamID() for _ in range(100)}))
