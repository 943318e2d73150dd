"""
Tests for L{dna.app.check}, the C{dna-check} console script.
"""

import functools
import io
import sys

from twisted.internet.selectreactor import SelectReactor
from twisted.trial.unittest import SynchronousTestCase

from dna.app.check import main


class RealCheckTests(SynchronousTestCase):
    """
    L{main} against knotd and unbound, each run in a reactor of its own.
    """

    def setUp(self):
        from tests.integration import dnsenv
        # A missing knotd or unbound fails the test (CI must not skip it).
        self.env = dnsenv.DNSEnvironment(self.mktemp())
        self.addCleanup(self.env.stop)
        self.env.start()

    def main(self, *argv):
        reactor = SelectReactor()
        reactor.run = functools.partial(reactor.run, installSignalHandlers=False)
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, main, list(argv), _reactor=reactor)
        return error.code, out.getvalue()

    def resolver(self):
        host, port = self.env.resolver
        return f"{host}:{port}"

    def test_ad(self):
        """
        Mode 'ad' against unbound: secure delegations exit 0, others 1.
        """
        status, out = self.main("-r", self.resolver(), "--server-name",
                                "xmpp1.originating.example", "sender.example")
        self.assertEqual(status, 0, out)
        self.assertIn("0 5 5269 xmpp1.originating.example.", out)
        self.assertIn("AD bit", out)
        self.assertIn("delegated to xmpp1.originating.example: yes", out)
        for domain in ["bogus.example", "expired.example", "wrongds.example",
                       "unsigned.example", "nosrv.example", "dot.example"]:
            status, out = self.main("-r", self.resolver(), domain)
            self.assertEqual(status, 1, out)

    def test_validate(self):
        """
        Mode 'validate' with the fixture's anchor prints the chain of the
        three-zone-deep domain.
        """
        status, out = self.main("--mode", "validate", "-r", self.resolver(),
                                "--trust-anchor", self.env.anchorFile, "c.b.example")
        self.assertEqual(status, 0, out)
        self.assertIn("c.b.example. DS signed by b.example. key", out)
        status, out = self.main("--mode", "validate", "-r", self.resolver(),
                                "--trust-anchor", self.env.anchorFile, "expired.example")
        self.assertEqual(status, 1, out)
        self.assertIn("status: bogus\n", out)
        self.assertIn("RRSIG expired at", out)

    def test_allowInsecure(self):
        """
        An unsigned delegation passes only with C{--allow-insecure}.
        """
        status, out = self.main("-r", self.resolver(), "--allow-insecure",
                                "unsigned.example")
        self.assertEqual(status, 0, out)
        self.assertIn("status: insecure", out)
