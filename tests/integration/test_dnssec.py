"""
Tests for L{dna.dns.dnssec.proofs} and L{dna.dns.dnssec.walker}: validation from trust anchors, in memory against
zones signed here and for real against knotd and unbound (L{tests.integration.dnsenv}).
"""

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from dna.dns.client import DNSClient
from dna.dns.dnssec.proofs import (
    INSECURE,
    readAnchors,
)
from dna.dns.dnssec.walker import Validator
from tests.unit.test_dnssec import srvName


class RealValidatorTests(TestCase):
    """
    L{Validator} against knotd and unbound, for every domain of the fixture.
    """

    def setUp(self):
        from tests.integration import dnsenv
        # A missing knotd or unbound fails the test (CI must not skip it).
        self.env = dnsenv.startDNSEnvironment(self)
        self.domains = dnsenv.DOMAINS
        self.anchors = readAnchors(self.env.anchorFile)

    @defer.inlineCallbacks
    def checkAll(self, server, **queryArguments):
        from twisted.internet import reactor
        client = DNSClient([server], reactor=reactor)
        validator = Validator(lambda n, t: client.query(n, t, **queryArguments),
                              self.anchors)
        found = {}
        for domain in self.domains:
            result = yield validator.resolve(srvName(domain), dns.rdatatype.SRV,
                                             reactor.seconds())
            found[domain] = result.status
        self.assertEqual(found, {d: status for d, (status, _) in self.domains.items()})

    def test_viaResolver(self):
        """
        Asking unbound with CD set, every domain gets its status.
        """
        return self.checkAll(self.env.resolver, checkingDisabled=True)

    def test_authoritative(self):
        """
        Asking knotd with RD clear, every domain gets its status.
        """
        return self.checkAll(self.env.authoritative, recursionDesired=False)

    @defer.inlineCallbacks
    def test_deepChainAndNSEC3(self):
        """
        The chain of c.b.example goes through three zones; the insecure
        NSEC3 delegation names its proof.
        """
        from twisted.internet import reactor
        client = DNSClient([self.env.authoritative], reactor=reactor)
        validator = Validator(lambda n, t: client.query(n, t, recursionDesired=False),
                              self.anchors)
        result = yield validator.resolve(srvName("c.b.example"), dns.rdatatype.SRV,
                                         reactor.seconds())
        self.assertEqual([(link.name, link.rdtype) for link in result.chain],
                         [("example.", "DNSKEY"), ("b.example.", "DS"),
                          ("b.example.", "DNSKEY"), ("c.b.example.", "DS"),
                          ("c.b.example.", "DNSKEY"),
                          ("_xmpp-server._tcp.c.b.example.", "SRV")])
        result = yield validator.resolve(srvName("unsigned.nsec3.example"),
                                         dns.rdatatype.SRV, reactor.seconds())
        self.assertEqual(result.status, INSECURE)
        self.assertIn("NSEC3", result.reason)
        result = yield validator.resolve(srvName("expired.example"), dns.rdatatype.SRV,
                                         reactor.seconds())
        self.assertIn("RRSIG expired at", result.reason)
