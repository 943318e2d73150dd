"""
Tests for DANE on legacy streams: L{dna.legacy.dane}, the DANE path of
L{dna.legacy.receiving} and L{dna.legacy.tls.peerVerified} (RFC 7673).
"""

import collections

import dns.rdata
from OpenSSL.crypto import X509
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dna.channel.dane import associationData
from dna.dns.tlsa import DANE, DANE_FAILED, NO_DANE, TLSAResult
from dna.error import DANEMismatch, DANEUnavailable
from dna.legacy import dane as legacydane
from dna.legacy import receiving as legacyserver
from dna.legacy import tls as legacytls
from dna.legacy.dane import LegacyDANE
from dna.legacy.policy import FALLBACK_PKIX
from dna.namespaces import NS_SASL
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.unit.test_legacy import LegacyListenMixin

CA = CertificateAuthority("Untrusted CA")
PEER = CA.issue("target.tld", dnsNames=["target.tld", "other.tld"])


def tlsaRdata(certificate=PEER, digest=None):
    """
    A dnspython TLSA rdata C{3 1 1} of C{certificate}, or of C{digest}.
    """
    data = digest or associationData(certificate.certificate, 1, 1).hex()
    return dns.rdata.from_text("IN", "TLSA", f"3 1 1 {data}")


class FakeTLSALookup:
    """
    A L{dna.dns.tlsa.TLSALookup} answering from a table of server name to
    (status, records).
    """

    def __init__(self, table):
        self.table = table
        self.asked = []

    def lookup(self, serverName, port, after=None):
        self.asked.append((serverName, port))
        status, records = self.table.get(serverName, (NO_DANE, ()))
        return defer.succeed(TLSAResult(serverName, port, status, records,
                                        reason=f"{status} (fake)"))


class LegacyDANETests(SynchronousTestCase):
    """
    L{LegacyDANE}: the TLSA records of a domain's secure SRV targets.
    """

    def setUp(self):
        self.checker = FakeDelegationChecker(
            {"target.tld": {"xmpp.target.tld"}, "two.tld": {"a.two.tld", "b.two.tld"}},
            insecure=["insecure.tld"])
        self.patch(legacydane, "peerChain", lambda transport: [PEER.certificate])

    def dane(self, table):
        self.lookup = FakeTLSALookup(table)
        return LegacyDANE(self.checker, self.lookup, Clock())

    def result(self, domain):
        return self.successResultOf(self.checker.check(domain))

    def test_recordsForSecureTarget(self):
        """
        The TLSA records of a secure SRV target are returned, usable ones
        only, for the handshake to check.
        """
        dane = self.dane({"xmpp.target.tld": (DANE, [tlsaRdata()])})
        [record] = self.successResultOf(
            dane.recordsFor(self.result("target.tld"), "xmpp.target.tld", 5269))
        self.assertEqual((3, 1, 1), (record.usage, record.selector, record.matchingType))

    def test_recordsForInsecureDelegation(self):
        """
        An insecure SRV record gets no DANE, without a TLSA lookup.
        """
        self.checker.delegations["insecure.tld"] = {"xmpp.insecure.tld"}
        dane = self.dane({})
        self.assertEqual([], self.successResultOf(
            dane.recordsFor(self.result("insecure.tld"), "xmpp.insecure.tld", 5269)))
        self.assertEqual([], self.lookup.asked)

    def test_recordsForFailedLookup(self):
        """
        A TLSA lookup that failed fails the target (no downgrade to PKIX).
        """
        dane = self.dane({"xmpp.target.tld": (DANE_FAILED, ())})
        self.failureResultOf(
            dane.recordsFor(self.result("target.tld"), "xmpp.target.tld", 5269), DANEUnavailable)

    def test_clientMatches(self):
        """
        A client certificate matching its domain's SRV target's TLSA
        record is authenticated for that target.
        """
        dane = self.dane({"xmpp.target.tld": (DANE, [tlsaRdata()])})
        self.assertEqual("xmpp.target.tld",
                         self.successResultOf(dane.verifyClient(object(), "target.tld", False)))

    def test_clientMismatch(self):
        """
        A client certificate matching no TLSA record of any target is
        refused.
        """
        dane = self.dane({"xmpp.target.tld": (DANE, [tlsaRdata(digest="22" * 32)])})
        self.failureResultOf(dane.verifyClient(object(), "target.tld", False), DANEMismatch)

    def test_clientLookupFailed(self):
        """
        A failed TLSA lookup, with no other target matching, refuses the
        client.
        """
        dane = self.dane({"a.two.tld": (DANE_FAILED, ()), "b.two.tld": (NO_DANE, ())})
        self.failureResultOf(dane.verifyClient(object(), "two.tld", False), DANEUnavailable)

    def test_clientOneTargetMatches(self):
        """
        One matching target is enough, whatever the others say.
        """
        dane = self.dane({"a.two.tld": (DANE_FAILED, ()), "b.two.tld": (DANE, [tlsaRdata()])})
        self.assertEqual("b.two.tld",
                         self.successResultOf(dane.verifyClient(object(), "two.tld", False)))

    def test_clientWithoutDANE(self):
        """
        A domain whose targets have no TLSA records, or an insecure
        delegation, is left to the policy: L{None}.
        """
        self.checker.delegations["insecure.tld"] = {"xmpp.insecure.tld"}
        dane = self.dane({})
        self.assertIsNone(self.successResultOf(dane.verifyClient(object(), "target.tld", False)))
        self.assertIsNone(self.successResultOf(dane.verifyClient(object(), "insecure.tld", False)))
        self.assertEqual([("xmpp.target.tld", 5269)], self.lookup.asked)


class FakeLegacyDANE:
    """
    A L{LegacyDANE} whose client checks the test fires.
    """

    def __init__(self):
        self.checks = []

    def verifyClient(self, transport, domain, chainVerified):
        d = defer.Deferred()
        self.checks.append((domain, d))
        return d


class LegacyListenDANETests(LegacyListenMixin, SynchronousTestCase):
    """
    A stream to a hosted domain under C{dna+pkix} with DANE: the client
    certificate PKIX does not accept is checked by DANE before the features.
    """

    level = FALLBACK_PKIX

    def setUp(self):
        LegacyListenMixin.setUp(self)
        self.dane = self.listener.dane = FakeLegacyDANE()
        self.counters = self.listener.counters = collections.Counter()
        self.noted = []
        self.patch(legacyserver, "noteDANE", lambda transport, domains: self.noted.append(domains))
        self.patch(legacyserver, "chainVerified", lambda transport: False)

    def startTLS(self):
        """
        Start the stream, then TLS, then the stream again: the features
        wait for DANE.

        @return: The features offered so far after TLS (none).
        """
        self.header()
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.xs.output[:] = []
        self.header()
        return [e for e in self.xs.output if getattr(e, "name", None) == "features"]

    def test_matchOffersExternal(self):
        """
        DANE authenticating the certificate offers SASL EXTERNAL, and
        records the domain DANE proved.
        """
        self.assertEqual([], self.startTLS())
        [(domain, d)] = self.dane.checks
        self.assertEqual("target.tld", domain)
        d.callback("xmpp.target.tld")
        self.assertIn((NS_SASL, "mechanisms"), self.features())
        self.assertEqual([["target.tld"]], self.noted)

    def test_mismatchRefused(self):
        """
        A certificate DANE refuses closes the stream with not-authorized,
        counted.
        """
        self.startTLS()
        [(domain, d)] = self.dane.checks
        d.errback(Failure(DANEMismatch("xmpp.target.tld", "no match")))
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
        self.assertEqual(1, self.counters["tls-refused-dane-mismatch"])

    def test_unavailableRefused(self):
        """
        A failed TLSA lookup closes the stream too, counted apart.
        """
        self.startTLS()
        [(domain, d)] = self.dane.checks
        d.errback(Failure(DANEUnavailable("xmpp.target.tld", "SERVFAIL")))
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
        self.assertEqual(1, self.counters["tls-refused-dane-unavailable"])

    def test_noDANEKeepsPolicy(self):
        """
        Where DANE does not apply, the policy decides as without DANE:
        under C{dna+pkix}, an unproven certificate is refused.
        """
        self.startTLS()
        [(domain, d)] = self.dane.checks
        d.callback(None)
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
        self.assertEqual(0, sum(self.counters.values()))

    def test_pkixFirst(self):
        """
        A certificate PKIX accepts for the domain needs no DANE.
        """
        self.certified.add("target.tld")
        self.startTLS()
        self.assertIn((NS_SASL, "mechanisms"), self.features())
        self.assertEqual([], self.dane.checks)


class _Handle:
    pass


class _Transport:
    def __init__(self):
        self.handle = _Handle()

    def getHandle(self):
        return self.handle

    def getPeerCertificate(self):
        return X509.from_cryptography(PEER.certificate)


class PeerVerifiedTests(SynchronousTestCase):
    """
    L{legacytls.peerVerified} on a connection DANE authenticated.
    """

    def test_provesOnlyDelegatedDomain(self):
        """
        A certificate DANE authenticated proves the domains noted, not the
        names it carries.
        """
        transport = _Transport()
        self.assertTrue(legacytls.peerVerified(transport, "other.tld"))
        legacytls.noteDANE(transport, ["target.tld"])
        self.assertTrue(legacytls.peerVerified(transport, "target.tld"))
        self.assertFalse(legacytls.peerVerified(transport, "other.tld"))
