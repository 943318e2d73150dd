"""
Tests for L{dna.dns.client}.

The unit tests drive L{DNSClient} over a memory reactor with fake UDP ports
and string TCP transports; L{RealServerTests} ask the knotd and unbound of
L{tests.integration.dnsenv} over loopback.
"""

import struct

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from dna.dns import client as dnsclient
from dna.dns.addresses import AddressResolver
from dna.dns.client import DNSClient
from dna.error import (
    DNSInvalidQuery,
    DNSMalformed,
    DNSQueryError,
    DNSTimeout,
    DNSUnreachable,
)
from dna.interfaces import IAddressResolver, IDNSClient
from dna.testing.fakes import FakeValidatingResolver

SERVER = ("127.0.0.53", 5300)


OTHER = ("127.0.0.54", 5300)


NAME = "_xmpp-server._tcp.sender.example."



class FakeUDPPort:
    """
    A UDP port of L{UDPMemoryReactor}: records what is sent.

    @ivar connectedTo: C{(host, port)} given to C{connect}, or L{None}.
    @ivar written: The datagrams written.
    @ivar stopped: Whether C{stopListening} was called.
    """

    def __init__(self, protocol, interface, number):
        self.protocol = protocol
        self.interface = interface
        self.number = number
        self.connectedTo = None
        self.written = []
        self.stopped = False

    def connect(self, host, port):
        self.connectedTo = (host, port)

    def write(self, datagram, address=None):
        self.written.append(datagram)

    def stopListening(self):
        self.stopped = True
        self.protocol.doStop()

    def getHost(self):
        return IPv4Address("UDP", "0.0.0.0", self.number)

    def query(self):
        """
        The last query sent, parsed.
        """
        return dns.message.from_wire(self.written[-1])



class UDPMemoryReactor(MemoryReactorClock):
    """
    L{MemoryReactorClock} with C{listenUDP}, handing out L{FakeUDPPort}s.
    """

    def __init__(self):
        super().__init__()
        self.udpPorts = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        udpPort = FakeUDPPort(protocol, interface, 40000 + len(self.udpPorts))
        self.udpPorts.append(udpPort)
        protocol.makeConnection(udpPort)
        return udpPort



def makeResponse(query, rcode=dns.rcode.NOERROR, flags=0, answer=True):
    """
    A response to C{query}, with one SRV record unless C{answer} is false.
    """
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags |= flags
    if answer and rcode == dns.rcode.NOERROR:
        response.answer.append(dns.rrset.from_text(
            query.question[0].name, 300, "IN", "SRV",
            "0 5 5269 xmpp1.originating.example."))
    return response



class ClientTestsMixin:
    """
    Helpers to run a L{DNSClient} over a L{UDPMemoryReactor}.
    """

    def setUp(self):
        self.reactor = UDPMemoryReactor()

    def makeClient(self, servers=(SERVER,), **kwargs):
        return DNSClient(list(servers), reactor=self.reactor, **kwargs)

    def reply(self, port, response, source=None):
        """
        Deliver C{response} (a message or bytes) on C{port}, from the
        server it is connected to unless C{source} says otherwise.
        """
        if isinstance(response, dns.message.Message):
            response = response.to_wire()
        port.protocol.datagramReceived(response, source or port.connectedTo)

    def assertClean(self):
        """
        Every port is closed and no timer is left.
        """
        self.assertEqual([p.stopped for p in self.reactor.udpPorts],
                         [True] * len(self.reactor.udpPorts))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def connectTCP(self, index=-1):
        """
        Complete the TCP connection attempt C{index}.

        @return: C{(protocol, transport)}.
        """
        host, port, factory, timeout, _ = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def tcpQuery(self, transport):
        """
        The query sent over C{transport}, checking its length prefix.
        """
        data = transport.value()
        (length,) = struct.unpack("!H", data[:2])
        self.assertEqual(length, len(data) - 2)
        return dns.message.from_wire(data[2:])



class InterfaceTests(unittest.SynchronousTestCase):
    """
    The real DNS client and address resolver and their fakes provide their
    interfaces.
    """

    def test_dnsClients(self):
        """
        L{DNSClient}, L{FakeDNSClient} and L{FakeValidatingResolver} provide
        L{IDNSClient}, with the servers they ask.
        """
        from tests.unit.test_dnssec import signedTree

        tree = signedTree()
        real = DNSClient([SERVER, ("0:0::1", 53)], UDPMemoryReactor())
        fake = tree.client()
        resolver = FakeValidatingResolver(fake, tree.anchors(), Clock())
        for client in [real, fake, resolver]:
            self.assertTrue(verifyObject(IDNSClient, client))
        self.assertEqual(real.servers, (SERVER, ("::1", 53)))
        self.assertEqual(fake.servers, (("127.0.0.1", 53),))
        self.assertEqual(resolver.servers, (("127.0.0.1", 53),))

    def test_addressResolver(self):
        """
        L{AddressResolver} provides L{IAddressResolver}.
        """
        resolver = AddressResolver(hosts={"xmpp.example": ("127.0.0.9", None)})
        self.assertTrue(verifyObject(IAddressResolver, resolver))
        self.assertEqual(self.successResultOf(resolver("xmpp.example", 5269)),
                         [("127.0.0.9", 5269)])



class QueryTests(ClientTestsMixin, unittest.TestCase):
    """
    What L{DNSClient.query} puts on the wire and what it accepts back.
    """

    def test_flags(self):
        """
        A query has EDNS0 with the UDP payload size, the DO, AD and RD bits,
        and no CD bit, and goes to the server over a connected UDP port.
        """
        client = self.makeClient(maxUDPSize=1400)
        client.query(NAME, "SRV")
        [port] = self.reactor.udpPorts
        self.assertEqual(port.connectedTo, SERVER)
        self.assertEqual(port.interface, "")
        query = port.query()
        self.assertEqual(query.edns, 0)
        self.assertEqual(query.payload, 1400)
        self.assertTrue(query.ednsflags & dns.flags.DO)
        self.assertEqual(query.flags & (dns.flags.AD | dns.flags.RD
                                        | dns.flags.CD | dns.flags.QR),
                         dns.flags.AD | dns.flags.RD)
        self.assertEqual(query.question[0].name, dns.name.from_text(NAME))
        self.assertEqual(query.question[0].rdtype, dns.rdatatype.SRV)

    def test_noDNSSEC(self):
        """
        With C{dnssec=False} the query keeps EDNS0 but clears DO.
        """
        self.makeClient().query(NAME, dns.rdatatype.SRV, dnssec=False)
        query = self.reactor.udpPorts[0].query()
        self.assertEqual(query.edns, 0)
        self.assertFalse(query.ednsflags & dns.flags.DO)

    def test_checkingDisabledNoRecursion(self):
        """
        C{checkingDisabled} sets CD, C{recursionDesired=False} clears RD.
        """
        self.makeClient().query(NAME, "SRV", checkingDisabled=True,
                                recursionDesired=False)
        query = self.reactor.udpPorts[0].query()
        self.assertTrue(query.flags & dns.flags.CD)
        self.assertFalse(query.flags & dns.flags.RD)
        self.assertTrue(query.flags & dns.flags.AD)

    def test_randomID(self):
        """
        The message ID comes from L{secrets}.
        """
        self.patch(dnsclient.secrets, "randbelow", lambda n: 4242)
        self.makeClient().query(NAME, "SRV")
        self.assertEqual(self.reactor.udpPorts[0].query().id, 4242)

    def test_answer(self):
        """
        The Deferred fires with the response, AD bit included; the port is
        closed and the timers cancelled.
        """
        d = self.makeClient().query(NAME, "SRV")
        [port] = self.reactor.udpPorts
        self.reply(port, makeResponse(port.query(), flags=dns.flags.AD))
        response = self.successResultOf(d)
        self.assertTrue(response.flags & dns.flags.AD)
        self.assertEqual(response.answer[0].rdtype, dns.rdatatype.SRV)
        self.assertClean()

    def test_answerBeforePortClosed(self):
        """
        The answer does not wait for the port to finish closing (a reactor
        turn later with a real port): the Deferred fires as it is asked to
        close.
        """
        d = self.makeClient().query(NAME, "SRV")
        [port] = self.reactor.udpPorts
        closing = []

        def stopListening():
            port.stopped = True
            closing.append(defer.Deferred())
            return closing[-1]

        port.stopListening = stopListening
        self.reply(port, makeResponse(port.query()))
        self.assertEqual(dns.rcode.NOERROR, self.successResultOf(d).rcode())
        self.assertEqual(1, len(closing))
        closing[0].callback(None)
        self.assertClean()

    def test_anyRcode(self):
        """
        NXDOMAIN is an answer like any other.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), dns.rcode.NXDOMAIN))
        self.assertEqual(self.successResultOf(d).rcode(), dns.rcode.NXDOMAIN)

    def test_questionCaseInsensitive(self):
        """
        The question may come back in another case (RFC 4343).
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        query = port.query()
        response = makeResponse(query)
        response.question = [dns.rrset.RRset(
            dns.name.from_text(NAME.upper()), dns.rdataclass.IN,
            dns.rdatatype.SRV)]
        self.reply(port, response)
        self.successResultOf(d)

    def test_ignoreWrongSource(self):
        """
        Replies from another address or port are ignored; the real one is
        still accepted.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        response = makeResponse(port.query())
        self.reply(port, response, source=("127.0.0.99", SERVER[1]))
        self.reply(port, response, source=(SERVER[0], 53))
        self.assertNoResult(d)
        self.reply(port, response)
        self.successResultOf(d)

    def test_ignoreWrongID(self):
        """
        A reply with another ID is ignored.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        response = makeResponse(port.query())
        response.id ^= 1
        self.reply(port, response)
        self.assertNoResult(d)
        response.id ^= 1
        self.reply(port, response)
        self.successResultOf(d)

    def test_ignoreWrongQuestion(self):
        """
        Replies for another name, type or class, with no question or that
        are not responses are ignored.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        query = port.query()
        for name, rdtype, rdclass in [
                ("_xmpp-server._tcp.target.example.", "SRV", "IN"),
                (NAME, "TXT", "IN"),
                (NAME, "SRV", "CH")]:
            other = dns.message.make_query(name, rdtype, rdclass)
            other.id = query.id
            self.reply(port, dns.message.make_response(other))
        empty = makeResponse(query)
        empty.question = []
        self.reply(port, empty)
        self.reply(port, query)
        self.assertNoResult(d)
        self.reply(port, makeResponse(query))
        self.successResultOf(d)

    def test_ignoreGarbage(self):
        """
        Short datagrams and garbage with the right ID are ignored.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        query = port.query()
        self.reply(port, b"")
        self.reply(port, b"\x00\x01")
        self.reply(port, struct.pack("!H", query.id) + b"\xff" * 40)
        self.assertNoResult(d)
        self.reply(port, makeResponse(query))
        self.successResultOf(d)

    def test_garbageOnly(self):
        """
        If a server only sends garbage, the query fails with
        L{DNSMalformed} once the tries are over.
        """
        d = self.makeClient(retries=1).query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        header = struct.pack("!6H", port.query().id, 0x8000, 1, 0, 0, 0)
        self.reply(port, header + b"\x05abc")
        self.reactor.advance(1.0)
        failure = self.failureResultOf(d, DNSMalformed)
        self.assertIn("unparsable", failure.value.reason)
        self.assertClean()

    def test_hostNamesRefused(self):
        """
        Servers are IP literals; a host name is a L{ValueError}.
        """
        self.assertRaises(ValueError, DNSClient, [("localhost", 53)],
                          reactor=self.reactor)
        self.assertRaises(ValueError, DNSClient, [], reactor=self.reactor)

    def test_invalidQuery(self):
        """
        A name or type that cannot be put in a query fails the Deferred
        with L{DNSInvalidQuery}, without sending anything.
        """
        client = self.makeClient()
        for name, rdtype in [("x" * 64 + ".example.", "SRV"),
                             (".".join(["abcdefgh"] * 30), "SRV"),
                             ("a..example.", "SRV"),
                             (NAME, "NOSUCHTYPE")]:
            failure = self.failureResultOf(client.query(name, rdtype),
                                           DNSInvalidQuery)
            self.assertIsInstance(failure.value, DNSQueryError)
        self.assertEqual(self.reactor.udpPorts, [])

    def test_ipv6(self):
        """
        An IPv6 server is asked from an IPv6 port; its reply is accepted
        with the address in any spelling and the flow and scope fields.
        """
        d = self.makeClient(servers=[("0:0::1", 53)]).query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.assertEqual(port.interface, "::")
        self.assertEqual(port.connectedTo, ("::1", 53))
        self.reply(port, makeResponse(port.query()), source=("::1", 53, 0, 0))
        self.successResultOf(d)

    def test_exceptionsDoNotEscape(self):
        """
        An unexpected error while handling a reply fails the query and is
        logged, instead of reaching the reactor.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]

        def broken(*args, **kwargs):
            raise RuntimeError("broken")

        queryID = port.query().id
        self.patch(dnsclient.dns.message, "from_wire", broken)
        self.reply(port, struct.pack("!H", queryID) + b"\x00" * 10)
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertClean()



class RetryTests(ClientTestsMixin, unittest.TestCase):
    """
    Timeouts, retries, the deadline and failing over between servers.
    """

    def test_retryWithNewPortAndID(self):
        """
        After the timeout the server is asked again, from a new port with
        a new ID; the late reply to the first try is still accepted.
        """
        ids = iter([1111, 2222])
        self.patch(dnsclient.secrets, "randbelow", lambda n: next(ids))
        d = self.makeClient(timeout=1.0, retries=2).query(NAME, "SRV")
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.udpPorts), 1)
        self.reactor.advance(0.1)
        first, second = self.reactor.udpPorts
        self.assertEqual((first.query().id, second.query().id), (1111, 2222))
        self.assertEqual(second.connectedTo, SERVER)
        self.reply(first, makeResponse(first.query()))
        self.successResultOf(d)
        self.assertClean()

    def test_timeout(self):
        """
        When every try of every round timed out, the query fails with
        L{DNSTimeout} naming the servers.
        """
        d = self.makeClient([SERVER, OTHER], timeout=1.0, retries=2,
                            deadline=10).query(NAME, "SRV")
        self.reactor.pump([1.0] * 3)
        self.assertNoResult(d)
        self.assertEqual([p.connectedTo for p in self.reactor.udpPorts],
                         [SERVER, OTHER, SERVER, OTHER])
        self.reactor.advance(1.0)
        failure = self.failureResultOf(d, DNSTimeout)
        self.assertIsInstance(failure.value, DNSQueryError)
        self.assertEqual((failure.value.name, failure.value.rdtype),
                         (NAME, "SRV"))
        self.assertIn("127.0.0.54:5300: no reply within 1 s",
                      failure.value.reason)
        self.assertClean()

    def test_deadline(self):
        """
        The deadline ends the query with L{DNSTimeout} even if tries are
        left.
        """
        d = self.makeClient(timeout=2.0, retries=5,
                            deadline=3.0).query(NAME, "SRV")
        self.reactor.advance(2.0)
        self.reactor.advance(0.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        failure = self.failureResultOf(d, DNSTimeout)
        self.assertIn("deadline of 3 s passed", failure.value.reason)
        self.assertClean()

    def test_failover(self):
        """
        When the first server does not answer, the second one is asked.
        """
        d = self.makeClient([SERVER, OTHER]).query(NAME, "SRV")
        self.reactor.advance(1.0)
        first, second = self.reactor.udpPorts
        self.assertEqual(second.connectedTo, OTHER)
        self.reply(second, makeResponse(second.query()))
        self.successResultOf(d)
        self.assertClean()

    def test_servfailNextServer(self):
        """
        SERVFAIL or REFUSED from one server moves on to the next at once.
        """
        for rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
            self.reactor = UDPMemoryReactor()
            d = self.makeClient([SERVER, OTHER]).query(NAME, "SRV")
            first = self.reactor.udpPorts[0]
            self.reply(first, makeResponse(first.query(), rcode))
            second = self.reactor.udpPorts[1]
            self.assertEqual(second.connectedTo, OTHER)
            self.reply(second, makeResponse(second.query()))
            self.assertEqual(self.successResultOf(d).rcode(),
                             dns.rcode.NOERROR)

    def test_allRefuse(self):
        """
        If every server answers SERVFAIL or REFUSED, the query fires with
        the last answer.
        """
        d = self.makeClient([SERVER, OTHER]).query(NAME, "SRV")
        first = self.reactor.udpPorts[0]
        self.reply(first, makeResponse(first.query(), dns.rcode.SERVFAIL))
        second = self.reactor.udpPorts[1]
        self.reply(second, makeResponse(second.query(), dns.rcode.REFUSED))
        self.assertEqual(self.successResultOf(d).rcode(), dns.rcode.REFUSED)
        self.assertEqual(len(self.reactor.udpPorts), 2)
        self.assertClean()

    def test_servfailThenTimeouts(self):
        """
        A server that said SERVFAIL is not asked again; if the others never
        answer, the query fires with the SERVFAIL.
        """
        d = self.makeClient([SERVER, OTHER], retries=3).query(NAME, "SRV")
        first = self.reactor.udpPorts[0]
        self.reply(first, makeResponse(first.query(), dns.rcode.SERVFAIL))
        self.reactor.pump([1.0] * 3)
        self.assertEqual([p.connectedTo for p in self.reactor.udpPorts],
                         [SERVER, OTHER, OTHER, OTHER])
        self.assertEqual(self.successResultOf(d).rcode(), dns.rcode.SERVFAIL)
        self.assertClean()

    def test_portUnreachable(self):
        """
        ICMP port unreachable moves on to the next server at once; if every
        try is refused, the query fails with L{DNSUnreachable}.
        """
        d = self.makeClient([SERVER, OTHER]).query(NAME, "SRV")
        for i in range(4):
            self.reactor.udpPorts[i].protocol.connectionRefused()
        failure = self.failureResultOf(d, DNSUnreachable)
        self.assertIn("port unreachable", failure.value.reason)
        self.assertClean()

    def test_sendError(self):
        """
        A port that cannot be opened counts as a failed try.
        """
        def listenUDP(*args, **kwargs):
            raise OSError("no ports today")

        self.reactor.listenUDP = listenUDP
        d = self.makeClient(retries=1).query(NAME, "SRV")
        failure = self.failureResultOf(d, DNSUnreachable)
        self.assertIn("no ports today", failure.value.reason)
        self.assertEqual(self.reactor.getDelayedCalls(), [])



class TCPTests(ClientTestsMixin, unittest.TestCase):
    """
    Truncated replies are asked again over TCP.
    """

    def truncate(self, d=None, **kwargs):
        """
        Start a query and answer it with TC set.

        @return: C{(Deferred, protocol, transport)} of the TCP try.
        """
        d = self.makeClient(**kwargs).query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), flags=dns.flags.TC,
                                      answer=False))
        self.assertEqual(self.reactor.tcpClients[0][:2], SERVER)
        protocol, transport = self.connectTCP()
        return d, protocol, transport

    def test_truncated(self):
        """
        On TC the same server is asked over TCP, the query framed with its
        length; the reply may arrive one byte at a time.
        """
        d, protocol, transport = self.truncate()
        query = self.tcpQuery(transport)
        self.assertTrue(query.ednsflags & dns.flags.DO)
        wire = makeResponse(query, flags=dns.flags.AD).to_wire()
        data = struct.pack("!H", len(wire)) + wire
        for i in range(len(data)):
            self.assertNoResult(d)
            protocol.dataReceived(data[i:i + 1])
        response = self.successResultOf(d)
        self.assertTrue(response.flags & dns.flags.AD)
        self.assertFalse(transport.connected)
        self.assertClean()

    def test_truncatedUnparsable(self):
        """
        A reply with TC set that is cut in the middle of a record still
        leads to TCP.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        wire = makeResponse(port.query(), flags=dns.flags.TC).to_wire()
        self.reply(port, wire[:-5])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertNoResult(d)

    def test_tcpOversized(self):
        """
        A reply framed as larger than C{maxTCPSize}, or smaller than a
        header, is refused at once; the query fails with L{DNSMalformed}.
        """
        for length in (1000, 11):
            self.reactor = UDPMemoryReactor()
            client = self.makeClient(retries=1)
            client.maxTCPSize = 512
            d = client.query(NAME, "SRV")
            port = self.reactor.udpPorts[0]
            self.reply(port, makeResponse(port.query(), flags=dns.flags.TC))
            protocol, transport = self.connectTCP()
            protocol.dataReceived(struct.pack("!H", length) + b"\x00" * 20)
            failure = self.failureResultOf(d, DNSMalformed)
            self.assertIn(f"framed as {length} bytes", failure.value.reason)
            self.assertFalse(transport.connected)
            self.assertClean()

    def test_tcpWrongReply(self):
        """
        Over TCP a reply for another ID or question is an error of that
        server: the next one is asked.
        """
        d, protocol, transport = self.truncate(servers=[SERVER, OTHER])
        query = self.tcpQuery(transport)
        response = makeResponse(query)
        response.id ^= 1
        wire = response.to_wire()
        protocol.dataReceived(struct.pack("!H", len(wire)) + wire)
        self.assertEqual(self.reactor.udpPorts[1].connectedTo, OTHER)
        second = self.reactor.udpPorts[1]
        self.reply(second, makeResponse(second.query()))
        self.successResultOf(d)

    def test_tcpUnparsable(self):
        """
        An unparsable TCP reply fails the try with L{DNSMalformed}.
        """
        d, protocol, transport = self.truncate(retries=1)
        protocol.dataReceived(struct.pack("!H", 20) + b"\xff" * 20)
        failure = self.failureResultOf(d, DNSMalformed)
        self.assertIn("unparsable TCP reply", failure.value.reason)

    def test_tcpClosedEarly(self):
        """
        A connection closed before the whole reply fails the try.
        """
        d, protocol, transport = self.truncate(retries=1)
        protocol.dataReceived(struct.pack("!H", 100) + b"\x00" * 50)
        transport.loseConnection()
        failure = self.failureResultOf(d, DNSTimeout)
        self.assertIn("connection closed before a complete reply",
                      failure.value.reason)
        self.assertClean()

    def test_tcpConnectionFailed(self):
        """
        A refused TCP connection fails the try.
        """
        d = self.makeClient(retries=1).query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), flags=dns.flags.TC))
        host, tcpPort, factory, timeout, _ = self.reactor.tcpClients[0]
        self.assertEqual(timeout, 1.0)
        factory.clientConnectionFailed(self.reactor.connectors[0],
                                       Failure(ConnectionRefusedError()))
        failure = self.failureResultOf(d, DNSUnreachable)
        self.assertIn("TCP connection failed", failure.value.reason)
        self.assertClean()

    def test_tcpConnectError(self):
        """
        A C{connectTCP} that raises fails the try like a refused
        connection.
        """
        def connectTCP(*args, **kwargs):
            raise OSError("no connections today")

        self.reactor.connectTCP = connectTCP
        d = self.makeClient(retries=1).query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), flags=dns.flags.TC))
        failure = self.failureResultOf(d, DNSUnreachable)
        self.assertIn("no connections today", failure.value.reason)
        self.assertClean()

    def test_tcpTimeout(self):
        """
        A TCP try gets the per-try timeout; then the connection is
        aborted.
        """
        d, protocol, transport = self.truncate(retries=1)
        self.reactor.advance(1.0)
        failure = self.failureResultOf(d, DNSTimeout)
        self.assertIn("no TCP reply within 1 s", failure.value.reason)
        self.assertFalse(transport.connected)
        self.assertClean()



class CancelTests(ClientTestsMixin, unittest.TestCase):
    """
    Cancelling a query releases everything it holds.
    """

    def test_closeErrorLogged(self):
        """
        A port that fails to close is logged; the query still fires.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]

        def stopListening():
            raise RuntimeError("stuck")

        port.stopListening = stopListening
        self.reply(port, makeResponse(port.query()))
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """
        Cancelling closes the ports, cancels the timers and fails with
        L{defer.CancelledError}; a late reply is ignored.
        """
        d = self.makeClient([SERVER, OTHER]).query(NAME, "SRV")
        self.reactor.advance(1.0)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertClean()
        first = self.reactor.udpPorts[0]
        self.reply(first, makeResponse(first.query()))

    def test_cancelConnecting(self):
        """
        Cancelling while TCP connects stops the connection attempt.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), flags=dns.flags.TC))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertClean()

    def test_cancelConnected(self):
        """
        Cancelling during a TCP exchange aborts the connection.
        """
        d = self.makeClient().query(NAME, "SRV")
        port = self.reactor.udpPorts[0]
        self.reply(port, makeResponse(port.query(), flags=dns.flags.TC))
        protocol, transport = self.connectTCP()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertFalse(transport.connected)
        self.assertClean()


class QueryPortLogTests(unittest.TestCase):
    """
    L{dnsclient.isQueryPortEvent} knows the lines Twisted really writes for
    the port of a query.
    """

    def test_realPort(self):
        """
        Opening and closing the UDP port of a query on the reactor writes
        two events, both recognised; others are not.
        """
        from twisted.internet import reactor
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        attempt = dnsclient._UDPTry(None, ("127.0.0.1", 53), 1)
        attempt.closing = True
        port = reactor.listenUDP(0, attempt, interface="127.0.0.1")
        number = port.getHost().port

        def closed(ignored):
            mine = [e for e in events if str(number) in repr(e.get("message"))]
            self.assertEqual(2, len(mine), mine)
            self.assertTrue(all(dnsclient.isQueryPortEvent(e) for e in mine))
            self.assertFalse(dnsclient.isQueryPortEvent(
                {"log_namespace": "log_legacy", "message": ("Factory starting on 5",)}))
            self.assertFalse(dnsclient.isQueryPortEvent(
                {"log_namespace": "dna", "message": ("(UDP Port 5 Closed)",)}))

        return defer.maybeDeferred(port.stopListening).addCallback(closed)
