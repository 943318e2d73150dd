"""
Tests for L{dna.app.check}, the C{dna-check} console script.
"""

import functools
import io
import os
import sys

from twisted.internet import defer, reactor, utils
from twisted.internet.selectreactor import SelectReactor
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from dna.app.check import main
from dna.app.delegation import makeDelegationChecker
from dna.channel.dane import associationData
from tests.integration.processes import CHECKOUT
from tests.integration.providers import ProvidersMixin

#: Where the zones of L{ConnectTests} delegate C{probe.example}.
PROBE_TARGET = "xmpp.probe.example"
PROBE_ADDRESS = "127.0.0.81"
PROBE_PORT = 5299


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



class ConnectTests(ProvidersMixin, unittest.TestCase):
    """
    C{dna-check --connect}, a real subprocess, against a DNA provider
    listening where knotd-signed zones (SRV, A and TLSA records) put it,
    validated by unbound.
    """

    @defer.inlineCallbacks
    def setUp(self):
        from tests.integration.dnsenv import DNSEnvironment

        self.setUpPKI()
        certificate = self.ca.issue(PROBE_TARGET, dnsNames=[PROBE_TARGET])
        spki = associationData(certificate.certificate, 1, 1).hex()
        zones = {"probe.example": ("nsec", [
            f"_xmpp-server._tcp SRV 0 5 {PROBE_PORT} {PROBE_TARGET}.",
            f"xmpp A {PROBE_ADDRESS}",
            f"_{PROBE_PORT}._tcp.xmpp TLSA 3 1 1 {spki}",
        ], "A domain delegated to a target with DANE-EE, for dna-check --connect.")}
        self.env = DNSEnvironment(self.mktemp(), extraZones=zones)
        self.addCleanup(self.env.stop)
        self.env.start()
        yield self.startProvider(
            ["probe.example"], {PROBE_TARGET: certificate},
            makeDelegationChecker(reactor, [self.env.resolver], "ad"),
            interface=PROBE_ADDRESS, port=PROBE_PORT)
        self.caFile = os.path.abspath(self.mktemp())
        with open(self.caFile, "wb") as f:
            f.write(self.ca.certificatePEM)

    def dnaCheck(self, *argv):
        host, port = self.env.resolver
        d = utils.getProcessOutputAndValue(
            sys.executable, ["-c", "from dna.app.check import main; main()",
                             "-r", f"{host}:{port}"] + list(argv),
            env=dict(os.environ, PYTHONPATH=CHECKOUT), path=CHECKOUT)
        return d.addCallback(lambda r: (r[0].decode("utf-8"), r[1].decode("utf-8"), r[2]))

    @defer.inlineCallbacks
    def test_connect(self):
        """
        The certificate presented is fetched over STARTTLS and judged by
        every prooftype: the SRV record securely names the target, the
        TLSA record matches, no POSH document is published, PKIX verifies
        it with C{--ca} for the target (not for the domain).
        """
        out, err, status = yield self.dnaCheck("--connect", "--posh", "--timeout", "3",
                                               "--ca", self.caFile, "probe.example")
        self.assertEqual(status, 0, out + err)
        self.assertNotIn("error:", out)
        self.assertIn(f"connect {PROBE_TARGET}:{PROBE_PORT} ({PROBE_ADDRESS}:{PROBE_PORT}):\n",
                      out)
        self.assertIn(f"    names: {PROBE_TARGET}\n", out)
        self.assertIn(f"  dnssec-srv  yes  a secure SRV record names {PROBE_TARGET}\n", out)
        self.assertIn("  dane        yes  DANE-EE 3 1 1 ", out)
        self.assertIn("  posh        no   not published: ", out)
        self.assertIn(f"  pkix        yes  the chain verifies; valid for {PROBE_TARGET}\n",
                      out)
        self.assertIn(f"authorised: probe.example at {PROBE_TARGET}:{PROBE_PORT} by "
                      f"dnssec-srv+dane, dnssec-srv+pkix\n", out)

    @defer.inlineCallbacks
    def test_connectUntrusted(self):
        """
        Without C{--ca}, the platform's authorities do not know the test
        CA: PKIX says no, DANE still authorises.
        """
        out, err, status = yield self.dnaCheck("--connect", "--timeout", "3",
                                               "probe.example")
        self.assertEqual(status, 0, out + err)
        self.assertIn("  pkix        no   the chain does not verify: ", out)
        self.assertIn("  posh        n/a  not fetched (use --posh)\n", out)
        self.assertIn("by dnssec-srv+dane\n", out)
