"""
Tests for L{dna.app.check}, the C{dna-check} console script.
"""

import io
import sys

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dna.app import check
from dna.app.check import Options, main, parseServer, report, run
from dna.dns.verdict import BOGUS, INSECURE, SECURE, DelegationResult, SRVRecord
from tests.unit.test_delegation import memoryChecker


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options



class OptionsTests(SynchronousTestCase):
    """
    Tests for L{Options} and L{parseServer}.
    """

    def test_parseServer(self):
        """
        Servers are IP literals with an optional port, IPv6 in brackets.
        """
        self.assertEqual(parseServer("127.0.0.1"), ("127.0.0.1", 53))
        self.assertEqual(parseServer("127.0.0.1:5300"), ("127.0.0.1", 5300))
        self.assertEqual(parseServer("[::1]:5300"), ("::1", 5300))
        self.assertEqual(parseServer("[::1]"), ("::1", 53))
        self.assertEqual(parseServer("::1"), ("::1", 53))
        for bad in ["localhost", "127.0.0.1:x", "127.0.0.1:70000", "[::1]5300", "[::1"]:
            self.assertRaises(ValueError, parseServer, bad)

    def test_defaults(self):
        """
        By default: mode 'ad' against 127.0.0.1:53, five seconds, secure
        delegations only.
        """
        options = parse("sender.example")
        self.assertEqual(options["domain"], "sender.example")
        self.assertEqual(options["resolvers"], [("127.0.0.1", 53)])
        self.assertEqual((options["mode"], options["timeout"], options["allow-insecure"]),
                         ("ad", 5.0, False))

    def test_repeatable(self):
        """
        C{--resolver} and C{--server-name} can be given more than once.
        """
        options = parse("--resolver", "127.0.0.1:5300", "-r", "[::1]:53",
                        "--server-name", "a.example", "-s", "b.example", "d.example")
        self.assertEqual(options["resolvers"], [("127.0.0.1", 5300), ("::1", 53)])
        self.assertEqual(options["serverNames"], ["a.example", "b.example"])

    def test_trustAnchor(self):
        """
        C{--trust-anchor} reads the file, in mode validate only.
        """
        from tests.unit.test_dnssec import signedTree
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(signedTree().anchorText)
        options = parse("--mode", "validate", "--trust-anchor", path, "d.example")
        self.assertEqual(len(options["anchors"]), 1)
        self.assertRaises(usage.UsageError, parse, "--trust-anchor", path, "d.example")
        self.assertRaises(usage.UsageError, parse, "--mode", "validate", "--trust-anchor",
                          self.mktemp(), "d.example")

    def test_usageErrors(self):
        """
        Bad values are usage errors.
        """
        for argv in [[], ["a.example", "b.example"], ["--mode", "x", "d.example"],
                     ["--upstream", "x", "d.example"], ["--timeout", "0", "d.example"],
                     ["--timeout", "soon", "d.example"], ["--resolver", "dns.example",
                                                          "d.example"],
                     ["a..example"], ["--server-name", "a..b", "d.example"]]:
            self.assertRaises(usage.UsageError, parse, *argv)

    def test_mainUsageError(self):
        """
        L{main} exits with status 2 and a message on a usage error, before
        any reactor runs.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, main, ["--mode", "nope", "d.example"])
        self.assertEqual(error.code, 2)
        self.assertIn("unknown mode 'nope'", stderr.getvalue())



class RunTests(SynchronousTestCase):
    """
    Tests for L{run} and L{report}, with in-memory DNS.
    """

    def run_(self, *argv, mode="validate", **kwargs):
        checker, client, clock = memoryChecker(mode, **kwargs)
        self.patch(check, "makeChecker", lambda options, reactor: checker)
        out = io.StringIO()
        status = self.successResultOf(run(clock, parse(*argv), out))
        return status, out.getvalue()

    def test_secure(self):
        """
        A secure delegation prints the records, the status and the chain, and
        exits 0.
        """
        status, out = self.run_("--mode", "validate", "c.b.example")
        self.assertEqual(status, 0)
        self.assertIn("SRV _xmpp-server._tcp.c.b.example:\n  0 5 5269 xmpp1.c.b.example.\n"
                      "status: secure\nchain:\n  example. DNSKEY signed by example. key ",
                      out)
        self.assertIn("  _xmpp-server._tcp.c.b.example. SRV signed by c.b.example. key ", out)
        self.assertTrue(out.endswith("result: securely delegated\n"))

    def test_serverName(self):
        """
        With C{--server-name}, the verdict for each name is printed; the exit
        status says whether one matched.
        """
        status, out = self.run_("-s", "xmpp1.originating.example", "-s", "other.example",
                                "sender.example")
        self.assertEqual(status, 0)
        self.assertIn("delegated to xmpp1.originating.example: yes\n"
                      "delegated to other.example: no\n", out)
        status, out = self.run_("-s", "other.example", "sender.example")
        self.assertEqual(status, 1)

    def test_notDelegated(self):
        """
        Bogus, insecure, no SRV and SRV "." all exit 1 with the reason.
        """
        for domain, words in [("bogus.example", "does not verify"),
                              ("unsigned.example", "unsigned delegation"),
                              ("nosrv.example", "NODATA proven by NSEC"),
                              ("dot.example", "decidedly not available")]:
            status, out = self.run_(domain)
            self.assertEqual(status, 1, domain)
            self.assertIn("reason: ", out)
            self.assertIn(words, out)
            self.assertTrue(out.endswith("result: not delegated\n"))

    def test_allowInsecure(self):
        """
        With C{--allow-insecure} an unsigned delegation exits 0, saying so.
        """
        status, out = self.run_("--allow-insecure", "unsigned.example")
        self.assertEqual(status, 0)
        self.assertIn("result: insecurely (allowed) delegated", out)

    def test_refusedConfiguration(self):
        """
        Mode 'ad' with a resolver off loopback is a usage error (status 2).
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        status = self.successResultOf(run(None, parse("-r", "192.0.2.1", "d.example"),
                                          io.StringIO()))
        self.assertEqual(status, 2)
        self.assertIn("not on loopback", stderr.getvalue())

    def test_report(self):
        """
        L{report} decides from the status and the records.
        """
        records = [SRVRecord(0, 0, 5269, "x.example")]
        for status, allow, expected in [(SECURE, False, 0), (INSECURE, False, 1),
                                        (INSECURE, True, 0), (BOGUS, True, 1)]:
            result = DelegationResult("d.example", records, status)
            self.assertEqual(report(result, [], allow, io.StringIO()), expected)
