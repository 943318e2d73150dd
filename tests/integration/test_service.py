"""
Tests for L{dna.app.service}: two providers over real loopback sockets and real
mutual TLS, with an in-memory delegation checker (the tests in
C{test_federation_dns} use real DNS).
"""

import datetime
import json
import os
import subprocess
import sys

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

import dna
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.integration.providers import ORIGINATING, RECEIVING, ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

SENDERS = ["sender.tld"] + ["s%d.tld" % i for i in range(3)]
TARGETS = ["target.tld"] + ["t%d.tld" % i for i in range(4)]


def importedModules(module):
    """
    The modules a fresh interpreter has loaded after importing C{module}.

    @rtype: L{set} of L{str}
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(dna.__file__)))
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=root)
    output = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=root, check=True,
        capture_output=True, text=True,
    ).stdout
    return set(json.loads(output))


class ImportCostTests(unittest.SynchronousTestCase):
    """
    The legacy fallback is loaded only by servers that fall back.
    """

    def test_serviceWithoutLegacy(self):
        """
        Importing L{dna.app.service} loads no legacy stream machinery: it is
        imported when a fallback policy other than C{"dna"} is configured.
        """
        loaded = importedModules("dna.app.service")
        self.assertIn("dna.legacy.policy", loaded)
        for module in ("dna.legacy.originating", "dna.legacy.receiving",
                       "dna.legacy.sasl", "dna.legacy.dialback"):
            self.assertNotIn(module, loaded)

    def test_policyIsLight(self):
        """
        L{dna.legacy.policy}, which the configuration reads its words from,
        loads neither OpenSSL nor the application.
        """
        loaded = importedModules("dna.legacy.policy")
        self.assertEqual(
            [], sorted(m for m in loaded if m == "OpenSSL" or m.startswith(("OpenSSL.", "dna.app")))
        )


def delegations():
    table = {domain: {ORIGINATING} for domain in SENDERS}
    table.update({domain: {RECEIVING} for domain in TARGETS})
    return table


class TwoProvidersTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A (xmpp1.originating.tld, hosting sender domains) sends to
    provider B (xmpp1.receiving.tld, hosting target domains).
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.setUpPKI()
        self.checker = FakeDelegationChecker(delegations())
        yield self.startBoth()

    @defer.inlineCallbacks
    def startBoth(self, certB=None, certA=None, trustRootA=None, checkerA=None):
        self.b, self.inboxB, portB = yield self.startProvider(
            TARGETS, {RECEIVING: certB or self.certB}, self.checker
        )
        self.a, self.inboxA, portA = yield self.startProvider(
            SENDERS,
            {ORIGINATING: certA or self.certA},
            checkerA or self.checker,
            hosts={RECEIVING: ("127.0.0.1", portB)},
            trustRoot=trustRootA,
        )
        self.b.connector._resolve._hosts[ORIGINATING] = ("127.0.0.1", portA)

    @defer.inlineCallbacks
    def test_twentyPairsOneConnection(self):
        """
        Twenty domain pairs between the two providers share one TCP
        connection; every stanza arrives, in order per pair.
        """
        sent = []
        for sender in SENDERS:
            for target in TARGETS:
                for n in range(3):
                    stanza = message(
                        "romeo@" + sender, "juliet@" + target, stanzaID="%s-%s-%d" % (sender, target, n)
                    )
                    sent.append(stanza["id"])
                    self.a.send(stanza)
        self.assertEqual(20, len(SENDERS) * len(TARGETS))
        received = yield self.inboxB.waitFor(len(sent))
        self.assertEqual(sorted(sent), sorted(s["id"] for s in received))
        for sender in SENDERS:
            for target in TARGETS:
                ids = [s["id"] for s in received if s["id"].startswith(sender + "-" + target + "-")]
                self.assertEqual(["%s-%s-%d" % (sender, target, n) for n in range(3)], ids)
        self.assertEqual(1, len(self.a.federation.tables.connections))
        self.assertEqual(1, len(self.b.federation.tables.connections))
        [streamID] = list(self.a.federation.tables.connections)
        self.assertEqual([streamID], list(self.b.federation.tables.connections))
        self.assertEqual(20, len(self.a.federation.tables.outgoing))
        self.assertEqual(20, len(self.b.federation.tables.incoming))
        rowA = self.a.federation.tables.connections.get(streamID)
        self.assertEqual({RECEIVING}, set(rowA.serverNames))
        self.assertEqual(set(TARGETS), set(rowA.delegatedNames))
        rowB = self.b.federation.tables.connections.get(streamID)
        self.assertEqual({ORIGINATING}, set(rowB.serverNames))
        self.assertEqual(set(SENDERS), set(rowB.delegatedNames))
        self.assertEqual([], self.inboxA.stanzas)

    @defer.inlineCallbacks
    def test_replyOverSameConnection(self):
        """
        With bidi, B's replies travel over the connection A opened.
        """
        self.a.send(message("romeo@sender.tld", "juliet@target.tld"))
        yield self.inboxB.waitFor(1)
        self.b.send(message("juliet@target.tld", "romeo@sender.tld", body="ho"))
        [reply] = yield self.inboxA.waitFor(1)
        self.assertEqual("ho", str(reply.body))
        self.assertEqual(1, len(self.a.federation.tables.connections))
        self.assertEqual(1, len(self.b.federation.tables.connections))

    @defer.inlineCallbacks
    def test_notDelegatedSenderBounced(self):
        """
        A sender domain B cannot verify as delegated to A is refused; its
        stanzas bounce to their senders with C{<not-authorized/>}.
        """
        self.a.federation.hostedDomains |= {"rogue.tld"}
        self.a.send(message("romeo@rogue.tld", "juliet@target.tld", stanzaID="r1"))
        [bounce] = yield self.inboxA.waitFor(1)
        self.assertEqual(("error", "r1"), (bounce["type"], bounce["id"]))
        self.assertEqual(("not-authorized", None), stanzaErrorOf(bounce))
        self.assertEqual([], self.inboxB.stanzas)
        self.assertEqual(0, len(self.b.federation.tables.incoming))

    @defer.inlineCallbacks
    def test_insecureTargetRefusedByDefault(self):
        """
        An unsigned delegation of the target is refused under
        require-secure: the stanza bounces with
        C{<remote-server-not-found/>} and no connection is opened.
        """
        self.checker.insecure.add("target.tld")
        self.a.send(message("romeo@sender.tld", "juliet@target.tld"))
        [bounce] = yield self.inboxA.waitFor(1)
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(bounce))
        self.assertEqual(0, len(self.a.federation.tables.connections))

    @defer.inlineCallbacks
    def test_insecureTargetAllowed(self):
        """
        Under allow-insecure, the unsigned delegation is used.
        """
        self.checker.insecure.add("target.tld")
        self.checker.allowInsecure = True
        self.a.send(message("romeo@sender.tld", "juliet@target.tld"))
        yield self.inboxB.waitFor(1)

    @defer.inlineCallbacks
    def _refused(self):
        self.a.send(message("romeo@sender.tld", "juliet@target.tld", stanzaID="x"))
        [bounce] = yield self.inboxA.waitFor(1)
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(bounce))
        self.assertEqual([], self.inboxB.stanzas)
        self.assertEqual(0, len(self.a.federation.tables.connections))
        self.assertEqual(0, len(self.b.federation.tables.connections))

    @defer.inlineCallbacks
    def _restart(self, **kw):
        yield self.a.stopService()
        yield self.b.stopService()
        yield self.startBoth(**kw)

    @defer.inlineCallbacks
    def test_peerCertificateLacksTarget(self):
        """
        A Receiving Server whose certificate does not name the SRV target is
        refused.
        """
        yield self._restart(certB=self.ca.issue("other.tld", dnsNames=["other.tld"]))
        yield self._refused()

    @defer.inlineCallbacks
    def test_untrustedCA(self):
        """
        A Receiving Server whose certificate comes from a CA we do not trust
        is refused.
        """
        rogue = CertificateAuthority("Rogue CA")
        yield self._restart(certB=rogue.issue(RECEIVING, dnsNames=[RECEIVING]))
        yield self._refused()

    @defer.inlineCallbacks
    def test_expiredCertificate(self):
        """
        An expired certificate is refused.
        """
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
        yield self._restart(
            certB=self.ca.issue(
                RECEIVING, dnsNames=[RECEIVING], notBefore=past - datetime.timedelta(days=30), notAfter=past
            )
        )
        yield self._refused()

    @defer.inlineCallbacks
    def test_untrustedClientCertificate(self):
        """
        B refuses an Originating Server whose client certificate it cannot
        verify.
        """
        rogue = CertificateAuthority("Rogue CA")
        yield self._restart(certA=rogue.issue(ORIGINATING, dnsNames=[ORIGINATING]))
        yield self._refused()

    @defer.inlineCallbacks
    def test_missingClientCertificate(self):
        """
        B refuses an Originating Server that presents no client certificate.
        """
        from dna.channel.originating import Connector

        connector = Connector(
            self.checker, self.a.connector._resolve, ORIGINATING, None, self.trustRoot,
            reactor=reactor, connectTimeout=5,
        )
        failure = yield self.assertFailure(connector.connect(RECEIVING, None), Exception)
        self.assertIn("certificate", str(failure))
        self.assertEqual(0, len(self.b.federation.tables.connections))
        self.assertEqual(0, len(self.b.federation.streams))

    @defer.inlineCallbacks
    def test_clientCertificateMustMatchFrom(self):
        """
        B refuses a stream whose 'from' its client certificate does not
        cover.
        """
        yield self._restart(certA=self.ca.issue("impostor.tld", dnsNames=["impostor.tld"]))
        yield self._refused()

    @defer.inlineCallbacks
    def waitUntil(self, condition, timeout=5.0):
        """
        Poll C{condition} every 10 ms until it is true.
        """
        for _ in range(int(timeout / 0.01)):
            if condition():
                return
            yield task.deferLater(reactor, 0.01)
        self.fail("condition not met in %s seconds" % (timeout,))

    @defer.inlineCallbacks
    def test_connectionLossCleansTables(self):
        """
        When the connection dies, both sides forget it: its rows and
        bindings go, and the next stanza opens a new connection.
        """
        self.a.send(message("romeo@sender.tld", "juliet@target.tld"))
        yield self.inboxB.waitFor(1)
        yield self.waitUntil(lambda: not list(self.a.federation.streams.values())[0].acks.unacked)
        [old] = list(self.a.federation.tables.connections)
        self.a.federation.streams[old].xs.transport.abortConnection()
        yield self.waitUntil(lambda: not self.b.federation.tables.connections)
        self.assertEqual(0, len(self.a.federation.tables.connections))
        self.assertEqual(0, len(self.b.federation.tables.incoming))
        self.assertEqual(0, len(self.a.federation.tables.outgoing))
        self.a.send(message("romeo@sender.tld", "juliet@target.tld"))
        yield self.inboxB.waitFor(2)
        self.assertEqual(1, len(self.a.federation.tables.connections))
        self.assertNotIn(old, self.a.federation.tables.connections)
        self.a.federation.tables.checkInvariants()
        self.b.federation.tables.checkInvariants()

    @defer.inlineCallbacks
    def test_killedMidFlowLosesNothing(self):
        """
        Killing the connection while thousands of stanzas are in flight loses
        none: what the peer had not acknowledged is sent again over a new
        connection (at least once), and nothing bounces.
        """
        ids = []
        for n in range(2000):
            sender = SENDERS[n % len(SENDERS)]
            target = TARGETS[n % len(TARGETS)]
            stanzaID = "k%d" % (n,)
            ids.append(stanzaID)
            self.a.send(message("romeo@" + sender, "juliet@" + target, stanzaID=stanzaID))
        yield self.inboxB.waitFor(300)
        [authorization] = self.b.federation.streams.values()
        authorization.xs.transport.abortConnection()
        yield self.waitUntil(
            lambda: set(ids) <= {s["id"] for s in self.inboxB.stanzas}, timeout=20
        )
        self.assertEqual([], self.inboxA.stanzas)
        self.assertEqual(1, len(self.b.federation.tables.connections))
        received = [s["id"] for s in self.inboxB.stanzas]
        for sender in SENDERS:
            for target in TARGETS:
                # Per pair, first deliveries keep the send order.
                pair = [i for i in ids if SENDERS[int(i[1:]) % len(SENDERS)] == sender
                        and TARGETS[int(i[1:]) % len(TARGETS)] == target]
                firsts = []
                for i in received:
                    if i in pair and i not in firsts:
                        firsts.append(i)
                self.assertEqual(pair, firsts)
