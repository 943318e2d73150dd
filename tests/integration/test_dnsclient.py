"""
Tests for L{dna.dns.client}.

The unit tests drive L{DNSClient} over a memory reactor with fake UDP ports
and string TCP transports; L{RealServerTests} ask the knotd and unbound of
L{tests.integration.dnsenv} over loopback.
"""


import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.dns.client import DNSClient
from dna.error import DNSUnreachable
from tests.integration.dnsenv import startDNSEnvironment
from tests.unit.test_dnsclient import NAME


class RealServerTests(unittest.TestCase):
    """
    L{DNSClient} against the real knotd and unbound of L{tests.integration.dnsenv}.
    """

    def setUp(self):
        self.env = startDNSEnvironment(self)

    @defer.inlineCallbacks
    def test_resolverUDP(self):
        """
        unbound answers over UDP with the AD bit for a signed name.
        """
        client = DNSClient([self.env.resolver], reactor)
        response = yield client.query(NAME, "SRV")
        self.assertTrue(response.flags & dns.flags.AD)
        self.assertEqual(response.answer[0][0].target.to_text(),
                         "xmpp1.originating.example.")

    @defer.inlineCallbacks
    def test_forcedTCP(self):
        """
        A reply larger than the UDP payload size is truncated and asked
        again over TCP, from unbound and from knotd.
        """
        for server, rd in [(self.env.resolver, True),
                           (self.env.authoritative, False)]:
            client = DNSClient([server], reactor, maxUDPSize=512)
            response = yield client.query("big.multi.example.", "TXT",
                                          recursionDesired=rd)
            self.assertFalse(response.flags & dns.flags.TC)
            self.assertGreater(len(response.to_wire()), 1232)
            self.assertEqual(bool(response.flags & dns.flags.AD), rd)

    @defer.inlineCallbacks
    def test_deadServer(self):
        """
        A loopback port without a server is reported unreachable at once;
        with a live server after it, the query fails over.
        """
        dead = (self.env.authoritative[0], self.env.authoritative[1] + 1)
        client = DNSClient([dead], reactor, retries=1)
        yield self.assertFailure(client.query(NAME, "SRV"), DNSUnreachable)
        client = DNSClient([dead, self.env.resolver], reactor)
        response = yield client.query(NAME, "SRV")
        self.assertTrue(response.flags & dns.flags.AD)

    @defer.inlineCallbacks
    def test_bogus(self):
        """
        A bogus answer is a SERVFAIL message, not an error.
        """
        client = DNSClient([self.env.resolver], reactor, retries=1)
        response = yield client.query(
            "_xmpp-server._tcp.bogus.example.", "SRV")
        self.assertEqual(response.rcode(), dns.rcode.SERVFAIL)
