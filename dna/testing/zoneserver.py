"""
A small authoritative DNS server for DNSSEC-signed zones, on Twisted UDP and
TCP: what a validating stub such as L{dna.dns.dnssec.walker.Validator}
(DNA's secure SRV lookup, draft-ietf-xmpp-dna-01 section 5 step 2) asks an
authoritative server, answered from dnspython L{dns.zone.Zone} objects
signed in-process with L{dns.dnssec.sign_zone} (NSEC).

Its one job is serving zones; it is meant for demonstrations and tests on
loopback, not for the Internet (no rate limiting, no zone transfers, no
NSEC3). What it answers:

  - RFC 1034 section 4.3.2: exact matches (with their RRSIGs when DO is set,
    RFC 4035 section 3.1.1), wildcard expansions, CNAMEs (not followed: the
    stub asks again), referrals at zone cuts of zones not served here, with
    the DS RRset or the NSEC proving there is none (RFC 4035 section 3.1.4),
    and glue.
  - NODATA and NXDOMAIN with the SOA and the NSEC records that prove them
    (RFC 4035 section 3.1.3), empty non-terminals included.
  - DS from the parent side of a zone cut: the closest enclosing zone served
    here that is not the child (RFC 4035 section 3.1.4.1); only the child
    itself answers when no parent is served.
  - REFUSED for names outside every zone, for classes other than IN and for
    zone transfers; NOTIMP for opcodes other than QUERY; FORMERR for what
    does not parse; BADVERS for EDNS versions above 0. Responses are never
    answered.
  - EDNS0 (RFC 6891) echoed with the DO bit (RFC 3225); over UDP a response
    larger than the requestor's payload (512 octets without EDNS) is sent
    empty with TC set, for a retry over TCP (RFC 7766, length-prefixed
    framing of RFC 1035 section 4.2.2, pipelined queries answered in order).

The answers are decided by L{ZoneAuthority}, a pure function of the zones and
the query; L{ZoneServer} carries them over the network.
"""

import bisect
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

_log = Logger()

#: The EDNS0 UDP payload advertised, and the most sent over UDP (the DNS
#: flag day 2020 figure, which avoids IP fragmentation).
DEFAULT_PAYLOAD = 1232

#: Seconds a TCP connection may stay idle before it is closed (RFC 7766
#: section 6.2.3).
DEFAULT_IDLE_TIMEOUT = 10.0

_HEADER_SIZE = 12
_MIN_UDP = 512
_MAX_TCP = 65535

_IN = dns.rdataclass.IN
_DS = dns.rdatatype.DS
_NS = dns.rdatatype.NS
_SOA = dns.rdatatype.SOA
_NSEC = dns.rdatatype.NSEC
_RRSIG = dns.rdatatype.RRSIG
_CNAME = dns.rdatatype.CNAME
_ANY = dns.rdatatype.ANY
_GLUE = (dns.rdatatype.A, dns.rdatatype.AAAA)
_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def _rrset(owner, rdataset):
    """
    An RRset named C{owner} holding a copy of C{rdataset}.
    """
    rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    rrset.update(rdataset)
    return rrset


class _ServedZone:
    """
    The answers of one zone.

    @ivar origin: The zone's apex (absolute).
    """

    def __init__(self, zone):
        """
        @param zone: A L{dns.zone.Zone} of class IN with an absolute origin
            and an SOA record, unsigned or signed with NSEC; relativized or
            not.
        @raise ValueError: When it is not.
        """
        origin = zone.origin
        if origin is None or not origin.is_absolute():
            raise ValueError("a served zone needs an absolute origin")
        if zone.rdclass != _IN:
            raise ValueError(f"zone {origin} is not of class IN")
        if zone.get_rdataset(origin, _SOA) is None:
            raise ValueError(f"zone {origin} has no SOA record")
        if zone.get_rdataset(origin, dns.rdatatype.NSEC3PARAM) is not None:
            raise ValueError(f"zone {origin} is signed with NSEC3: only NSEC is served")
        self.zone = zone
        self.origin = origin
        names = [name.derelativize(origin) for name in zone.nodes]
        # DNSSEC canonical order (RFC 4034 section 6.1): a name's
        # descendants sort right after it.
        self._names = sorted(names)
        self._nsecOwners = sorted(
            name for name in names if zone.get_rdataset(name, _NSEC) is not None)
        self._cuts = frozenset(
            name for name in names
            if name != origin and zone.get_rdataset(name, _NS) is not None)

    def _exists(self, name):
        """
        Whether C{name} owns records or is an empty non-terminal.
        """
        i = bisect.bisect_left(self._names, name)
        return i < len(self._names) and self._names[i].is_subdomain(name)

    def _add(self, section, name, rdtype, dnssec, owner=None):
        """
        Append the RRset C{name}/C{rdtype}, and its RRSIGs if C{dnssec}, to
        C{section}, under C{owner} if given (wildcard expansion).

        @return: Whether there was such an RRset.
        """
        rdataset = self.zone.get_rdataset(name, rdtype)
        if rdataset is None:
            return False
        owner = owner or name
        section.append(_rrset(owner, rdataset))
        if dnssec:
            sigs = self.zone.get_rdataset(name, _RRSIG, covers=rdtype)
            if sigs is not None:
                section.append(_rrset(owner, sigs))
        return True

    def _coveringNSEC(self, name):
        """
        The owner of the NSEC record covering C{name} (the last one before
        it, wrapping around to the last of the zone), or L{None} in an
        unsigned zone.
        """
        if not self._nsecOwners:
            return None
        i = bisect.bisect_right(self._nsecOwners, name) - 1
        return self._nsecOwners[i]

    def _addNSECs(self, section, owners, dnssec):
        if not dnssec:
            return
        for owner in dict.fromkeys(owner for owner in owners if owner is not None):
            self._add(section, owner, _NSEC, dnssec)

    def _closestEncloser(self, name):
        while name != self.origin and not self._exists(name):
            name = name.parent()
        return name

    def answer(self, response, qname, rdtype, dnssec):
        """
        Fill in C{response} (AA set by the caller) for a query this zone is
        authoritative for.
        """
        # A zone cut on the way down: the child's data is not ours, except
        # the DS RRset at the cut itself.
        for depth in range(len(self.origin) + 1, len(qname) + 1):
            name = qname.split(depth)[1]
            if name in self._cuts and not (name == qname and rdtype == _DS):
                self._referral(response, name, dnssec)
                return
        node = self.zone.get_node(qname)
        if node is not None and len(node):
            if self._exact(response.answer, node, qname, rdtype, dnssec):
                return
            self._add(response.authority, self.origin, _SOA, dnssec)
            self._addNSECs(response.authority, [qname], dnssec)
            return
        if self._exists(qname):
            # An empty non-terminal: the NSEC covering it ends below it.
            self._add(response.authority, self.origin, _SOA, dnssec)
            self._addNSECs(response.authority, [self._coveringNSEC(qname)], dnssec)
            return
        encloser = self._closestEncloser(qname)
        wildcard = dns.name.Name((b"*",) + encloser.labels)
        node = self.zone.get_node(wildcard)
        if node is not None and len(node):
            # RFC 4035 section 3.1.3.3: the expansion, and the proof that
            # qname itself does not exist.
            if self._exact(response.answer, node, wildcard, rdtype, dnssec, owner=qname):
                self._addNSECs(response.authority, [self._coveringNSEC(qname)], dnssec)
                return
            self._add(response.authority, self.origin, _SOA, dnssec)
            self._addNSECs(response.authority, [self._coveringNSEC(qname), wildcard], dnssec)
            return
        response.set_rcode(dns.rcode.NXDOMAIN)
        self._add(response.authority, self.origin, _SOA, dnssec)
        self._addNSECs(
            response.authority,
            [self._coveringNSEC(qname), self._coveringNSEC(wildcard)],
            dnssec,
        )

    def _exact(self, section, node, name, rdtype, dnssec, owner=None):
        """
        Answer from the node of C{name}: the RRset asked for, every RRset for
        C{ANY}, or a CNAME.

        @return: Whether anything was answered (C{False} means NODATA).
        """
        if rdtype == _ANY:
            for rdataset in node.rdatasets:
                if rdataset.rdtype != _RRSIG:
                    self._add(section, name, rdataset.rdtype, dnssec, owner)
            return True
        if rdtype == _RRSIG:
            found = False
            for rdataset in node.rdatasets:
                if rdataset.rdtype == _RRSIG:
                    section.append(_rrset(owner or name, rdataset))
                    found = True
            return found
        return (self._add(section, name, rdtype, dnssec, owner)
                or self._add(section, name, _CNAME, dnssec, owner))

    def _referral(self, response, cut, dnssec):
        """
        RFC 4035 section 3.1.4: the NS RRset of a zone cut, its DS RRset or
        the NSEC proving there is none, and glue.
        """
        response.flags &= ~dns.flags.AA
        self._add(response.authority, cut, _NS, dnssec=False)
        if not self._add(response.authority, cut, _DS, dnssec):
            self._addNSECs(response.authority, [cut], dnssec)
        for ns in self.zone.get_rdataset(cut, _NS):
            if ns.target.is_subdomain(self.origin):
                for rdtype in _GLUE:
                    self._add(response.additional, ns.target, rdtype, dnssec=False)


class ZoneAuthority:
    """
    What an authoritative server for a set of zones answers: a pure function
    of the zones and the query, with no I/O.

    The zones must not change while they are served; give new ones to
    L{ZoneServer.setZones} instead.

    @ivar payload: The EDNS0 UDP payload we advertise and send at most.
    """

    def __init__(self, zones, payload=DEFAULT_PAYLOAD):
        """
        @param zones: L{dns.zone.Zone}s of class IN with absolute origins.
        @param payload: See L{payload}; at least 512.
        @raise ValueError: When a zone is unusable or given twice.
        """
        self._zones = {}
        for zone in zones:
            served = _ServedZone(zone)
            if served.origin in self._zones:
                raise ValueError(f"zone {served.origin} given twice")
            self._zones[served.origin] = served
        self.payload = max(_MIN_UDP, int(payload))

    @property
    def origins(self):
        """
        The apexes of the zones served (a C{frozenset} of L{dns.name.Name}).
        """
        return frozenset(self._zones)

    def _zoneFor(self, qname, rdtype):
        """
        The closest enclosing zone of C{qname}; for DS, the closest that is
        not the child, unless only the child is served.
        """
        best = child = None
        for origin, served in self._zones.items():
            if not qname.is_subdomain(origin):
                continue
            if rdtype == _DS and origin == qname:
                child = served
                continue
            if best is None or len(origin) > len(best.origin):
                best = served
        return best if best is not None else child

    def respond(self, query):
        """
        The response to a parsed query.

        @param query: A L{dns.message.Message} with QR clear.
        @return: The response L{dns.message.Message}.
        """
        response = dns.message.make_response(query, our_payload=self.payload)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response
        dnssec = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        if dnssec:
            response.want_dnssec(True)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, rdtype = question.name, question.rdtype
        served = None
        if question.rdclass == _IN and rdtype not in _TRANSFERS:
            served = self._zoneFor(qname, rdtype)
        if served is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        # Names inside the records of a relativized zone are relative to it.
        response.origin = served.origin
        served.answer(response, qname, rdtype, dnssec)
        return response

    def respondToWire(self, wire, udp=True):
        """
        The response to a query in wire format, in wire format.

        @param wire: The query message.
        @param udp: Whether it came over UDP: then the response is limited
            to the requestor's EDNS0 payload (512 without EDNS0) and to ours,
            and sent empty with TC set when it does not fit.
        @return: The response (C{bytes}), or L{None} when nothing is to be
            answered (not even a DNS header, or a response).
        """
        if len(wire) < _HEADER_SIZE:
            return None
        (queryID, flags) = struct.unpack("!HH", wire[:4])
        if flags & dns.flags.QR:
            return None
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, UnicodeError) as e:
            _log.debug("Unparsable query {queryID}: {error}", queryID=queryID, error=e)
            return self._formatError(queryID, flags)
        response = self.respond(query)
        limit = _MAX_TCP
        if udp:
            limit = _MIN_UDP
            if query.edns >= 0:
                limit = max(_MIN_UDP, min(query.payload, self.payload))
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            if not udp:
                _log.warn("Response to {name} is too large even for TCP",
                          name=query.question[0].name)
                response.set_rcode(dns.rcode.SERVFAIL)
            else:
                response.flags |= dns.flags.TC
            response.answer = []
            response.authority = []
            response.additional = []
            return response.to_wire(max_size=limit)

    @staticmethod
    def _formatError(queryID, flags):
        response = dns.message.Message(id=queryID)
        response.flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800))
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()


class DNSDatagramProtocol(DatagramProtocol):
    """
    Answer queries over UDP from the server's current L{ZoneAuthority}.
    """

    noisy = False

    def __init__(self, server):
        self._server = server

    def datagramReceived(self, data, address):
        reply = self._server.authority.respondToWire(data, udp=True)
        if reply is not None:
            self.transport.write(reply, address)


class DNSStreamProtocol(Protocol):
    """
    Answer length-prefixed queries over one TCP connection, in order; close
    it when idle.
    """

    def __init__(self, server, clock, idleTimeout):
        self._server = server
        self._clock = clock
        self._idleTimeout = idleTimeout
        self._buffer = b""
        self._timer = None

    def connectionMade(self):
        self._server._connections.add(self)
        self._restartTimer()

    def dataReceived(self, data):
        self._buffer += data
        while len(self._buffer) >= 2:
            (length,) = struct.unpack("!H", self._buffer[:2])
            if len(self._buffer) < 2 + length:
                break
            wire = self._buffer[2:2 + length]
            self._buffer = self._buffer[2 + length:]
            reply = self._server.authority.respondToWire(wire, udp=False)
            if reply is not None:
                self.transport.write(struct.pack("!H", len(reply)) + reply)
        self._restartTimer()

    def _restartTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._idleTimeout, self._idle)

    def _idle(self):
        self._timer = None
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self._server._connections.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _StreamFactory(Factory):
    noisy = False

    def __init__(self, server):
        self._server = server

    def buildProtocol(self, addr):
        protocol = DNSStreamProtocol(self._server, self._server._reactor,
                                     self._server.idleTimeout)
        protocol.factory = self
        return protocol


class ZoneServer:
    """
    Serve zones over UDP and TCP on one address and port.

    @ivar authority: The L{ZoneAuthority} answering now.
    @ivar address: C{(host, port)} once listening, else L{None}.
    @ivar idleTimeout: Seconds before an idle TCP connection is closed.
    """

    def __init__(self, reactor, zones=(), payload=DEFAULT_PAYLOAD,
                 idleTimeout=DEFAULT_IDLE_TIMEOUT):
        """
        @param reactor: An L{IReactorUDP}, L{IReactorTCP} and
            L{IReactorTime}.
        @param zones: The zones to serve (see L{ZoneAuthority}); more can be
            given later with L{setZones}.
        @param payload: See L{ZoneAuthority.payload}.
        @param idleTimeout: See L{idleTimeout}.
        """
        self._reactor = reactor
        self._payload = payload
        self.idleTimeout = idleTimeout
        self.authority = ZoneAuthority(zones, payload)
        self.address = None
        self._udp = None
        self._tcp = None
        self._connections = set()

    def setZones(self, zones):
        """
        Serve C{zones} instead of the current ones, from the next query on
        (like a server reloading its zone files).

        @raise ValueError: See L{ZoneAuthority}; the current zones stay.
        """
        self.authority = ZoneAuthority(zones, self._payload)

    @defer.inlineCallbacks
    def listen(self, interface="127.0.0.1", port=0, attempts=10):
        """
        Listen on UDP and TCP.

        @param interface: The IP address to bind.
        @param port: The port for both; 0 to have the system pick one free
            for UDP and retry, up to C{attempts} times, until TCP can have it
            too.
        @return: A L{Deferred} firing with C{(host, port)}, or failing with
            L{twisted.internet.error.CannotListenError}.
        """
        if self._udp is not None:
            raise ValueError(f"already listening on {self.address}")
        for attempt in range(attempts):
            udp = self._reactor.listenUDP(port, DNSDatagramProtocol(self),
                                          interface=interface)
            chosen = udp.getHost().port
            try:
                tcp = self._reactor.listenTCP(chosen, _StreamFactory(self),
                                              interface=interface)
            except ierror.CannotListenError as e:
                yield defer.maybeDeferred(udp.stopListening)
                if port or attempt == attempts - 1:
                    raise e
                continue
            break
        self._udp, self._tcp = udp, tcp
        self.address = (interface, chosen)
        _log.info("Serving {count} zones on {host} port {port} (UDP and TCP)",
                  count=len(self.authority.origins), host=interface, port=chosen)
        return self.address

    def stopListening(self):
        """
        Stop listening and close open TCP connections.

        @return: A L{Deferred} firing once the ports are closed.
        """
        ports, self._udp, self._tcp = [self._udp, self._tcp], None, None
        self.address = None
        for connection in list(self._connections):
            connection.transport.abortConnection()
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in ports if port is not None],
            consumeErrors=True,
        )
