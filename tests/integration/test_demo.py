"""
Tests for L{dna.demo}: the world's plan and the report's tables without a
reactor, then the whole demo over loopback, in-process and as C{python -m
dna.demo}.
"""

import io
import os
import re
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dna.demo import scenario, world
from tests.unit.test_demo import _CHECKOUT, CONNECTION_HEADER

BINDING_HEADER = re.compile(r"\| Local +\| Remote +\| Connections +\|")


def runDemo(*argv):
    """
    Run the demo in this process, on the reactor trial runs.

    @return: A L{Deferred} firing with (status, stdout text, stderr text).
    """
    options = scenario.Options()
    options.parseOptions(list(argv))
    out, err = io.StringIO(), io.StringIO()
    d = scenario.run(reactor, options, out=out, err=err)
    return d.addCallback(lambda status: (status, out.getvalue(), err.getvalue()))


class DemoTests(TestCase):
    """
    The whole demo over loopback: DNS, two providers, mutual TLS.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_default(self):
        """
        The default run exits 0 after showing the secure SRV lookups, the TLS
        identities, every message delivered, the refusal of the insecure
        domain, both providers' tables, and one TCP connection for all.
        """
        status, out, err = yield runDemo()
        self.assertEqual((0, ""), (status, err), out)
        self.assertIn("A: SRV _xmpp-server._tcp.target.tld -> 20 0 ", out)
        self.assertIn("xmpp1.receiving.tld.  [secure]", out)
        self.assertIn("tld. DNSKEY signed by tld. key", out)
        self.assertIn("B: SRV _xmpp-server._tcp.sender.tld -> 20 0 ", out)
        self.assertIn("A verified B's certificate: CN=xmpp1.receiving.tld", out)
        self.assertIn("B verified A's client certificate: CN=xmpp1.originating.tld", out)
        self.assertIn("bidirectional (XEP-0288)", out)
        self.assertIn("B: delivers <message id='m1' from='romeo@sender.tld' "
                      "to='juliet@target.tld'>", out)
        self.assertIn("A: delivers <message id='m1-reply' from='juliet@target.tld' "
                      "to='romeo@sender.tld'>", out)
        self.assertEqual(scenario.DEFAULT_PAIRS - 1, out.count("delivered; reply delivered"))
        self.assertIn(f"_xmpp-server._tcp.{world.INSECURE_DOMAIN} -> ", out)
        self.assertIn("[insecure]", out)
        self.assertIn("with <remote-server-not-found/>", out)

        [streamID] = re.findall(r"ONE TCP connection \(\S+ -> \S+, stream ([0-9a-f]+)\)",
                                out)
        self.assertIn(f"carried all {scenario.DEFAULT_PAIRS} domain pairs both ways: "
                      f"{2 * scenario.DEFAULT_PAIRS} messages delivered", out)
        self.assertEqual(2, len(CONNECTION_HEADER.findall(out)))
        self.assertEqual(4, len(BINDING_HEADER.findall(out)))
        rows = re.findall(r"^   \| ([0-9a-f]{32}) \|", out, re.MULTILINE)
        self.assertEqual([streamID, streamID], rows)
        bound = re.findall(r"^   \| (\S+) +\| (\S+) +\| ([0-9a-f]{32}) \|$", out, re.MULTILINE)
        self.assertEqual(4 * scenario.DEFAULT_PAIRS, len(bound))
        self.assertEqual({streamID}, {row[2] for row in bound})
        self.assertIn("| A  | _xmpp-server._tcp.paris.tld    | insecure |", out)

    @defer.inlineCallbacks
    def test_quiet(self):
        """
        With --quiet only the outcome is printed.
        """
        status, out, err = yield runDemo("--quiet", "--pairs", "3")
        self.assertEqual((0, ""), (status, err))
        lines = out.splitlines()
        self.assertEqual(2, len(lines), out)
        self.assertTrue(lines[0].startswith("OK: ONE TCP connection"))
        self.assertIn("all 3 domain pairs both ways: 6 messages delivered", lines[0])

    @defer.inlineCallbacks
    def test_verbose(self):
        """
        With --verbose DNA's log events are printed too.
        """
        status, out, err = yield runDemo("--verbose", "--pairs", "1")
        self.assertEqual((0, ""), (status, err))
        self.assertIn("[debug dna.core.authorization] Stream ", out)
        self.assertNotIn("5 more domain pairs", out)

    @defer.inlineCallbacks
    def test_failure(self):
        """
        When something goes wrong the demo exits 1 and says what: here the
        target domain is delegated without DNSSEC, so the first message
        bounces.
        """
        childZones = world.childZones

        def unsignedTarget(*args):
            zones = childZones(*args)
            zones["target.tld"] = (False, zones["target.tld"][1])
            return zones

        self.patch(world, "childZones", unsignedTarget)
        status, out, err = yield runDemo("--quiet")
        self.assertEqual(1, status)
        self.assertEqual("", out)
        self.assertIn("dna-demo: FAILED: romeo@sender.tld -> juliet@target.tld bounced", err)
        self.assertIn("target.tld insecure", err)


class ScriptTests(SynchronousTestCase):
    """
    C{python -m dna.demo} as a new user runs it.
    """

    def test_fromAnyDirectory(self):
        """
        It runs from an unrelated directory and exits 0; the demo itself
        takes less than ten seconds.
        """
        cwd = self.mktemp()
        os.makedirs(cwd)
        env = dict(os.environ, PYTHONPATH=_CHECKOUT)
        result = subprocess.run([sys.executable, "-m", "dna.demo", "--pairs", "4"],
                                cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=60)
        self.assertEqual((0, ""), (result.returncode, result.stderr), result.stdout)
        self.assertIn("OK: ONE TCP connection", result.stdout)
        self.assertEqual(2, len(CONNECTION_HEADER.findall(result.stdout)))
        [seconds] = re.findall(r"dna-demo finished in ([0-9.]+) s", result.stdout)
        self.assertLess(float(seconds), 10)
