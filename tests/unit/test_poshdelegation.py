"""
Tests for delegations decided by prooftypes in order (issue 12;
draft-ietf-xmpp-dna-10 sections 5-6): L{dna.dns.delegation.ProofChecker},
its pure parts, the refusals that say every prooftype tried, and the POSH
fetcher's proof lifetime.
"""

import json

from OpenSSL.crypto import X509
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from dna.core.authorization import StreamAuthorization, errorFromResult, refusalText
from dna.core.proofs import (
    DELEGATED,
    INDETERMINATE,
    MAX_EXPLANATION,
    NOT_DELEGATED,
    DelegationVerdict,
    combine,
    sanitize,
)
from dna.core.tables import Tables
from dna.dns import posh
from dna.dns.delegation import ProofChecker
from dna.interfaces import IDelegationChecker, IDelegationPolicy
from dna.namespaces import NS_DIALBACK, NS_STANZAS
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import makeStream, receive
from tests.unit.test_dialback import result

CA = CertificateAuthority("POSH Delegation Unit CA")
#: The hosting provider's certificate: it names only the provider.
HOSTING = CA.issue("xmpp1.originating.tld", dnsNames=["xmpp1.originating.tld"])
OTHER = CA.issue("xmpp1.originating.tld", dnsNames=["xmpp1.originating.tld"])


def document(*certificates, expires=3600):
    return posh.POSHDocument([("sha-256", _digest(c)) for c in certificates], None, expires)


def _digest(certificate):
    import base64

    return base64.b64decode(posh.fingerprint(certificate.certificate))


class FakeFetcher:
    """
    A L{posh.POSHFetcher} answering from a table: C{{domain: POSHResult}};
    a domain missing from it has no POSH.
    """

    def __init__(self, clock, results=None):
        self.clock = clock
        self.results = {} if results is None else results
        self.fetched = []

    def fetch(self, domain, after=None):
        self.fetched.append((domain, after))
        found = self.results.get(domain)
        if found is None:
            found = posh.POSHResult(domain, None, f"no POSH for {domain}: HTTP 404", 60)
        if found.expires is None:
            found = posh.POSHResult(found.domain, found.document, found.reason, found.ttl,
                                    self.clock.seconds() + found.ttl)
        return defer.succeed(found)


class VerdictTests(SynchronousTestCase):
    """
    L{DelegationVerdict}, L{combine} and L{sanitize} are pure.
    """

    def test_truth(self):
        """
        A verdict is true when delegated, so it stands where a C{bool} did.
        """
        self.assertTrue(DelegationVerdict(DELEGATED, "posh", 10.0))
        self.assertFalse(DelegationVerdict(NOT_DELEGATED))
        self.assertFalse(DelegationVerdict(INDETERMINATE))
        self.assertEqual("", DelegationVerdict(DELEGATED, "posh").explanation)

    def test_combineFirstProofWins(self):
        """
        The first prooftype that proves the delegation decides; the earlier
        failures are kept.
        """
        verdict = combine([
            DelegationVerdict(NOT_DELEGATED, None, 5.0, [("dnssec-srv", "insecure SRV")]),
            DelegationVerdict(DELEGATED, "posh", 100.0)])
        self.assertEqual((DELEGATED, "posh", 100.0), (verdict.status, verdict.prooftype,
                                                      verdict.expires))
        self.assertEqual((("dnssec-srv", "insecure SRV"),), verdict.tried)

    def test_combineRefusalListsAll(self):
        """
        When none proves it, the refusal lists every prooftype tried in
        order, is indeterminate if one could not tell, and expires with the
        earliest of what was found.
        """
        verdict = combine([
            DelegationVerdict(NOT_DELEGATED, None, 50.0, [("dnssec-srv", "insecure SRV")]),
            DelegationVerdict(INDETERMINATE, None, 20.0, [("posh", "no POSH document")])])
        self.assertEqual(INDETERMINATE, verdict.status)
        self.assertEqual(20.0, verdict.expires)
        self.assertEqual("dnssec-srv: insecure SRV; posh: no POSH document",
                         verdict.explanation)

    def test_sanitize(self):
        """
        Text a peer chose is printable ASCII, on one line, and bounded.
        """
        self.assertEqual("a b ?? c", sanitize("a\n\tb \x00\u00e9 c"))
        long = sanitize("x" * 10000, 50)
        self.assertEqual(50, len(long))
        self.assertTrue(long.endswith("..."))

    def test_explanationBounded(self):
        """
        However long the reasons, the explanation is at most
        L{MAX_EXPLANATION} characters.
        """
        verdict = DelegationVerdict(NOT_DELEGATED, None, None, [
            ("dnssec-srv", "y" * 5000), ("posh", "\x1b[31m" + "z" * 5000)])
        self.assertLessEqual(len(verdict.explanation), MAX_EXPLANATION)
        self.assertTrue(verdict.explanation.isprintable())
        self.assertIn("posh: ?[31mzzz", verdict.explanation)


class ProofCheckerTests(SynchronousTestCase):
    """
    L{ProofChecker} tries the prooftypes accepted, in order.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.dns = FakeDelegationChecker(
            {"secure.tld": {"xmpp1.originating.tld"},
             "hosted.tld": {"xmpp.hosted.tld"}},
            insecure=["hosted.tld"], indeterminate=["down.tld"])
        self.fetcher = FakeFetcher(self.clock, {
            "hosted.tld": posh.POSHResult("hosted.tld", document(HOSTING), "1 fingerprint", 600),
            "down.tld": posh.POSHResult("down.tld", document(HOSTING), "1 fingerprint", 600),
        })

    def checker(self, proofs):
        return ProofChecker(self.dns, self.clock, proofs, self.fetcher)

    def test_interfaces(self):
        """
        A L{ProofChecker} is a delegation checker and policy.
        """
        checker = self.checker(["dnssec-srv", "posh"])
        verifyObject(IDelegationChecker, checker)
        verifyObject(IDelegationPolicy, checker)

    def test_badProofs(self):
        """
        Unknown prooftypes, none, or POSH without a fetcher are refused.
        """
        self.assertRaises(ValueError, ProofChecker, self.dns, self.clock, ["ssh"])
        self.assertRaises(ValueError, ProofChecker, self.dns, self.clock, [])
        self.assertRaises(ValueError, ProofChecker, self.dns, self.clock, ["posh"])

    def test_dnssecFirst(self):
        """
        A secure SRV delegation proves it: POSH is not fetched.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv", "posh"]).isDelegated(
            "secure.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertEqual((DELEGATED, "dnssec-srv"), (verdict.status, verdict.prooftype))
        self.assertEqual([], self.fetcher.fetched)

    def test_poshProvesInsecureDomain(self):
        """
        A domain without DNSSEC is delegated to the peer whose certificate
        its POSH document lists, whatever names the certificate carries;
        the proof lasts as long as the document.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv", "posh"]).isDelegated(
            "hosted.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertEqual((DELEGATED, "posh"), (verdict.status, verdict.prooftype))
        self.assertEqual(1600, verdict.expires)
        self.assertEqual(1, len(verdict.tried))
        self.assertEqual("dnssec-srv", verdict.tried[0][0])

    def test_fingerprintNotListed(self):
        """
        Another certificate is refused, saying why for both prooftypes.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv", "posh"]).isDelegated(
            "hosted.tld", ["xmpp1.originating.tld"], OTHER.certificate))
        self.assertEqual(NOT_DELEGATED, verdict.status)
        self.assertEqual(
            "dnssec-srv: insecure SRV (insecure (fake)); "
            "posh: fingerprint not listed (1 in the document)", verdict.explanation)

    def test_order(self):
        """
        With POSH first, POSH is asked first, and proves it alone.
        """
        verdict = self.successResultOf(self.checker(["posh", "dnssec-srv"]).isDelegated(
            "hosted.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertEqual("posh", verdict.prooftype)
        self.assertEqual((), verdict.tried)
        self.assertEqual([], self.dns.checked)

    def test_dnssecOnly(self):
        """
        Without C{posh}, an insecure domain is refused even with a listed
        certificate, and nothing is fetched.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv"]).isDelegated(
            "hosted.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertFalse(verdict)
        self.assertEqual([], self.fetcher.fetched)
        self.assertEqual("dnssec-srv: insecure SRV (insecure (fake))", verdict.explanation)

    def test_noPOSHDocument(self):
        """
        A failed fetch is "no POSH": refused, indeterminate, with the
        reason.
        """
        verdict = self.successResultOf(self.checker(["posh"]).isDelegated(
            "secure.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertEqual(INDETERMINATE, verdict.status)
        self.assertEqual("posh: no POSH document (no POSH for secure.tld: HTTP 404)",
                         verdict.explanation)

    def test_noCertificate(self):
        """
        Without the peer's certificate POSH proves nothing.
        """
        verdict = self.successResultOf(self.checker(["posh"]).isDelegated(
            "hosted.tld", ["xmpp1.originating.tld"]))
        self.assertEqual("posh: no peer certificate", verdict.explanation)

    def test_indeterminateDNSThenPOSH(self):
        """
        An indeterminate DNS lookup does not stop POSH from proving it.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv", "posh"]).isDelegated(
            "down.tld", ["xmpp1.originating.tld"], HOSTING.certificate))
        self.assertEqual("posh", verdict.prooftype)

    def test_wrongSRVTarget(self):
        """
        A secure SRV record naming another server says which it names.
        """
        verdict = self.successResultOf(self.checker(["dnssec-srv"]).isDelegated(
            "secure.tld", ["xmpp.elsewhere.tld"]))
        self.assertEqual("dnssec-srv: SRV targets xmpp1.originating.tld, not the peer",
                         verdict.explanation)

    def test_reValidationAfter(self):
        """
        L{ProofChecker.prove} passes C{after} to the fetcher, for a proof that
        outlasts the one held.
        """
        checker = self.checker(["posh"])
        self.successResultOf(checker.prove("hosted.tld", ["x"], HOSTING.certificate,
                                           after=1500))
        self.assertEqual([("hosted.tld", 1500)], self.fetcher.fetched)

    def test_forwards(self):
        """
        Lookups and the policy are the wrapped checker's.
        """
        checker = self.checker(["dnssec-srv"])
        self.assertEqual(self.dns.policyFor("x.tld"), checker.policyFor("x.tld"))
        self.assertEqual(self.dns.cached("secure.tld"), checker.cached("secure.tld"))
        self.assertEqual(self.dns.fallback, checker.fallback)
        self.assertFalse(checker.usesPOSH)
        self.assertTrue(self.checker(["posh"]).usesPOSH)


class RefusalTests(SynchronousTestCase):
    """
    A C{<db:result type='invalid'/>} refusal of a sender that no prooftype
    proves says which were tried and why each failed, on the wire and in the
    log; POSH grants a pair by the stream's peer certificate.
    """

    def setUp(self):
        self.clock = Clock()
        self.fetcher = FakeFetcher(self.clock, {
            "hosted.tld": posh.POSHResult("hosted.tld", document(HOSTING), "1 fingerprint", 600)})
        dns = FakeDelegationChecker({"hosted.tld": {"xmpp.hosted.tld"}}, insecure=["hosted.tld"])
        self.checker = ProofChecker(dns, self.clock, ["dnssec-srv", "posh"], self.fetcher)
        self.tables = Tables()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def attach(self, certificate):
        xs = makeStream("s1")
        if certificate is not None:
            xs.transport.getPeerCertificate = lambda: X509.from_cryptography(
                certificate.certificate)
        StreamAuthorization(xs, self.tables, frozenset(["target.tld"]), self.checker,
                            initiating=False, serverNames=["xmpp1.originating.tld"],
                            clock=self.clock)
        return xs

    def answers(self, xs):
        return [e for e in xs.output
                if getattr(e, "uri", None) == NS_DIALBACK and e.name == "result"]

    def test_grantedByPOSH(self):
        """
        The peer's certificate is listed in the sender's POSH document: the
        pair is granted although the sender has no DNSSEC.
        """
        xs = self.attach(HOSTING)
        receive(xs, result("hosted.tld", "target.tld"))
        [answer] = self.answers(xs)
        self.assertEqual("valid", answer["type"])
        self.assertTrue(self.tables.incoming.accepts("s1", "target.tld", "hosted.tld"))

    def test_refusalListsProoftypes(self):
        """
        Another certificate: refused with C{<not-authorized/>} and a text
        naming both prooftypes and why each failed; the log event carries the
        same reason.
        """
        xs = self.attach(OTHER)
        receive(xs, result("hosted.tld", "target.tld"))
        [answer] = self.answers(xs)
        self.assertEqual("invalid", answer["type"])
        condition, text = errorFromResult(answer)
        self.assertEqual("not-authorized", condition)
        self.assertEqual(
            "hosted.tld is not delegated to xmpp1.originating.tld: dnssec-srv: insecure "
            "SRV (insecure (fake)); posh: fingerprint not listed (1 in the document)", text)
        [event] = [e for e in self.log if e.get("event") == "pair-refused"]
        self.assertEqual(text, event["reason"])

    def test_indeterminateRefusalIsTemporary(self):
        """
        When no prooftype could tell (DNS down, no document fetched), the
        refusal is C{<remote-server-timeout/>} of type C{wait}, not
        C{<not-authorized/>}: the Originating Server may ask again, and
        keeps what it must resume.
        """
        dns = FakeDelegationChecker({}, indeterminate=["down.tld"])
        self.checker = ProofChecker(dns, self.clock, ["dnssec-srv"])
        xs = self.attach(OTHER)
        receive(xs, result("down.tld", "target.tld"))
        [answer] = self.answers(xs)
        self.assertEqual("invalid", answer["type"])
        [error] = [e for e in answer.elements() if e.name == "error"]
        self.assertEqual("wait", error["type"])
        condition, text = errorFromResult(answer)
        self.assertEqual("remote-server-timeout", condition)
        self.assertIn("dnssec-srv: indeterminate", text)
        self.assertFalse(self.tables.incoming.accepts("s1", "target.tld", "down.tld"))

    def test_noTLS(self):
        """
        Without TLS there is no certificate: POSH says so.
        """
        xs = self.attach(None)
        receive(xs, result("hosted.tld", "target.tld"))
        [answer] = self.answers(xs)
        self.assertIn("posh: no peer certificate", errorFromResult(answer)[1])

    def test_refusalTextBounded(self):
        """
        The refusal text is bounded, whatever the reasons and names.
        """
        verdict = DelegationVerdict(NOT_DELEGATED, None, None, [("posh", "\u2603" * 9000)])
        text = refusalText("a.tld", ["n%d.tld" % i for i in range(500)], verdict)
        self.assertLessEqual(len(text), 640)
        self.assertTrue(text.isprintable() and text.isascii())
        self.assertEqual("a.tld is not securely delegated to b.tld",
                         refusalText("a.tld", ["b.tld"], False))

    def test_errorTextOnWire(self):
        """
        The text rides in the C{<error/>} as C{<text/>} of the stanzas
        namespace.
        """
        xs = self.attach(OTHER)
        receive(xs, result("hosted.tld", "target.tld"))
        [answer] = self.answers(xs)
        [error] = [e for e in answer.elements() if e.name == "error"]
        self.assertEqual(["not-authorized", "text"],
                         [c.name for c in error.elements() if c.uri == NS_STANZAS])


class _Response:
    def __init__(self, body, code=200):
        self.code = code
        self.length = len(body)
        self._body = body

    def deliverBody(self, protocol):
        protocol.dataReceived(self._body)
        protocol.connectionLost(None)


class _Agent:
    def __init__(self, documents):
        self.documents = documents
        self.requests = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        assert isinstance(headers, Headers)
        self.requests.append(uri)
        return defer.succeed(_Response(self.documents[uri]))


class FetcherLifetimeTests(SynchronousTestCase):
    """
    A fetched POSH result says until when it is valid (the document's
    C{expires}, capped), and re-validation can ask for a fresher one.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.agent = _Agent({posh.poshURL("a.tld"): json.dumps({"fingerprints": [
            {"sha-256": posh.fingerprint(HOSTING.certificate)}], "expires": 50}).encode(),
            posh.poshURL("long.tld"): json.dumps({"fingerprints": [
                {"sha-256": posh.fingerprint(HOSTING.certificate)}],
                "expires": 10 ** 9}).encode()})
        self.fetcher = posh.POSHFetcher(self.agent, self.clock, maxCache=3600)

    def test_expires(self):
        """
        The result expires when its document says, capped by C{maxCache}.
        """
        self.assertEqual(150, self.successResultOf(self.fetcher.fetch("a.tld")).expires)
        self.assertEqual(3700, self.successResultOf(self.fetcher.fetch("long.tld")).expires)

    def test_after(self):
        """
        A cached result expiring at or before C{after} is fetched again.
        """
        self.successResultOf(self.fetcher.fetch("a.tld"))
        self.successResultOf(self.fetcher.fetch("a.tld", after=120))
        self.assertEqual(1, len(self.agent.requests))
        self.clock.advance(10)
        fresh = self.successResultOf(self.fetcher.fetch("a.tld", after=150))
        self.assertEqual(2, len(self.agent.requests))
        self.assertEqual(160, fresh.expires)


class POSHRevalidationTests(SynchronousTestCase):
    """
    A binding POSH proved lasts as long as the POSH document: it is
    re-checked then, with the peer's certificate, like a DNSSEC proof.
    """

    def setUp(self):
        from dna.app.federation import Federation

        self.clock = Clock()
        self.clock.advance(1000)
        self.fetcher = FakeFetcher(self.clock, {
            "hosted.tld": posh.POSHResult("hosted.tld", document(HOSTING), "1 fingerprint", 600)})
        dns = FakeDelegationChecker({"hosted.tld": {"xmpp.hosted.tld"}}, insecure=["hosted.tld"])
        checker = ProofChecker(dns, self.clock, ["dnssec-srv", "posh"], self.fetcher)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.federation = Federation(["target.tld"], checker, lambda stanza: None,
                                     clock=self.clock)
        self.xs = makeStream("s1")
        self.xs.transport.getPeerCertificate = lambda: X509.from_cryptography(
            HOSTING.certificate)
        self.federation.streamAuthenticated(self.xs, initiating=False,
                                            serverNames=["xmpp1.originating.tld"])
        receive(self.xs, result("hosted.tld", "target.tld"))
        self.proof = self.federation.revalidator.proofOf(
            "incoming", "target.tld", "hosted.tld", "s1")

    def test_proofLastsAsTheDocument(self):
        """
        The binding's proof expires with the POSH document, and is
        re-checked shortly before.
        """
        self.assertTrue(self.federation.tables.incoming.accepts("s1", "target.tld", "hosted.tld"))
        self.assertEqual(1600, self.proof.dnsExpires)
        self.assertTrue(1540 <= self.proof.nextCheck <= 1600, self.proof.nextCheck)

    def test_extendedWhileListed(self):
        """
        A re-check that finds the certificate still listed extends the
        binding to the new document's expiry, asking for a document that
        outlasts the old one.
        """
        self.fetcher.results["hosted.tld"] = posh.POSHResult(
            "hosted.tld", document(HOSTING), "1 fingerprint", 600)
        self.clock.advance(600)
        self.assertIn(("hosted.tld", 1600), self.fetcher.fetched)
        self.assertEqual(2200, self.proof.dnsExpires)
        self.assertTrue(self.federation.tables.incoming.accepts("s1", "target.tld", "hosted.tld"))

    def test_revokedWhenNoLongerListed(self):
        """
        The document no longer lists the certificate: the pair is revoked
        with C{<not-authorized/>}, saying why.
        """
        self.fetcher.results["hosted.tld"] = posh.POSHResult(
            "hosted.tld", document(OTHER), "1 fingerprint", 600)
        self.clock.advance(600)
        self.assertFalse(self.federation.tables.incoming.accepts("s1", "target.tld", "hosted.tld"))
        [event] = [e for e in self.events if e.get("event") == "revalidation-revoked"]
        self.assertIn("posh: fingerprint not listed", event["reason"])
        self.assertEqual(1, self.federation.counters["revalidation-revoked"])


class OriginatingCandidatesTests(SynchronousTestCase):
    """
    On the originating side, a domain DNSSEC does not delegate is still
    connected to (its insecure SRV targets) when POSH is accepted: the
    service then confirms the delegation with the server's certificate.
    """

    def setUp(self):
        from twisted.internet.ssl import trustRootFromCertificates
        from twisted.internet.testing import MemoryReactorClock

        from dna.channel.originating import Connector
        from dna.dns.addresses import AddressResolver

        self.reactor = MemoryReactorClock()
        self.dns = FakeDelegationChecker(
            {"hosted.tld": {"xmpp.hoster.tld"}, "secure.tld": {"xmpp.secure.tld"},
             "bad.tld": {"xmpp.bad.tld"}},
            insecure=["hosted.tld"], bogus=["bad.tld"])

        def connector(proofs):
            checker = ProofChecker(self.dns, self.reactor, proofs, FakeFetcher(self.reactor))
            return Connector(checker, AddressResolver(hosts={}), "xmpp1.originating.tld",
                             HOSTING.toPrivateCertificate(),
                             trustRootFromCertificates([CA.toCertificate()]),
                             reactor=self.reactor, connectTimeout=10)

        self.connector = connector

    def test_insecureTargetsWithPOSH(self):
        """
        With POSH, an insecure delegation's SRV targets are tried.
        """
        found = self.successResultOf(
            self.connector(["dnssec-srv", "posh"]).delegation("hosted.tld"))
        self.assertEqual(["xmpp.hoster.tld"], [r.target for r in found.records])

    def test_insecureRefusedWithoutPOSH(self):
        """
        Without POSH, as before: refused.
        """
        from dna.error import NotDelegated

        self.failureResultOf(self.connector(["dnssec-srv"]).delegation("hosted.tld"),
                             NotDelegated)

    def test_bogusRefusedEvenWithPOSH(self):
        """
        Bogus DNS data is never a place to connect to, nor is no SRV target.
        """
        from dna.error import NotDelegated

        connector = self.connector(["dnssec-srv", "posh"])
        self.failureResultOf(connector.delegation("bad.tld"), NotDelegated)
        self.failureResultOf(connector.delegation("none.tld"), NotDelegated)

    def test_secureUnchanged(self):
        """
        A secure delegation is used as it is.
        """
        found = self.successResultOf(
            self.connector(["dnssec-srv", "posh"]).delegation("secure.tld"))
        self.assertEqual("secure", found.status)
