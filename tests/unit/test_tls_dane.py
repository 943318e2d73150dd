"""
Tests for DANE in L{dna.channel.tls.clientContextFactory}: TLSA records
decide instead of PKIX (RFC 7671, RFC 7673), in memory.
"""

import time

from OpenSSL import SSL
from twisted.internet.task import Clock
from twisted.trial import unittest

from dna.channel.dane import DANE_EE, DANE_TA, PKIX_EE, TLSARecord, associationData
from dna.channel.tls import (
    clientContextFactory,
    daneIdentity,
    peerCertificate,
    peerChain,
)
from dna.error import CertificateNameMismatch, DANEMismatch
from dna.testing.pki import CertificateAuthority
from tests.unit.test_identity import _past
from tests.unit.test_tls import (
    CA,
    ORIGINATING,
    RECEIVING,
    STRANGER,
    _Handshake,
    _serverFactory,
)


def _record(usage, certificate, selector=1, matchingType=1):
    return TLSARecord(usage, selector, matchingType,
                      associationData(certificate, selector, matchingType))


class DANEClientTests(unittest.TestCase):
    """
    The Originating Server verifies the Receiving Server's certificate by
    its SRV target's TLSA records.
    """

    def setUp(self):
        self.originating = CA.issue(ORIGINATING, dnsNames=[ORIGINATING])
        self.clock = Clock()
        self.clock.advance(time.time())

    def handshake(self, issued, tlsa, name=RECEIVING, tlsaPort=None):
        client = clientContextFactory(
            name, CA.toCertificate(), self.originating.toPrivateCertificate(),
            tlsa=tlsa, clock=self.clock, tlsaPort=tlsaPort)
        return _Handshake(_serverFactory((name, issued)), client)

    def assertRefused(self, handshake, errorType=DANEMismatch):
        self.assertFalse(handshake.succeeded)
        reason = handshake.clientApp.lostReason
        self.assertIsNotNone(reason)
        if errorType is None:
            reason.trap(SSL.Error)
        else:
            reason.trap(errorType)
        return reason

    def test_daneEEUntrustedIssuer(self):
        """
        A certificate from an authority we do not trust is accepted when it
        matches a DANE-EE record.
        """
        issued = STRANGER.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(issued, [_record(DANE_EE, issued.certificate)])
        self.assertTrue(handshake.succeeded)
        self.assertEqual(peerCertificate(handshake.clientTLS), issued.certificate)

    def test_daneIdentity(self):
        """
        A connection DANE authenticated says for which server name and TLSA
        port (the SRV port), and gives the presented chain, leaf first, for
        re-matching when the records expire; one PKIX authenticated says
        nothing.
        """
        issued = STRANGER.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(issued, [_record(DANE_EE, issued.certificate)],
                                   tlsaPort=5270)
        self.assertTrue(handshake.succeeded)
        self.assertEqual((RECEIVING, 5270), daneIdentity(handshake.clientTLS))
        self.assertEqual(issued.certificate, peerChain(handshake.clientTLS)[0])
        pkix = self.handshake(CA.issue(RECEIVING, dnsNames=[RECEIVING]), [])
        self.assertTrue(pkix.succeeded)
        self.assertIsNone(daneIdentity(pkix.clientTLS))

    def test_daneEEExpiredOtherName(self):
        """
        DANE-EE ignores an expired certificate's dates and names.
        """
        issued = STRANGER.issue("elsewhere.example", dnsNames=["elsewhere.example"],
                                notAfter=_past(3))
        handshake = self.handshake(issued, [_record(DANE_EE, issued.certificate)])
        self.assertTrue(handshake.succeeded)

    def test_wrongDigest(self):
        """
        A certificate matching no record is refused even when PKIX would
        accept it: the reason is a L{DANEMismatch}.
        """
        issued = CA.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(issued, [TLSARecord(DANE_EE, 1, 1, b"\0" * 32)])
        reason = self.assertRefused(handshake)
        self.assertEqual(reason.value.name, RECEIVING)
        self.assertIn("does not match", str(reason.value))

    def test_daneTA(self):
        """
        DANE-TA accepts a chain to an untrusted authority named by a record,
        for a certificate valid for the SRV target.
        """
        authority = CertificateAuthority("Private Root")
        issuing = authority.intermediate("Private Issuing")
        issued = issuing.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(issued, [_record(DANE_TA, issuing.certificate)])
        self.assertTrue(handshake.succeeded)

    def test_daneTAWrongName(self):
        """
        DANE-TA checks the name.
        """
        authority = CertificateAuthority("Private Root")
        issuing = authority.intermediate("Private Issuing")
        issued = issuing.issue("other.example", dnsNames=["other.example"])
        handshake = self.handshake(issued, [_record(DANE_TA, issuing.certificate)])
        self.assertRefused(handshake)

    def test_pkixEENeedsPKIX(self):
        """
        A PKIX-EE match of an untrusted certificate is refused.
        """
        issued = STRANGER.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(issued, [_record(PKIX_EE, issued.certificate)])
        self.assertRefused(handshake, None)
        trusted = CA.issue(RECEIVING, dnsNames=[RECEIVING])
        handshake = self.handshake(trusted, [_record(PKIX_EE, trusted.certificate)])
        self.assertTrue(handshake.succeeded)

    def test_unusableRecordsFallBackToPKIX(self):
        """
        With no usable record, PKIX decides as without DANE.
        """
        issued = CA.issue(RECEIVING, dnsNames=[RECEIVING])
        self.assertTrue(self.handshake(issued, [TLSARecord(7, 1, 1, b"x")]).succeeded)
        wrong = CA.issue("other.example", dnsNames=["other.example"])
        self.assertRefused(self.handshake(wrong, [TLSARecord(7, 1, 1, b"x")]),
                           CertificateNameMismatch)

    def test_clockRequired(self):
        """
        TLSA records without a clock are a programming error.
        """
        self.assertRaises(ValueError, clientContextFactory, RECEIVING, CA.toCertificate(),
                          None, tlsa=[TLSARecord(3, 1, 1, b"x")])
