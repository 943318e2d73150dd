"""
POSH decides a delegation between two real DNA providers (issue 12; RFC
7711, draft-ietf-xmpp-dna-10 section 5.2): unsigned.example has no DNSSEC
(an unsigned zone, its SRV record naming another host), yet provider A
(xmpp1.originating.example) may send from it to provider B, because the
POSH document that B fetches from a real HTTPS server on loopback lists the
fingerprint of A's certificate. Real knotd and unbound, real mutual TLS.
"""

import json
import time

from twisted.internet import defer, reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web import resource, server

from dna.app.delegation import makeDelegationChecker, makeProofChecker
from dna.core.tables import INCOMING
from dna.dns import posh
from dna.dns.client import DNSClient
from dna.testing.https import listenHTTPS, loopbackAgent
from dna.testing.pki import CertificateAuthority
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"
SENDER = "unsigned.example"
TARGET = "target.example"
#: Seconds the POSH document may be cached.
EXPIRES = 300

#: The web PKI that the POSH document is served under.
WEB_CA = CertificateAuthority("POSH Federation Web CA")


class _POSHDocuments(resource.Resource):
    """
    Serve unsigned.example's POSH document listing C{certificates}.
    """

    isLeaf = True

    def __init__(self, certificates):
        resource.Resource.__init__(self)
        self.certificates = certificates
        self.hits = 0

    def render_GET(self, request):
        self.hits += 1
        if (request.getRequestHostname() != SENDER.encode()
                or request.path != b"/.well-known/posh/xmpp-server.json"):
            request.setResponseCode(404)
            return b"no POSH here"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "fingerprints": [{"sha-256": posh.fingerprint(c.certificate)}
                             for c in self.certificates],
            "expires": EXPIRES}).encode()


class _POSHProvidersMixin(ProvidersMixin):
    """
    Real DNS, the test PKI, A's certificate, and unsigned.example's POSH
    document served over HTTPS on loopback.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.env = startDNSEnvironment(self)
        self.setUpPKI()
        self.certificateA = self.ca.issue(ORIGINATING, dnsNames=[ORIGINATING])
        self.documents = _POSHDocuments([self.certificateA])
        port = yield listenHTTPS(reactor, server.Site(self.documents),
                                 WEB_CA.issue(SENDER, dnsNames=[SENDER]))
        self.addCleanup(port.stopListening)
        self.agent = loopbackAgent(reactor, port.getHost().port, WEB_CA.toCertificate())
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def dnsChecker(self):
        return makeDelegationChecker(reactor, [self.env.resolver], "ad")

    @defer.inlineCallbacks
    def start(self, name, certificate, domains, checker):
        service, inbox, port = yield self.startProvider(
            domains, {name: certificate}, checker,
            client=DNSClient([self.env.resolver], reactor),
            interface=HOSTS[name], port=5269)
        return service, inbox



class POSHFederationTests(_POSHProvidersMixin, unittest.TestCase):
    """
    The receiving side: A hosts unsigned.example; B hosts target.example
    and accepts C{["dnssec-srv", "posh"]} as delegation proofs.
    """

    @defer.inlineCallbacks
    def startBoth(self):
        self.a, self.inboxA = yield self.start(ORIGINATING, self.certificateA, [SENDER],
                                               self.dnsChecker())
        checkerB = makeProofChecker(reactor, self.dnsChecker(), ["dnssec-srv", "posh"],
                                    agent=self.agent)
        self.b, self.inboxB = yield self.start(
            RECEIVING, self.ca.issue(RECEIVING, dnsNames=[RECEIVING]), [TARGET], checkerB)

    @defer.inlineCallbacks
    def test_grantedByPOSH(self):
        """
        A's stanza from unsigned.example reaches B: DNSSEC does not delegate
        unsigned.example to A, its POSH document lists A's certificate. B's
        binding lasts as long as the document.
        """
        yield self.startBoth()
        self.a.send(message("romeo@" + SENDER, "juliet@" + TARGET))
        [received] = yield self.inboxB.waitFor(1, timeout=20)
        self.assertEqual("juliet@" + TARGET, received["to"])
        self.assertEqual(1, self.documents.hits)
        [streamID] = list(self.b.federation.tables.connections)
        proof = self.b.federation.revalidator.proofOf(INCOMING, TARGET, SENDER, streamID)
        self.assertIsNotNone(proof)
        self.assertLess(abs(time.time() + EXPIRES - proof.dnsExpires), 10)
        self.assertEqual([], self.inboxA.stanzas)

    @defer.inlineCallbacks
    def test_refusedFingerprintNotListed(self):
        """
        The document lists another certificate: B refuses the pair with
        C{<not-authorized/>} and a text naming both prooftypes and why each
        failed, which A logs; A bounces the stanza.
        """
        self.documents.certificates = [self.ca.issue(ORIGINATING, dnsNames=[ORIGINATING])]
        yield self.startBoth()
        self.a.send(message("romeo@" + SENDER, "juliet@" + TARGET))
        [bounce] = yield self.inboxA.waitFor(1, timeout=20)
        self.assertEqual("not-authorized", stanzaErrorOf(bounce)[0])
        self.assertEqual([], self.inboxB.stanzas)
        [refused] = [e for e in self.events if e.get("event") == "pair-refused-by-peer"]
        reason = refused["reason"]
        self.assertTrue(reason.startswith(
            f"{SENDER} is not delegated to {ORIGINATING}: dnssec-srv: insecure SRV"), reason)
        self.assertIn("; posh: fingerprint not listed (1 in the document)", reason)
        self.assertLessEqual(len(reason), 640)


UNSIGNED = "xmpp1.unsigned.example"


class POSHOriginatingTests(_POSHProvidersMixin, unittest.TestCase):
    """
    The originating side: A (hosting sender.example) accepts
    C{["dnssec-srv", "posh"]}; B is xmpp1.unsigned.example, the insecure SRV
    target of unsigned.example, whose POSH document lists B's certificate.
    """

    def setUp(self):
        def listB(ignored):
            self.certificateB = self.ca.issue(UNSIGNED, dnsNames=[UNSIGNED])
            self.documents.certificates = [self.certificateB]

        return _POSHProvidersMixin.setUp(self).addCallback(listB)

    @defer.inlineCallbacks
    def startBoth(self):
        checkerA = makeProofChecker(reactor, self.dnsChecker(), ["dnssec-srv", "posh"],
                                    agent=self.agent)
        self.a, self.inboxA = yield self.start(ORIGINATING, self.certificateA,
                                               ["sender.example"], checkerA)
        self.b, self.inboxB = yield self.start(UNSIGNED, self.certificateB, [SENDER],
                                               self.dnsChecker())

    @defer.inlineCallbacks
    def test_grantedByPOSH(self):
        """
        A connects to unsigned.example's insecure SRV target and sends from
        sender.example once POSH proves that unsigned.example is delegated
        to the server it reached.
        """
        yield self.startBoth()
        self.a.send(message("romeo@sender.example", "juliet@" + SENDER))
        [received] = yield self.inboxB.waitFor(1, timeout=20)
        self.assertEqual("juliet@" + SENDER, received["to"])
        self.assertEqual(1, self.documents.hits)
        [row] = [self.a.federation.tables.connections.get(s)
                 for s in self.a.federation.tables.connections]
        self.assertEqual({UNSIGNED}, set(row.serverNames))
        self.assertEqual({SENDER}, set(row.delegatedNames))
        self.assertEqual([], self.inboxA.stanzas)

    @defer.inlineCallbacks
    def test_refusedFingerprintNotListed(self):
        """
        The document lists another certificate: A does not send to
        unsigned.example over the stream it opened, and bounces the stanza.
        """
        self.documents.certificates = [self.ca.issue(UNSIGNED, dnsNames=[UNSIGNED])]
        yield self.startBoth()
        self.a.send(message("romeo@sender.example", "juliet@" + SENDER))
        [bounce] = yield self.inboxA.waitFor(1, timeout=20)
        self.assertEqual("remote-server-not-found", stanzaErrorOf(bounce)[0])
        self.assertEqual([], self.inboxB.stanzas)
        for streamID in self.a.federation.tables.connections:
            self.assertNotIn(SENDER, self.a.federation.tables.connections.get(
                streamID).delegatedNames)
