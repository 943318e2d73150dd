"""
Tests for L{dna.dns.delegation}, L{dna.dns.lookup}, L{dna.dns.verdict} and
L{dna.testing.fakes.FakeDelegationChecker}.
"""

import random

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from dna.app.delegation import makeDelegationChecker, makeLookup
from dna.core.names import normalizeDomain
from dna.dns import verdict
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup, SelfValidatingLookup
from dna.dns.verdict import (
    ALLOW_INSECURE,
    BOGUS,
    INDETERMINATE,
    INSECURE,
    REQUIRE_SECURE,
    SECURE,
    DelegationResult,
    SRVRecord,
    absoluteName,
    delegates,
    interpretResolverAnswer,
    rfc2782Order,
)
from dna.error import DNSMalformed, DNSTimeout, InvalidAddress
from dna.interfaces import (
    IDelegationChecker,
    IDelegationLookup,
    IDelegationPolicy,
    IDelegationResult,
)
from dna.testing.fakes import FakeDelegationChecker, FakeValidatingResolver
from tests.unit.test_dnssec import NOW, STATUSES, signedTree, srvName

LOOPBACK = [("127.0.0.1", 53)]



class DelegationCheckerContractMixin:
    """
    The L{IDelegationChecker} contract, for every implementation, against
    the domains of L{tests.integration.dnsenv} (and of the in-memory tree mirroring it):
    C{sender.example} is securely delegated to
    C{xmpp1.originating.example}, C{target.example} to
    C{xmpp1.receiving.example}, C{unsigned.example} insecurely to
    C{xmpp1.unsigned.example}, C{bogus.example} fails validation and
    C{missing.example} has no SRV record.
    """

    def makeChecker(self):
        """
        @return: The L{IDelegationChecker} to test.
        """
        raise NotImplementedError()

    def setUp(self):
        self.checker = self.makeChecker()

    def test_provides(self):
        """
        The checker provides L{IDelegationChecker} and L{IDelegationPolicy}.
        """
        self.assertTrue(verifyObject(IDelegationChecker, self.checker))
        self.assertTrue(verifyObject(IDelegationPolicy, self.checker))

    def test_policyFor(self):
        """
        By default only secure delegations count, for any domain.
        """
        self.assertEqual(self.checker.policyFor("unsigned.example"), REQUIRE_SECURE)

    @defer.inlineCallbacks
    def test_check(self):
        """
        C{check} fires with an L{IDelegationResult} carrying the normalised
        domain, the status and the SRV records.
        """
        result = yield self.checker.check("sender.example")
        self.assertTrue(verifyObject(IDelegationResult, result))
        self.assertEqual(result.domain, "sender.example")
        self.assertEqual(result.status, SECURE)
        self.assertEqual([r.target for r in result.records], ["xmpp1.originating.example"])
        self.assertEqual(result.records[0].port, 5269)
        self.assertIsInstance(result.ttl, int)

    @defer.inlineCallbacks
    def test_checkNormalises(self):
        """
        Case and a trailing dot do not matter to C{check}.
        """
        result = yield self.checker.check("Sender.EXAMPLE.")
        self.assertEqual(result.domain, "sender.example")

    @defer.inlineCallbacks
    def test_delegated(self):
        """
        A domain is delegated to the target of its secure SRV record.
        """
        self.assertIs((yield self.checker.isDelegated(
            "sender.example", ["xmpp1.originating.example"])), True)
        self.assertIs((yield self.checker.isDelegated(
            "target.example", {"xmpp1.receiving.example"})), True)

    @defer.inlineCallbacks
    def test_matchingIgnoresCaseAndDot(self):
        """
        Server names match whatever their case and trailing dot.
        """
        self.assertIs((yield self.checker.isDelegated(
            "SENDER.example.", ["XMPP1.Originating.Example."])), True)

    @defer.inlineCallbacks
    def test_iterableNames(self):
        """
        Any iterable of server names will do, and one match among several is
        enough.
        """
        names = (n for n in ["other.example", "xmpp1.originating.example"])
        self.assertIs((yield self.checker.isDelegated("sender.example", names)), True)

    @defer.inlineCallbacks
    def test_otherServer(self):
        """
        A domain is not delegated to a server its SRV records do not name.
        """
        self.assertIs((yield self.checker.isDelegated(
            "sender.example", ["xmpp1.receiving.example"])), False)
        self.assertIs((yield self.checker.isDelegated("sender.example", [])), False)

    @defer.inlineCallbacks
    def test_noSRV(self):
        """
        Without an SRV record a domain is not delegated, not even to itself
        (no RFC 6120 fallback by default).
        """
        self.assertIs((yield self.checker.isDelegated(
            "missing.example", ["missing.example"])), False)

    @defer.inlineCallbacks
    def test_insecure(self):
        """
        An unsigned delegation does not count by default.
        """
        result = yield self.checker.check("unsigned.example")
        self.assertEqual(result.status, INSECURE)
        self.assertIs((yield self.checker.isDelegated(
            "unsigned.example", ["xmpp1.unsigned.example"])), False)

    @defer.inlineCallbacks
    def test_bogus(self):
        """
        Bogus data never delegates.
        """
        result = yield self.checker.check("bogus.example")
        self.assertEqual(result.status, BOGUS)
        self.assertTrue(result.reason)
        self.assertIs((yield self.checker.isDelegated(
            "bogus.example", ["xmpp1.bogus.example"])), False)



class FakeContractTests(DelegationCheckerContractMixin, TestCase):
    """
    The contract for L{FakeDelegationChecker}.
    """

    def makeChecker(self):
        return FakeDelegationChecker(
            {"sender.example": {"xmpp1.originating.example"},
             "target.example": {"xmpp1.receiving.example"},
             "unsigned.example": {"xmpp1.unsigned.example"}},
            insecure=["unsigned.example"], bogus=["bogus.example"])



def memoryChecker(mode="validate", clock=None, upstream="authoritative", **kwargs):
    """
    A L{DelegationChecker} over the in-memory tree: in C{'validate'} mode
    (L{SelfValidatingLookup}) asking a fake authoritative server (or, with
    C{upstream='resolver'}, the same as if it were a resolver), in C{'ad'}
    mode (L{ResolverLookup}) a fake validating resolver.

    @return: C{(checker, fake client, clock)}.
    """
    tree = signedTree()
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    client = tree.client()
    if mode == "ad":
        client = FakeValidatingResolver(client, tree.anchors(), clock)
        lookup = ResolverLookup(client, clock)
    else:
        lookup = SelfValidatingLookup(client, clock, tree.anchors(),
                                      authoritative=upstream == "authoritative")
    checker = DelegationChecker(lookup, clock, **kwargs)
    return checker, client, clock



class MemoryValidateContractTests(DelegationCheckerContractMixin, TestCase):
    """
    The contract for L{DelegationChecker} validating itself, in memory.
    """

    def makeChecker(self):
        return memoryChecker("validate")[0]



class MemoryADContractTests(DelegationCheckerContractMixin, TestCase):
    """
    The contract for L{DelegationChecker} trusting a resolver, in memory.
    """

    def makeChecker(self):
        return memoryChecker("ad")[0]



class FakeDelegationCheckerTests(SynchronousTestCase):
    """
    Tests for what L{FakeDelegationChecker} adds to the contract.
    """

    def test_recordsAndDomains(self):
        """
        Each server name becomes one SRV record; domains asked are recorded.
        """
        fake = FakeDelegationChecker({"a.example": {"y.example", "x.example"}})
        result = self.successResultOf(fake.check("A.example."))
        self.assertEqual(result.records, (SRVRecord(0, 0, 5269, "x.example"),
                                          SRVRecord(0, 0, 5269, "y.example")))
        self.assertEqual(fake.checked, ["A.example."])

    def test_policies(self):
        """
        C{allowInsecure} and C{fallback} change the decision;
        C{indeterminate} domains never pass.
        """
        fake = FakeDelegationChecker({"u.example": {"x.example"}}, insecure=["u.example"],
                                     indeterminate=["i.example"], allowInsecure=True,
                                     fallback=True)
        self.assertTrue(self.successResultOf(fake.isDelegated("u.example", ["x.example"])))
        self.assertTrue(self.successResultOf(fake.isDelegated("n.example", ["n.example"])))
        self.assertFalse(self.successResultOf(fake.isDelegated("i.example", ["i.example"])))
        self.assertEqual(self.successResultOf(fake.check("i.example")).status,
                         INDETERMINATE)

    def test_policyFor(self):
        """
        The fake's policy follows C{allowInsecure}, for every domain.
        """
        self.assertEqual(FakeDelegationChecker(allowInsecure=True).policyFor("a.example"),
                         ALLOW_INSECURE)
        self.assertEqual(FakeDelegationChecker().policyFor("a.example"), REQUIRE_SECURE)

    def test_paused(self):
        """
        While paused, answers wait for L{FakeDelegationChecker.release}.
        """
        fake = FakeDelegationChecker({"a.example": {"x.example"}})
        fake.paused = True
        d = fake.isDelegated("a.example", ["x.example"])
        self.assertNoResult(d)
        fake.release()
        self.assertIs(self.successResultOf(d), True)



class DecisionTests(SynchronousTestCase):
    """
    Tests for the pure parts: L{delegates}, L{rfc2782Order},
    L{normalizeDomain}, L{interpretResolverAnswer}.
    """

    def result(self, status=SECURE, targets=("xmpp.example",), domain="d.example"):
        return DelegationResult(domain, [SRVRecord(0, 0, 5269, t) for t in targets], status)

    def test_statuses(self):
        """
        Only secure results delegate, and insecure ones when allowed; bogus
        and indeterminate never.
        """
        for status, allow, expected in [(SECURE, False, True), (INSECURE, False, False),
                                        (INSECURE, True, True), (BOGUS, True, False),
                                        (INDETERMINATE, True, False)]:
            self.assertIs(delegates(self.result(status), ["xmpp.example"],
                                    allowInsecure=allow), expected, (status, allow))

    def test_dotTarget(self):
        """
        The SRV target "." (service not available) delegates to nothing.
        """
        self.assertFalse(delegates(self.result(targets=("",)), ["", ".", "d.example"],
                                   fallback=True))

    def test_fallback(self):
        """
        With the fallback, a domain without SRV records is its own server;
        never for a bogus one.
        """
        empty = self.result(targets=())
        self.assertFalse(delegates(empty, ["d.example"]))
        self.assertTrue(delegates(empty, ["D.example."], fallback=True))
        self.assertFalse(delegates(empty, ["other.example"], fallback=True))
        self.assertFalse(delegates(self.result(BOGUS, targets=()), ["d.example"],
                                   fallback=True))

    def test_idna(self):
        """
        Server names in U-labels match A-label targets; invalid names match
        nothing.
        """
        result = self.result(targets=("xmpp.xn--caf-dma.example",))
        self.assertTrue(delegates(result, ["XMPP.Café.example"]))
        self.assertTrue(delegates(result, ["a..b", "xmpp.xn--caf-dma.example."]))
        self.assertFalse(delegates(result, ["a..b", "-" * 70]))

    def test_wildcard(self):
        """
        A server that authenticated as C{*.provider.example} is delegated
        the SRV target C{xmpp1.provider.example} (RFC 6125 section 6.4.3:
        one whole left-most label), not C{provider.example}, two labels, an
        A-label or a partial-label wildcard's.
        """
        for target in ["xmpp1.provider.example", "XMPP1.Provider.Example"]:
            self.assertTrue(delegates(self.result(targets=(target,)), ["*.Provider.example."]))
        for target in ["provider.example", "a.xmpp1.provider.example",
                       "xn--bcher-kva.provider.example", "xmpp1.other.example"]:
            self.assertFalse(delegates(self.result(targets=(target,)), ["*.provider.example"]),
                             target)
        self.assertFalse(delegates(self.result(targets=("xmpp1.example",)), ["*.example"]))
        self.assertFalse(delegates(self.result(targets=("foo.provider.example",)),
                                   ["f*o.provider.example"]))

    def test_wildcardFallback(self):
        """
        With the fallback, a wildcard covers the domain as its own server
        name, as stream authentication would.
        """
        empty = self.result(targets=(), domain="d.provider.example")
        self.assertTrue(delegates(empty, ["*.provider.example"], fallback=True))
        self.assertFalse(delegates(empty, ["*.provider.example"]))

    def test_targetsCompareCanonically(self):
        """
        SRV targets, as DNS gives them, are compared in the canonical form:
        one trailing dot and case do not matter; C{ß} is not C{ss}; a target
        that is no server name (an underscore, an escaped octet, two
        trailing dots) is covered by nothing.
        """
        self.assertTrue(delegates(self.result(targets=("xmpp.xn--fa-hia.example",)),
                                  ["XMPP.Faß.example."]))
        self.assertFalse(delegates(self.result(targets=("xmpp.fass.example",)),
                                   ["xmpp.faß.example"]))
        self.assertFalse(delegates(self.result(targets=("xmpp.xn--fa-hia.example",)),
                                   ["xmpp.fass.example"]))
        for target in ["_xmpp.example", "xmpp\\195\\159.example", "xmpp.example.."]:
            self.assertFalse(delegates(self.result(targets=(target,)),
                                       ["_xmpp.example", "xmpp.example", "*.example"]), target)

    @given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=8),
           st.randoms(use_true_random=False))
    def test_rfc2782OrderProperties(self, specs, rng):
        """
        Whatever the records and the draws, the order is a permutation sorted
        by priority.
        """
        records = [SRVRecord(p, w, i, f"t{i}") for i, (p, w) in enumerate(specs)]
        ordered = rfc2782Order(list(records), rng.randint)
        self.assertEqual(sorted(ordered, key=lambda r: r.port), records)
        self.assertEqual([r.priority for r in ordered],
                         sorted(r.priority for r in records))

    @given(st.text(alphabet="abzß09_-.\u200c", min_size=1, max_size=80))
    def test_namesAsDnspython(self, text):
        """
        The DNS name the checker builds byte for byte from a normalised
        domain is the one dnspython parses from it, and its SRV owner name
        is C{_xmpp-server._tcp} in front.
        """
        try:
            normal = normalizeDomain(text)
        except InvalidAddress:
            return
        name = absoluteName(normal)
        self.assertEqual(dns.name.from_text(normal), name)
        self.assertEqual(srvName(normal), verdict.srvName(name))

    def test_serverNameString(self):
        """
        A single server name given as a string is one name, not letters.
        """
        self.assertTrue(delegates(self.result(targets=("x",)), "x"))

    def test_normalizeDomain(self):
        """
        The checker looks domains up in the form L{normalizeDomain} gives:
        lower-case A-labels without a trailing dot, and refuses names that
        are no domains.
        """
        self.assertEqual(normalizeDomain("Bücher.Example."), "xn--bcher-kva.example")
        for bad in ["", ".", "a..b", "x" * 64 + ".example", 42]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_rfc2782Order(self):
        """
        Records come by priority; within one priority a weighted random
        choice decides, zero weights first in the running sum.
        """
        records = [SRVRecord(10, 60, 1, "a"), SRVRecord(10, 40, 2, "b"),
                   SRVRecord(5, 0, 3, "c"), SRVRecord(20, 0, 4, "d"),
                   SRVRecord(10, 0, 5, "e")]
        picks = iter([0, 1])
        ordered = rfc2782Order(records, lambda a, b: next(picks))
        self.assertEqual([r.target for r in ordered], ["c", "e", "a", "b", "d"])
        picks = iter([100, 100])
        ordered = rfc2782Order(records, lambda a, b: next(picks))
        self.assertEqual([r.target for r in ordered], ["c", "b", "a", "e", "d"])

    def test_rfc2782Weights(self):
        """
        Over many draws the weights share the first place.
        """
        records = [SRVRecord(0, 75, 1, "heavy"), SRVRecord(0, 25, 1, "light")]
        rng = random.Random(1)
        first = [rfc2782Order(records, rng.randint)[0].target for _ in range(2000)]
        self.assertTrue(1350 < first.count("heavy") < 1650, first.count("heavy"))

    def response(self, rcode=dns.rcode.NOERROR, ad=True, records=(), ede=None):
        query = dns.message.make_query(srvName("d.example"), "SRV", want_dnssec=True)
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        if ad:
            response.flags |= dns.flags.AD
        if records:
            rrset = response.find_rrset(response.answer, srvName("d.example"),
                                        dns.rdataclass.IN, dns.rdatatype.SRV, create=True)
            for text in records:
                rrset.add(dns.rdata.from_text("IN", "SRV", text), 300)
        if ede is not None:
            response.use_edns(0, options=[dns.edns.EDEOption(*ede)])
        return response

    def test_interpretSecure(self):
        """
        NOERROR with AD is secure, with the RRset.
        """
        validation = interpretResolverAnswer(
            self.response(records=["0 0 5269 x.example."]), srvName("d.example"), NOW, "r")
        self.assertEqual(validation.status, SECURE)
        self.assertEqual(validation.ttl, 300)

    def test_interpretInsecure(self):
        """
        An answer without AD is insecure.
        """
        validation = interpretResolverAnswer(
            self.response(ad=False, records=["0 0 5269 x.example."]), srvName("d.example"),
            NOW, "r")
        self.assertEqual(validation.status, INSECURE)
        self.assertIn("did not set the AD bit", validation.reason)

    def test_interpretErrors(self):
        """
        REFUSED is indeterminate; SERVFAIL with a DNSSEC Extended DNS Error
        bogus; SERVFAIL without one undecided (L{None}).
        """
        refused = interpretResolverAnswer(self.response(dns.rcode.REFUSED),
                                          srvName("d.example"), NOW, "r")
        self.assertEqual(refused.status, INDETERMINATE)
        self.assertIn("REFUSED", refused.reason)
        bogus = interpretResolverAnswer(
            self.response(dns.rcode.SERVFAIL, ede=(7, "sig expired")),
            srvName("d.example"), NOW, "r")
        self.assertEqual(bogus.status, BOGUS)
        self.assertIn("EDE 7 (Signature Expired): sig expired", bogus.reason)
        self.assertIsNone(interpretResolverAnswer(
            self.response(dns.rcode.SERVFAIL, ede=(22, "")), srvName("d.example"), NOW,
            "r"))



class DelegationCheckerTests(SynchronousTestCase):
    """
    Tests for L{DelegationChecker} with in-memory DNS and a fake clock.
    """

    def check(self, checker, domain):
        return self.successResultOf(checker.check(domain))

    def test_statusesBothModes(self):
        """
        Both modes find every domain's status.
        """
        for mode in ["validate", "ad"]:
            checker = memoryChecker(mode)[0]
            found = {d: self.check(checker, d).status for d in STATUSES}
            self.assertEqual(found, STATUSES, mode)

    def test_validateQueries(self):
        """
        Validating, the checker asks a resolver with CD set and an
        authoritative server with RD clear, always with DO.
        """
        checker, client, _ = memoryChecker("validate", upstream="resolver")
        self.check(checker, "sender.example")
        self.assertEqual({tuple(sorted(q[2].items())) for q in client.queries},
                         {(("checkingDisabled", True), ("dnssec", True),
                           ("recursionDesired", True))})
        checker, client, _ = memoryChecker("validate")
        self.check(checker, "sender.example")
        self.assertEqual({tuple(sorted(q[2].items())) for q in client.queries},
                         {(("checkingDisabled", False), ("dnssec", True),
                           ("recursionDesired", False))})

    def test_oneRoundTrip(self):
        """
        Validating, the DS and DNSKEY RRsets of the zones above the domain are
        asked along with the SRV records: a chain three zones deep takes one
        round trip when nothing is cached.
        """
        clock = Clock()
        clock.advance(NOW)
        checker, client, clock = memoryChecker("validate", clock=clock)
        client._clock, client._delay = clock, 1.0
        d = checker.check("c.b.example")
        self.assertEqual(sorted(q[:2] for q in client.queries),
                         [("_xmpp-server._tcp.c.b.example", "SRV"),
                          ("b.example", "DNSKEY"), ("b.example", "DS"),
                          ("c.b.example", "DNSKEY"), ("c.b.example", "DS"),
                          ("example", "DNSKEY")])
        clock.advance(1)
        self.assertEqual(self.successResultOf(d).status, SECURE)

    def test_records(self):
        """
        Records carry priority, weight, port and the A-label target without
        the trailing dot; the chain is kept.
        """
        result = self.check(memoryChecker()[0], "c.b.example")
        self.assertEqual(result.records, (SRVRecord(0, 5, 5269, "xmpp1.c.b.example"),))
        self.assertEqual(len(result.chain), 6)
        self.assertIn("SRV signed by c.b.example.", str(result.chain[-1]))

    def test_rfc2782OrderInjected(self):
        """
        Records come in RFC 2782 order drawn from the injected randomness,
        freshly for each check, also from the cache.
        """
        class Picks:
            values = [0, 100]

            def randint(self, a, b):
                return self.values.pop(0)

        checker = memoryChecker(random=Picks())[0]
        first = self.check(checker, "multi.example")
        second = self.check(checker, "multi.example")
        self.assertEqual([r.target for r in first.records],
                         ["xmpp1.multi.example", "xmpp2.multi.example",
                          "xmpp3.multi.example"])
        self.assertEqual([r.target for r in second.records],
                         ["xmpp2.multi.example", "xmpp1.multi.example",
                          "xmpp3.multi.example"])

    def test_idna(self):
        """
        U-label domains and server names are converted to A-labels.
        """
        checker = memoryChecker()[0]
        result = self.check(checker, "Bücher.example")
        self.assertEqual(result.domain, "xn--bcher-kva.example")
        self.assertEqual(result.status, SECURE)
        self.assertTrue(self.successResultOf(
            checker.isDelegated("bücher.example", ["xmpp.café.example"])))
        self.assertTrue(self.successResultOf(
            checker.isDelegated("xn--bcher-kva.example.", ["XMPP.xn--caf-dma.example"])))

    def test_invalidDomain(self):
        """
        An invalid domain is indeterminate, without a query, and never
        delegated.
        """
        checker, client, _ = memoryChecker()
        result = self.check(checker, "a..example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("invalid domain", result.reason)
        self.assertFalse(self.successResultOf(checker.isDelegated("x" * 300, ["a"])))
        self.assertEqual(client.queries, [])

    def test_dot(self):
        """
        SRV target "." is secure but delegates nothing, with a reason saying
        so.
        """
        checker = memoryChecker(fallback=True)[0]
        result = self.check(checker, "dot.example")
        self.assertEqual(result.status, SECURE)
        self.assertIn("decidedly not available", result.reason)
        self.assertFalse(self.successResultOf(
            checker.isDelegated("dot.example", ["dot.example", "."])))

    def test_fallbackPolicy(self):
        """
        The RFC 6120 fallback to the domain itself applies only when asked
        for, and only to a proven absence of SRV records.
        """
        for fallback in [False, True]:
            checker = memoryChecker(fallback=fallback)[0]
            self.assertIs(self.successResultOf(
                checker.isDelegated("missing.example", ["missing.example"])), fallback)
            self.assertIs(self.successResultOf(
                checker.isDelegated("nosrv.example", ["nosrv.example"])), fallback)
            self.assertFalse(self.successResultOf(
                checker.isDelegated("bogus.example", ["bogus.example"])))

    def test_allowInsecureGlobally(self):
        """
        With C{policy='allow-insecure'} insecure delegations count; bogus
        ones still do not.
        """
        checker = memoryChecker(policy=ALLOW_INSECURE)[0]
        self.assertTrue(self.successResultOf(
            checker.isDelegated("unsigned.example", ["xmpp1.unsigned.example"])))
        self.assertFalse(self.successResultOf(
            checker.isDelegated("bogus.example", ["xmpp1.bogus.example"])))

    def test_allowInsecurePerDomain(self):
        """
        A per-domain policy applies to that domain only.
        """
        checker = memoryChecker(domainPolicies={"Unsigned.Example.": ALLOW_INSECURE})[0]
        self.assertTrue(self.successResultOf(
            checker.isDelegated("unsigned.example", ["xmpp1.unsigned.example"])))
        self.assertFalse(self.successResultOf(
            checker.isDelegated("unsigned.nsec3.example",
                                ["xmpp1.unsigned.nsec3.example"])))
        self.assertEqual(checker.policyFor("unsigned.example"), ALLOW_INSECURE)

    def test_badConfiguration(self):
        """
        Unknown modes, upstreams and policies, and no servers, are refused at
        construction.
        """
        clock = Clock()
        client = DNSClient(LOOPBACK, clock)
        for kwargs in [dict(mode="trust-me"), dict(mode="validate", upstream="x"),
                       dict(mode="ad", upstream="authoritative")]:
            self.assertRaises(ValueError, makeLookup, client=client, clock=clock, **kwargs)
        for kwargs in [dict(policy="anything"), dict(domainPolicies={"a.example": "x"})]:
            self.assertRaises(ValueError, DelegationChecker, ResolverLookup(client, clock),
                              clock, **kwargs)
        self.assertRaises(ValueError, makeDelegationChecker, clock, [], "ad")
        self.assertRaises(ValueError, DNSClient, [], clock)

    def test_adNeedsLoopback(self):
        """
        Trusting the AD bit needs every resolver on loopback, unless the path
        is declared trusted; validating does not.
        """
        clock = Clock()
        error = self.assertRaises(ValueError, ResolverLookup,
                                  DNSClient([("127.0.0.1", 53), ("192.0.2.1", 53)], clock),
                                  clock)
        self.assertIn("192.0.2.1:53 is not on loopback", str(error))
        self.assertIn("trustedPath", str(error))
        ResolverLookup(DNSClient([("192.0.2.1", 53)], clock), clock, trustedPath=True)
        ResolverLookup(DNSClient([("::1", 53), ("127.9.9.9", 53)], clock), clock)
        SelfValidatingLookup(DNSClient([("192.0.2.1", 53)], clock), clock)

    def test_lookupsProvide(self):
        """
        Both lookup strategies provide L{IDelegationLookup}.
        """
        clock = Clock()
        client = DNSClient(LOOPBACK, clock)
        self.assertTrue(verifyObject(IDelegationLookup, ResolverLookup(client, clock)))
        self.assertTrue(verifyObject(IDelegationLookup,
                                     SelfValidatingLookup(client, clock)))

    # The cache

    def test_cached(self):
        """
        A second check within the TTL asks nothing; after it, it asks again.
        """
        checker, client, clock = memoryChecker("ad")
        first = self.check(checker, "sender.example")
        asked = len(client.queries)
        self.assertEqual(self.check(checker, "SENDER.example."), first)
        self.assertEqual(len(client.queries), asked)
        clock.advance(first.ttl - 1)
        self.check(checker, "sender.example")
        self.assertEqual(len(client.queries), asked)
        clock.advance(1)
        self.check(checker, "sender.example")
        self.assertEqual(len(client.queries), asked + 1)

    def test_cachedUntilSignatureExpiry(self):
        """
        A result is not cached past the expiry of the signatures it rests on.
        """
        from tests.unit.test_dnssec import GOOD
        clock = Clock()
        clock.advance(GOOD[1] - 10)
        checker, client, clock = memoryChecker("validate", clock=clock)
        result = self.check(checker, "sender.example")
        self.assertEqual((result.status, result.ttl), (SECURE, 10))
        clock.advance(10)
        self.assertGreater(len(client.queries), 0)
        asked = len(client.queries)
        result = self.check(checker, "sender.example")
        self.assertGreater(len(client.queries), asked)
        clock.advance(1)
        result = self.check(checker, "sender.example")
        self.assertEqual(result.status, BOGUS)

    def test_negativeCached(self):
        """
        A proven absence of SRV records is cached for the negative TTL.
        """
        checker, client, clock = memoryChecker("validate")
        result = self.check(checker, "nosrv.example")
        self.assertEqual(result.ttl, 300)
        asked = len(client.queries)
        clock.advance(299)
        self.check(checker, "nosrv.example")
        self.assertEqual(len(client.queries), asked)
        clock.advance(1)
        self.check(checker, "nosrv.example")
        self.assertGreater(len(client.queries), asked)

    def test_failuresCachedBriefly(self):
        """
        Bogus results are cached at most C{bogusTTL}, indeterminate ones
        C{indeterminateTTL}.
        """
        checker, client, clock = memoryChecker("validate", bogusTTL=7, indeterminateTTL=2)
        client.failures["_xmpp-server._tcp.sender.example", "SRV"] = dns.rcode.SERVFAIL
        self.assertEqual(self.check(checker, "sender.example").status, INDETERMINATE)
        self.assertEqual(self.check(checker, "bogus.example").status, BOGUS)
        asked = len(client.queries)
        clock.advance(1.5)
        self.check(checker, "sender.example")
        self.check(checker, "bogus.example")
        self.assertEqual(len(client.queries), asked)
        clock.advance(1)
        del client.failures["_xmpp-server._tcp.sender.example", "SRV"]
        self.assertEqual(self.check(checker, "sender.example").status, SECURE)
        asked = len(client.queries)
        clock.advance(5)
        self.check(checker, "bogus.example")
        self.assertGreater(len(client.queries), asked)

    def test_lru(self):
        """
        The cache holds C{cacheSize} domains, dropping the least recently
        used.
        """
        checker, client, clock = memoryChecker("ad", cacheSize=2)
        for domain in ["sender.example", "target.example", "sender.example",
                       "b.example"]:
            self.check(checker, domain)
        asked = len(client.queries)
        self.check(checker, "sender.example")
        self.assertEqual(len(client.queries), asked)
        self.check(checker, "target.example")
        self.assertEqual(len(client.queries), asked + 1)

    # Sharing, cancelling, timeouts

    def test_coalesced(self):
        """
        Concurrent checks of one domain share one lookup; each caller gets
        its own Deferred.
        """
        checker, client, clock = memoryChecker("ad")
        client.delay = 1.0
        d1 = checker.check("sender.example")
        d2 = checker.check("Sender.Example.")
        d3 = checker.isDelegated("sender.example", ["xmpp1.originating.example"])
        self.assertIsNot(d1, d2)
        self.assertEqual(len(client.queries), 1)
        self.assertNoResult(d1)
        clock.advance(1)
        r1, r2 = self.successResultOf(d1), self.successResultOf(d2)
        self.assertEqual(r1, r2)
        self.assertIs(self.successResultOf(d3), True)
        self.assertEqual(len(client.queries), 1)

    def test_cancelOneWaiter(self):
        """
        Cancelling one caller's Deferred leaves the others and the lookup
        going; cancelling all of them cancels the lookup.
        """
        checker, client, clock = memoryChecker("ad")
        client.failures["_xmpp-server._tcp.sender.example", "SRV"] = "hang"
        d1 = checker.check("sender.example")
        d2 = checker.check("sender.example")
        d1.cancel()
        self.failureResultOf(d1, defer.CancelledError)
        self.assertNoResult(d2)
        d2.cancel()
        self.failureResultOf(d2, defer.CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])
        del client.failures["_xmpp-server._tcp.sender.example", "SRV"]
        self.assertEqual(self.check(checker, "sender.example").status, SECURE)

    def test_deadline(self):
        """
        A lookup that gets no answer is indeterminate when the deadline
        passes, in both modes, leaving no timer behind.
        """
        for mode in ["ad", "validate"]:
            checker, client, clock = memoryChecker(mode, deadline=3.0)
            client.failures["_xmpp-server._tcp.sender.example", "SRV"] = "hang"
            d = checker.check("sender.example")
            clock.advance(2.9)
            self.assertNoResult(d)
            clock.advance(0.1)
            result = self.successResultOf(d)
            self.assertEqual(result.status, INDETERMINATE)
            self.assertEqual(result.reason, "no answer within the deadline of 3 s")
            clock.advance(10)
            self.assertEqual(clock.getDelayedCalls(), [])

    def test_queryErrors(self):
        """
        A timeout or a malformed reply from the DNS client is indeterminate
        with the client's reason.
        """
        for mode in ["ad", "validate"]:
            checker, client, clock = memoryChecker(mode)
            client.failures["_xmpp-server._tcp.sender.example", "SRV"] = DNSTimeout(
                "x", "SRV", "no reply within 1 s")
            client.failures["_xmpp-server._tcp.target.example", "SRV"] = DNSMalformed(
                "x", "SRV", "reply of 70000 bytes")
            result = self.check(checker, "sender.example")
            self.assertEqual(result.status, INDETERMINATE)
            self.assertIn("no reply within 1 s", result.reason)
            result = self.check(checker, "target.example")
            self.assertEqual(result.status, INDETERMINATE)
            self.assertIn("reply of 70000 bytes", result.reason)

    def test_unexpectedError(self):
        """
        An unexpected exception is logged and reported as indeterminate,
        never escaping.
        """
        checker, client, clock = memoryChecker("ad")
        client.failures["_xmpp-server._tcp.sender.example", "SRV"] = ZeroDivisionError()
        result = self.check(checker, "sender.example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("internal error", result.reason)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_garbageAnswer(self):
        """
        An answer stripped of its records (and, from a resolver, of its AD
        bit) is not a delegation: bogus when validating, insecure when
        trusting the resolver.
        """
        def garbage(response):
            response.answer[:] = []
            response.authority[:] = []
            response.flags &= ~dns.flags.AD
            response.additional[:] = [dns.rrset.from_text("x.", 1, "IN", "A", "192.0.2.1")]

        for mode in ["ad", "validate"]:
            checker, client, clock = memoryChecker(mode)
            client.failures["_xmpp-server._tcp.sender.example", "SRV"] = garbage
            result = self.check(checker, "sender.example")
            self.assertIn(result.status, (INSECURE, BOGUS))
            self.assertFalse(self.successResultOf(
                checker.isDelegated("sender.example", ["xmpp1.originating.example"])))

    # mode="ad" answers

    def test_adServfailWithData(self):
        """
        A SERVFAIL without Extended DNS Error is bogus when the resolver has
        the data with CD set.
        """
        checker, client, clock = memoryChecker("ad")

        original = client.query

        def query(name, rdtype, dnssec=True, checkingDisabled=False,
                  recursionDesired=True):
            if checkingDisabled:
                return original(name, rdtype, dnssec, checkingDisabled, recursionDesired)
            response = dns.message.make_response(dns.message.make_query(name, rdtype))
            response.set_rcode(dns.rcode.SERVFAIL)
            return defer.succeed(response)

        client.query = query
        result = self.check(checker, "sender.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("gives the data with CD set", result.reason)

    def test_adServfailTwice(self):
        """
        SERVFAIL also with CD set is indeterminate.
        """
        checker, client, clock = memoryChecker("ad")
        client.failures["_xmpp-server._tcp.sender.example", "SRV"] = dns.rcode.SERVFAIL
        result = self.check(checker, "sender.example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("and SERVFAIL with CD set", result.reason)
        self.assertEqual([q[2]["checkingDisabled"] for q in client.queries], [False, True])

    def test_adRefused(self):
        """
        REFUSED is indeterminate.
        """
        checker, client, clock = memoryChecker("ad")
        client.failures["_xmpp-server._tcp.sender.example", "SRV"] = dns.rcode.REFUSED
        result = self.check(checker, "sender.example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("REFUSED", result.reason)

    def test_adBogusFromEDE(self):
        """
        A SERVFAIL with a DNSSEC Extended DNS Error is bogus with the
        resolver's words, without a second query.
        """
        checker, client, clock = memoryChecker("ad")
        result = self.check(checker, "expired.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("EDE 6 (DNSSEC Bogus)", result.reason)
        self.assertEqual(len(client.queries), 1)

    def test_logged(self):
        """
        Bogus results are logged at info with the domain and the reason.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        checker = memoryChecker("validate")[0]
        self.check(checker, "bogus.example")
        logged = [e for e in events if e.get("domain") == "bogus.example"]
        self.assertEqual(logged[0]["log_level"], LogLevel.info)
        self.assertEqual(logged[0]["status"], BOGUS)
        self.assertIn("does not verify", logged[0]["reason"])
