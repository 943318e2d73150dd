"""
Interoperability with a server that does not speak DNA: Debian's Prosody
0.12, for real, on loopback (draft-ietf-xmpp-dna-01 section 7).

A DNA provider hosting C{dna.example} (server name C{xmpp1.dna.example})
and Prosody hosting C{prosody.example} (SRV target C{xmpp.prosody.example})
find each other through signed SRV records served by knotd and validated by
unbound (L{tests.integration.interop.InteropDNS}). The provider's DNA attempt is refused
(Prosody does not serve the name C{xmpp.prosody.example}: host-unknown); it
falls back to a stream between the domains, authenticated:

  - with certificates: both trust one CA, the provider's certificate covers
    C{dna.example}, Prosody runs with C{s2s_secure_auth}, the provider's
    policy is C{dna+pkix} (no dialback at all), so SASL EXTERNAL
    authenticates both ways;
  - with dialback: neither trusts the other's CA, Prosody accepts dialback,
    the provider's policy is C{dna+pkix+dialback}: Server Dialback
    authenticates both ways, each side verifying the other's key with the
    other's Authoritative Server.

Prosody echoes messages to C{echo@prosody.example} (C{mod_dna_echo}) and
answers a presence subscription from a pre-approved contact with
C{subscribed} (RFC 6121 section 3.4). These tests fail, never skip, when
Prosody, knot or unbound are missing.
"""

from twisted.internet import defer, endpoints, reactor
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.words.xish import domish

from dna.app.service import DNAService
from dna.dns.addresses import AddressResolver
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from dna.legacy.policy import FALLBACK_DIALBACK, FALLBACK_PKIX
from dna.testing.pki import CertificateAuthority
from tests.integration.interop import (
    S2S_PORT,
    pickAddresses,
    startInteropDNS,
    startProsody,
    xmppZone,
)
from tests.integration.providers import Inbox, message

DNA_DOMAIN = "dna.example"
SECOND_DOMAIN = "two.dna.example"
DNA_SERVER = "xmpp1.dna.example"
PROSODY_DOMAIN = "prosody.example"
PROSODY_SERVER = "xmpp.prosody.example"


def presence(sender, target, presenceType):
    element = domish.Element((None, "presence"))
    element["from"] = sender
    element["to"] = target
    element["type"] = presenceType
    return element


class ProsodyInteropMixin:
    """
    DNS, Prosody and a DNA provider, all on loopback, stopped in cleanup.
    """

    timeout = 60

    @defer.inlineCallbacks
    def startAll(self, certified):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.dnaAddress, self.prosodyAddress = pickAddresses(2)
        self.dns = startInteropDNS(self, {
            DNA_DOMAIN: xmppZone(DNA_SERVER, self.dnaAddress, ["@", "two"]),
            PROSODY_DOMAIN: xmppZone(PROSODY_SERVER, self.prosodyAddress, ["@"]),
        })
        ours = CertificateAuthority("DNA provider CA")
        if certified:
            theirs = ours
            dnaNames = [DNA_SERVER, DNA_DOMAIN, SECOND_DOMAIN]
        else:
            theirs = CertificateAuthority("Prosody CA")
            dnaNames = [DNA_SERVER]
        self.prosody = startProsody(
            self, [PROSODY_DOMAIN], self.prosodyAddress,
            theirs.issue(PROSODY_DOMAIN, dnsNames=[PROSODY_DOMAIN]),
            theirs.certificatePEM, self.dns.resolver, self.dns.anchorFile,
            secureAuth=certified,
            rosters={("juliet", PROSODY_DOMAIN): ["romeo@" + DNA_DOMAIN]},
        )
        client = DNSClient([self.dns.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        self.inbox = Inbox()
        self.service = DNAService(
            [DNA_DOMAIN, SECOND_DOMAIN],
            {DNA_SERVER: ours.issue(DNA_SERVER, dnsNames=dnaNames).toPrivateCertificate()},
            trustRootFromCertificates([ours.toCertificate()]),
            checker,
            AddressResolver(client=client),
            deliver=self.inbox,
            fallback=FALLBACK_PKIX if certified else FALLBACK_DIALBACK,
            dialbackSecret="dna dialback secret",
            reactor=reactor,
        )
        self.service.startService()
        yield self.service.listen(
            endpoints.TCP4ServerEndpoint(reactor, S2S_PORT, interface=self.dnaAddress)
        )
        self.addCleanup(self.service.stopService)

    def explain(self):
        return "\n--- prosody log ---\n" + self.prosody.logTail(80)

    def authentications(self):
        """
        (local, remote, how) of every legacy pair authenticated, in order.
        """
        return [
            (e["local"], e["remote"], e["how"]) for e in self.log
            if e.get("log_format", "").startswith("Legacy stream {streamID}: {local} <-> {remote}")
        ]

    def legacyStreams(self, initiating):
        return [
            a for a in self.service.federation.streams.values()
            if getattr(a, "legacy", False) and a.initiating == initiating
        ]

    @defer.inlineCallbacks
    def roundTrip(self, sender=DNA_DOMAIN, count=1):
        """
        A message to echo@prosody.example comes back.
        """
        stanzaID = "m%d" % (count,)
        self.service.send(message("romeo@" + sender, "echo@" + PROSODY_DOMAIN,
                                  body="wherefore", stanzaID=stanzaID))
        try:
            stanzas = yield self.inbox.waitFor(count, timeout=20)
        except defer.TimeoutError:
            self.fail("no echo from Prosody" + self.explain())
        echo = stanzas[count - 1]
        self.assertEqual(
            ("echo@" + PROSODY_DOMAIN, "romeo@" + sender, "wherefore", "echo-" + stanzaID),
            (echo["from"], echo["to"], str(echo.body), echo.getAttribute("id")),
            self.explain(),
        )

    def assertBoundExactly(self):
        """
        Every legacy stream carries, for receiving, exactly the pairs
        authenticated on it.
        """
        tables = self.service.federation.tables
        for authorization in self.service.federation.streams.values():
            pairs = set(tables.incoming.pairs(authorization.streamID))
            remotes = {remote for local, remote in pairs}
            self.assertEqual({PROSODY_DOMAIN}, remotes | {PROSODY_DOMAIN})
            self.assertLessEqual(
                {local for local, remote in pairs}, {DNA_DOMAIN, SECOND_DOMAIN}
            )

    @defer.inlineCallbacks
    def test_secondSender(self):
        """
        A second sender domain to the same Prosody domain rides on the
        legacy stream already open (piggy-backed C{<db:result/>}, which
        Prosody checks with our Authoritative Server).
        """
        yield self.roundTrip()
        yield self.roundTrip(sender=SECOND_DOMAIN, count=2)
        [stream] = self.legacyStreams(initiating=True)
        self.assertEqual(
            {(DNA_DOMAIN, PROSODY_DOMAIN), (SECOND_DOMAIN, PROSODY_DOMAIN)},
            set(self.service.federation.tables.outgoing.pairs(stream.streamID)),
        )
        self.assertBoundExactly()


class CertificateInteropTests(ProsodyInteropMixin, unittest.TestCase):
    """
    Valid certificates both ways: SASL EXTERNAL.
    """

    @defer.inlineCallbacks
    def setUp(self):
        yield self.startAll(certified=True)

    @defer.inlineCallbacks
    def test_messageRoundTrip(self):
        """
        A message from dna.example reaches Prosody over a legacy stream
        authenticated by SASL EXTERNAL, and Prosody's echo comes back.
        """
        yield self.roundTrip()
        self.assertIn(
            "Accepting SASL EXTERNAL identity from " + DNA_DOMAIN, self.prosody.log(), self.explain()
        )
        self.assertEqual([(DNA_DOMAIN, PROSODY_DOMAIN, "EXTERNAL")], self.authentications())
        self.assertEqual(1, len(self.legacyStreams(initiating=True)))
        self.assertBoundExactly()

    @defer.inlineCallbacks
    def test_presenceSubscription(self):
        """
        romeo@dna.example subscribes to juliet@prosody.example, who
        pre-approved him: Prosody answers subscribed.
        """
        self.service.send(presence("romeo@" + DNA_DOMAIN, "juliet@" + PROSODY_DOMAIN, "subscribe"))
        try:
            [answer] = yield self.inbox.waitFor(1, timeout=20)
        except defer.TimeoutError:
            self.fail("no answer from Prosody" + self.explain())
        self.assertEqual(
            ("presence", "juliet@" + PROSODY_DOMAIN, "romeo@" + DNA_DOMAIN, "subscribed"),
            (answer.name, answer["from"], answer["to"], answer.getAttribute("type")),
        )


class DialbackInteropTests(ProsodyInteropMixin, unittest.TestCase):
    """
    Certificates neither side can verify: Server Dialback both ways.
    """

    @defer.inlineCallbacks
    def setUp(self):
        yield self.startAll(certified=False)

    @defer.inlineCallbacks
    def test_messageRoundTrip(self):
        """
        A message from dna.example reaches Prosody over a legacy stream
        authenticated by dialback (Prosody verified our key with our
        Authoritative Server), and the echo comes back on a stream Prosody
        authenticated by dialback (we verified its key with Prosody).
        """
        yield self.roundTrip()
        self.assertIn("verified dialback key... it is valid", self.prosody.log(), self.explain())
        authentications = self.authentications()
        self.assertEqual({(DNA_DOMAIN, PROSODY_DOMAIN, "dialback")}, set(authentications))
        # Ours, and Prosody's stream to us that we checked with Prosody.
        self.assertEqual(2, len(authentications))
        self.assertEqual(1, len(self.legacyStreams(initiating=True)))
        self.assertBoundExactly()
