"""
Tests for the re-validation of connections whose peer DANE authenticated
(L{dna.app.revalidation}, issue 11 with issue 12): the TLSA records are a
proof that expires, with an injected clock.
"""

import random

import dns.rdata
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream

from dna.app.federation import Federation
from dna.app.revalidation import TLSA, tlsaOutcome
from dna.channel.dane import DANE_EE, MATCH_SHA256, SELECTOR_SPKI, associationData
from dna.channel.stream import S2SStream
from dna.core.proofs import DELEGATED, INDETERMINATE, NOT_DELEGATED
from dna.dns.dnssec.proofs import BOGUS
from dna.dns.dnssec.proofs import INDETERMINATE as DNSSEC_INDETERMINATE
from dna.dns.tlsa import DANE, DANE_FAILED, NO_DANE, TLSAResult
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import HEADER

PEER = "xmpp.a.tld"
CA = CertificateAuthority("TLSA Revalidation Root")
LEAF = CA.issue(PEER, dnsNames=[PEER])
OTHER = CA.issue(PEER, dnsNames=[PEER])


def _rdata(certificate):
    """
    A DANE-EE SPKI SHA-256 TLSA rdata for C{certificate}.
    """
    data = associationData(certificate, SELECTOR_SPKI, MATCH_SHA256)
    return dns.rdata.from_text("IN", "TLSA", f"{DANE_EE} {SELECTOR_SPKI} "
                               f"{MATCH_SHA256} {data.hex()}")


MATCHING = (DANE, (_rdata(LEAF.certificate),), None)
WRONG = (DANE, (_rdata(OTHER.certificate),), None)


class _TLSALookup:
    """
    A L{dna.dns.tlsa.TLSALookup} answering C{answer}, C{(status, records,
    dnssec)}, with a TTL of C{ttl}, and noting what it was asked.
    """

    def __init__(self, clock, answer=MATCHING, ttl=300):
        self.clock = clock
        self.answer = answer
        self.ttl = ttl
        self.asked = []

    def lookup(self, serverName, port, after=None):
        self.asked.append((serverName, port, after))
        status, records, dnssec = self.answer
        return succeed(TLSAResult(serverName, port, status, records, "the reason",
                                  self.ttl, dnssec,
                                  expires=self.clock.seconds() + self.ttl))


class TLSAOutcomeTests(SynchronousTestCase):
    """
    L{tlsaOutcome} is the pure verdict of a new TLSA lookup on a peer that
    DANE authenticated.
    """

    def outcome(self, answer, ttl=300, now=1000.0):
        status, records, dnssec = answer
        result = TLSAResult(PEER, 5269, status, records, "the reason", ttl, dnssec,
                            expires=now + ttl)
        return tlsaOutcome(result, [LEAF.certificate], PEER, now)

    def test_stillMatching(self):
        """
        A record that still matches the certificate: delegated, until the
        new lookup expires.
        """
        self.assertEqual((DELEGATED, 1300.0, None), self.outcome(MATCHING))

    def test_noLongerMatching(self):
        """
        Records none of which matches the certificate any more: not
        delegated, and the reason says so.
        """
        outcome, expires, reason = self.outcome(WRONG)
        self.assertEqual(NOT_DELEGATED, outcome)
        self.assertIn("no longer matches", reason)

    def test_noDANE(self):
        """
        No TLSA records any more (or an insecure zone): what proved the
        peer's identity is gone.
        """
        outcome, expires, reason = self.outcome((NO_DANE, (), None))
        self.assertEqual(NOT_DELEGATED, outcome)
        self.assertIn("no longer applies", reason)

    def test_bogus(self):
        """
        A bogus answer: not delegated.
        """
        outcome, expires, reason = self.outcome((DANE_FAILED, (), BOGUS))
        self.assertEqual(NOT_DELEGATED, outcome)
        self.assertIn("bogus", reason)

    def test_indeterminate(self):
        """
        No usable answer: indeterminate.
        """
        self.assertEqual(INDETERMINATE, self.outcome(
            (DANE_FAILED, (), DNSSEC_INDETERMINATE))[0])
        self.assertEqual(INDETERMINATE, self.outcome((DANE_FAILED, (), None))[0])

    def test_expiresFromTTL(self):
        """
        A result without C{expires} expires its TTL after C{now}.
        """
        result = TLSAResult(PEER, 5269, DANE, MATCHING[1], "", 60)
        self.assertEqual(1060.0, tlsaOutcome(result, [LEAF.certificate], PEER, 1000.0)[1])


class TLSARevalidationTests(SynchronousTestCase):
    """
    A connection whose peer DANE authenticated lasts as long as the TLSA
    records match its certificate: re-checked before they expire, closed
    when they no longer match, kept a grace past their expiry when the
    re-check is indeterminate.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def federationWithStream(self, grace=0.0, dane=True):
        """
        A L{Federation} with one incoming stream C{"s1"} from L{PEER}, whose
        certificate DANE authenticated (if C{dane}) by the TLSA records of
        C{_5269._tcp.xmpp.a.tld}, with a TTL of 300 s.
        """
        self.tlsa = _TLSALookup(self.clock)
        identity = (PEER, 5269, [LEAF.certificate]) if dane else None
        federation = Federation(
            ["b1.tld"], FakeDelegationChecker({"a1.tld": [PEER]}),
            lambda stanza: None, clock=self.clock,
            revalidation={"certificateExpiry": lambda xs: None, "grace": grace,
                          "tlsaLookup": self.tlsa, "daneIdentity": lambda xs: identity,
                          "random": random.Random(4)})
        xs = S2SStream(xmlstream.Authenticator())
        xs.makeConnection(StringTransport())
        xs.dataReceived(HEADER.format(peer=PEER, us="xmpp.b.tld",
                                      sid="s1").encode("utf-8"))
        xs.sid = "s1"
        xs._headerSent = True
        federation.streamAuthenticated(xs, initiating=False, serverNames=[PEER])
        return federation, xs

    def assertClosed(self, federation, xs):
        self.assertIn(b"policy-violation", xs.transport.value())
        self.assertTrue(xs.transport.disconnecting)
        self.assertEqual(1, federation.counters["tlsa-expired"])
        [event] = [e for e in self.events if e.get("event") == "revalidation-tlsa-failed"]
        self.assertEqual("s1", event["streamID"])
        return event

    def assertOpen(self, federation, xs):
        self.assertNotIn(b"policy-violation", xs.transport.value())
        self.assertFalse(xs.transport.disconnecting)
        self.assertEqual(0, federation.counters["tlsa-expired"])

    def test_proofRecorded(self):
        """
        The TLSA proof of a DANE-authenticated stream expires when its
        records do, and is checked again before that.
        """
        federation, xs = self.federationWithStream()
        revalidator = federation.revalidator
        self.assertEqual(1300.0, revalidator.identityProofExpires("s1"))
        proof = revalidator.proofs[(TLSA, "s1")]
        self.assertTrue(1270.0 <= proof.nextCheck <= 1300.0, proof.nextCheck)
        self.assertEqual([(PEER, 5269, None)], self.tlsa.asked)

    def test_pkixNotWatched(self):
        """
        A stream whose peer PKIX authenticated has no TLSA proof.
        """
        federation, xs = self.federationWithStream(dane=False)
        self.assertIsNone(federation.revalidator.identityProofExpires("s1"))
        self.assertEqual([], self.tlsa.asked)

    def test_extend(self):
        """
        A re-check that still matches extends the proof to the new
        records' expiry, asking for records outlasting the old ones; the
        connection stays open, and so on at every TTL.
        """
        federation, xs = self.federationWithStream()
        revalidator = federation.revalidator
        self.clock.advance(300)
        self.assertEqual((PEER, 5269, 1300.0), self.tlsa.asked[1])
        expires = revalidator.identityProofExpires("s1")
        self.assertTrue(1570.0 <= expires <= 1600.0, expires)
        self.clock.advance(300)
        self.assertEqual(3, len(self.tlsa.asked))
        self.assertGreater(revalidator.identityProofExpires("s1"), expires)
        self.assertOpen(federation, xs)

    def test_mismatchEnds(self):
        """
        Once the TLSA records no longer match the peer's certificate, the
        re-check ends the connection with C{<policy-violation/>}, logs and
        counts it.
        """
        federation, xs = self.federationWithStream()
        self.tlsa.answer = WRONG
        self.clock.advance(269)
        self.assertOpen(federation, xs)
        self.clock.advance(31)
        event = self.assertClosed(federation, xs)
        self.assertIn("no longer matches", event["reason"])
        self.assertIsNone(federation.revalidator.identityProofExpires("s1"))

    def test_bogusEnds(self):
        """
        A bogus TLSA answer ends the connection at once.
        """
        federation, xs = self.federationWithStream(grace=60)
        self.tlsa.answer = (DANE_FAILED, (), BOGUS)
        self.clock.advance(300)
        self.assertClosed(federation, xs)

    def test_goneEnds(self):
        """
        TLSA records that are gone (DANE no longer applies) end the
        connection: what proved the peer's identity is gone; a new stream
        is authenticated afresh.
        """
        federation, xs = self.federationWithStream()
        self.tlsa.answer = (NO_DANE, (), None)
        self.clock.advance(300)
        self.assertClosed(federation, xs)

    def test_indeterminateThenEndAfterGrace(self):
        """
        Indeterminate re-checks keep the connection until the proof's
        expiry plus the grace, trying again meanwhile; then it ends.
        """
        federation, xs = self.federationWithStream(grace=20)
        self.tlsa.answer = (DANE_FAILED, (), DNSSEC_INDETERMINATE)
        self.clock.advance(300)
        self.assertOpen(federation, xs)
        asked = len(self.tlsa.asked)
        self.clock.pump([1] * 19)
        self.assertOpen(federation, xs)
        self.assertGreater(len(self.tlsa.asked), asked + 2)
        self.clock.advance(1)
        event = self.assertClosed(federation, xs)
        self.assertIn("indeterminate", event["reason"])

    def test_indeterminateThenRecovered(self):
        """
        A re-check that matches again after indeterminate ones extends the
        proof: the connection stays.
        """
        federation, xs = self.federationWithStream(grace=20)
        self.tlsa.answer = (DANE_FAILED, (), DNSSEC_INDETERMINATE)
        self.clock.advance(300)
        self.clock.advance(5)
        self.tlsa.answer = MATCHING
        self.clock.pump([1] * 30)
        self.assertOpen(federation, xs)
        self.assertGreater(federation.revalidator.identityProofExpires("s1"), 1500.0)

    def test_endedStreamForgotten(self):
        """
        A stream that ends drops its TLSA proof: no re-check, no timer.
        """
        federation, xs = self.federationWithStream()
        xs.connectionLost(None)
        self.assertIsNone(federation.revalidator.identityProofExpires("s1"))
        self.assertEqual([], self.clock.getDelayedCalls())
        self.clock.advance(300)
        self.assertEqual(1, len(self.tlsa.asked))
