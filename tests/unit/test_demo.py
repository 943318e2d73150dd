"""
Tests for L{dna.demo}: the world's plan and the report's tables without a
reactor, then the whole demo over loopback, in-process and as C{python -m
dna.demo}.
"""

import configparser
import os
import re
import types

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import dna
from dna.core.tables import Tables
from dna.demo import report, scenario, world
from dna.dns.dnssec.proofs import INSECURE, SECURE, parseAnchors
from dna.dns.dnssec.walker import Validator
from dna.testing.fakes import chatMessage
from dna.testing.zoneserver import ZoneAuthority

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(dna.__file__)))


CONNECTION_HEADER = re.compile(
    r"\| Connection +\| Server Domain Names +\| Delegated Domain Names +\|")



class PlanTests(SynchronousTestCase):
    """
    The scenario's domains, addresses and zones.
    """

    def test_firstPairIsTheDrafts(self):
        """
        The first pair is romeo@sender.tld -> juliet@target.tld; pairs are
        distinct and as many as asked.
        """
        for count in (1, 6, 9, 10, scenario.MAX_PAIRS):
            senders, targets = world.tenants(count)
            pairs = scenario.domainPairs(senders, targets, count)
            self.assertEqual(count, len(set(pairs)))
            self.assertEqual(("romeo@sender.tld", "juliet@target.tld"), pairs[0])
            domains = {jid.split("@")[1] for pair in pairs for jid in pair}
            self.assertTrue(domains <= {d for _, d in senders + targets})

    def test_pickAddresses(self):
        """
        The three addresses are on loopback and can be bound.
        """
        addresses = world.pickAddresses()
        for host in (addresses.nameServer, addresses.originating, addresses.receiving):
            self.assertTrue(host.startswith("127."))
            self.assertTrue(world._bindable(host))
        self.assertNotEqual("127.0.0.53", addresses.nameServer)

    def test_zones(self):
        """
        The tree validates from the demo TLD's DS: tenant SRV records are
        secure, C{paris.tld} is insecure, and SRV records carry the ports
        given.
        """
        addresses = world.Addresses("127.0.0.53", "127.0.0.1", "127.0.0.2")
        senders, targets = world.tenants(4)
        children = world.childZones(addresses, (5269, 5270), senders, targets)
        keys = {name: world.newKey()
                for name in [world.TLD] + [c for c, (signed, _) in children.items() if signed]}
        now = 1_700_000_000
        authority = ZoneAuthority(world.buildZones(children, addresses.nameServer, keys, now))
        dsText = dns.dnssec.make_ds("tld.", keys["tld"][1], "SHA256").to_text()
        anchors = parseAnchors(f"tld. IN DS {dsText}")

        def query(name, rdtype):
            request = dns.message.make_query(name, rdtype, want_dnssec=True)
            request.flags = 0
            return defer.succeed(authority.respond(request))

        validator = Validator(query, anchors)
        expected = {"sender.tld": (SECURE, 5269, world.ORIGINATING),
                    "target.tld": (SECURE, 5270, world.RECEIVING),
                    "capulet.tld": (SECURE, 5270, world.RECEIVING),
                    world.INSECURE_DOMAIN: (INSECURE, 5270, world.RECEIVING)}
        for domain, (status, port, target) in expected.items():
            name = dns.name.from_text(f"_xmpp-server._tcp.{domain}.")
            validation = self.successResultOf(
                validator.resolve(name, dns.rdatatype.SRV, now))
            self.assertEqual(status, validation.status, domain)
            [srv] = validation.rrset
            self.assertEqual((port, target + "."), (srv.port, srv.target.to_text()))
        validation = self.successResultOf(validator.resolve(
            dns.name.from_text("xmpp1.receiving.tld."), dns.rdatatype.A, now))
        self.assertEqual((SECURE, "127.0.0.2"), (validation.status, validation.rrset[0].address))



class TableTests(SynchronousTestCase):
    """
    The tables drawn like the draft's section 4.
    """

    def test_formatTable(self):
        """
        Columns are as wide as their widest line, rules frame the header and
        the rows, and a list cell takes one line per item.
        """
        text = report.formatTable(["Local", "Remote", "Connections"],
                                  [["montague.example", "capulet.example", "XXX, YYY"],
                                   ["laurence.example", ["a", "bb"], "AAA"]])
        self.assertEqual(
            "+------------------+-----------------+-------------+\n"
            "| Local            | Remote          | Connections |\n"
            "+------------------+-----------------+-------------+\n"
            "| montague.example | capulet.example | XXX, YYY    |\n"
            "| laurence.example | a               | AAA         |\n"
            "|                  | bb              |             |\n"
            "+------------------+-----------------+-------------+", text)

    def test_connectionAndBindingTables(self):
        """
        The connection table lists each stream's names; a binding table each
        pair with its streams in order.
        """
        tables = Tables()
        tables.openConnection("XXX", ["xmpp1.provider.com"])
        tables.openConnection("YYY", ["xmpp2.provider.com"])
        tables.connections.addDelegatedNames("XXX", ["capulet.example"])
        tables.bind("outgoing", "montague.example", "capulet.example", "XXX")
        tables.bind("outgoing", "montague.example", "capulet.example", "YYY")
        text = report.connectionTable(tables)
        self.assertRegex(text, CONNECTION_HEADER)
        self.assertIn("| XXX        | xmpp1.provider.com  | capulet.example        |", text)
        self.assertIn("| montague.example | capulet.example | XXX, YYY    |",
                      report.bindingTable(tables.outgoing))
        self.assertEqual(4, len(report.bindingTable(tables.incoming).splitlines()))



def _result(domain, status=SECURE, records=("20 0 5269 xmpp1.receiving.tld.",),
            chain=(), reason=""):
    """
    A stand-in for a L{dna.dns.delegation.DelegationResult}: what the report
    reads of one.
    """
    return types.SimpleNamespace(domain=domain, status=status, records=list(records),
                                 chain=list(chain), reason=reason)



class ReportTests(SynchronousTestCase):
    """
    The story told from a trace of events, without a reactor.
    """

    def test_narrateNewConnection(self):
        """
        Each event of a first message is told in order; the accepted stream
        is described where it was accepted.
        """
        target = _result("target.tld", chain=["tld. DNSKEY signed by tld. key 1"])
        stanza = chatMessage("romeo@sender.tld", "juliet@target.tld", "m1", "Hello")
        events = [
            world.Lookup("A", target, False),
            world.Verdict("A", "target.tld", ["xmpp1.receiving.tld"], target, True),
            world.Resolved("A", "xmpp1.receiving.tld", [("127.0.0.2", 5269)]),
            world.Accepted("B", IPv4Address("TCP", "127.0.0.1", 40000), "xs"),
            world.Delivered("B", stanza),
        ]
        lines = report.narrate(events, "romeo@sender.tld", "juliet@target.tld",
                               lambda xs: [f"   (the stream of {xs})"], "XXX")
        self.assertEqual([
            "   A: SRV _xmpp-server._tcp.target.tld -> "
            "20 0 5269 xmpp1.receiving.tld.  [secure]",
            "      validated from the tld. trust anchor:",
            "        tld. DNSKEY signed by tld. key 1",
            "   A: target.tld is securely delegated to xmpp1.receiving.tld "
            "(section 5 steps 1-2)",
            "   A: xmpp1.receiving.tld A -> connects to 127.0.0.2:5269",
            "   B: accepts TCP from 127.0.0.1:40000",
            "   (the stream of xs)",
            "   B: delivers <message id='m1' from='romeo@sender.tld' "
            "to='juliet@target.tld'> \"Hello\"",
        ], lines)

    def test_narrateReusedStream(self):
        """
        Without a new connection, the stream reused is named, and the
        Receiving Server's answer to <db:result/> is told.
        """
        sender = _result("sender.tld", records=["20 0 5270 xmpp1.originating.tld."])
        events = [world.Lookup("A", sender, True),
                  world.Verdict("B", "sender.tld", ["xmpp1.originating.tld"], sender, False)]
        lines = report.narrate(events, "romeo@sender.tld", "juliet@target.tld",
                               None, "XXX")
        self.assertEqual([
            "   A: SRV _xmpp-server._tcp.sender.tld (cached) -> "
            "20 0 5270 xmpp1.originating.tld.  [secure]",
            "   B: got <db:result from='sender.tld' to='target.tld'/> (section 6)",
            "   B: SRV _xmpp-server._tcp.sender.tld -> 20 0 5270 xmpp1.originating.tld.  "
            "[secure]; the peer authenticated as xmpp1.originating.tld",
            "   B: answers <db:result type='invalid' from='target.tld' to='sender.tld'/>",
            "   (no new connection: stream XXX was reused, section 5 step 3, "
            "bidirectional by XEP-0288)",
        ], lines)

    def test_pairsLines(self):
        """
        Each further pair gets a line with the status both providers found;
        a status not looked up shows as C{?}.
        """
        events = [world.Lookup("A", _result("target.tld"), False)]
        lines = report.pairsLines([(1, ("romeo@sender.tld", "juliet@target.tld"))],
                                  events, "XXX")
        self.assertEqual([
            "   2. romeo@sender.tld -> juliet@target.tld: delivered; reply delivered"
            "  (A: SRV target.tld secure, B: SRV sender.tld ?)",
            "   No new connection: every pair was authorized on stream XXX "
            "(<db:result/> per pair, section 6).",
        ], lines)

    def test_whyNot(self):
        """
        A bounce is explained by the last lookup of the domain it came from.
        """
        bounce = chatMessage("juliet@target.tld", "romeo@sender.tld")
        events = [world.Lookup("A", _result("target.tld"), False),
                  world.Lookup("A", _result("target.tld", status=INSECURE,
                                            reason="no DS"), False)]
        self.assertEqual(": A found SRV _xmpp-server._tcp.target.tld insecure (no DS)",
                         report.whyNot(events, bounce))
        self.assertEqual("", report.whyNot([], bounce))

    def test_summary(self):
        """
        The outcome names the connection, the stream and the pairs.
        """
        self.assertEqual(
            "ONE TCP connection (127.0.0.1:40000 -> 127.0.0.2:5269, stream XXX) carried "
            "the domain pair both ways: 2 messages delivered, B accepted 1 connection, "
            "and both providers' tables hold only that stream.",
            report.summary(IPv4Address("TCP", "127.0.0.1", 40000),
                           IPv4Address("TCP", "127.0.0.2", 5269), "XXX", 1))



class OptionsTests(SynchronousTestCase):
    """
    The command line.
    """

    def test_defaults(self):
        """
        By default six pairs, neither quiet nor verbose.
        """
        options = scenario.Options()
        options.parseOptions([])
        self.assertEqual((scenario.DEFAULT_PAIRS, False, False),
                         (options["pairs"], options["quiet"], options["verbose"]))

    def test_errors(self):
        """
        Out-of-range pairs and --quiet with --verbose are usage errors.
        """
        for argv in (["--pairs", "0"], ["--pairs", str(scenario.MAX_PAIRS + 1)],
                     ["-q", "-v"], ["--pairs", "many"]):
            self.assertRaises(usage.UsageError, scenario.Options().parseOptions, argv)

    def test_consoleScript(self):
        """
        setup.cfg declares the C{dna-demo} console script for L{scenario.main}.
        """
        parser = configparser.ConfigParser()
        parser.read(os.path.join(_CHECKOUT, "setup.cfg"))
        scripts = parser["options.entry_points"]["console_scripts"]
        self.assertIn("dna-demo = dna.demo.scenario:main", [s.strip() for s in scripts.splitlines()])
