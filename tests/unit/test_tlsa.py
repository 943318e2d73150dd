"""
Tests for L{dna.dns.tlsa}: whether DANE applies to an SRV target (RFC 7673
section 3), in memory.
"""

import dns.name
import dns.rdatatype
import dns.rrset
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dna.dns.dnssec.proofs import BOGUS, INDETERMINATE, INSECURE, SECURE, Validation
from dna.dns.tlsa import DANE, DANE_FAILED, NO_DANE, TLSALookup, decide, tlsaName

TARGET = "xmpp1.example"
TLSA = dns.rrset.from_text("_5269._tcp.xmpp1.example.", 300, "IN", "TLSA",
                           "3 1 1 " + "ab" * 32, "3 1 1 " + "cd" * 32)
A = dns.rrset.from_text("xmpp1.example.", 300, "IN", "A", "127.0.0.1")


class _Validator:
    """
    Validations by (name, type), counting the questions.
    """

    def __init__(self, answers):
        self.answers = answers
        self.asked = []
        #: Whether questions wait to be answered (through L{pending}).
        self.waiting = False
        self.pending = {}
        self.cancelled = []

    def validate(self, qname, rdtype, now):
        question = (qname.to_text(), dns.rdatatype.to_text(rdtype))
        self.asked.append(question)
        if self.waiting:
            d = self.pending[question] = defer.Deferred(
                lambda d: self.cancelled.append(question))
            return d
        return defer.succeed(self.answers[question])


class DecideTests(SynchronousTestCase):
    """
    L{decide} on the validations of the addresses and the TLSA records.
    """

    def test_name(self):
        """
        TLSA records live at C{_PORT._tcp.TARGET}.
        """
        self.assertEqual(dns.name.from_text("_5270._tcp.xmpp1.example."),
                         tlsaName(TARGET, 5270))

    def test_outcomes(self):
        """
        Secure records: DANE; secure denial, insecure zone or insecure
        addresses: no DANE; anything bogus or indeterminate: failed.
        """
        secureA = Validation(SECURE, A, ttl=300)
        cases = [
            (secureA, Validation(SECURE, TLSA, ttl=60), DANE),
            (secureA, Validation(SECURE, None, "NODATA", ttl=60), NO_DANE),
            (secureA, Validation(INSECURE, None, "unsigned", ttl=60), NO_DANE),
            (secureA, Validation(BOGUS, None, "bad signature"), DANE_FAILED),
            (secureA, Validation(INDETERMINATE, None, "SERVFAIL"), DANE_FAILED),
            (Validation(INSECURE, A, "unsigned"), None, NO_DANE),
            (Validation(BOGUS, None, "bad"), None, DANE_FAILED),
        ]
        for addresses, tlsa, status in cases:
            result = decide(TARGET, 5269, addresses, tlsa)
            self.assertEqual(status, result.status, result.reason)
            self.assertEqual(status == DANE_FAILED, result.failed)
        result = decide(TARGET, 5269, secureA, Validation(SECURE, TLSA, ttl=60))
        self.assertEqual(2, len(result.records))
        self.assertEqual(60, result.ttl)


class TLSALookupTests(SynchronousTestCase):
    """
    L{TLSALookup} asks for the addresses first, caches and shares lookups.
    """

    def setUp(self):
        self.clock = Clock()
        self.validator = _Validator({
            ("xmpp1.example.", "A"): Validation(SECURE, A, ttl=300),
            ("_5269._tcp.xmpp1.example.", "TLSA"): Validation(SECURE, TLSA, ttl=60),
            ("v6.example.", "A"): Validation(SECURE, None, "NODATA", ttl=300),
            ("v6.example.", "AAAA"): Validation(INSECURE, None, "unsigned", ttl=300),
            ("_5269._tcp.v6.example.", "TLSA"): Validation(INSECURE, None, "unsigned", ttl=300),
            ("bad.example.", "A"): Validation(SECURE, A, ttl=300),
            ("_5269._tcp.bad.example.", "TLSA"): Validation(BOGUS, None, "bogus", ttl=300),
        })
        self.lookup = TLSALookup(self.validator, self.clock, static=["static.example"])

    def test_cachedForTTL(self):
        """
        An outcome is cached for its TTL.
        """
        first = self.successResultOf(self.lookup.lookup(TARGET, 5269))
        self.assertEqual(DANE, first.status)
        self.assertEqual(first, self.successResultOf(self.lookup.lookup(TARGET, 5269)))
        self.assertEqual(2, len(self.validator.asked))
        self.clock.advance(61)
        self.successResultOf(self.lookup.lookup(TARGET, 5269))
        self.assertEqual(4, len(self.validator.asked))

    def test_failureCachedBriefly(self):
        """
        A failed lookup is cached a few seconds at most.
        """
        result = self.successResultOf(self.lookup.lookup("bad.example", 5269))
        self.assertEqual(DANE_FAILED, result.status)
        self.clock.advance(6)
        self.successResultOf(self.lookup.lookup("bad.example", 5269))
        self.assertEqual(4, len(self.validator.asked))

    def test_aaaa(self):
        """
        Without A records, the AAAA records' status decides.
        """
        result = self.successResultOf(self.lookup.lookup("v6.example", 5269))
        self.assertEqual(NO_DANE, result.status)
        self.assertEqual([("_5269._tcp.v6.example.", "TLSA"), ("v6.example.", "A"),
                          ("v6.example.", "AAAA")], self.validator.asked)

    def test_static(self):
        """
        A server name with a static address is not looked up.
        """
        result = self.successResultOf(self.lookup.lookup("static.example", 5269))
        self.assertEqual(NO_DANE, result.status)
        self.assertEqual([], self.validator.asked)

    def test_shared(self):
        """
        Concurrent lookups of one target share one.
        """
        self.validator.waiting = True
        first = self.lookup.lookup(TARGET, 5269)
        second = self.lookup.lookup(TARGET, 5269)
        self.assertEqual(2, len(self.validator.asked))
        self.validator.pending["xmpp1.example.", "A"].callback(
            Validation(INSECURE, A, "unsigned"))
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))

    def test_tlsaWithAddresses(self):
        """
        The TLSA records are asked along with the addresses, before the
        addresses' answer: the outcome waits for both.
        """
        self.validator.waiting = True
        d = self.lookup.lookup(TARGET, 5269)
        self.assertEqual([("_5269._tcp.xmpp1.example.", "TLSA"), ("xmpp1.example.", "A")],
                         self.validator.asked)
        self.validator.pending["_5269._tcp.xmpp1.example.", "TLSA"].callback(
            Validation(SECURE, TLSA, ttl=60))
        self.assertNoResult(d)
        self.validator.pending["xmpp1.example.", "A"].callback(Validation(SECURE, A, ttl=300))
        self.assertEqual(DANE, self.successResultOf(d).status)
        self.assertEqual([], self.validator.cancelled)

    def test_nameTooLongForTLSA(self):
        """
        A server name too long to carry C{_5269._tcp.} in front (a valid
        domain of about 250 octets) has no TLSA record: the lookup does not
        fail, asks only for the addresses, and says there is no DANE.
        """
        name = ".".join(["a" * 63] * 3 + ["b" * 50, "example"])
        self.validator.answers[(name + ".", "A")] = Validation(SECURE, A, ttl=300)
        result = self.successResultOf(self.lookup.lookup(name, 5269))
        self.assertEqual(NO_DANE, result.status)
        self.assertIn("no TLSA record can exist", result.reason)
        self.assertEqual([(name + ".", "A")], self.validator.asked)
        self.validator.answers[("x." + name + ".", "A")] = Validation(
            INSECURE, None, "unsigned", ttl=300)
        self.assertEqual(NO_DANE, self.successResultOf(
            self.lookup.lookup("x." + name, 5269)).status)

    def test_tlsaWithdrawn(self):
        """
        When the addresses are not secure, the outcome does not wait for
        the TLSA records: their question is withdrawn.
        """
        self.validator.waiting = True
        d = self.lookup.lookup(TARGET, 5269)
        self.validator.pending["xmpp1.example.", "A"].callback(
            Validation(BOGUS, None, "bogus", ttl=60))
        result = self.successResultOf(d)
        self.assertEqual((DANE_FAILED, BOGUS), (result.status, result.dnssec))
        self.assertEqual([("_5269._tcp.xmpp1.example.", "TLSA")], self.validator.cancelled)

    def test_cancelWithdrawsBoth(self):
        """
        Cancelling the lookup withdraws both questions.
        """
        self.validator.waiting = True
        d = self.lookup.lookup(TARGET, 5269)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(sorted([("_5269._tcp.xmpp1.example.", "TLSA"), ("xmpp1.example.", "A")]),
                         sorted(self.validator.cancelled))

    def test_expires(self):
        """
        An outcome says when it expires: the time of the lookup plus its
        TTL (the smallest of the addresses' and the records', signature
        lifetimes included by the validator).
        """
        self.clock.advance(1000)
        result = self.successResultOf(self.lookup.lookup(TARGET, 5269))
        self.assertEqual(1060, result.expires)
        self.clock.advance(30)
        self.assertEqual(1060, self.successResultOf(self.lookup.lookup(TARGET, 5269)).expires)

    def test_after(self):
        """
        With C{after}, a cached outcome that expires no later is looked up
        again; one that outlasts it is used.
        """
        first = self.successResultOf(self.lookup.lookup(TARGET, 5269))
        self.clock.advance(50)
        self.assertIs(first, self.successResultOf(
            self.lookup.lookup(TARGET, 5269, after=first.expires - 1)))
        self.assertEqual(2, len(self.validator.asked))
        second = self.successResultOf(self.lookup.lookup(TARGET, 5269, after=first.expires))
        self.assertEqual(4, len(self.validator.asked))
        self.assertEqual(110, second.expires)
        self.assertIs(second, self.successResultOf(self.lookup.lookup(TARGET, 5269)))

    def test_failedSaysWhy(self):
        """
        A failed outcome says whether the answer was bogus or no usable
        answer came.
        """
        self.assertEqual(BOGUS, self.successResultOf(
            self.lookup.lookup("bad.example", 5269)).dnssec)
        result = decide(TARGET, 5269, Validation(SECURE, A, ttl=300),
                        Validation(INDETERMINATE, None, "SERVFAIL"))
        self.assertEqual(INDETERMINATE, result.dnssec)
        self.assertIsNone(self.successResultOf(self.lookup.lookup(TARGET, 5269)).dnssec)
