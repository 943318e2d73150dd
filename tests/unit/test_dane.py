"""
Tests for L{dna.channel.dane}: the pure DANE decision (RFC 6698, RFC 7671,
RFC 7673).
"""

import datetime
import time

from twisted.trial.unittest import SynchronousTestCase

from dna.channel.dane import (
    DANE_EE,
    DANE_TA,
    PKIX_EE,
    PKIX_TA,
    TLSARecord,
    associationData,
    matches,
    usableRecords,
    verifyChain,
)
from dna.testing.pki import CertificateAuthority

TARGET = "xmpp1.receiving.example"


def _chain(issued):
    return [issued.certificate] + list(issued.chain)


def _record(usage, selector, matchingType, certificate):
    return TLSARecord(usage, selector, matchingType,
                      associationData(certificate, selector, matchingType))


class VerifyChainTests(SynchronousTestCase):
    """
    L{verifyChain} decides whether TLSA records authenticate a chain.
    """

    def setUp(self):
        self.root = CertificateAuthority("DANE Test Root")
        self.intermediate = self.root.intermediate("DANE Test Intermediate")
        self.leaf = self.intermediate.issue(TARGET, dnsNames=[TARGET])
        self.now = time.time()

    def test_everySelectorAndMatchingType(self):
        """
        DANE-EE records of selectors 0 and 1 and matching types 0, 1 and 2
        match the leaf certificate.
        """
        for selector in (0, 1):
            for matchingType in (0, 1, 2):
                record = _record(DANE_EE, selector, matchingType, self.leaf.certificate)
                self.assertTrue(matches(record, self.leaf.certificate))
                verdict = verifyChain([record], _chain(self.leaf), TARGET, self.now)
                self.assertTrue(verdict.authenticated, (selector, matchingType))
                self.assertIs(verdict.record, record)
                self.assertFalse(verdict.needsPKIX)

    def test_spkiMatchesPKIHelper(self):
        """
        The C{3 1 1} association data is the SPKI SHA-256 the test PKI
        computes.
        """
        record = _record(DANE_EE, 1, 1, self.leaf.certificate)
        self.assertEqual(record.data.hex(), self.leaf.spkiSHA256())

    def test_wrongDigest(self):
        """
        A record whose data does not match authenticates nothing, and the
        reason says so.
        """
        record = TLSARecord(DANE_EE, 1, 1, b"\x00" * 32)
        verdict = verifyChain([record], _chain(self.leaf), TARGET, self.now)
        self.assertFalse(verdict.authenticated)
        self.assertIn("does not match", verdict.reason)

    def test_daneEEIgnoresNamesAndDates(self):
        """
        DANE-EE ignores the certificate's names and validity dates (RFC 7671
        section 5.1).
        """
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        other = self.intermediate.issue("elsewhere.example", dnsNames=["elsewhere.example"],
                                        notAfter=past)
        record = _record(DANE_EE, 1, 1, other.certificate)
        verdict = verifyChain([record], _chain(other), TARGET, self.now)
        self.assertTrue(verdict.authenticated)

    def test_rollover(self):
        """
        With several records, as during a rollover, any one matching
        authenticates.
        """
        newLeaf = self.intermediate.issue(TARGET, dnsNames=[TARGET])
        records = [_record(DANE_EE, 1, 1, self.leaf.certificate),
                   _record(DANE_EE, 1, 1, newLeaf.certificate)]
        for issued in (self.leaf, newLeaf):
            self.assertTrue(verifyChain(records, _chain(issued), TARGET,
                                        self.now).authenticated)

    def test_daneTA(self):
        """
        DANE-TA matches an issuer of the presented chain, and requires the
        leaf to chain to it and be valid for the SRV target.
        """
        for anchor in (self.intermediate.certificate, self.root.certificate):
            record = _record(DANE_TA, 1, 1, anchor)
            chain = _chain(self.leaf) + [self.root.certificate]
            verdict = verifyChain([record], chain, TARGET, self.now)
            self.assertTrue(verdict.authenticated, verdict.reason)
        verdict = verifyChain([_record(DANE_TA, 0, 2, self.intermediate.certificate)],
                              _chain(self.leaf), "other.example", self.now)
        self.assertFalse(verdict.authenticated)
        self.assertIn("not valid for other.example", verdict.reason)

    def test_daneTAExpired(self):
        """
        DANE-TA checks the leaf's dates.
        """
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
        expired = self.intermediate.issue(TARGET, dnsNames=[TARGET], notAfter=past)
        record = _record(DANE_TA, 1, 1, self.intermediate.certificate)
        self.assertFalse(verifyChain([record], _chain(expired), TARGET,
                                     self.now).authenticated)

    def test_daneTAUnrelatedIssuer(self):
        """
        A matching certificate that did not issue the leaf is no trust
        anchor for it.
        """
        otherCA = CertificateAuthority("Other")
        record = _record(DANE_TA, 1, 1, otherCA.certificate)
        chain = _chain(self.leaf) + [otherCA.certificate]
        self.assertFalse(verifyChain([record], chain, TARGET, self.now).authenticated)

    def test_daneTADoesNotMatchLeaf(self):
        """
        DANE-TA does not match the leaf itself.
        """
        record = _record(DANE_TA, 1, 1, self.leaf.certificate)
        self.assertFalse(verifyChain([record], _chain(self.leaf), TARGET,
                                     self.now).authenticated)

    def test_pkixUsagesNeedPKIX(self):
        """
        PKIX-EE and PKIX-TA matches count only with PKIX validation.
        """
        ee = verifyChain([_record(PKIX_EE, 0, 1, self.leaf.certificate)],
                         _chain(self.leaf), TARGET, self.now)
        ta = verifyChain([_record(PKIX_TA, 0, 1, self.intermediate.certificate)],
                         _chain(self.leaf), TARGET, self.now)
        for verdict in (ee, ta):
            self.assertTrue(verdict.authenticated)
            self.assertTrue(verdict.needsPKIX)

    def test_unusable(self):
        """
        Records of unknown usage, selector or matching type are unusable;
        with none usable DANE does not apply.
        """
        records = [TLSARecord(4, 1, 1, b"x"), TLSARecord(3, 2, 1, b"x"),
                   TLSARecord(3, 1, 3, b"x")]
        self.assertEqual(usableRecords(records), [])
        verdict = verifyChain(records, _chain(self.leaf), TARGET, self.now)
        self.assertFalse(verdict.authenticated)
        self.assertIsNone(verdict.record)
        self.assertEqual(verdict.reason, "no usable TLSA record")
