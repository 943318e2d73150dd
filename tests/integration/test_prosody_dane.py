"""
DANE (RFC 7673) with a server that does not speak DNA: Debian's Prosody
0.12 with C{use_dane = true}, for real, on loopback, reading TLSA records
through lua-unbound from the validating unbound of
L{tests.integration.interop.InteropDNS}, whose knotd-signed zones hold a
DANE-EE record (C{3 1 1}) for each server.

No authority anyone trusts issued the certificates DANE checks, so a
connection succeeds only because of DANE:

  - C{dna.example}'s legacy listener presents a certificate of a private
    authority for C{dna.example}; Prosody, connecting to our SRV target
    C{xmpp1.dna.example}, accepts it by its TLSA record (with
    C{s2s_secure_auth} it refuses any certificate it cannot verify).
  - Prosody's certificate, for C{prosody.example} and
    C{xmpp.prosody.example}, comes from another private authority; we check
    it by the TLSA record of C{xmpp.prosody.example}, as the Receiving
    Server's certificate when we connect and as the client certificate when
    Prosody connects (and then offer SASL EXTERNAL).
  - Prosody 0.12 does DANE on outgoing connections only: it checks the
    client certificate we present when we connect to it by PKIX, so that one
    (our server name's, covering C{dna.example}) comes from an authority
    Prosody trusts.

Prosody runs without C{mod_s2s_bidi}, so that its echo of our message comes
back over a connection it opens itself: one round trip exercises both
directions. The fallback policy is C{dna+pkix} (no dialback at all).
These tests fail, never skip, when Prosody, knot or unbound are missing.
"""

from twisted.internet import defer, reactor
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from dna.app.delegation import makeTLSALookup
from dna.app.service import DNAService
from dna.dns.addresses import AddressResolver
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from dna.error import DANEMismatch
from dna.legacy.policy import FALLBACK_PKIX
from dna.testing.pki import CertificateAuthority
from tests.integration.interop import (
    pickAddresses,
    startInteropDNS,
    startProsody,
    startService,
    tlsaRecord,
    xmppZone,
)
from tests.integration.providers import Inbox, ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

DNA_DOMAIN = "dna.example"
DNA_SERVER = "xmpp1.dna.example"
PROSODY_DOMAIN = "prosody.example"
PROSODY_SERVER = "xmpp.prosody.example"
WRONG = "22" * 32

#: Trusted by both sides: it issues only our client certificate.
PUBLIC = CertificateAuthority("Public CA both trust")
#: Trusted by nobody: our certificate for dna.example as a Receiving Server.
DNA_PRIVATE = CertificateAuthority("dna.example private CA")
#: Trusted by nobody: Prosody's certificate.
PROSODY_PRIVATE = CertificateAuthority("prosody.example private CA")
DNA_CLIENT = PUBLIC.issue(DNA_SERVER, dnsNames=[DNA_SERVER, DNA_DOMAIN])
DNA_LEGACY = DNA_PRIVATE.issue(DNA_DOMAIN, dnsNames=[DNA_DOMAIN])
PROSODY_CERTIFICATE = PROSODY_PRIVATE.issue(
    PROSODY_DOMAIN, dnsNames=[PROSODY_DOMAIN, PROSODY_SERVER])


class ProsodyDANETests(unittest.TestCase):
    """
    DNS with TLSA records, Prosody with C{use_dane}, and a DNA provider with
    DANE, all on loopback, stopped in cleanup.
    """

    timeout = 60

    @defer.inlineCallbacks
    def startAll(self, dnaDigest=None, prosodyDigest=None):
        """
        @param dnaDigest: Hex published in the TLSA record of our server
            name instead of our certificate's digest.
        @param prosodyDigest: Likewise for Prosody's.
        """
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.dnaAddress, self.prosodyAddress = pickAddresses(2)
        self.dns = startInteropDNS(self, {
            DNA_DOMAIN: xmppZone(DNA_SERVER, self.dnaAddress, ["@"])
            + [tlsaRecord(DNA_SERVER, DNA_LEGACY, digest=dnaDigest)],
            PROSODY_DOMAIN: xmppZone(PROSODY_SERVER, self.prosodyAddress, ["@"])
            + [tlsaRecord(PROSODY_SERVER, PROSODY_CERTIFICATE, digest=prosodyDigest)],
        })
        self.prosody = startProsody(
            self, [PROSODY_DOMAIN], self.prosodyAddress, PROSODY_CERTIFICATE,
            PUBLIC.certificatePEM, self.dns.resolver, self.dns.anchorFile,
            secureAuth=True, dane=True, bidi=False,
        )
        client = DNSClient([self.dns.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        self.inbox = Inbox()
        self.service = DNAService(
            [DNA_DOMAIN],
            {DNA_SERVER: DNA_CLIENT.toPrivateCertificate()},
            trustRootFromCertificates([PUBLIC.toCertificate()]),
            checker,
            AddressResolver(client=client),
            deliver=self.inbox,
            fallback=FALLBACK_PKIX,
            domainCertificates={DNA_DOMAIN: DNA_LEGACY.toPrivateCertificate()},
            tlsaLookup=makeTLSALookup(reactor, client, "ad"),
            reactor=reactor,
        )
        yield startService(self, self.service, self.dnaAddress)

    until = ProvidersMixin.until

    def explain(self):
        return "\n--- prosody log ---\n" + self.prosody.logTail(80)

    def messages(self, start):
        """
        The texts of our log events whose format starts with C{start}.
        """
        return [e for e in self.log if e.get("log_format", "").startswith(start)]

    def authentications(self):
        """
        (local, remote, how) of every legacy pair authenticated, in order.
        """
        return [(e["local"], e["remote"], e["how"])
                for e in self.messages("Legacy stream {streamID}: {local} <-> {remote}")]

    def legacyStreams(self, initiating):
        return [
            a for a in self.service.federation.streams.values()
            if getattr(a, "legacy", False) and a.initiating == initiating
        ]

    def send(self):
        self.service.send(message("romeo@" + DNA_DOMAIN, "echo@" + PROSODY_DOMAIN,
                                  body="wherefore", stanzaID="m1"))

    @defer.inlineCallbacks
    def test_bothWays(self):
        """
        A message from dna.example reaches Prosody over a legacy stream on
        which we authenticated Prosody's certificate by DANE (and Prosody
        ours by PKIX, with SASL EXTERNAL); Prosody's echo comes back over a
        stream of its own, on which Prosody authenticated our certificate by
        DANE and we Prosody's client certificate, before offering SASL
        EXTERNAL.
        """
        yield self.startAll()
        self.send()
        try:
            [echo] = yield self.inbox.waitFor(1, timeout=20)
        except defer.TimeoutError:
            self.fail("no echo from Prosody" + self.explain())
        self.assertEqual(
            ("echo@" + PROSODY_DOMAIN, "romeo@" + DNA_DOMAIN, "wherefore"),
            (echo["from"], echo["to"], str(echo.body)), self.explain())
        log = self.prosody.log()
        # Prosody looked up our TLSA record and its check decided.
        self.assertIn("Enabling DANE with 1 TLSA records", log, self.explain())
        self.assertIn("certificate chain validation result: valid", log)
        self.assertIn("Accepting SASL EXTERNAL identity from " + DNA_DOMAIN, log)
        # We authenticated Prosody by DANE both ways.
        self.assertEqual(1, len(self.messages("The certificate of {target} is authenticated "
                                              "by DANE")))
        self.assertEqual(1, len(self.messages("The client certificate of {domain} is "
                                              "authenticated by DANE")))
        self.assertEqual(
            {(DNA_DOMAIN, PROSODY_DOMAIN, "EXTERNAL")}, set(self.authentications()))
        self.assertEqual(1, len(self.legacyStreams(initiating=True)))
        self.assertEqual(1, len(self.legacyStreams(initiating=False)))

    @defer.inlineCallbacks
    def test_clientCertificateNeedsDANE(self):
        """
        Without our DANE check of client certificates, Prosody's stream
        back to us is refused (PKIX does not accept its certificate, and the
        policy has no dialback): DANE alone let it in.
        """
        yield self.startAll()
        self.service.legacy.listener.dane = None
        self.send()
        yield self.until(
            lambda: self.messages("Refused legacy stream from {remote}: its certificate"),
            20, "we refuse Prosody's stream")
        self.assertIn("Accepting SASL EXTERNAL identity from " + DNA_DOMAIN,
                      self.prosody.log(), self.explain())
        self.assertEqual([], self.inbox.stanzas)
        self.assertEqual([], self.legacyStreams(initiating=False))

    @defer.inlineCallbacks
    def test_prosodyRefusesWrongTLSA(self):
        """
        The TLSA record of our server name does not match our certificate:
        our message reaches Prosody, but Prosody refuses our certificate when
        it connects back to answer, so no echo comes.
        """
        yield self.startAll(dnaDigest=WRONG)
        self.send()
        yield self.until(lambda: "Forbidding insecure connection" in self.prosody.log(), 20,
                         "Prosody refuses our certificate")
        self.assertEqual([], self.inbox.stanzas, self.explain())
        self.assertEqual([], self.legacyStreams(initiating=False))
        self.assertEqual(1, len(self.legacyStreams(initiating=True)))

    @defer.inlineCallbacks
    def test_wrongTLSARefused(self):
        """
        The TLSA record of Prosody's SRV target does not match its
        certificate: Prosody refuses the DNA stream to that name before TLS
        (C{<host-unknown/>}), and the legacy stream that follows is refused
        by DANE in the handshake: the message bounces, and the refusal is
        counted and logged, as it is for every attempt.
        """
        yield self.startAll(prosodyDigest=WRONG)
        self.send()
        try:
            [bounce] = yield self.inbox.waitFor(1, timeout=20)
        except defer.TimeoutError:
            self.fail("no bounce" + self.explain())
        self.assertEqual("remote-server-not-found", stanzaErrorOf(bounce)[0])
        counters = self.service.federation.counters
        self.assertEqual(1, counters["tls-failed-dane-mismatch"])
        [refusal] = self.messages("Legacy stream to {remote} refused by DANE")
        self.assertIn("does not match", refusal["reason"])
        failure = yield self.assertFailure(
            self.service.legacy.connector.connect(DNA_DOMAIN, PROSODY_DOMAIN), DANEMismatch)
        self.assertEqual(PROSODY_SERVER, failure.name)
        self.assertEqual(2, counters["tls-failed-dane-mismatch"])
        self.assertEqual([], self.legacyStreams(initiating=True))
        self.assertNotIn("Accepting SASL EXTERNAL", self.prosody.log())
