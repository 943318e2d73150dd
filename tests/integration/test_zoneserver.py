"""
Tests for L{dna.testing.zoneserver}: the answers checked with dnspython and with
DNA's own validator, the UDP and TCP protocols in memory, and the server over
loopback with L{DelegationChecker} in validate mode.
"""

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import SelfValidatingLookup
from dna.testing.zoneserver import (
    ZoneServer,
)
from tests.unit.test_delegation import DelegationCheckerContractMixin
from tests.unit.test_dnssec import NOW, signedTree

# The zones of the in-memory test tree signed with NSEC: the server does not
# do NSEC3, and the unsigned children of NSEC3 zones need their parents.
from tests.unit.test_zoneserver import bigZone, treeZones


class ZoneServerTests(TestCase):
    """
    L{ZoneServer} over loopback, asked by DNA's DNS client.
    """

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        self.server = ZoneServer(reactor, treeZones() + [bigZone()])
        self.address = yield self.server.listen("127.0.0.1")
        self.addCleanup(self.server.stopListening)
        self.client = DNSClient([self.address], reactor, timeout=2, deadline=5)

    @defer.inlineCallbacks
    def test_udp(self):
        """
        An SRV query with DO and RD clear is answered over UDP with its
        RRSIG.
        """
        response = yield self.client.query("_xmpp-server._tcp.sender.example.", "SRV",
                                           recursionDesired=False)
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertEqual({dns.rdatatype.SRV, dns.rdatatype.RRSIG},
                         {r.rdtype for r in response.answer})

    @defer.inlineCallbacks
    def test_tcpAfterTruncation(self):
        """
        A response too large for UDP is truncated there and given whole over
        TCP on the same port.
        """
        response = yield self.client.query("big.big.test.", "TXT", recursionDesired=False)
        self.assertFalse(response.flags & dns.flags.TC)
        self.assertEqual(10, len(response.answer[0]))

    @defer.inlineCallbacks
    def test_setZones(self):
        """
        New zones are served from the next query on.
        """
        self.server.setZones([bigZone()])
        response = yield self.client.query("sender.example.", "SOA", recursionDesired=False)
        self.assertEqual(dns.rcode.REFUSED, response.rcode())
        self.assertEqual(frozenset([dns.name.from_text("big.test.")]),
                         self.server.authority.origins)

    def test_listenTwice(self):
        """
        A server listens once.
        """
        self.failureResultOf(self.server.listen("127.0.0.1"), ValueError)

    @defer.inlineCallbacks
    def test_stopListening(self):
        """
        After L{ZoneServer.stopListening} the port is free for both UDP and
        TCP again.
        """
        yield self.server.stopListening()
        self.assertIsNone(self.server.address)
        again = ZoneServer(reactor, [bigZone()])
        address = yield again.listen(*self.address)
        self.assertEqual(self.address, address)
        yield again.stopListening()


class ZoneServerValidateContractTests(DelegationCheckerContractMixin, TestCase):
    """
    The L{IDelegationChecker} contract for L{DelegationChecker} in validate
    mode, asking a L{ZoneServer} on loopback with RD clear: secure,
    insecure, bogus and missing delegations are told apart.
    """

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):
        # Listening may take a turn of the reactor (when the UDP port the
        # system picked is taken for TCP), so not in makeChecker.
        server = ZoneServer(reactor, treeZones())
        self.address = yield server.listen("127.0.0.1")
        self.addCleanup(server.stopListening)
        self.checker = self.makeChecker()

    def makeChecker(self):
        # The tree was signed for a fixed time: validate at it.
        clock = Clock()
        clock.advance(NOW)
        client = DNSClient([self.address], reactor, timeout=2, deadline=5)
        return DelegationChecker(SelfValidatingLookup(client, clock, signedTree().anchors(),
                                                      authoritative=True), clock)
