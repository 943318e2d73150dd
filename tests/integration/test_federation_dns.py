"""
Two (and three) DNA providers federating over real sockets with real DNS:
knotd serving DNSSEC-signed zones and a validating unbound
(L{tests.integration.dnsenv}), real mutual TLS with a test CA. The SRV records of the
test zones name the providers' hosts; their A records give the addresses the
providers listen on (port 5269 of 127.0.0.11, 127.0.0.12 and 127.0.0.51).
"""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.app.delegation import makeDelegationChecker
from dna.dns.client import DNSClient
from dna.dns.verdict import ALLOW_INSECURE
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"
UNSIGNED = "xmpp1.unsigned.example"
MANY = 9


class RealDNSFederationTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A (xmpp1.originating.example hosts sender.example and
    b.example) and provider B (xmpp1.receiving.example hosts target.example
    and n0001..n0009.many.example).
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self, manyCount=MANY)

    @defer.inlineCallbacks
    def startReal(self, name, domains, checker, **kw):
        """
        A provider listening on the address the test zones give C{name}, port
        5269, resolving SRV targets through the same resolver.
        """
        certificate = self.ca.issue(name, dnsNames=[name])
        service, inbox, port = yield self.startProvider(
            domains, {name: certificate}, checker,
            client=DNSClient([self.env.resolver], reactor),
            interface=HOSTS[name], port=5269, **kw
        )
        self.assertEqual(5269, port)
        return service, inbox

    @defer.inlineCallbacks
    def startPair(self, mode="ad"):
        self.setUpPKI()
        self.senders = ["sender.example", "b.example"]
        self.targets = ["target.example"] + list(self.env.manyDomains)
        self.a, self.inboxA = yield self.startReal(ORIGINATING, self.senders, self.checker(mode))
        self.b, self.inboxB = yield self.startReal(RECEIVING, self.targets, self.checker(mode))

    @defer.inlineCallbacks
    def sendAll(self):
        count = 0
        for sender in self.senders:
            for target in self.targets:
                self.a.send(message("romeo@" + sender, "juliet@" + target, stanzaID=sender + target))
                count += 1
        self.assertEqual(20, count)
        received = yield self.inboxB.waitFor(count, timeout=20)
        return received

    @defer.inlineCallbacks
    def test_twentyPairsOneConnectionAD(self):
        """
        With delegations checked through unbound's AD bit, twenty domain
        pairs travel over exactly one TCP connection.
        """
        yield self.startPair("ad")
        received = yield self.sendAll()
        self.assertEqual(20, len({s["id"] for s in received}))
        self.assertEqual(1, len(self.a.federation.tables.connections))
        self.assertEqual(1, len(self.b.federation.tables.connections))
        [row] = [self.a.federation.tables.connections.get(s) for s in self.a.federation.tables.connections]
        self.assertEqual({RECEIVING}, set(row.serverNames))
        self.assertEqual(set(self.targets), set(row.delegatedNames))
        self.assertEqual(20, len(self.b.federation.tables.incoming))
        self.assertEqual([], self.inboxA.stanzas)

    @defer.inlineCallbacks
    def test_twentyPairsOneConnectionValidate(self):
        """
        The same with DNSSEC validated by dna itself from the test anchor.
        """
        yield self.startPair("validate")
        received = yield self.sendAll()
        self.assertEqual(20, len({s["id"] for s in received}))
        self.assertEqual(1, len(self.a.federation.tables.connections))

    def checker(self, mode="ad", **kw):
        if mode == "validate":
            from dna.dns.dnssec.proofs import parseAnchors

            with open(self.env.anchorFile) as f:
                kw.setdefault("anchors", parseAnchors(f.read()))
        return makeDelegationChecker(reactor, [self.env.resolver], mode, **kw)

    @defer.inlineCallbacks
    def test_unsignedDelegation(self):
        """
        unsigned.example's delegation is unsigned: refused under
        require-secure (the stanza bounces, no connection), accepted under
        allow-insecure for that domain.
        """
        self.setUpPKI()
        strict, strictInbox = yield self.startReal(ORIGINATING, ["sender.example"], self.checker())
        c, inboxC = yield self.startReal(UNSIGNED, ["unsigned.example"], self.checker())
        strict.send(message("romeo@sender.example", "u@unsigned.example"))
        [bounce] = yield strictInbox.waitFor(1)
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(bounce))
        self.assertEqual(0, len(strict.federation.tables.connections))
        yield strict.stopService()

        relaxed, relaxedInbox = yield self.startReal(
            ORIGINATING, ["sender.example"],
            self.checker(domainPolicies={"unsigned.example": ALLOW_INSECURE}),
        )
        relaxed.send(message("romeo@sender.example", "u@unsigned.example"))
        [delivered] = yield inboxC.waitFor(1)
        self.assertEqual("u@unsigned.example", delivered["to"])
        self.assertEqual([], relaxedInbox.stanzas)
