"""
The control API of a real C{twistd dna} (provider A, with components for
sender.example and b.example) federating with provider B (target.example,
receiving.example) over real DNS and mutual TLS, driven with a real HTTP
client over the UNIX socket and with C{dna-ctl} as a subprocess.
"""

import json
import os
import re
import shutil
import stat
import sys
import tempfile

from twisted.internet import defer, reactor, task, utils
from twisted.trial import unittest

from dna.app import ctl
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from tests.integration import test_twistd
from tests.integration.dnsenv import HOSTS
from tests.integration.flowpair import (
    FlowPair,
    Inbox,
    connectComponent,
    connectComponents,
    disconnectComponents,
)
from tests.integration.flowpair import message as flowMessage
from tests.integration.processes import CHECKOUT, waitForPort
from tests.integration.providers import ProvidersMixin, message
from tests.integration.test_twistd import RECEIVING


@defer.inlineCallbacks
def waitUntil(condition, timeout=20.0, interval=0.05):
    """
    Poll C{condition()} without blocking the reactor until it is true.
    """
    for _ in range(int(timeout / interval)):
        if condition():
            return
        yield task.deferLater(reactor, interval, lambda: None)
    raise AssertionError(f"not true after {timeout}s: {condition}")


def dnaCtl(config, *argv):
    """
    Run C{dna-ctl --config CONFIG ARGV} in a subprocess, without blocking
    the reactor.

    @return: A L{Deferred} firing with (stdout text, exit status).
    """
    d = utils.getProcessOutputAndValue(
        sys.executable, ["-c", "from dna.app.ctl import main; main()",
                         "--config", config] + list(argv),
        env=dict(os.environ, PYTHONPATH=CHECKOUT), path=CHECKOUT)
    return d.addCallback(lambda r: (r[0].decode("utf-8"), r[2]))


class ControlTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A is C{twistd dna} with C{[control]}; provider B runs in the
    test and sends to A.
    """

    timeout = 120

    # Provider A as test_twistd starts it (a class imported into this module
    # would run its tests here too).
    setUpTwistd = test_twistd.TwistdTests.setUp
    startTwistd = test_twistd.TwistdTests.startTwistd
    connectComponent = test_twistd.TwistdTests.connectComponent

    def setUp(self):
        self.setUpTwistd()
        # AF_UNIX paths are short: not under _trial_temp.
        self.runDirectory = tempfile.mkdtemp(prefix="dna-ctl-")
        self.addCleanup(shutil.rmtree, self.runDirectory, True)
        self.socket = os.path.join(self.runDirectory, "control.sock")
        self.config.setContent(
            self.config.getContent()
            + ('\n[control]\nsocket = "%s"\n' % (self.socket,)).encode("utf-8"))

    def api(self, method, path, **kw):
        return ctl.request(ctl.unixAgent(reactor, self.socket), method, path, **kw)

    def dnaCtl(self, *argv):
        """
        Run C{dna-ctl} on provider A in a subprocess, without blocking
        provider B.

        @return: A L{Deferred} firing with (stdout text, exit status).
        """
        return dnaCtl(self.config.path, *argv)

    @defer.inlineCallbacks
    def startPair(self):
        process = self.startTwistd()
        yield task.deferLater(reactor, 0, waitForPort, self.componentPort, process)
        yield waitUntil(lambda: os.path.exists(self.socket))
        client = DNSClient([self.env.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        self.b, self.inboxB, _ = yield self.startProvider(
            ["target.example", "receiving.example"],
            {RECEIVING: self.ca.issue(RECEIVING, dnsNames=[RECEIVING])},
            checker, client=client, interface=HOSTS[RECEIVING], port=5269,
        )
        _, self.inboxSender = yield self.connectComponent("sender.example")
        _, self.inboxOther = yield self.connectComponent("b.example")
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="m1"))
        self.b.send(message("nurse@receiving.example", "friar@b.example", stanzaID="m2"))
        yield self.inboxSender.waitFor(1, timeout=20)
        yield self.inboxOther.waitFor(1, timeout=20)

    @defer.inlineCallbacks
    def test_tablesMatchTraffic(self):
        """
        The socket has mode 0600; C{/v1/connections}, C{/v1/bindings} and
        C{dna-ctl} show the one stream B opened, its names, its pairs and
        its stanzas.
        """
        yield self.startPair()
        self.assertEqual(0o600, stat.S_IMODE(os.stat(self.socket).st_mode))
        [streamB] = list(self.b.federation.streams)
        code, [connection] = yield self.api(b"GET", "/v1/connections")
        self.assertEqual(200, code)
        self.assertEqual(
            (streamB, "incoming", [RECEIVING], ["receiving.example", "target.example"],
             "dna", 2),
            (connection["stream"], connection["direction"], connection["remoteServerNames"],
             connection["delegatedNames"], connection["kind"], connection["stanzas"]["in"]))
        self.assertTrue(connection["tls"]["version"].startswith("TLSv1."))
        self.assertEqual(RECEIVING, connection["peerCertificate"]["commonName"])
        self.assertRegex(connection["peer"], r"^127\.[0-9.]+:[0-9]+$")
        code, bindings = yield self.api(b"GET", "/v1/bindings", query={"stream": streamB})
        self.assertEqual(
            [("incoming", "b.example", "receiving.example"),
             ("incoming", "sender.example", "target.example")],
            [(b["direction"], b["local"], b["remote"]) for b in bindings])
        out, status = yield self.dnaCtl("connections")
        self.assertEqual(0, status, out)
        self.assertIn(streamB, out)
        self.assertIn(RECEIVING, out)
        out, status = yield self.dnaCtl("--json", "bindings", "--local", "b.example")
        self.assertEqual((0, [["b.example", "receiving.example", [streamB]]]),
                         (status, [[b["local"], b["remote"], b["streams"]]
                                   for b in json.loads(out)]))
        out, status = yield self.dnaCtl("status")
        self.assertEqual(0, status)
        self.assertIn("fallback dna+pkix", out)
        out, status = yield self.dnaCtl("check", "target.example")
        self.assertEqual(0, status, out)
        self.assertIn("status: secure", out)

    @defer.inlineCallbacks
    def test_revoke(self):
        """
        C{dna-ctl revoke} sends the revocation: B unbinds the pair, A
        refuses the next stanza B sends on it, the other pair keeps
        flowing, and B's next stanza of the pair asks again and gets
        through.
        """
        yield self.startPair()
        [(streamB, authorization)] = list(self.b.federation.streams.items())
        out, status = yield self.dnaCtl("revoke", "sender.example", "target.example")
        self.assertEqual(0, status, out)
        self.assertIn(streamB, out)
        tables = self.b.federation.tables
        yield waitUntil(lambda: not tables.isBound(OUTGOING, "target.example", "sender.example"))
        self.assertTrue(tables.outgoing.accepts(streamB, "receiving.example", "b.example"))
        # The next stanza of the pair, on the stream that held it: refused.
        self.b.federation._transmit(
            authorization, message("juliet@target.example", "romeo@sender.example",
                                   stanzaID="late"), "target.example", "sender.example")
        self.b.federation._transmit(
            authorization, message("nurse@receiving.example", "friar@b.example",
                                   stanzaID="other"), "receiving.example", "b.example")
        [_, other] = yield self.inboxOther.waitFor(2)
        self.assertEqual("other", other["id"])
        [refusal] = yield self.inboxB.waitFor(1)
        self.assertEqual(("late", "error"), (refusal["id"], refusal["type"]))
        self.assertEqual(["m1"], [s["id"] for s in self.inboxSender.stanzas])
        # Routed normally, the pair is asked for again.
        self.b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="again"))
        [_, again] = yield self.inboxSender.waitFor(2)
        self.assertEqual("again", again["id"])
        out, status = yield self.dnaCtl("revoke", "sender.example", "nowhere.example")
        self.assertEqual(1, status)

    @defer.inlineCallbacks
    def test_close(self):
        """
        C{dna-ctl close} closes the one connection; stanzas sent around it
        all arrive, over a new connection.
        """
        yield self.startPair()
        [streamB] = list(self.b.federation.streams)
        for n in range(5):
            self.b.send(message("nurse@receiving.example", "friar@b.example", stanzaID=f"a{n}"))
        out, status = yield self.dnaCtl("close", streamB)
        self.assertEqual((0, f"closed {streamB}\n"), (status, out))
        for n in range(5):
            self.b.send(message("nurse@receiving.example", "friar@b.example", stanzaID=f"b{n}"))
        yield self.inboxOther.waitFor(11, timeout=30)
        self.assertEqual({"m2"} | {f"a{n}" for n in range(5)} | {f"b{n}" for n in range(5)},
                         {s["id"] for s in self.inboxOther.stanzas})
        code, connections = yield self.api(b"GET", "/v1/connections")
        self.assertNotIn(streamB, [c["stream"] for c in connections])
        out, status = yield self.dnaCtl("close", streamB)
        self.assertEqual(1, status)

    @defer.inlineCallbacks
    def test_unreachable(self):
        """
        With nobody on the socket, C{dna-ctl} exits 3.
        """
        out, status = yield self.dnaCtl("status")
        self.assertEqual(3, status)


class ControlPairTests(unittest.TestCase):
    """
    Two real C{twistd dna} processes with C{[control]} (L{FlowPair}: real
    DNSSEC DNS, mutual TLS, XEP-0114 components at both ends): A's component
    sends from two of A's domains to two of B's, B's components receive;
    both sides are driven with C{dna-ctl} as a subprocess and A's also with
    a real HTTP client (L{twisted.web.client.Agent} over the UNIX socket).
    """

    timeout = 120

    def setUp(self):
        # AF_UNIX paths are short (< 108 bytes): not under _trial_temp.
        sockets = tempfile.mkdtemp(prefix="dna-ctl-", dir="/tmp")
        self.addCleanup(shutil.rmtree, sockets, True)
        # At debug, B's log tells each pair it grants (test_revoke reads them).
        self.pair = FlowPair(self.mktemp(), senders=2, targets=2, control=sockets,
                             extra='\n[log]\nlevel = "debug"\n')
        self.addCleanup(self.pair.stop)
        self.pair.start()
        self.senders, self.targets = self.pair.senders, self.pair.targets
        #: Every (sender, target) pair, as (A's local, B's local).
        self.pairs = [(s, t) for s in self.senders for t in self.targets]
        self.sent = []

    def api(self, name, method, path, **kw):
        """
        A request to the control API of process C{name}.
        """
        agent = ctl.unixAgent(reactor, self.pair.controlSocket(name))
        return ctl.request(agent, method, path, **kw)

    @defer.inlineCallbacks
    def ctlJSON(self, process, *argv):
        """
        C{dna-ctl --json ARGV} against C{process}, which must exit 0.
        """
        out, status = yield dnaCtl(process.config, "--json", *argv)
        self.assertEqual(0, status, out)
        return json.loads(out)

    @defer.inlineCallbacks
    def attach(self):
        """
        Wait for both control sockets; connect B's receiving components and
        A's sending one.
        """
        yield waitUntil(lambda: all(os.path.exists(self.pair.controlSocket(name))
                                    for name in "ab"))
        self.inbox = Inbox()
        receivers = yield connectComponents(self.pair.b.componentPort, self.targets,
                                            self.inbox)
        self.addCleanup(disconnectComponents, receivers)
        sender = yield connectComponent(self.pair.a.componentPort, self.senders[0])
        self.addCleanup(disconnectComponents, [sender])
        self.xs = sender[0]

    def send(self, pairs):
        """
        One message from A's component for each (sender, target) of
        C{pairs}, numbered on from the last sent.
        """
        for sender, target in pairs:
            self.sent.append(f"m{len(self.sent)}")
            self.xs.send(flowMessage(sender, target, len(self.sent) - 1))

    @defer.inlineCallbacks
    def arrived(self, timeout=30):
        """
        Wait until B's components received as many messages as A's sent,
        and check each arrived exactly once.
        """
        yield self.inbox.waitFor(len(self.sent), timeout=timeout)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(sorted(self.sent), sorted(self.inbox.ids))

    @defer.inlineCallbacks
    def bound(self, process, direction):
        """
        The pairs C{dna-ctl bindings} lists on C{process} in C{direction}:
        C{{(A's domain, B's domain): streams}}.
        """
        bindings = yield self.ctlJSON(process, "bindings")
        answer = {}
        for b in bindings:
            if b["direction"] == direction:
                pair = ((b["local"], b["remote"]) if direction == OUTGOING
                        else (b["remote"], b["local"]))
                answer[pair] = b["streams"]
        return answer

    @defer.inlineCallbacks
    def oneConnection(self):
        """
        C{dna-ctl connections} on both sides: the one stream A opened to
        B, the same stream id both sides.

        @return: The stream id and both rows.
        """
        [outgoing] = yield self.ctlJSON(self.pair.a, "connections")
        [incoming] = yield self.ctlJSON(self.pair.b, "connections")
        self.assertEqual(
            (OUTGOING, INCOMING, outgoing["stream"], ["xmpp.flowb.example"],
             ["xmpp.flowa.example"], "dna", "dna"),
            (outgoing["direction"], incoming["direction"], incoming["stream"],
             outgoing["remoteServerNames"], incoming["remoteServerNames"],
             outgoing["kind"], incoming["kind"]))
        self.assertEqual(1, self.pair.connections())
        return outgoing["stream"], outgoing, incoming

    @defer.inlineCallbacks
    def test_tablesMatchTraffic(self):
        """
        After A's component sent to every pair, C{dna-ctl connections} and
        C{bindings} on both sides show the one connection, the pairs bound
        on it both ways, and the stanzas counted on both ends.
        """
        yield self.attach()
        self.send(self.pairs * 3)
        yield self.arrived()
        stream, outgoing, incoming = yield self.oneConnection()
        self.assertEqual(sorted(self.senders), incoming["delegatedNames"])
        self.assertEqual((12, 0, 12), (outgoing["stanzas"]["out"], incoming["stanzas"]["refused"],
                                      incoming["stanzas"]["in"]))
        expected = {pair: [stream] for pair in self.pairs}
        self.assertEqual(expected, (yield self.bound(self.pair.a, OUTGOING)))
        self.assertEqual(expected, (yield self.bound(self.pair.b, INCOMING)))
        self.assertEqual({}, (yield self.bound(self.pair.a, INCOMING)))
        self.assertEqual({}, (yield self.bound(self.pair.b, OUTGOING)))

    @defer.inlineCallbacks
    def test_revoke(self):
        """
        C{dna-ctl revoke} on B sends the revocation of one pair: it leaves
        both binding tables (A's seen through its control API), the other
        pairs keep flowing on the same connection, and A's next stanza of
        the revoked pair is not sent on the revoked binding (B refuses
        nothing) but re-authorized: A asks again with a new
        C{<db:result/>}, B grants it since the delegation still holds, and
        the pair is bound again on the same connection.
        """
        yield self.attach()
        self.send(self.pairs)
        yield self.arrived()
        stream, _, _ = yield self.oneConnection()
        sender, target = revoked = self.pairs[0]
        others = self.pairs[1:]
        out, status = yield dnaCtl(self.pair.b.config, "--json", "revoke", target, sender)
        self.assertEqual((0, {"local": target, "remote": sender, "streams": [stream]}),
                         (status, json.loads(out)))

        def outgoingPairs(bindings):
            return {(b["local"], b["remote"]) for b in bindings if b["direction"] == OUTGOING}

        for _ in range(200):
            code, bindings = yield self.api("a", b"GET", "/v1/bindings")
            self.assertEqual(200, code)
            if revoked not in outgoingPairs(bindings):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(set(others), outgoingPairs(bindings))
        self.assertEqual({pair: [stream] for pair in others},
                         (yield self.bound(self.pair.b, INCOMING)))
        # The other pairs flow on, on the same connection.
        self.send(others * 2)
        yield self.arrived()
        # The revoked pair: asked for again and granted, on the same stream.
        self.send([revoked] + others)
        yield self.arrived()
        again, outgoing, incoming = yield self.oneConnection()
        self.assertEqual(stream, again)
        self.assertEqual(0, incoming["stanzas"]["refused"])
        self.assertEqual(len(self.sent), incoming["stanzas"]["in"])
        expected = {pair: [stream] for pair in self.pairs}
        self.assertEqual(expected, (yield self.bound(self.pair.a, OUTGOING)))
        self.assertEqual(expected, (yield self.bound(self.pair.b, INCOMING)))
        self.assertEqual(1, self.pair.opened())
        # By the logs: A received the revocation of that pair only, and B
        # granted it a second time (a new request, not the old binding).
        self.assertEqual(
            [f"Stream {stream}: peer revoked {sender} -> {target}"],
            re.findall(r"Stream \S+: peer revoked .*", self.pair.a.logText()))
        grants = re.findall(r"Stream \S+: granted .*", self.pair.b.logText())
        self.assertEqual([f"Stream {stream}: granted {s} -> {t}" for s, t in self.pairs]
                         + [f"Stream {stream}: granted {sender} -> {target}"],
                         sorted(grants[:4]) + grants[4:])

    @defer.inlineCallbacks
    def test_close(self):
        """
        C{dna-ctl close} on B closes the one connection; every message A's
        component sent before, while and after it closed arrives exactly
        once, the later ones over a new connection.
        """
        yield self.attach()
        self.send(self.pairs)
        yield self.arrived()
        stream, _, _ = yield self.oneConnection()
        self.send(self.pairs * 5)
        closing = dnaCtl(self.pair.b.config, "close", stream)
        # Sending on all the while dna-ctl starts, asks and B closes.
        rounds = 0
        while not closing.called:
            self.send(self.pairs)
            rounds += 1
            yield task.deferLater(reactor, 0.01, lambda: None)
        out, status = yield closing
        self.assertEqual((0, f"closed {stream}\n"), (status, out))
        self.send(self.pairs * 5)
        yield self.arrived()
        self.assertGreater(rounds, 5)
        self.assertEqual(4 * (11 + rounds), len(self.inbox.ids))
        new, _, _ = yield self.oneConnection()
        self.assertNotEqual(stream, new)
        out, status = yield dnaCtl(self.pair.b.config, "close", stream)
        self.assertEqual(1, status)
