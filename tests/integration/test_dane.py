"""
DANE against real knotd-signed zones with TLSA records, validated by a real
unbound (mode C{ad}) and by L{dna.dns.dnssec} from the trust anchor (mode
C{validate}): L{dna.dns.tlsa.TLSALookup}'s outcomes, and the handshakes of
L{dna.channel.tls.clientContextFactory} with the records it found (RFC
7673, RFC 7671).
"""

import time

from twisted.internet import defer
from twisted.internet import reactor as globalReactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from dna.channel.dane import TLSARecord, associationData
from dna.channel.tls import clientContextFactory
from dna.dns.client import DNSClient
from dna.dns.lookup import ResolverLookup, SelfValidatingLookup
from dna.dns.tlsa import DANE, DANE_FAILED, NO_DANE, TLSALookup
from dna.error import DANEMismatch
from dna.testing.pki import CertificateAuthority
from tests.integration.dnsenv import startDNSEnvironment
from tests.unit.test_identity import _past
from tests.unit.test_tls import CA, ORIGINATING, STRANGER, _Handshake, _serverFactory

ORIGINATING_CERT = CA.issue(ORIGINATING, dnsNames=[ORIGINATING])

#: Certificates of untrusted authorities, named by TLSA records.
EE = STRANGER.issue("ee.dane.example", dnsNames=["ee.dane.example"])
EE_NEXT = STRANGER.issue("ee.dane.example", dnsNames=["ee.dane.example"])
EXPIRED = STRANGER.issue("elsewhere.example", notAfter=_past(5))
PRIVATE = CertificateAuthority("DANE Private Root").intermediate("DANE Private Issuing")
TA = PRIVATE.issue("ta.dane.example", dnsNames=["ta.dane.example"])
#: A certificate PKIX accepts, for the targets without TLSA.
PKIX = CA.issue("none.dane.example", dnsNames=["none.dane.example",
                                                "xmpp1.unsigned.example"])


def _hex(certificate, selector=1, matchingType=1):
    return associationData(certificate, selector, matchingType).hex()


EXTRA_ZONES = {
    "dane.example": ("nsec", [
        "ee A 127.0.0.71",
        f"_5269._tcp.ee TLSA 3 1 1 {_hex(EE.certificate)}",
        f"_5269._tcp.ee TLSA 3 1 2 {_hex(EE_NEXT.certificate, 1, 2)}",
        "wrong A 127.0.0.72",
        f"_5269._tcp.wrong TLSA 3 1 1 {'00' * 32}",
        "expired A 127.0.0.73",
        f"_5269._tcp.expired TLSA 3 0 1 {_hex(EXPIRED.certificate, 0, 1)}",
        "ta A 127.0.0.74",
        f"_5269._tcp.ta TLSA 2 0 1 {_hex(PRIVATE.certificate, 0, 1)}",
        "none A 127.0.0.75",
        "fail A 127.0.0.76",
    ], "DANE targets: ee (DANE-EE, two records in a rollover), wrong (a wrong "
       "digest), expired (DANE-EE of an expired certificate), ta (DANE-TA), "
       "none (no TLSA: NODATA proven by NSEC), fail (its _tcp zone is broken)."),
    "_tcp.fail.dane.example": ("broken", [], "knotd cannot load it: SERVFAIL."),
    "bogustlsa.example": ("bogus-tlsa", [
        "xmpp1 A 127.0.0.77",
        f"_5269._tcp.xmpp1 TLSA 3 1 1 {_hex(EE.certificate)}",
    ], "The TLSA record changed after signing, the A record intact."),
}


class _Modes:
    """
    The expected outcomes, for both lookup strategies.
    """

    def setUp(self):
        self.env = startDNSEnvironment(self, extraZones=EXTRA_ZONES)
        self.tlsa = TLSALookup(self.makeLookup(), globalReactor)

    @defer.inlineCallbacks
    def assertOutcome(self, serverName, status, count=None):
        result = yield self.tlsa.lookup(serverName, 5269)
        self.assertEqual(result.status, status, result.reason)
        if count is not None:
            self.assertEqual(len(result.records), count)
        return result

    def test_daneEE(self):
        """
        Two secure DANE-EE records (a rollover) are found.
        """
        return self.assertOutcome("ee.dane.example", DANE, 2)

    def test_secureDenial(self):
        """
        A secure denial of TLSA leaves PKIX to decide.
        """
        return self.assertOutcome("none.dane.example", NO_DANE, 0)

    def test_insecureAddresses(self):
        """
        A target in an unsigned zone is not looked up for TLSA.
        """
        return self.assertOutcome("xmpp1.unsigned.example", NO_DANE, 0)

    @defer.inlineCallbacks
    def test_bogus(self):
        """
        A bogus TLSA answer for a target with secure addresses fails.
        """
        result = yield self.assertOutcome("xmpp1.bogustlsa.example", DANE_FAILED)
        self.assertTrue(result.failed)

    @defer.inlineCallbacks
    def test_servfail(self):
        """
        A TLSA lookup that gets SERVFAIL (its zone cannot be loaded) fails.
        """
        result = yield self.assertOutcome("fail.dane.example", DANE_FAILED)
        self.assertIn("SERVFAIL", result.reason)

    @defer.inlineCallbacks
    def test_cached(self):
        """
        A second lookup is answered from the cache.
        """
        first = yield self.tlsa.lookup("ee.dane.example", 5269)
        self.env.stop()
        second = yield self.tlsa.lookup("ee.dane.example", 5269)
        self.assertEqual(first, second)

    @defer.inlineCallbacks
    def handshake(self, serverName, presented):
        result = yield self.tlsa.lookup(serverName, 5269)
        records = [TLSARecord.fromRdata(rdata) for rdata in result.records]
        clock = Clock()
        clock.advance(time.time())
        client = clientContextFactory(
            serverName, CA.toCertificate(), ORIGINATING_CERT.toPrivateCertificate(),
            tlsa=records, clock=clock)
        return _Handshake(_serverFactory((serverName, presented)), client)

    @defer.inlineCallbacks
    def test_handshakes(self):
        """
        The records found decide the handshakes: DANE-EE (either record of
        the rollover, an expired certificate of another name), DANE-TA
        accepted; a wrong digest refused although PKIX would accept the
        certificate; without TLSA, PKIX.
        """
        accepted = [("ee.dane.example", EE), ("ee.dane.example", EE_NEXT),
                    ("expired.dane.example", EXPIRED), ("ta.dane.example", TA),
                    ("none.dane.example", PKIX), ("xmpp1.unsigned.example", PKIX)]
        for serverName, presented in accepted:
            handshake = yield self.handshake(serverName, presented)
            self.assertTrue(handshake.succeeded, serverName)
        wrong = CA.issue("wrong.dane.example", dnsNames=["wrong.dane.example"])
        handshake = yield self.handshake("wrong.dane.example", wrong)
        handshake.clientApp.lostReason.trap(DANEMismatch)
        handshake = yield self.handshake("none.dane.example", EE)
        self.assertFalse(handshake.succeeded)
        handshake = yield self.handshake("ee.dane.example", TA)
        handshake.clientApp.lostReason.trap(DANEMismatch)


class ResolverModeTests(_Modes, unittest.TestCase):
    """
    Through unbound's AD bit.
    """

    def makeLookup(self):
        return ResolverLookup(DNSClient([self.env.resolver], globalReactor), globalReactor)


class SelfValidatingModeTests(_Modes, unittest.TestCase):
    """
    Validated here from the trust anchor, asking knotd.
    """

    def makeLookup(self):
        return SelfValidatingLookup(
            DNSClient([self.env.authoritative], globalReactor), globalReactor,
            {self.env.anchors.name: self.env.anchors}, authoritative=True)


class CheckTests(unittest.SynchronousTestCase):
    """
    C{dna-check} shows the DANE verdict of every SRV target beside the SRV
    chain.
    """

    def setUp(self):
        from tests.integration.dnsenv import DNSEnvironment

        zones = dict(EXTRA_ZONES)
        zones["danesrv.example"] = ("nsec", [
            "_xmpp-server._tcp SRV 0 5 5269 ee.dane.example.",
            "_xmpp-server._tcp SRV 1 5 5269 none.dane.example.",
            "_xmpp-server._tcp SRV 2 5 5269 fail.dane.example."], "SRV to DANE targets.")
        self.env = DNSEnvironment(self.mktemp(), extraZones=zones)
        self.addCleanup(self.env.stop)
        self.env.start()

    def test_daneSideBySide(self):
        """
        Each target's TLSA status and records are printed.
        """
        import functools
        import io
        import sys

        from twisted.internet.selectreactor import SelectReactor

        from dna.app.check import main

        reactor = SelectReactor()
        reactor.run = functools.partial(reactor.run, installSignalHandlers=False)
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        host, port = self.env.resolver
        error = self.assertRaises(SystemExit, main, ["-r", f"{host}:{port}",
                                                      "danesrv.example"], _reactor=reactor)
        text = out.getvalue()
        self.assertEqual(0, error.code, text)
        self.assertIn("dane ee.dane.example:5269: dane: ", text)
        self.assertIn(f"  TLSA 3 1 1 {_hex(EE.certificate)}", text)
        self.assertIn("dane none.dane.example:5269: no-dane: ", text)
        self.assertIn("dane fail.dane.example:5269: failed: ", text)
