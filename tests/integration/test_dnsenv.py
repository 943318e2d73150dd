"""
Smoke tests of the real DNS test environment in L{tests.integration.dnsenv}: knotd and a
validating unbound over loopback, asked with L{dna.dns.client.DNSClient}.
"""

import os

import dns.flags
import dns.rcode
import dns.rdatatype
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.dns.client import DNSClient
from tests.integration import dnsenv
from tests.integration.dnsenv import (
    DOMAINS,
    DNSEnvironment,
    DNSEnvironmentError,
    startDNSEnvironment,
)


def _srvName(domain):
    return f"_xmpp-server._tcp.{domain}."


class ResolverTests(unittest.TestCase):
    """
    unbound validates the test tree with C{example.} as its trust anchor.
    """

    def setUp(self):
        self.env = startDNSEnvironment(self)
        self.client = DNSClient([self.env.resolver], reactor)

    @defer.inlineCallbacks
    def assertStatus(self, domain, rcode, secure, srv=True):
        """
        Ask the resolver for the SRV records of C{domain} and check the
        rcode, the AD bit and whether SRV records came.
        """
        response = yield self.client.query(_srvName(domain), "SRV")
        self.assertEqual(
            (dns.rcode.to_text(response.rcode()),
             bool(response.flags & dns.flags.AD)),
            (dns.rcode.to_text(rcode), secure), domain)
        records = [rrset for rrset in response.answer
                   if rrset.rdtype == dns.rdatatype.SRV]
        self.assertEqual(bool(records), srv, domain)
        return response

    @defer.inlineCallbacks
    def test_secure(self):
        """
        The SRV records of signed domains come with the AD bit, including
        one three zones below the anchor and one in the NSEC3 zone.
        """
        for domain in ["sender.example", "target.example", "multi.example",
                       "dot.example", "c.b.example", "nsec3.example"]:
            yield self.assertStatus(domain, dns.rcode.NOERROR, True)

    @defer.inlineCallbacks
    def test_multi(self):
        """
        multi.example has three SRV records.
        """
        response = yield self.assertStatus(
            "multi.example", dns.rcode.NOERROR, True)
        [rrset] = [rrset for rrset in response.answer
                   if rrset.rdtype == dns.rdatatype.SRV]
        self.assertEqual(
            sorted((r.priority, r.weight, r.port, r.target.to_text())
                   for r in rrset),
            [(10, 40, 5270, "xmpp2.multi.example."),
             (10, 60, 5269, "xmpp1.multi.example."),
             (20, 0, 5271, "xmpp3.multi.example.")])

    @defer.inlineCallbacks
    def test_secureDenial(self):
        """
        A missing SRV record is proven secure: NODATA by NSEC, NXDOMAIN by
        NSEC and by NSEC3.
        """
        yield self.assertStatus("nosrv.example", dns.rcode.NOERROR, True,
                                srv=False)
        yield self.assertStatus("missing.example", dns.rcode.NXDOMAIN, True,
                                srv=False)
        yield self.assertStatus("missing.nsec3.example", dns.rcode.NXDOMAIN,
                                True, srv=False)

    @defer.inlineCallbacks
    def test_insecure(self):
        """
        Unsigned delegations, under NSEC and under NSEC3, answer without
        the AD bit.
        """
        yield self.assertStatus("unsigned.example", dns.rcode.NOERROR, False)
        yield self.assertStatus("unsigned.nsec3.example", dns.rcode.NOERROR,
                                False)

    @defer.inlineCallbacks
    def test_bogus(self):
        """
        Tampered, expired and wrongly delegated zones fail validation:
        SERVFAIL, and with CD set the data comes without AD.
        """
        for domain in ["bogus.example", "expired.example", "wrongds.example"]:
            yield self.assertStatus(domain, dns.rcode.SERVFAIL, False,
                                    srv=False)
            response = yield self.client.query(
                _srvName(domain), "SRV", checkingDisabled=True)
            self.assertEqual(response.rcode(), dns.rcode.NOERROR)
            self.assertFalse(response.flags & dns.flags.AD)

    @defer.inlineCallbacks
    def test_expectations(self):
        """
        Every domain of L{DOMAINS} gets the status it is documented with.
        """
        for domain, (status, description) in DOMAINS.items():
            response = yield self.client.query(_srvName(domain), "SRV")
            if status == "bogus":
                self.assertEqual(response.rcode(), dns.rcode.SERVFAIL, domain)
            else:
                self.assertIn(response.rcode(),
                              (dns.rcode.NOERROR, dns.rcode.NXDOMAIN), domain)
                self.assertEqual(bool(response.flags & dns.flags.AD),
                                 status == "secure", domain)

    @defer.inlineCallbacks
    def test_restartResolver(self):
        """
        The resolver can be restarted, on the same address, and validates
        again.
        """
        address = self.env.resolver
        self.env.restartResolver()
        self.assertEqual(self.env.resolver, address)
        yield self.assertStatus("sender.example", dns.rcode.NOERROR, True)


class AuthoritativeTests(unittest.TestCase):
    """
    knotd serves every zone of the tree, signed.
    """

    def setUp(self):
        self.env = startDNSEnvironment(self)
        self.client = DNSClient([self.env.authoritative], reactor)

    @defer.inlineCallbacks
    def test_signedAnswer(self):
        """
        knotd answers authoritatively with RRSIGs when asked without RD.
        """
        response = yield self.client.query(
            _srvName("sender.example"), "SRV", recursionDesired=False)
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertEqual(
            sorted(dns.rdatatype.to_text(rrset.rdtype)
                   for rrset in response.answer),
            ["RRSIG", "SRV"])

    @defer.inlineCallbacks
    def test_nsec3(self):
        """
        nsec3.example is signed by knotd with NSEC3 and its DNSKEY matches
        the DS in the parent.
        """
        import dns.dnssec
        response = yield self.client.query(
            "nsec3.example.", "NSEC3PARAM", recursionDesired=False)
        [rrset] = [r for r in response.answer
                   if r.rdtype == dns.rdatatype.NSEC3PARAM]
        self.assertEqual(rrset[0].iterations, 0)
        keys = yield self.client.query(
            "nsec3.example.", "DNSKEY", recursionDesired=False)
        ds = yield self.client.query(
            "nsec3.example.", "DS", recursionDesired=False)
        [dnskey] = [r for r in keys.answer
                    if r.rdtype == dns.rdatatype.DNSKEY]
        [dsRRset] = [r for r in ds.answer if r.rdtype == dns.rdatatype.DS]
        self.assertEqual(
            dns.dnssec.make_ds("nsec3.example.", dnskey[0], "SHA256"),
            dsRRset[0])

    def test_anchor(self):
        """
        The anchor file holds the anchor as a DS line for C{example.}.
        """
        with open(self.env.anchorFile) as f:
            text = f.read()
        self.assertTrue(text.startswith("example. 3600 IN DS "))
        self.assertEqual(self.env.anchors.rdtype, dns.rdatatype.DS)
        self.assertEqual(self.env.anchors[0].to_text(),
                         text.split(" DS ", 1)[1].strip())

    def test_files(self):
        """
        The files are under the test's temporary directory and the
        addresses are on loopback.
        """
        self.assertTrue(os.path.exists(
            os.path.join(self.env.workdir, "zones", "sender.example.zone")))
        for host, port in (self.env.authoritative, self.env.resolver):
            self.assertTrue(host.startswith("127."))


class ManyTests(unittest.TestCase):
    """
    C{manyCount} adds signed zones for benchmarks.
    """

    @defer.inlineCallbacks
    def test_many(self):
        """
        Each C{nNNNN.many.example} is its own secure zone with an SRV
        record.
        """
        env = startDNSEnvironment(self, manyCount=3)
        self.assertEqual(env.manyDomains, [
            "n0001.many.example", "n0002.many.example", "n0003.many.example"])
        self.assertIn("n0003.many.example", env.zones)
        self.assertEqual(env.domains["n0002.many.example"][0], "secure")
        client = DNSClient([env.resolver], reactor)
        for domain in env.manyDomains:
            response = yield client.query(_srvName(domain), "SRV")
            self.assertTrue(response.flags & dns.flags.AD, domain)
            self.assertEqual(response.answer[0][0].target.to_text(),
                             "xmpp1.receiving.example.")


class LifecycleTests(unittest.TestCase):
    """
    Starting and stopping the environment.
    """

    def test_missingProgram(self):
        """
        Without knotd or unbound, starting fails with a message saying what
        to install, instead of skipping.
        """
        self.patch(dnsenv.shutil, "which", lambda name, path=None: None)
        env = DNSEnvironment(self.mktemp())
        error = self.assertRaises(DNSEnvironmentError, env.start)
        self.assertIn("apt-get install knot unbound", str(error))

    def test_stop(self):
        """
        C{stop} ends both servers and may be called again.
        """
        env = startDNSEnvironment(self)
        processes = [env._knot, env._unbound]
        env.stop()
        self.assertEqual([p.running() for p in processes], [False, False])
        env.stop()
        self.assertTrue(dnsenv._isFree(env.authoritative))
        self.assertTrue(dnsenv._isFree(env.resolver))
