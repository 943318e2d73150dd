"""
No downgrade by stripping (issue 9 section 5), over real sockets: two DNA
providers with real DNS (knotd serving signed zones, a validating unbound)
and real mutual TLS, and between them a man in the middle
(L{dna.testing.proxy.StrippingProxy}) on the address the DNS gives the
Receiving Server, under each fallback policy.

  - It strips C{<starttls/>} from the Receiving Server's plaintext
    features: the Originating Server sends nothing but its stream header,
    does not fall back, and the stanza bounces with
    C{<remote-server-not-found/>} (no stream that could carry it: as for any
    failed connection, RFC 6120 section 8.3.3.16).
  - It forges a plaintext C{<host-unknown/>} refusal from a server name the
    Originating Server reached over DNA before: no fallback, the same
    bounce.
  - It forges the refusal on first contact: the fallback a server without
    DNA would get is tried, and still nothing readable passes in the clear,
    nothing reaches the Receiving Server, the stanza bounces.
"""

from twisted.internet import defer, reactor, task
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from dna.app.delegation import makeDelegationChecker
from dna.dns.client import DNSClient
from dna.legacy.policy import FALLBACK_DIALBACK, FALLBACK_DNA, FALLBACK_PKIX
from dna.testing.proxy import INJECT_HOST_UNKNOWN, PASS, STRIP_STARTTLS, StrippingProxy
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"
SENDER = "romeo@sender.example"
TARGET = "juliet@target.example"


class StrippingProxyMixin(ProvidersMixin):
    """
    Provider A (sender.example) and provider B (target.example), B reached
    through the proxy, both under the policy C{level}.
    """

    timeout = 60
    level = None

    @defer.inlineCallbacks
    def setUp(self):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.env = startDNSEnvironment(self)
        self.setUpPKI()
        checker = makeDelegationChecker(reactor, [self.env.resolver], "ad")
        client = DNSClient([self.env.resolver], reactor)
        self.b, self.inboxB, portB = yield self.startProvider(
            ["target.example"], {RECEIVING: self.ca.issue(RECEIVING, dnsNames=[RECEIVING])},
            checker, client=client, interface=HOSTS[RECEIVING], fallback=self.level,
        )
        self.proxy = StrippingProxy(reactor, HOSTS[RECEIVING], portB)
        listening = reactor.listenTCP(5269, self.proxy, interface=HOSTS[RECEIVING])
        self.addCleanup(listening.stopListening)
        self.addCleanup(self.proxy.dropAll)
        self.a, self.inboxA, portA = yield self.startProvider(
            ["sender.example"], {ORIGINATING: self.ca.issue(ORIGINATING, dnsNames=[ORIGINATING])},
            checker, client=client, interface=HOSTS[ORIGINATING], fallback=self.level,
        )

    def events(self, prefix):
        return [e for e in self.log if e.get("log_format", "").startswith(prefix)]

    @defer.inlineCallbacks
    def bounced(self, stanzaID):
        """
        Send a message from A; it must bounce with remote-server-not-found
        and never reach B.
        """
        self.a.send(message(SENDER, TARGET, stanzaID=stanzaID))
        for attempt in range(400):
            bounces = [s for s in self.inboxA.stanzas if s.getAttribute("id") == stanzaID]
            if bounces:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("no bounce for " + stanzaID)
        [bounce] = bounces
        self.assertEqual("error", bounce["type"])
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(bounce))
        self.assertEqual([], [s for s in self.inboxB.stanzas if s.getAttribute("id") == stanzaID])

    def assertNothingReadable(self, sessions):
        """
        Nothing but stream headers and features negotiation went from A
        through C{sessions} in the clear: no dialback, no stanza.
        """
        sent = b"".join(bytes(s.fromOriginating) for s in sessions)
        self.assertIn(b"<stream:stream", sent)
        for forbidden in (b"<db:result", b"<db:verify", b"<message", b"<body", b"<auth"):
            self.assertNotIn(forbidden, sent)

    @defer.inlineCallbacks
    def test_strippedStartTLS(self):
        """
        C{<starttls/>} stripped from B's plaintext features: A fails the
        attempt, logs and counts the downgrade, does not fall back, and sent
        only its stream header.
        """
        self.proxy.mode = STRIP_STARTTLS
        yield self.bounced("s1")
        [session] = self.proxy.sessions
        self.assertEqual(1, session.stripped)
        self.assertNothingReadable([session])
        self.assertNotIn(b"<starttls", bytes(session.fromOriginating))
        self.assertEqual([], self.events("Falling back"))
        [event] = self.events("Downgrade attempt")
        self.assertEqual(
            (RECEIVING, "starttls", self.level), (event["peer"], event["feature"], event["policy"])
        )
        self.assertEqual({"starttls": 1}, dict(self.a.connector.downgrades))
        self.assertEqual(0, len(self.a.federation.tables.connections))
        self.assertEqual(0, len(self.b.federation.tables.connections))

    @defer.inlineCallbacks
    def test_forgedRefusalOfKnownServer(self):
        """
        A reached B over DNA through the proxy; once that stream is gone, a
        plaintext host-unknown forged for B's server name is a downgrade
        attempt: no fallback, the stanza bounces.
        """
        self.a.send(message(SENDER, TARGET, stanzaID="m1"))
        yield self.inboxB.waitFor(1, timeout=20)
        self.assertTrue(self.a.connector.knowsDNA(RECEIVING))
        self.proxy.mode = INJECT_HOST_UNKNOWN
        self.proxy.dropAll()
        yield self.streamsGone()
        yield self.bounced("m2")
        # A may have sent m1 again first: it was not acknowledged yet when
        # the stream ended (XEP-0198 resending), and that bounces too.
        first, forged = self.proxy.sessions[0], self.proxy.sessions[1:]
        self.assertEqual(PASS, first.mode)
        self.assertEqual({INJECT_HOST_UNKNOWN}, {s.mode for s in forged})
        self.assertNothingReadable(self.proxy.sessions)
        self.assertEqual([], self.events("Falling back"))
        events = self.events("Downgrade attempt")
        self.assertEqual(len(forged), len(events))
        self.assertEqual(
            {(RECEIVING, "plaintext <host-unknown/>", self.level)},
            {(e["peer"], e["feature"], e["policy"]) for e in events},
        )
        self.assertEqual(
            {"plaintext <host-unknown/>": len(forged)}, dict(self.a.connector.downgrades)
        )
        self.assertEqual(0, len(self.a.federation.tables.connections))

    @defer.inlineCallbacks
    def test_forgedRefusalFirstContact(self):
        """
        A plaintext host-unknown forged before A ever reached B over DNA is
        what a server without DNA says: A tries the fallback its policy
        allows, but nothing readable passes in the clear, nothing reaches B,
        and the stanza bounces.
        """
        self.proxy.mode = INJECT_HOST_UNKNOWN
        yield self.bounced("f1")
        self.assertNothingReadable(self.proxy.sessions)
        self.assertEqual(0, len(self.a.federation.tables.connections))
        self.assertEqual(0, len(self.b.federation.tables.connections))

    @defer.inlineCallbacks
    def streamsGone(self):
        """
        Wait until neither provider has a stream left.
        """
        for attempt in range(200):
            if not (len(self.a.federation.tables.connections)
                    or len(self.b.federation.tables.connections)):
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.fail("the streams did not end")


class DNAOnlyStrippingTests(StrippingProxyMixin, unittest.TestCase):
    """
    Under C{dna}: no legacy stream at all.
    """

    level = FALLBACK_DNA


class PKIXStrippingTests(StrippingProxyMixin, unittest.TestCase):
    """
    Under C{dna+pkix}.
    """

    level = FALLBACK_PKIX


class DialbackStrippingTests(StrippingProxyMixin, unittest.TestCase):
    """
    Under C{dna+pkix+dialback}, where a legacy peer's certificate need not
    verify.
    """

    level = FALLBACK_DIALBACK
