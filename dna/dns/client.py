"""
A DNS stub client over Twisted transports that keeps the DNSSEC bits.

L{twisted.names} never sets the DO bit and drops the AD bit of answers, so it
cannot tell a secure answer from an insecure one. Here dnspython builds and
parses the messages and Twisted carries them: UDP with EDNS0 (RFC 6891), the
DO bit (RFC 3225) and the AD bit in queries (RFC 6840 section 5.7), falling
back to TCP on truncation (RFC 7766, length-prefixed framing of RFC 1035
section 4.2.2).

Answers are accepted only as RFC 5452 asks: from the address and port queried,
with the random ID sent, for the question asked. Each try uses a fresh ID and
a fresh UDP port chosen by the kernel.
"""

import collections
import ipaddress
import re
import secrets
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dna.error import DNSInvalidQuery, DNSMalformed, DNSTimeout, DNSUnreachable
from dna.interfaces import IDNSClient

_log = Logger()

#: Answers that say "this server cannot help": ask the next one.
_NEXT_SERVER_RCODES = frozenset(
    [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.NOTIMP,
     dns.rcode.FORMERR])

_HEADER_SIZE = 12

#: Seconds to wait for one answer before the next try.
DEFAULT_TIMEOUT = 1.0

#: Rounds over the servers before giving up.
DEFAULT_RETRIES = 2

#: Seconds after which a query (and a delegation check) gives up.
DEFAULT_DEADLINE = 5.0


def _normalizeAddress(host):
    """
    The canonical text of an IP address, so that C{'::1'} and
    C{'0:0::1'} compare equal.

    @raise ValueError: If C{host} is not an IP literal.
    """
    return str(ipaddress.ip_address(host))


#: The two lines Twisted's UDP port writes, at info and unconditionally, for
#: each port it opens and closes: one of each per query here.
_QUERY_PORT_LINE = re.compile(r"_UDPTry starting on \d+\Z|\(UDP Port \d+ Closed\)\Z")


def isQueryPortEvent(event):
    """
    Whether a log event is one of the two lines Twisted writes for the UDP
    port of each query: routine, and as many as the queries, so that a log
    of C{info} and above should not keep them (L{dna.app.tap.logObserver}
    drops them below C{debug}). A process with UDP ports of its own would
    see their closing lines go too.

    @param event: A L{twisted.logger} event.
    """
    if event.get("log_namespace") != "log_legacy":
        return False
    message = event.get("message")
    return (isinstance(message, tuple) and len(message) == 1 and isinstance(message[0], str)
            and _QUERY_PORT_LINE.match(message[0]) is not None)


class _UDPTry(DatagramProtocol):
    """
    One UDP query to one server, from its own port.

    @ivar server: C{(host, port)} queried, host normalized.
    @ivar queryID: The message ID sent.
    """

    noisy = False

    def __init__(self, lookup, server, queryID):
        self._lookup = lookup
        self.server = server
        self.queryID = queryID
        self.port = None
        self.closing = False

    def datagramReceived(self, data, address):
        self._lookup._guard(self._lookup._udpReceived, self, data, address)

    def connectionRefused(self):
        self._lookup._guard(self._lookup._udpRefused, self)

    def stopProtocol(self):
        # The epoll reactor does not call connectionRefused: it takes the
        # EPOLLERR of an ICMP port unreachable for a lost connection and
        # closes the port.
        if not self.closing:
            self._lookup._guard(self._lookup._udpRefused, self)

    def close(self):
        """
        Close the port.

        @return: A L{Deferred} firing once it is closed.
        """
        self.closing = True
        return defer.maybeDeferred(self.port.stopListening)


class _TCPTry(Protocol):
    """
    One query over TCP: send it framed, read one framed reply.

    @ivar closed: A L{Deferred} firing once the connection is gone (or
        never came).
    """

    def __init__(self, lookup, server, queryID, wire):
        self._lookup = lookup
        self.server = server
        self.queryID = queryID
        self._wire = wire
        self._buffer = b""
        self.connector = None
        self.connected = False
        self.finished = False
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.connected = True
        self.transport.write(struct.pack("!H", len(self._wire)) + self._wire)

    def dataReceived(self, data):
        self._lookup._guard(self._dataReceived, data)

    def _dataReceived(self, data):
        if self.finished:
            return
        self._buffer += data
        if len(self._buffer) < 2:
            return
        (length,) = struct.unpack("!H", self._buffer[:2])
        if length < _HEADER_SIZE or length > self._lookup.maxTCPSize:
            self.finished = True
            self.transport.abortConnection()
            self._lookup._tcpFailed(
                self, f"reply framed as {length} bytes", malformed=True)
            return
        if len(self._buffer) < 2 + length:
            return
        self.finished = True
        wire = self._buffer[2:2 + length]
        self._buffer = b""
        self.transport.loseConnection()
        self._lookup._tcpReceived(self, wire)

    def connectionLost(self, reason):
        self._gone(reason, "connection closed before a complete reply")

    def connectionFailed(self, reason):
        """
        The connection never came (called by L{_TCPFactory}).
        """
        self._gone(reason,
                   f"TCP connection failed: {reason.getErrorMessage()}",
                   unreachable=True)

    def _gone(self, reason, problem, unreachable=False):
        self.connected = False
        if not self.closed.called:
            self.closed.callback(None)
        if not self.finished:
            self.finished = True
            self._lookup._guard(self._lookup._tcpFailed, self, problem,
                                unreachable=unreachable)

    def close(self):
        """
        Drop the connection or the connection attempt.

        @return: L{Deferred} firing when it is gone.
        """
        self.finished = True
        if self.connected:
            self.transport.abortConnection()
        elif not self.closed.called:
            self.connector.stopConnecting()
            if not self.closed.called:
                # A fake connector may not report back.
                self.closed.callback(None)
        return self.closed


class _TCPFactory(ClientFactory):
    """
    Builds the one L{_TCPTry} of a connection and tells it if the
    connection never came.
    """

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, address):
        return self._protocol

    def clientConnectionFailed(self, connector, reason):
        self._protocol.connectionFailed(reason)


class _Lookup:
    """
    The state of one L{DNSClient.query} call: its tries, timers and ports.
    """

    def __init__(self, client, qname, rdtype, flags, dnssec):
        self._client = client
        self._reactor = client._reactor
        self.maxTCPSize = client.maxTCPSize
        self._qname = qname
        self._rdtype = rdtype
        self._flags = flags
        self._dnssec = dnssec
        self.deferred = defer.Deferred(self._cancel)
        self._schedule = [
            server
            for _ in range(max(1, client._retries))
            for server in client.servers
        ]
        self._udpTries = []
        self._tcpTries = []
        self._current = None
        self._tryTimer = None
        self._deadlineTimer = None
        self._refusedServers = set()
        self._lastRefusal = None
        self._problems = []
        self._malformed = False
        self._unreachableOnly = True
        self._finished = False

    # Starting and moving on

    def start(self):
        self._deadlineTimer = self._reactor.callLater(
            self._client._deadline, self._guard, self._deadlinePassed)
        self._nextTry()
        return self.deferred

    def _makeQuery(self):
        query = dns.message.make_query(
            self._qname, self._rdtype, use_edns=0,
            payload=self._client._maxUDPSize, want_dnssec=self._dnssec)
        query.id = secrets.randbelow(0x10000)
        query.flags = self._flags
        return query

    def _nextTry(self):
        """
        Send the next try, or give up if there is none.
        """
        self._cancelTryTimer()
        self._current = None
        while self._schedule:
            server = self._schedule.pop(0)
            if server not in self._refusedServers:
                break
        else:
            self._giveUp(timedOut=False)
            return

        query = self._makeQuery()
        attempt = _UDPTry(self, server, query.id)
        self._current = attempt
        self._tryTimer = self._reactor.callLater(
            self._client._timeout, self._guard, self._tryTimedOut, attempt)
        host, port = server
        interface = "::" if ":" in host else ""
        try:
            attempt.port = self._reactor.listenUDP(
                0, attempt, interface=interface)
            self._udpTries.append(attempt)
            attempt.port.connect(host, port)
            attempt.port.write(query.to_wire())
        except Exception as e:
            self._noteProblem(server, f"cannot send: {e}")
            self._nextTry()

    def _tryTimedOut(self, attempt):
        self._tryTimer = None
        self._unreachableOnly = False
        kind = "TCP reply" if isinstance(attempt, _TCPTry) else "reply"
        self._noteProblem(
            attempt.server,
            f"no {kind} within {self._client._timeout:g} s")
        if isinstance(attempt, _TCPTry):
            attempt.close()
        self._nextTry()

    def _deadlinePassed(self):
        self._deadlineTimer = None
        self._unreachableOnly = False
        self._noteProblem(
            None, f"deadline of {self._client._deadline:g} s passed")
        self._giveUp(timedOut=True)

    def _cancelTryTimer(self):
        if self._tryTimer is not None:
            if self._tryTimer.active():
                self._tryTimer.cancel()
            self._tryTimer = None

    # UDP

    def _udpReceived(self, attempt, data, address):
        if self._finished:
            return
        host, port = address[:2]
        try:
            source = (_normalizeAddress(host), port)
        except ValueError:
            source = None
        if source != attempt.server:
            _log.debug("Ignoring a DNS reply from {source}, expected {server}",
                       source=address, server=attempt.server)
            return
        if len(data) < _HEADER_SIZE:
            _log.debug("Ignoring a {size}-byte datagram from {source}",
                       size=len(data), source=address)
            return
        (queryID,) = struct.unpack("!H", data[:2])
        if queryID != attempt.queryID:
            _log.debug("Ignoring a DNS reply with the wrong ID from {source}",
                       source=address)
            return
        truncated = False
        try:
            response = dns.message.from_wire(data, raise_on_truncation=True)
        except dns.message.Truncated as e:
            response = e.message()
            truncated = True
        except dns.exception.DNSException as e:
            self._malformed = True
            self._noteProblem(attempt.server, f"unparsable reply: {e}")
            return
        if not self._isReply(response):
            _log.debug("Ignoring a DNS reply for another question from "
                       "{source}", source=address)
            return
        if truncated:
            self._client.counters["truncations"] += 1
            if attempt is self._current:
                self._startTCP(attempt.server)
            return
        self._gotResponse(attempt, response)

    def _udpRefused(self, attempt):
        if self._finished:
            return
        self._noteProblem(attempt.server, "port unreachable")
        if attempt is self._current:
            self._nextTry()

    # TCP

    def _startTCP(self, server):
        self._cancelTryTimer()
        query = self._makeQuery()
        attempt = _TCPTry(self, server, query.id, query.to_wire())
        self._current = attempt
        self._tcpTries.append(attempt)
        self._tryTimer = self._reactor.callLater(
            self._client._timeout, self._guard, self._tryTimedOut, attempt)
        host, port = server
        try:
            attempt.connector = self._reactor.connectTCP(
                host, port, _TCPFactory(attempt),
                timeout=self._client._timeout)
        except Exception:
            attempt.connectionFailed(Failure())

    def _tcpReceived(self, attempt, wire):
        if self._finished:
            return
        try:
            response = dns.message.from_wire(wire)
        except dns.exception.DNSException as e:
            self._tcpFailed(attempt, f"unparsable TCP reply: {e}",
                            malformed=True)
            return
        if response.id != attempt.queryID or not self._isReply(response):
            self._tcpFailed(attempt, "TCP reply for another query",
                            malformed=True)
            return
        self._gotResponse(attempt, response)

    def _tcpFailed(self, attempt, reason, malformed=False, unreachable=False):
        if self._finished:
            return
        self._malformed = self._malformed or malformed
        self._unreachableOnly = self._unreachableOnly and unreachable
        self._noteProblem(attempt.server, reason)
        if attempt is self._current:
            self._nextTry()

    # Results

    def _isReply(self, response):
        """
        Whether C{response} is a reply to our question (RFC 5452 section
        9.1). Names compare case-insensitively.
        """
        if not response.flags & dns.flags.QR:
            return False
        if response.opcode() != dns.opcode.QUERY:
            return False
        if len(response.question) != 1:
            return False
        question = response.question[0]
        return (question.name == self._qname
                and question.rdtype == self._rdtype
                and question.rdclass == dns.rdataclass.IN)

    def _gotResponse(self, attempt, response):
        self._unreachableOnly = False
        if response.rcode() in _NEXT_SERVER_RCODES:
            self._refusedServers.add(attempt.server)
            self._lastRefusal = response
            self._noteProblem(attempt.server,
                              dns.rcode.to_text(response.rcode()))
            if self._refusedServers >= set(self._client.servers):
                self._finish(response)
            elif attempt is self._current:
                self._nextTry()
            return
        self._finish(response)

    def _noteProblem(self, server, problem):
        if server is None:
            self._problems.append(problem)
        else:
            host, port = server
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._problems.append(f"{where}: {problem}")

    def _giveUp(self, timedOut):
        """
        No more tries: fire with the last refusal if a server gave one, or
        fail.
        """
        if self._lastRefusal is not None:
            self._finish(self._lastRefusal)
            return
        problems = self._problems[-6:]
        if len(self._problems) > len(problems):
            problems.insert(0, "...")
        reason = "; ".join(problems) or "no server to ask"
        if timedOut:
            errorClass = DNSTimeout
        elif self._malformed:
            errorClass = DNSMalformed
        elif self._unreachableOnly:
            errorClass = DNSUnreachable
        else:
            errorClass = DNSTimeout
        if errorClass is DNSTimeout:
            self._client.counters["timeouts"] += 1
        self._finish(Failure(errorClass(
            self._qname.to_text(), dns.rdatatype.to_text(self._rdtype),
            reason)))

    def _cleanUp(self):
        """
        Cancel the timers, start closing every port and connection (a
        failure to close one is logged).
        """
        self._finished = True
        self._cancelTryTimer()
        if self._deadlineTimer is not None:
            if self._deadlineTimer.active():
                self._deadlineTimer.cancel()
            self._deadlineTimer = None
        for attempt in self._udpTries + self._tcpTries:
            defer.maybeDeferred(attempt.close).addErrback(self._logCloseError)
        self._udpTries = []
        self._tcpTries = []

    def _logCloseError(self, failure):
        _log.failure("Cannot close a DNS socket for {name}", failure,
                     name=self._qname)

    def _finish(self, result):
        """
        Fire the Deferred with C{result} (a message or a L{Failure}) as the
        timers are cancelled and the ports start closing: they are closed
        a reactor turn later, and the answer does not wait for that turn
        (on a busy server, several milliseconds on the way of every
        delegation check and connection).
        """
        if self._finished:
            return
        self._cleanUp()
        if not self.deferred.called:
            self.deferred.callback(result)

    def _cancel(self, deferred):
        if not self._finished:
            self._cleanUp()

    def _guard(self, function, *args, **kwargs):
        """
        Run C{function}; an exception it raises fails the query instead of
        reaching the reactor.
        """
        try:
            function(*args, **kwargs)
        except Exception:
            failure = Failure()
            _log.failure("Unexpected error in a DNS query for {name}",
                         failure, name=self._qname)
            self._finish(failure)


@implementer(IDNSClient)
class DNSClient:
    """
    A DNS stub client asking a list of servers, with DNSSEC bits kept.

    Servers are tried in order, each try with its own timeout, for
    C{retries} rounds, within an overall C{deadline}. A server answering
    SERVFAIL, REFUSED, NOTIMP or FORMERR is not asked again for that query;
    if every server answers so, the query fires with the last such answer.

    @ivar servers: The C{(host, port)} asked, in order, hosts normalised.
    @ivar maxTCPSize: The largest reply accepted over TCP, in bytes.
    @ivar counters: C{"queries"}, C{"timeouts"} (queries that failed with
        L{DNSTimeout}) and C{"truncations"} (UDP replies that sent the
        query to TCP): how many, ever (the metrics' source).
    @type counters: L{collections.Counter}
    """

    maxTCPSize = 65535

    def __init__(self, servers, reactor, timeout=DEFAULT_TIMEOUT, retries=DEFAULT_RETRIES,
                 deadline=DEFAULT_DEADLINE, maxUDPSize=1232):
        """
        @param servers: A non-empty list of C{(host, port)} tuples, hosts
            as IPv4 or IPv6 literals.
        @param reactor: An L{IReactorUDP}, L{IReactorTCP} and
            L{IReactorTime} provider.
        @param timeout: Seconds to wait for the reply to one try.
        @param retries: How many rounds over all the servers (at least
            one).
        @param deadline: Seconds after which a query fails with
            L{DNSTimeout}, whatever tries remain.
        @param maxUDPSize: The EDNS0 UDP payload size advertised (RFC 6891
            section 6.2.5; 1232 avoids fragmentation).
        @raise ValueError: If C{servers} is empty or holds a host name.
        """
        self._reactor = reactor
        self.servers = tuple((_normalizeAddress(host), int(port)) for host, port in servers)
        if not self.servers:
            raise ValueError("DNSClient needs at least one server")
        self._timeout = timeout
        self._retries = retries
        self._deadline = deadline
        self._maxUDPSize = maxUDPSize
        self.counters = collections.Counter()

    def query(self, name, rdtype, dnssec=True, checkingDisabled=False,
              recursionDesired=True):
        """
        See L{IDNSClient.query}.

        The query has EDNS0 and, if C{dnssec}, the DO bit; the AD bit is set
        so that a validating resolver reports it (RFC 6840 section 5.7). It
        fails with L{DNSTimeout}, L{DNSMalformed}, L{DNSUnreachable} or
        L{DNSInvalidQuery}.
        """
        try:
            if not isinstance(name, dns.name.Name):
                name = dns.name.from_text(name)
            rdtype = dns.rdatatype.RdataType.make(rdtype)
        except (dns.exception.DNSException, ValueError) as e:
            return defer.fail(DNSInvalidQuery(str(name), str(rdtype), str(e)))
        flags = dns.flags.AD
        if recursionDesired:
            flags |= dns.flags.RD
        if checkingDisabled:
            flags |= dns.flags.CD
        self.counters["queries"] += 1
        return _Lookup(self, name, rdtype, flags, dnssec).start()
