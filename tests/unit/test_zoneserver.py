"""
Tests for L{dna.testing.zoneserver}: the answers checked with dnspython and with
DNA's own validator, the UDP and TCP protocols in memory, and the server over
loopback with L{DelegationChecker} in validate mode.
"""

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dna.dns.dnssec.proofs import typeBitmap
from dna.dns.dnssec.walker import Validator
from dna.testing.zoneserver import (
    DEFAULT_PAYLOAD,
    DNSDatagramProtocol,
    DNSStreamProtocol,
    ZoneAuthority,
    ZoneServer,
)
from tests.unit.test_dnssec import NOW, STATUSES, signedTree, srvName

# The zones of the in-memory test tree signed with NSEC: the server does not
# do NSEC3, and the unsigned children of NSEC3 zones need their parents.
_NSEC3_ONLY = ("nsec3.example.", "optout.example.")



def _nsecOnly(name):
    return not any(name.is_subdomain(dns.name.from_text(zone)) for zone in _NSEC3_ONLY)



def treeZones(without=()):
    """
    The NSEC-signed zones of L{signedTree}, but those in C{without}.
    """
    without = {dns.name.from_text(name) for name in without}
    return [zone for zone in signedTree().zones
            if _nsecOnly(zone.origin) and zone.origin not in without]



def nsecStatuses():
    """
    L{STATUSES} for the domains those zones hold.
    """
    return {domain: status for domain, status in STATUSES.items()
            if _nsecOnly(dns.name.from_text(domain))}



def bigZone():
    """
    An unsigned zone C{big.test.} with a 2 KB TXT RRset at C{big.big.test.}
    and a small one at C{small.big.test.}.
    """
    text = ("@ 3600 IN SOA ns1.big.test. hostmaster.big.test. 1 3600 600 86400 300\n"
            "@ 3600 IN NS ns1.big.test.\n"
            "small 3600 IN TXT \"hello\"\n"
            + "".join(f'big 3600 IN TXT "{i:02d}{"x" * 200}"\n' for i in range(10)))
    return dns.zone.from_text(text, origin="big.test.", relativize=False)



def makeQuery(name, rdtype, dnssec=True, rd=False, edns=0, payload=DEFAULT_PAYLOAD,
              rdclass=dns.rdataclass.IN):
    query = dns.message.make_query(name, rdtype, rdclass=rdclass, use_edns=edns,
                                   payload=payload, want_dnssec=dnssec)
    query.flags = dns.flags.RD if rd else 0
    return query



def ask(authority, name, rdtype, udp=False, **kwargs):
    """
    Ask C{authority} over the wire format; C{kwargs} as for L{makeQuery}.

    @return: The parsed response.
    """
    wire = authority.respondToWire(makeQuery(name, rdtype, **kwargs).to_wire(), udp=udp)
    return dns.message.from_wire(wire)



def rrsetIn(section, name, rdtype, covers=dns.rdatatype.NONE):
    name = dns.name.from_text(name) if isinstance(name, str) else name
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype and rrset.covers == covers:
            return rrset
    return None



def keysOf(zone):
    """
    The DNSKEYs of a tree zone, for L{dns.dnssec.validate}.
    """
    origin = dns.name.from_text(zone)
    [served] = [z for z in signedTree().zones if z.origin == origin]
    return {origin: served.get_rdataset(origin, dns.rdatatype.DNSKEY)}



class ZoneAuthorityTests(SynchronousTestCase):
    """
    The answers of L{ZoneAuthority} to what a validating stub asks.
    """

    def setUp(self):
        self.authority = ZoneAuthority(treeZones())

    def ask(self, name, rdtype, **kwargs):
        return ask(self.authority, name, rdtype, **kwargs)

    def assertSigned(self, response, section, name, rdtype, signer):
        """
        The RRset is in C{section} with an RRSIG by C{signer} that verifies.
        """
        rrset = rrsetIn(section, name, rdtype)
        self.assertIsNotNone(rrset, f"no {dns.rdatatype.to_text(rdtype)} {name}")
        sigs = rrsetIn(section, name, dns.rdatatype.RRSIG, covers=rdtype)
        self.assertIsNotNone(sigs, f"no RRSIG over {dns.rdatatype.to_text(rdtype)} {name}")
        self.assertEqual({dns.name.from_text(signer)}, {sig.signer for sig in sigs})
        dns.dnssec.validate(rrset, sigs, keysOf(signer), now=NOW)
        return rrset

    def test_exactMatch(self):
        """
        An existing RRset is answered authoritatively with its RRSIG; RD is
        echoed, RA never set.
        """
        response = self.ask("_xmpp-server._tcp.sender.example.", "SRV")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertFalse(response.flags & (dns.flags.RD | dns.flags.RA | dns.flags.TC))
        srv = self.assertSigned(response, response.answer, "_xmpp-server._tcp.sender.example.",
                                dns.rdatatype.SRV, "sender.example.")
        self.assertEqual("xmpp1.originating.example.", srv[0].target.to_text())
        self.assertEqual([], response.authority)
        response = self.ask("_xmpp-server._tcp.sender.example.", "SRV", rd=True)
        self.assertTrue(response.flags & dns.flags.RD)
        self.assertFalse(response.flags & dns.flags.RA)

    def test_caseInsensitive(self):
        """
        Names match whatever their case; the question is echoed as asked.
        """
        response = self.ask("_XMPP-server._TCP.Sender.Example.", "SRV")
        self.assertEqual("_XMPP-server._TCP.Sender.Example.",
                         response.question[0].name.to_text())
        self.assertIsNotNone(rrsetIn(response.answer, "_xmpp-server._tcp.sender.example.",
                                     dns.rdatatype.SRV))

    def test_ednsEchoed(self):
        """
        EDNS0 is answered with our payload and the DO bit of the query.
        """
        response = self.ask("sender.example.", "DNSKEY")
        self.assertEqual(0, response.edns)
        self.assertEqual(DEFAULT_PAYLOAD, response.payload)
        self.assertTrue(response.ednsflags & dns.flags.DO)
        response = self.ask("sender.example.", "DNSKEY", dnssec=False)
        self.assertEqual(0, response.edns)
        self.assertFalse(response.ednsflags & dns.flags.DO)

    def test_noSignaturesWithoutDO(self):
        """
        Without the DO bit, or without EDNS0, no RRSIG or NSEC is sent, and
        without EDNS0 no OPT record either.
        """
        for kwargs in [dict(dnssec=False), dict(dnssec=False, edns=-1)]:
            for name, rdtype in [("_xmpp-server._tcp.sender.example.", "SRV"),
                                 ("nothing.sender.example.", "A")]:
                response = self.ask(name, rdtype, **kwargs)
                types = {r.rdtype for r in response.answer + response.authority}
                self.assertNotIn(dns.rdatatype.RRSIG, types)
                self.assertNotIn(dns.rdatatype.NSEC, types)
        self.assertEqual(-1, self.ask("sender.example.", "SOA", dnssec=False, edns=-1).edns)

    def test_dnskey(self):
        """
        The DNSKEY RRset of an apex is answered, signed by itself.
        """
        response = self.ask("example.", "DNSKEY")
        self.assertSigned(response, response.answer, "example.", dns.rdatatype.DNSKEY,
                          "example.")

    def test_nodata(self):
        """
        NODATA: the SOA and the NSEC of the name, whose bitmap lacks the type,
        all signed.
        """
        name = "_xmpp-server._tcp.sender.example."
        response = self.ask(name, "TXT")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertEqual([], response.answer)
        self.assertSigned(response, response.authority, "sender.example.", dns.rdatatype.SOA,
                          "sender.example.")
        nsec = self.assertSigned(response, response.authority, name, dns.rdatatype.NSEC,
                                 "sender.example.")
        types = typeBitmap(nsec[0])
        self.assertIn(dns.rdatatype.SRV, types)
        self.assertNotIn(dns.rdatatype.TXT, types)

    def test_emptyNonTerminal(self):
        """
        An empty non-terminal is NODATA, proven by the NSEC that covers it and
        ends below it.
        """
        name = dns.name.from_text("_tcp.sender.example.")
        response = self.ask(name, "A")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        [nsec] = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
        self.assertLess(nsec.name, name)
        self.assertTrue(nsec[0].next.is_subdomain(name))

    def test_nxdomain(self):
        """
        NXDOMAIN: the SOA and NSEC records covering the name and the
        wildcard at its closest encloser, all signed.
        """
        name = dns.name.from_text("nothing.sender.example.")
        response = self.ask(name, "A")
        self.assertEqual(dns.rcode.NXDOMAIN, response.rcode())
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertSigned(response, response.authority, "sender.example.", dns.rdatatype.SOA,
                          "sender.example.")
        nsecs = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
        for nsec in nsecs:
            self.assertSigned(response, response.authority, nsec.name, dns.rdatatype.NSEC,
                              "sender.example.")

        def covers(nsec, target):
            owner, following = nsec.name, nsec[0].next
            if owner < following:
                return owner < target < following
            return target > owner or target < following

        self.assertTrue(any(covers(nsec, name) for nsec in nsecs))
        wildcard = dns.name.from_text("*.sender.example.")
        self.assertTrue(any(covers(nsec, wildcard) for nsec in nsecs))

    def test_dsFromParent(self):
        """
        A DS query for a zone apex is answered by the parent zone, signed by
        it, even though the child is served too.
        """
        response = self.ask("sender.example.", "DS")
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertSigned(response, response.answer, "sender.example.", dns.rdatatype.DS,
                          "example.")
        response = self.ask("c.b.example.", "DS")
        self.assertSigned(response, response.answer, "c.b.example.", dns.rdatatype.DS,
                          "b.example.")

    def test_dsOfTopZone(self):
        """
        With no parent served, the DS of a zone's apex is NODATA from the zone
        itself.
        """
        response = self.ask("example.", "DS")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertEqual([], response.answer)
        nsec = self.assertSigned(response, response.authority, "example.", dns.rdatatype.NSEC,
                                 "example.")
        self.assertNotIn(dns.rdatatype.DS, typeBitmap(nsec[0]))

    def test_insecureDelegation(self):
        """
        The DS query for an unsigned child is NODATA from the parent, with
        the parent's NSEC at the cut listing NS but not DS.
        """
        response = self.ask("unsigned.example.", "DS")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertEqual([], response.answer)
        nsec = self.assertSigned(response, response.authority, "unsigned.example.",
                                 dns.rdatatype.NSEC, "example.")
        types = typeBitmap(nsec[0])
        self.assertIn(dns.rdatatype.NS, types)
        self.assertNotIn(dns.rdatatype.DS, types)
        self.assertNotIn(dns.rdatatype.SOA, types)

    def test_unsignedZone(self):
        """
        An unsigned zone is answered without RRSIGs, even with DO.
        """
        response = self.ask("_xmpp-server._tcp.unsigned.example.", "SRV")
        self.assertTrue(response.flags & dns.flags.AA)
        self.assertEqual([dns.rdatatype.SRV], [r.rdtype for r in response.answer])
        response = self.ask("nothing.unsigned.example.", "SRV")
        self.assertEqual(dns.rcode.NXDOMAIN, response.rcode())
        self.assertEqual([dns.rdatatype.SOA], [r.rdtype for r in response.authority])

    def test_referral(self):
        """
        Below a zone cut whose child is not served, the answer is a
        non-authoritative referral: the NS RRset, with the signed DS RRset or
        the signed NSEC proving there is none.
        """
        authority = ZoneAuthority(treeZones(without=["sender.example.",
                                                     "unsigned.example."]))
        response = ask(authority, "_xmpp-server._tcp.sender.example.", "SRV")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertFalse(response.flags & dns.flags.AA)
        self.assertEqual([], response.answer)
        self.assertIsNotNone(rrsetIn(response.authority, "sender.example.", dns.rdatatype.NS))
        self.assertSigned(response, response.authority, "sender.example.", dns.rdatatype.DS,
                          "example.")
        response = ask(authority, "_xmpp-server._tcp.unsigned.example.", "SRV")
        self.assertFalse(response.flags & dns.flags.AA)
        self.assertIsNotNone(rrsetIn(response.authority, "unsigned.example.",
                                     dns.rdatatype.NS))
        self.assertSigned(response, response.authority, "unsigned.example.",
                          dns.rdatatype.NSEC, "example.")

    def test_referralGlue(self):
        """
        A referral carries the addresses of name servers inside the zone.
        """
        parent = dns.zone.from_text(
            "@ 3600 IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
            "@ 3600 IN NS ns1\n"
            "ns1 3600 IN A 192.0.2.1\n"
            "child 3600 IN NS ns1.child\n"
            "ns1.child 3600 IN A 192.0.2.2\n",
            origin="glue.test.", relativize=False)
        response = ask(ZoneAuthority([parent]), "www.child.glue.test.", "A")
        self.assertFalse(response.flags & dns.flags.AA)
        glue = rrsetIn(response.additional, "ns1.child.glue.test.", dns.rdatatype.A)
        self.assertEqual(["192.0.2.2"], [rd.address for rd in glue])

    def test_wildcard(self):
        """
        A wildcard expansion is answered under the name asked, with the
        wildcard's RRSIG and the NSEC proving the name itself absent.
        """
        name = dns.name.from_text("_xmpp-server._tcp.wild.example.")
        response = self.ask(name, "SRV")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        srv = rrsetIn(response.answer, name, dns.rdatatype.SRV)
        sigs = rrsetIn(response.answer, name, dns.rdatatype.RRSIG, covers=dns.rdatatype.SRV)
        self.assertEqual("xmpp1.wild.example.", srv[0].target.to_text())
        self.assertLess(sigs[0].labels, len(name) - 1)
        dns.dnssec.validate(srv, sigs, keysOf("wild.example."), now=NOW)
        self.assertTrue([r for r in response.authority if r.rdtype == dns.rdatatype.NSEC])

    def test_cname(self):
        """
        A CNAME is answered for any type but CNAME's own owner's other data;
        it is not followed.
        """
        name = "_xmpp-server._tcp.cname.example."
        response = self.ask(name, "SRV")
        self.assertSigned(response, response.answer, name, dns.rdatatype.CNAME, "cname.example.")
        self.assertEqual(2, len(response.answer))

    def test_any(self):
        """
        ANY is answered with every RRset of the name.
        """
        response = self.ask("sender.example.", "ANY")
        types = {r.rdtype for r in response.answer if r.rdtype != dns.rdatatype.RRSIG}
        self.assertTrue({dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.DNSKEY,
                         dns.rdatatype.NSEC} <= types)

    def test_refused(self):
        """
        Names outside every zone, other classes and zone transfers are
        REFUSED, without the AA bit.
        """
        for name, rdtype, rdclass in [("example.org.", "A", dns.rdataclass.IN),
                                      (".", "NS", dns.rdataclass.IN),
                                      ("version.bind.", "TXT", dns.rdataclass.CH),
                                      ("example.", "AXFR", dns.rdataclass.IN)]:
            response = self.ask(name, rdtype, rdclass=rdclass)
            self.assertEqual(dns.rcode.REFUSED, response.rcode(), name)
            self.assertFalse(response.flags & dns.flags.AA)
            self.assertEqual([], response.answer + response.authority)

    def test_notImplemented(self):
        """
        Opcodes other than QUERY get NOTIMP.
        """
        query = makeQuery("example.", "SOA")
        query.set_opcode(dns.opcode.NOTIFY)
        response = dns.message.from_wire(self.authority.respondToWire(query.to_wire()))
        self.assertEqual(dns.rcode.NOTIMP, response.rcode())

    def test_badVersion(self):
        """
        An EDNS version above 0 gets BADVERS.
        """
        query = dns.message.make_query("example.", "SOA", use_edns=1)
        response = dns.message.from_wire(self.authority.respondToWire(query.to_wire()))
        self.assertEqual(dns.rcode.BADVERS, response.rcode())
        self.assertEqual(0, response.edns)

    def test_formatError(self):
        """
        A query that does not parse gets FORMERR with its ID; fewer bytes
        than a header, and responses, get no answer at all. A query without
        a question is a format error too.
        """
        query = makeQuery("example.", "SOA")
        query.id = 4711
        wire = query.to_wire()[:-3]
        response = dns.message.from_wire(self.authority.respondToWire(wire))
        self.assertEqual((4711, dns.rcode.FORMERR), (response.id, response.rcode()))
        self.assertTrue(response.flags & dns.flags.QR)
        self.assertIsNone(self.authority.respondToWire(b"\x12\x34\x00"))
        empty = dns.message.Message(id=4712)
        response = dns.message.from_wire(self.authority.respondToWire(empty.to_wire()))
        self.assertEqual((4712, dns.rcode.FORMERR), (response.id, response.rcode()))
        answer = self.authority.respondToWire(makeQuery("example.", "SOA").to_wire())
        self.assertIsNone(self.authority.respondToWire(answer))

    def test_truncation(self):
        """
        Over UDP, a response larger than 512 octets without EDNS0, or than
        the smaller of both payloads with it, is sent empty with TC set; over
        TCP it is sent whole.
        """
        authority = ZoneAuthority([bigZone()])
        for kwargs in [dict(edns=-1), dict(payload=4096)]:
            response = ask(authority, "big.big.test.", "TXT", udp=True, **kwargs)
            self.assertTrue(response.flags & dns.flags.TC, kwargs)
            self.assertEqual([], response.answer)
            self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertEqual(0, response.edns)
        response = ask(authority, "small.big.test.", "TXT", udp=True, edns=-1)
        self.assertFalse(response.flags & dns.flags.TC)
        self.assertEqual(1, len(response.answer))
        response = ask(authority, "big.big.test.", "TXT", udp=False, edns=-1)
        self.assertFalse(response.flags & dns.flags.TC)
        self.assertEqual(10, len(response.answer[0]))

    def test_relativizedZone(self):
        """
        A zone with relative names is served like one with absolute names.
        """
        zone = dns.zone.from_text(bigZone().to_text(), origin="big.test.", relativize=True)
        response = ask(ZoneAuthority([zone]), "small.big.test.", "TXT")
        self.assertEqual(dns.rcode.NOERROR, response.rcode())
        self.assertEqual("small.big.test.", response.answer[0].name.to_text())
        response = ask(ZoneAuthority([zone]), "nothing.big.test.", "TXT")
        self.assertEqual(dns.rcode.NXDOMAIN, response.rcode())

    def test_unusableZones(self):
        """
        A zone without SOA, one given twice and one signed with NSEC3 are
        refused with a message naming them.
        """
        noSOA = dns.zone.Zone("nosoa.test.", relativize=False)
        e = self.assertRaises(ValueError, ZoneAuthority, [noSOA])
        self.assertIn("nosoa.test.", str(e))
        e = self.assertRaises(ValueError, ZoneAuthority, [bigZone(), bigZone()])
        self.assertIn("twice", str(e))
        [nsec3] = [z for z in signedTree().zones
                   if z.origin == dns.name.from_text("nsec3.example.")]
        e = self.assertRaises(ValueError, ZoneAuthority, [nsec3])
        self.assertIn("NSEC3", str(e))

    def test_validatorFindsEveryStatus(self):
        """
        DNA's validator, asking this authority with RD clear, finds for every
        test domain the status the tree was built to have: secure, insecure
        (NSEC-proven unsigned delegation), bogus, NODATA, NXDOMAIN, wildcard
        and CNAME answers.
        """

        def query(name, rdtype):
            return defer.succeed(ask(self.authority, name, rdtype))

        validator = Validator(query, signedTree().anchors(), maxZones=0)
        statuses = nsecStatuses()
        self.assertIn("unsigned.example", statuses)
        found = {}
        for domain in statuses:
            validation = self.successResultOf(
                validator.resolve(srvName(domain), dns.rdatatype.SRV, NOW))
            found[domain] = validation.status
        self.assertEqual(statuses, found)



class _Server:
    """
    What the protocols need of a L{ZoneServer}.
    """

    def __init__(self, zones):
        self.authority = ZoneAuthority(zones)
        self._connections = set()



class _DatagramTransport:
    def __init__(self):
        self.written = []

    def write(self, data, address):
        self.written.append((data, address))



class ProtocolTests(SynchronousTestCase):
    """
    The UDP and TCP protocols, in memory.
    """

    def setUp(self):
        self.server = _Server([bigZone()])

    def test_datagram(self):
        """
        A datagram query is answered to its source; garbage is not.
        """
        protocol = DNSDatagramProtocol(self.server)
        protocol.transport = _DatagramTransport()
        query = makeQuery("small.big.test.", "TXT")
        protocol.datagramReceived(query.to_wire(), ("127.0.0.1", 4242))
        protocol.datagramReceived(b"\x00", ("127.0.0.1", 4243))
        [(wire, address)] = protocol.transport.written
        self.assertEqual(("127.0.0.1", 4242), address)
        self.assertEqual(query.id, dns.message.from_wire(wire).id)

    def test_streamPipelined(self):
        """
        Length-prefixed queries, split anywhere and pipelined, are answered in
        order, each framed.
        """
        clock = Clock()
        protocol = DNSStreamProtocol(self.server, clock, 10)
        transport = StringTransport()
        protocol.makeConnection(transport)
        queries = [makeQuery(name, "TXT") for name in ["big.big.test.", "small.big.test."]]
        data = b"".join(len(q.to_wire()).to_bytes(2, "big") + q.to_wire() for q in queries)
        for i in range(len(data)):
            protocol.dataReceived(data[i:i + 1])
        out = transport.value()
        replies = []
        while out:
            length = int.from_bytes(out[:2], "big")
            replies.append(dns.message.from_wire(out[2:2 + length]))
            out = out[2 + length:]
        self.assertEqual([q.id for q in queries], [r.id for r in replies])
        self.assertEqual(10, len(replies[0].answer[0]))
        self.assertFalse(replies[0].flags & dns.flags.TC)

    def test_streamIdle(self):
        """
        A TCP connection idle for the timeout is closed; activity postpones
        it, and a lost connection leaves no timer.
        """
        clock = Clock()
        protocol = DNSStreamProtocol(self.server, clock, 10)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIn(protocol, self.server._connections)
        clock.advance(9)
        protocol.dataReceived(b"\x00")
        clock.advance(9)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
        protocol = DNSStreamProtocol(self.server, clock, 10)
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(None)
        self.assertEqual([], clock.getDelayedCalls())
        self.assertNotIn(protocol, self.server._connections)



class _Port:
    def __init__(self, kind, port):
        self._address = IPv4Address(kind, "127.0.0.1", port)
        self.listening = True

    def getHost(self):
        return self._address

    def stopListening(self):
        self.listening = False



class _BusyReactor(Clock):
    """
    A reactor where UDP ports are handed out from 40000 up and the TCP ports
    in C{busy} are taken.
    """

    def __init__(self, busy):
        Clock.__init__(self)
        self._busy = busy
        self._free = iter(range(40000, 41000))
        self.udp = []
        self.tcp = []

    def listenUDP(self, port, protocol, interface=""):
        self.udp.append(_Port("UDP", port or next(self._free)))
        return self.udp[-1]

    def listenTCP(self, port, factory, interface=""):
        if port in self._busy:
            raise CannotListenError(interface, port, OSError("in use"))
        self.tcp.append(_Port("TCP", port))
        return self.tcp[-1]



class ListenTests(SynchronousTestCase):
    """
    Getting one port number for both UDP and TCP.
    """

    def test_retry(self):
        """
        When TCP cannot have the UDP port the system picked, that port is
        closed and another tried.
        """
        reactor = _BusyReactor(busy={40000, 40001})
        server = ZoneServer(reactor)
        self.assertEqual(("127.0.0.1", 40002),
                         self.successResultOf(server.listen("127.0.0.1")))
        self.assertEqual([False, False, True], [port.listening for port in reactor.udp])
        self.successResultOf(server.stopListening())
        self.assertEqual([False, False], [port.listening for port in reactor.udp[2:] + reactor.tcp])

    def test_givenPortTaken(self):
        """
        A port given explicitly is not replaced: listening fails, and the UDP
        port is closed.
        """
        reactor = _BusyReactor(busy={5300})
        server = ZoneServer(reactor)
        self.failureResultOf(server.listen("127.0.0.1", 5300), CannotListenError)
        self.assertEqual([False], [port.listening for port in reactor.udp])
        self.assertIsNone(server.address)

    def test_attempts(self):
        """
        After C{attempts} ports, listening fails.
        """
        reactor = _BusyReactor(busy=set(range(40000, 41000)))
        server = ZoneServer(reactor)
        self.failureResultOf(server.listen("127.0.0.1", attempts=3), CannotListenError)
        self.assertEqual(3, len(reactor.udp))
