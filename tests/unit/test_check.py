"""
Tests for L{dna.app.check}, the C{dna-check} console script.
"""

import base64
import io
import sys

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dna.app import check
from dna.app.check import Options, main, parseServer, report, run
from dna.dns.tlsa import DANE, DANE_FAILED, NO_DANE
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



def _tlsa(status, *texts, reason=""):
    import dns.rdata

    from dna.dns.tlsa import TLSAResult

    records = [dns.rdata.from_text("IN", "TLSA", text) for text in texts]
    return TLSAResult(TARGET, 5269, status, records, reason)


def _spki(certificate):
    from dna.channel.dane import associationData

    return associationData(certificate, 1, 1).hex()


TARGET = "xmpp.probe.example"
DOMAIN = "probe.example"


class VerdictTests(SynchronousTestCase):
    """
    Tests for L{check.proofVerdicts}, L{check.authorisedBy} and the
    C{--connect} report, pure.
    """

    def setUp(self):
        from tests.unit.test_tls import CA

        self.leaf = CA.issue(TARGET, dnsNames=[TARGET]).certificate
        self.secure = DelegationResult(DOMAIN, [SRVRecord(0, 5, 5269, TARGET + ".")], SECURE)

    def verdicts(self, chain=None, pkixErrors=(), tlsa=None, posh=None,
                 delegation=None):
        verdicts = check.proofVerdicts(
            DOMAIN, TARGET, 5269, delegation or self.secure,
            [self.leaf] if chain is None else chain, list(pkixErrors), tlsa, posh, 0)
        return {proof: (v["verdict"], v["reason"]) for proof, v in verdicts.items()}, \
            verdicts

    def test_allProven(self):
        """
        A secure SRV record, a matching DANE-EE record, a listed POSH
        fingerprint and a chain that verifies: each says yes.
        """
        from dna.dns.posh import POSHDocument, POSHResult, fingerprint

        digest = base64.b64decode(fingerprint(self.leaf))
        posh = POSHResult(DOMAIN, POSHDocument([("sha-256", digest)]))
        summary, verdicts = self.verdicts(
            tlsa=_tlsa(DANE, f"3 1 1 {_spki(self.leaf)}"), posh=posh)
        self.assertEqual({proof: v for proof, (v, _) in summary.items()},
                         dict.fromkeys(check.PROOFTYPES, check.YES))
        self.assertEqual(summary["pkix"][1], f"the chain verifies; valid for {TARGET}")
        self.assertEqual(check.authorisedBy(verdicts, DOMAIN, TARGET),
                         ["dnssec-srv+dane", "dnssec-srv+pkix", "posh"])

    def test_noneProven(self):
        """
        An insecure SRV record, a wrong TLSA record, a POSH document without
        the fingerprint, a chain PKIX refuses: each says no, and why.
        """
        from dna.dns.posh import POSHDocument, POSHResult

        posh = POSHResult(DOMAIN, POSHDocument([("sha-256", b"\0" * 32)]))
        insecure = DelegationResult(DOMAIN, self.secure.records, INSECURE, reason="unsigned")
        summary, verdicts = self.verdicts(
            delegation=insecure, tlsa=_tlsa(DANE, "3 1 1 " + "00" * 32), posh=posh,
            pkixErrors=["unable to get local issuer certificate (depth 0)"])
        self.assertEqual(summary["dnssec-srv"],
                         ("no", "the SRV records are insecure: unsigned"))
        self.assertEqual(summary["dane"][0], "no")
        self.assertIn("does not match", summary["dane"][1])
        self.assertEqual(summary["posh"][0], "no")
        self.assertIn("is not among the 1 fingerprints", summary["posh"][1])
        self.assertEqual(summary["pkix"], (
            "no", "the chain does not verify: unable to get local issuer certificate "
                  "(depth 0)"))
        self.assertEqual(check.authorisedBy(verdicts, DOMAIN, TARGET), [])

    def test_notApplicable(self):
        """
        DANE without secure SRV records, or with a secure denial of TLSA,
        and POSH not fetched do not apply; TLSA that cannot be learnt
        securely is a no.
        """
        summary, _ = self.verdicts()
        self.assertEqual(summary["dane"][0], "n/a")
        self.assertEqual(summary["posh"], ("n/a", "not fetched (use --posh)"))
        summary, _ = self.verdicts(tlsa=_tlsa(NO_DANE, reason="no TLSA (NSEC)"))
        self.assertEqual(summary["dane"], ("n/a", "no TLSA (NSEC)"))
        summary, _ = self.verdicts(tlsa=_tlsa(DANE_FAILED, reason="bogus"))
        self.assertEqual(summary["dane"], ("no", "TLSA unusable: bogus"))

    def test_noCertificate(self):
        """
        Without a certificate, DANE, POSH and PKIX say no.
        """
        from dna.dns.posh import POSHDocument, POSHResult

        summary, verdicts = self.verdicts(
            chain=[], tlsa=_tlsa(DANE, f"3 1 1 {_spki(self.leaf)}"),
            posh=POSHResult(DOMAIN, POSHDocument([("sha-256", b"\0" * 32)])))
        for proof in ["dane", "posh", "pkix"]:
            self.assertEqual(summary[proof], ("no", "no certificate presented"))
        self.assertEqual(check.authorisedBy(verdicts, DOMAIN, TARGET), [])

    def test_pkixForDomain(self):
        """
        A certificate valid for the domain itself is authorised by PKIX
        alone (RFC 6120), without a delegation.
        """
        from tests.unit.test_tls import CA

        self.leaf = CA.issue(DOMAIN, dnsNames=[DOMAIN]).certificate
        summary, verdicts = self.verdicts(delegation=DelegationResult(DOMAIN, [], BOGUS))
        self.assertEqual(summary["pkix"], ("yes", f"the chain verifies; valid for {DOMAIN}"))
        self.assertEqual(check.authorisedBy(verdicts, DOMAIN, TARGET), ["pkix"])

    def test_report(self):
        """
        The report prints, per target, the certificate, one line per
        prooftype and the authorising ones; the JSON form has them under
        C{connections}, beside the fields it had.
        """
        from dna.app.probe import ProbeResult

        connection = check.connectionData(
            DOMAIN, TARGET, 5269, self.secure,
            ProbeResult(TARGET, ("127.0.0.81", 5269), [self.leaf], []),
            _tlsa(DANE, f"3 1 1 {_spki(self.leaf)}"))
        data = check.reportData(self.secure, [], False, connections=[connection])
        self.assertEqual(set(data), {
            "domain", "records", "status", "chain", "reason", "delegations", "delegated",
            "secure", "dane", "posh", "connections"})
        self.assertEqual(data["connections"][0]["authorisedBy"],
                         ["dnssec-srv+dane", "dnssec-srv+pkix"])
        self.assertEqual(data["connections"][0]["certificate"]["names"], [TARGET])
        out = io.StringIO()
        self.assertEqual(check.printReport(data, out), 0)
        text = out.getvalue()
        self.assertIn(f"connect {TARGET}:5269 (127.0.0.81:5269):\n"
                      f"  certificate: CN={TARGET} (chain of 1)\n"
                      f"    names: {TARGET}\n", text)
        self.assertIn(f"  dnssec-srv  yes  a secure SRV record names {TARGET}\n"
                      f"  dane        yes  DANE-EE 3 1 1 {_spki(self.leaf)} matches the "
                      f"certificate\n"
                      f"  posh        n/a  not fetched (use --posh)\n"
                      f"  pkix        yes  the chain verifies; valid for {TARGET}\n"
                      f"authorised: {DOMAIN} at {TARGET}:5269 by dnssec-srv+dane, "
                      f"dnssec-srv+pkix\n", text)

    def test_reportError(self):
        """
        A target that could not be reached shows why, and no certificate.
        """
        from dna.app.probe import ProbeResult

        connection = check.connectionData(
            DOMAIN, TARGET, 5269, self.secure,
            ProbeResult(TARGET, ("::1", 5269), error="connection refused"))
        out = io.StringIO()
        check.printConnection(connection, DOMAIN, lambda line: out.write(line + "\n"))
        self.assertTrue(out.getvalue().startswith(
            f"connect {TARGET}:5269 ([::1]:5269):\n  error: connection refused\n"
            f"  certificate: none\n"), out.getvalue())
        self.assertTrue(out.getvalue().endswith("by no prooftype\n"))

    def test_connectOptions(self):
        """
        C{--ca} needs C{--connect} and a PEM file; C{--from} a server name.
        """
        from tests.unit.test_tls import CA

        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(CA.certificatePEM)
        options = parse("--connect", "--ca", path, "d.example")
        self.assertIsNot(options["trustRoot"], None)
        self.assertEqual(options["from"], check.DEFAULT_FROM)
        self.assertRaises(usage.UsageError, parse, "--ca", path, "d.example")
        self.assertRaises(usage.UsageError, parse, "--connect", "--ca", self.mktemp(),
                          "d.example")
        self.assertRaises(usage.UsageError, parse, "--connect", "--ca", __file__,
                          "d.example")
        self.assertRaises(usage.UsageError, parse, "--connect", "--from", "a..b",
                          "d.example")

    def test_connectAll(self):
        """
        L{check.connectAll} looks up each target's TLSA records (secure SRV
        records only) and addresses, probes the first address with the
        options' C{from}, and reports a target without address.
        """
        from twisted.internet import defer
        from twisted.internet.task import Clock

        from dna.app.probe import ProbeResult
        from dna.error import NoAddress

        records = [SRVRecord(0, 5, 5269, TARGET + "."), SRVRecord(1, 5, 5270, "gone.example.")]
        result = DelegationResult(DOMAIN, records, SECURE)
        probed, looked = [], []

        def resolve(name, port):
            if name == TARGET:
                return defer.succeed([("127.0.0.81", port), ("::1", port)])
            return defer.fail(NoAddress(name, "NXDOMAIN"))

        def fakeProbe(reactor, thisName, serverName, address, trustRoot, timeout):
            probed.append((thisName, serverName, address, timeout))
            return defer.succeed(ProbeResult(serverName, address, [self.leaf], []))

        class FakeTLSA:
            def lookup(self, name, port):
                looked.append((name, port))
                return defer.succeed(_tlsa(NO_DANE, reason="no TLSA"))

        self.patch(check, "AddressResolver", lambda client: resolve)
        self.patch(check, "probe", fakeProbe)
        options = parse("--connect", "--from", "me.example", "--timeout", "2", DOMAIN)
        options["trustRoot"] = object()
        connections = self.successResultOf(
            check.connectAll(Clock(), options, result, None, FakeTLSA(), None))
        self.assertEqual(looked, [(TARGET, 5269), ("gone.example", 5270)])
        self.assertEqual(probed, [("me.example", TARGET, ("127.0.0.81", 5269), 2.0)])
        self.assertEqual([c["target"] for c in connections], [TARGET, "gone.example"])
        self.assertEqual(connections[0]["verdicts"]["dane"]["verdict"], "n/a")
        self.assertEqual(connections[1]["error"], "no address: "
                         + str(NoAddress("gone.example", "NXDOMAIN")))
        self.assertIsNone(connections[1]["address"])
