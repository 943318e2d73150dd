"""
No downgrade by stripping (issue 9 section 5), in memory: what a man in the
middle can change before TLS (the features, a stream error) never makes the
Originating Server fall back or send anything in plaintext, under every
policy, and the Receiving Server processes nothing but C{<starttls/>} in
plaintext. L{tests.integration.test_stripping} drives a real stripping proxy
between two providers.
"""

from twisted.internet import error as ierror
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import error

from dna.channel.originating import Connector
from dna.channel.receiving import DNAListenAuthenticator
from dna.dns.addresses import AddressResolver
from dna.error import (
    ConnectFailed,
    DowngradeAttempt,
    PeerLacksDNA,
    PlaintextRefusal,
    StartTLSStripped,
)
from dna.legacy.dialback import DialbackKeys
from dna.legacy.originating import LegacyConnector
from dna.legacy.policy import (
    FALLBACK_DIALBACK,
    FALLBACK_PKIX,
    FALLBACKS,
    FallbackPolicy,
    fallbackReason,
)
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import RecordingXmlStream
from tests.unit.test_legacy import LegacyListenMixin

CA = CertificateAuthority("Downgrade Test CA")
CERTIFICATE = CA.issue(
    "xmpp1.originating.tld", dnsNames=["xmpp1.originating.tld", "sender.tld"]
)
TRUST = trustRootFromCertificates([CA.toCertificate()])

PEER_HEADER = (
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    "from='{peer}' id='{sid}' version='1.0'>"
)
STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
DNA = "<dna xmlns='urn:xmpp:dna:1'/>"
DIALBACK = "<dialback xmlns='urn:xmpp:features:dialback'/>"
HOST_UNKNOWN = (
    "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    "</stream:error></stream:stream>"
)


class TLSStringTransport(StringTransport):
    """
    A StringTransport whose C{startTLS} only records that it was called:
    what follows stands for the encrypted stream.
    """

    tlsStarted = None

    def startTLS(self, contextFactory):
        self.tlsStarted = contextFactory


def features(*children):
    return "<stream:features>{}</stream:features>".format("".join(children))


class PeerMixin:
    """
    Complete the connection attempts a connector makes on a
    L{MemoryReactorClock}, playing the peer over a L{TLSStringTransport}.
    """

    def accept(self, peer):
        """
        The peer's end of the latest attempt: its stream header is sent.

        @return: (stream, transport).
        """
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[-1]
        wrapper = factory.buildProtocol(None)
        transport = TLSStringTransport()
        wrapper.makeConnection(transport)
        xs = wrapper._wrappedProtocol
        xs.dataReceived(PEER_HEADER.format(peer=peer, sid="plain").encode("utf-8"))
        return xs, transport

    def startTLS(self, xs, transport, peer):
        """
        Offer STARTTLS, proceed, and restart the stream "inside TLS".
        """
        xs.dataReceived(features(STARTTLS).encode("utf-8"))
        self.assertIn(b"<starttls", transport.value())
        xs.dataReceived(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIsNotNone(transport.tlsStarted)
        xs.dataReceived(PEER_HEADER.format(peer=peer, sid="encrypted").encode("utf-8"))

    def downgradeEvents(self):
        return [e for e in self.log if e.get("log_format", "").startswith("Downgrade attempt")]


class ConnectorDowngradeTests(PeerMixin, SynchronousTestCase):
    """
    L{Connector}: what a man in the middle can do before TLS fails the DNA
    attempt with a L{DowngradeAttempt}, logged and counted.
    """

    def setUp(self):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.reactor = MemoryReactorClock()
        self.connector = Connector(
            FakeDelegationChecker({"target.tld": {"xmpp1.receiving.tld"}}),
            AddressResolver(hosts={"xmpp1.receiving.tld": ("127.0.0.2", None)}),
            "xmpp1.originating.tld",
            CERTIFICATE.toPrivateCertificate(),
            TRUST,
            reactor=self.reactor,
            connectTimeout=10,
            policy=FALLBACK_DIALBACK,
            dnaMemory=600,
        )

    def connect(self):
        d = self.connector.connect("xmpp1.receiving.tld", 5269)
        xs, transport = self.accept("xmpp1.receiving.tld")
        return d, xs, transport

    def authenticate(self):
        """
        A whole DNA stream: STARTTLS, then C{<dna/>} inside TLS.
        """
        d, xs, transport = self.connect()
        self.startTLS(xs, transport, "xmpp1.receiving.tld")
        xs.dataReceived(features(DNA).encode("utf-8"))
        self.assertIs(xs, self.successResultOf(d))
        return xs

    def test_strippedStartTLS(self):
        """
        Features without C{<starttls/>} fail the attempt with
        L{StartTLSStripped}, not L{PeerLacksDNA} (which calls for a
        fallback): nothing but our stream header was sent, the connection is
        dropped, and the attempt is logged once with the peer, the feature
        and the policy, and counted.
        """
        d, xs, transport = self.connect()
        header = transport.value()
        xs.dataReceived(features(DIALBACK).encode("utf-8"))
        failure = self.failureResultOf(d, StartTLSStripped)
        self.assertEqual("xmpp1.receiving.tld", failure.value.serverName)
        self.assertIsNone(fallbackReason(failure))
        self.assertEqual(header, transport.value())
        self.assertTrue(transport.disconnecting)
        [event] = self.downgradeEvents()
        self.assertEqual(
            ("xmpp1.receiving.tld", "starttls", FALLBACK_DIALBACK),
            (event["peer"], event["feature"], event["policy"]),
        )
        self.assertEqual({"starttls": 1}, dict(self.connector.downgrades))

    def test_emptyFeatures(self):
        """
        Empty features are a stripped C{<starttls/>} too.
        """
        d, xs, transport = self.connect()
        xs.dataReceived(features().encode("utf-8"))
        self.failureResultOf(d, StartTLSStripped)

    def test_lackingDNAAfterTLS(self):
        """
        A peer that offers no C{<dna/>} inside TLS, where nobody can strip
        it, lacks DNA: that failure still calls for a fallback.
        """
        d, xs, transport = self.connect()
        self.startTLS(xs, transport, "xmpp1.receiving.tld")
        xs.dataReceived(features(DIALBACK).encode("utf-8"))
        failure = self.failureResultOf(d, PeerLacksDNA)
        self.assertIsNotNone(fallbackReason(failure))
        self.assertEqual({}, dict(self.connector.downgrades))

    def test_plaintextRefusalOfUnknownServer(self):
        """
        A server name never reached over DNA that refuses the stream before
        TLS may be a server without DNA (Prosody answers host-unknown): the
        stream error stays a reason to fall back.
        """
        d, xs, transport = self.connect()
        xs.dataReceived(HOST_UNKNOWN.encode("utf-8"))
        failure = self.failureResultOf(d, error.StreamError)
        self.assertIsNotNone(fallbackReason(failure))
        self.assertEqual([], self.downgradeEvents())

    def test_learnsDNA(self):
        """
        An authenticated DNA stream teaches that its server name speaks
        DNA, for C{dnaMemory} seconds.
        """
        self.assertFalse(self.connector.knowsDNA("xmpp1.receiving.tld"))
        self.authenticate()
        self.assertTrue(self.connector.knowsDNA("xmpp1.receiving.tld"))
        self.reactor.advance(601)
        self.assertFalse(self.connector.knowsDNA("xmpp1.receiving.tld"))

    def test_failureTeachesNothing(self):
        """
        A failed attempt does not make a server name known to speak DNA.
        """
        d, xs, transport = self.connect()
        self.startTLS(xs, transport, "xmpp1.receiving.tld")
        xs.dataReceived(features(DIALBACK).encode("utf-8"))
        self.failureResultOf(d, PeerLacksDNA)
        self.assertFalse(self.connector.knowsDNA("xmpp1.receiving.tld"))

    def test_plaintextRefusalOfKnownServer(self):
        """
        A server name we authenticated over DNA that refuses the stream
        before TLS: the refusal is plaintext anyone could forge, and no
        reason to fall back (L{PlaintextRefusal}), logged and counted.
        """
        self.authenticate()
        d, xs, transport = self.connect()
        xs.dataReceived(HOST_UNKNOWN.encode("utf-8"))
        failure = self.failureResultOf(d, PlaintextRefusal)
        self.assertEqual(
            ("xmpp1.receiving.tld", "host-unknown"),
            (failure.value.serverName, failure.value.condition),
        )
        self.assertIsNone(fallbackReason(failure))
        [event] = self.downgradeEvents()
        self.assertEqual("plaintext <host-unknown/>", event["feature"])
        self.assertEqual({"plaintext <host-unknown/>": 1}, dict(self.connector.downgrades))

    def test_refusalInsideTLS(self):
        """
        A stream error inside TLS comes from the peer whose certificate we
        verified: not a downgrade attempt, even from a server name known to
        speak DNA.
        """
        self.authenticate()
        d, xs, transport = self.connect()
        self.startTLS(xs, transport, "xmpp1.receiving.tld")
        xs.dataReceived(HOST_UNKNOWN.encode("utf-8"))
        self.failureResultOf(d, error.StreamError)
        self.assertEqual([], self.downgradeEvents())


class FallbackReasonTests(SynchronousTestCase):
    """
    L{fallbackReason} and downgrade attempts.
    """

    def test_neverAfterDowngradeAttempt(self):
        """
        A downgrade attempt is no reason to fall back, alone or among the
        attempts for a domain's targets, even beside a failure that would be
        one.
        """
        attempts = [
            StartTLSStripped("xmpp1.t.tld"),
            PlaintextRefusal("xmpp1.t.tld", "host-unknown"),
        ]
        for attempt in attempts:
            self.assertIsNone(fallbackReason(Failure(attempt)))
            for others in [[], [error.StreamError("host-unknown")], [PeerLacksDNA("xmpp2.t.tld")]]:
                for reasons in [[attempt] + others, others + [attempt]]:
                    self.assertIsNone(
                        fallbackReason(Failure(ConnectFailed("t.tld", [], reasons))), reasons
                    )

    def test_stillForLegacyPeers(self):
        """
        Without a downgrade attempt, the signs of a legacy peer still count.
        """
        self.assertIsNotNone(fallbackReason(Failure(ConnectFailed(
            "t.tld", [], [ierror.ConnectionRefusedError(), error.StreamError("host-unknown")]
        ))))


class LegacyConnectorDowngradeTests(PeerMixin, SynchronousTestCase):
    """
    L{LegacyConnector}: a legacy stream requires STARTTLS too (RFC 7590),
    under every policy that has legacy streams.
    """

    def setUp(self):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.reactor = MemoryReactorClock()

    def legacyConnector(self, level):
        return LegacyConnector(
            FakeDelegationChecker({"target.tld": {"xmpp.target.tld"}}),
            AddressResolver(hosts={"xmpp.target.tld": ("127.0.0.3", None)}),
            FallbackPolicy(level), DialbackKeys("secret"),
            {"xmpp1.originating.tld": CERTIFICATE.toPrivateCertificate()}, TRUST,
            reactor=self.reactor, connectTimeout=10,
        )

    def test_strippedStartTLS(self):
        """
        A legacy stream whose features lack C{<starttls/>} fails with
        L{StartTLSStripped}, before any dialback or SASL: nothing but our
        header was sent; logged and counted.
        """
        for level in (FALLBACK_PKIX, FALLBACK_DIALBACK):
            connector = self.legacyConnector(level)
            d = connector.connect("sender.tld", "target.tld")
            xs, transport = self.accept("target.tld")
            header = transport.value()
            xs.dataReceived(features(DIALBACK).encode("utf-8"))
            failure = self.failureResultOf(d, StartTLSStripped)
            self.assertEqual("target.tld", failure.value.serverName)
            self.assertEqual(header, transport.value())
            self.assertEqual({"starttls": 1}, dict(connector.downgrades))
            self.assertEqual(level, self.downgradeEvents()[-1]["policy"])

    def test_verificationStream(self):
        """
        So does a stream for C{<db:verify/>}: a dialback key never travels
        in plaintext.
        """
        connector = self.legacyConnector(FALLBACK_DIALBACK)
        d = connector.connectForVerification("sender.tld", "target.tld")
        xs, transport = self.accept("target.tld")
        xs.dataReceived(features(DIALBACK).encode("utf-8"))
        self.failureResultOf(d, StartTLSStripped)
        self.assertNotIn(b"db:verify", transport.value())


class ReceivingPlaintextTests(SynchronousTestCase):
    """
    L{DNAListenAuthenticator}: before TLS, only C{<starttls/>} is
    processed; C{<dna/>} is never offered in plaintext.
    """

    def setUp(self):
        self.authenticated = []
        authenticator = DNAListenAuthenticator(
            frozenset(["xmpp1.receiving.tld"]), object(),
            lambda *args: self.authenticated.append(args),
        )
        self.xs = RecordingXmlStream(authenticator)
        self.transport = TLSStringTransport()
        self.xs.makeConnection(self.transport)
        self.xs.dataReceived(
            PEER_HEADER.replace("from=", "to='xmpp1.receiving.tld' from=")
            .format(peer="xmpp1.originating.tld", sid="x").encode("utf-8")
        )

    def test_noDNAInPlaintext(self):
        """
        The features before TLS offer only STARTTLS.
        """
        self.assertIn(b"<starttls", self.transport.value())
        self.assertNotIn(b"urn:xmpp:dna", self.transport.value())
        self.assertNotIn(b"bidi", self.transport.value())

    def test_refusedBeforeTLS(self):
        """
        A C{<db:result/>}, a stanza, or any other element before TLS closes
        the stream with C{<not-authorized/>}; TLS never starts and nothing is
        authenticated.
        """
        for element in [
            "<db:result xmlns:db='jabber:server:dialback' from='sender.tld' "
            "to='target.tld'>key</db:result>",
            "<message from='romeo@sender.tld' to='juliet@target.tld'><body>hi</body></message>",
            "<bidi xmlns='urn:xmpp:bidi'/>",
        ]:
            self.setUp()
            self.xs.dataReceived(element.encode("utf-8"))
            self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
            self.assertTrue(self.transport.disconnecting)
            self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.assertIsNone(self.transport.tlsStarted)
            self.assertEqual([], self.authenticated)

    def test_startTLSAccepted(self):
        """
        C{<starttls/>} still starts TLS.
        """
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIsNotNone(self.transport.tlsStarted)
        self.assertEqual([], self.xs.streamErrors)


class LegacyReceivingPlaintextTests(LegacyListenMixin, SynchronousTestCase):
    """
    L{dna.legacy.receiving.LegacyNegotiation}: before TLS, a legacy stream
    processes nothing but C{<starttls/>} either.
    """

    def test_refusedBeforeTLS(self):
        """
        A C{<db:result/>} or a stanza before TLS closes the stream with
        C{<not-authorized/>}: it never joins the tables, nothing is
        delivered.
        """
        self.header()
        self.xs.dataReceived(
            b"<db:result xmlns:db='jabber:server:dialback' from='target.tld' "
            b"to='sender.tld'>key</db:result>"
            b"<message from='a@target.tld' to='b@sender.tld'><body>hi</body></message>"
        )
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
        self.assertEqual([], self.joined)
        self.assertEqual([], self.delivered)
        self.assertIsNone(self.transport.tlsStarted)


class PolicyTests(SynchronousTestCase):
    """
    The same under every policy.
    """

    def test_everyPolicy(self):
        """
        Under every fallback policy a stripped C{<starttls/>} fails the DNA
        attempt, with no reason to fall back.
        """
        for level in FALLBACKS:
            reactor = MemoryReactorClock()
            connector = Connector(
                FakeDelegationChecker(), AddressResolver(hosts={"x.tld": ("127.0.0.2", None)}),
                "xmpp1.originating.tld", CERTIFICATE.toPrivateCertificate(), TRUST,
                reactor=reactor, policy=level,
            )
            d = connector.connect("x.tld", 5269)
            host, port, factory, timeout, bindAddress = reactor.tcpClients[-1]
            wrapper = factory.buildProtocol(None)
            wrapper.makeConnection(TLSStringTransport())
            xs = wrapper._wrappedProtocol
            xs.dataReceived(PEER_HEADER.format(peer="x.tld", sid="s").encode("utf-8"))
            xs.dataReceived(features().encode("utf-8"))
            failure = self.failureResultOf(d, DowngradeAttempt)
            self.assertIsNone(fallbackReason(failure))
            self.assertEqual(1, connector.downgrades["starttls"])
