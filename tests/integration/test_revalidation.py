"""
Re-validation over real DNS and a real connection (issue 11): knotd serves
the signed test zones, unbound validates them with TTLs of at most 5 s
(its C{cache-max-ttl}), two DNA providers federate over mutual TLS. When the
SRV record of a sender domain is changed on the authoritative server, the
receiving side revokes the pair within the TTL and a few seconds, the
originating side sees the revocation, the next stanza of that pair is
refused, and every other pair keeps flowing on the same connection.
"""

import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.app.delegation import makeDelegationChecker
from dna.dns.client import DNSClient
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"
SRV = "_xmpp-server._tcp"


class RevalidationOverRealDNSTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A (xmpp1.originating.example hosts sender.example and
    b.example) sends to provider B (xmpp1.receiving.example hosts
    target.example).
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self)

    @defer.inlineCallbacks
    def startReal(self, name, domains):
        certificate = self.ca.issue(name, dnsNames=[name])
        checker = makeDelegationChecker(reactor, [self.env.resolver], "ad")
        service, inbox, port = yield self.startProvider(
            domains, {name: certificate}, checker,
            client=DNSClient([self.env.resolver], reactor),
            interface=HOSTS[name], port=5269,
        )
        return service, inbox

    @defer.inlineCallbacks
    def test_changedSRVRevokesOnePair(self):
        """
        sender.example's SRV moves to xmpp1.receiving.example: B revokes
        sender.example -> target.example within the TTL and a few seconds,
        A unbinds it, A's next stanza of that pair bounces with
        C{<not-authorized/>}, and b.example -> target.example keeps flowing
        on the same connection.
        """
        self.setUpPKI()
        a, inboxA = yield self.startReal(ORIGINATING, ["sender.example", "b.example"])
        b, inboxB = yield self.startReal(RECEIVING, ["target.example"])
        a.send(message("romeo@sender.example", "juliet@target.example", stanzaID="s1"))
        a.send(message("romeo@b.example", "juliet@target.example", stanzaID="b1"))
        yield inboxB.waitFor(2, timeout=20)
        [streamID] = list(b.federation.tables.connections)
        proof = b.federation.revalidator.proofOf(
            "incoming", "target.example", "sender.example", streamID)
        self.assertIsNotNone(proof.dnsExpires)
        self.assertLessEqual(proof.dnsExpires - time.time(), 6)

        self.env.setRecords("sender.example", [
            f"{SRV} SRV 0 5 5269 xmpp1.receiving.example."])
        revoked = yield self.until(
            lambda: not b.federation.tables.incoming.isBound(
                "target.example", "sender.example"),
            20, "B revokes sender.example -> target.example")
        self.assertLess(revoked, 5 + 10)
        self.assertEqual(1, b.federation.counters["revalidation-revoked"])
        yield self.until(
            lambda: a.federation.tables.route("sender.example", "target.example") is None,
            5, "A sees the revocation")

        a.send(message("romeo@sender.example", "juliet@target.example", stanzaID="s2"))
        a.send(message("romeo@b.example", "juliet@target.example", stanzaID="b2"))
        yield inboxB.waitFor(3, timeout=10)
        yield self.until(lambda: any(s.getAttribute("id") == "s2" for s in inboxA.stanzas),
                         10, "A bounces s2")
        [bounce] = [s for s in inboxA.stanzas if s.getAttribute("id") == "s2"]
        self.assertEqual("error", bounce.getAttribute("type"))
        self.assertEqual("not-authorized", stanzaErrorOf(bounce)[0])
        self.assertEqual(["s1", "b1", "b2"], [s["id"] for s in inboxB.stanzas])
        self.assertEqual([streamID], list(b.federation.tables.connections))
        self.assertEqual((streamID,), b.federation.tables.incoming.streams(
            "target.example", "b.example"))
