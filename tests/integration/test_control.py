"""
The control API of a real C{twistd dna} (provider A, with components for
sender.example and b.example) federating with provider B (target.example,
receiving.example) over real DNS and mutual TLS, driven with a real HTTP
client over the UNIX socket and with C{dna-ctl} as a subprocess.
"""

import json
import os
import shutil
import stat
import sys
import tempfile

from twisted.internet import defer, reactor, task, utils
from twisted.trial import unittest

from dna.app import ctl
from dna.core.tables import OUTGOING
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from tests.integration import test_twistd
from tests.integration.dnsenv import HOSTS
from tests.integration.providers import ProvidersMixin, message
from tests.integration.test_twistd import CHECKOUT, RECEIVING, waitForPort


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
        Run C{dna-ctl} in a subprocess, without blocking provider B.

        @return: A L{Deferred} firing with (stdout text, exit status).
        """
        d = utils.getProcessOutputAndValue(
            sys.executable, ["-c", "from dna.app.ctl import main; main()",
                             "--config", self.config.path] + list(argv),
            env=dict(os.environ, PYTHONPATH=CHECKOUT), path=CHECKOUT)
        return d.addCallback(lambda r: (r[0].decode("utf-8"), r[2]))

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
