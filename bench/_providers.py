"""
Two providers on loopback for the benchmarks in C{bench/multiplex.py}: a DNA
pair (L{dna.app.service.DNAService}, real mutual TLS, in-memory delegations) and a
server dialback pair (L{wokkel.server.ServerService}, plain TCP), with their
listening factories counting the TCP connections they accept.

Provider A (xmpp1.originating.tld) hosts the sender domains, provider B
(xmpp1.receiving.tld) the target domains.

wokkel 18.0.0 on Python 3 needs four work-arounds, all here and none in
C{dna/}:

 1. C{ServerService} makes its secret with C{binascii.hexlify(...)}, which is
    C{bytes} on Python 3, and C{generateKey} calls C{secret.encode('ascii')}
    on it: pass C{secret} as a C{str}.
 2. C{initiateS2S} connects through C{XMPPServerConnector}, an
    C{SRVConnector} that looks up C{_xmpp-server._tcp.<domain>} with
    twisted.names' system resolver (C{/etc/resolv.conf}, not loopback here)
    and falls back to port 5269 of the domain's address. L{DialbackRoutes}
    replaces C{wokkel.server.initiateS2S} (used for both the outgoing stream
    and the verify connection) for the duration of the benchmark and
    connects to the static 127.0.0.1 port of the domain's provider.
 3. C{ServerService.domains} holds only the default domain: every hosted
    domain is added, or incoming streams and verify requests for them get
    C{<host-unknown/>}.
 4. C{ServerService} plugs into a L{component.Router} (its default route);
    B's router gets one route per target domain to the benchmark's sink.

The DNA providers' delegation checker is L{CachingFakeChecker}: the fake's
table, answered once per domain, as L{dna.dns.delegation.DelegationChecker}'s TTL
cache does; the fake alone re-normalises its whole table on every call.

wokkel's streams get C{TCP_NODELAY} here too (wokkel leaves Nagle on; DNA
sets it), so that delayed-ACK stalls cannot slow dialback down (on loopback
here it made no measurable difference). Plain TCP without TLS favours
dialback.
"""

import collections
import time

from twisted.internet import defer, interfaces
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish import utility

from dna.dns.addresses import AddressResolver
from dna.testing.fakes import FakeDelegationChecker, chatMessage
from dna.testing.providers import ORIGINATING, RECEIVING, ProviderPKI, startProvider

#: The listen backlog for every benchmark listener (recipe fact 14: Twisted's
#: default of 50 loses SYNs in a burst; the kernel caps it at somaxconn).
BACKLOG = 4096

#: The shared secret of the dialback providers (a C{str}: work-around 1).
DIALBACK_SECRET = "bench-multiplex-dialback-secret"


def senderDomains(count):
    return ["sender%02d.tld" % (i,) for i in range(count)]


def targetDomains(count):
    return ["target%02d.tld" % (i,) for i in range(count)]


def message(sender, target, stanzaID, body="Wherefore art thou, Romeo?", uri=None):
    """
    The benchmark's chat message (L{chatMessage} with a fixed payload).
    """
    return chatMessage(sender, target, stanzaID, body, uri)


class Sink:
    """
    A provider's local delivery: counts stanzas, remembers the domain pairs
    of messages when asked to, and fires a waiter at a given count.

    @ivar count: Stanzas delivered since the last L{reset}.
    @ivar pairs: (from domain, to domain) of each delivered stanza while
        C{recordPairs} is true.
    """

    def __init__(self, reactor, recordPairs=False):
        self._reactor = reactor
        self.recordPairs = recordPairs
        self.reset()

    def reset(self):
        self.firstAt = None
        self.count = 0
        self.pairs = collections.Counter()
        self.errors = 0
        self._target = None
        self._waiter = None

    def __call__(self, stanza):
        if not self.count:
            self.firstAt = time.perf_counter()
        self.count += 1
        if self.recordPairs:
            if stanza.getAttribute("type") == "error":
                self.errors += 1
            sender = stanza["from"].partition("/")[0].rpartition("@")[2]
            target = stanza["to"].partition("/")[0].rpartition("@")[2]
            self.pairs[(sender, target)] += 1
        if self.count == self._target:
            waiter, self._waiter, self._target = self._waiter, None, None
            waiter.callback(self.count)

    def send(self, stanza):
        """
        The interface of a route of L{component.Router}.
        """
        self(stanza)

    def waitFor(self, count, timeout):
        """
        A L{Deferred} firing once C{count} stanzas have been delivered, failing
        with L{defer.TimeoutError} (saying how many came) after C{timeout}.
        """
        if self.count >= count:
            return defer.succeed(self.count)
        d = defer.Deferred()
        self._target, self._waiter = count, d

        def timedOut(failure, timeout):
            failure.trap(defer.CancelledError)
            raise defer.TimeoutError(
                "%d of %d stanzas after %.0fs" % (self.count, count, timeout)
            )

        d.addTimeout(timeout, self._reactor, onTimeoutCancel=lambda r, t: r)
        d.addErrback(timedOut, timeout)
        return d


class ConnectionCounter:
    """
    Count the connections a listening factory builds protocols for, and keep
    those protocols so that they can be closed.
    """

    def __init__(self, factory):
        self.protocols = []
        self._build = factory.buildProtocol
        factory.buildProtocol = self.buildProtocol

    def buildProtocol(self, addr):
        protocol = self._build(addr)
        if protocol is not None:
            self.protocols.append(protocol)
        return protocol

    @property
    def count(self):
        return len(self.protocols)


def _noDelay(xs):
    if interfaces.ITCPTransport.providedBy(xs.transport):
        xs.transport.setTcpNoDelay(True)


class CachingFakeChecker(FakeDelegationChecker):
    """
    L{FakeDelegationChecker} answering each domain from its table once: the
    delegations do not change during a benchmark, and the real
    L{dna.dns.delegation.DelegationChecker} caches results for their TTL.
    (The fake alone normalises every domain of its table with dnspython on
    every C{check} and C{isDelegated}: about 1 ms per call at 65 domains,
    three calls per domain pair, more than everything else DNA does to set a
    pair up.)
    """

    def __init__(self, *args, **kw):
        FakeDelegationChecker.__init__(self, *args, **kw)
        self._answers = {}

    def _lookup(self, domain):
        try:
            return self._answers[domain]
        except KeyError:
            result = self._answers[domain] = FakeDelegationChecker._lookup(self, domain)
            return result


def benchPKI():
    """
    A test CA and the two providers' certificates.
    """
    return ProviderPKI("DNA Bench CA")


class DNAProviders:
    """
    A DNA provider pair on loopback.

    @ivar a: Provider A's L{DNAService}, hosting the senders.
    @ivar b: Provider B's L{DNAService}, hosting the targets.
    @ivar sinkA: A's deliver (bounces come here).
    @ivar sinkB: B's deliver.
    @ivar acceptedA: The L{ConnectionCounter} of A's listener.
    @ivar acceptedB: The L{ConnectionCounter} of B's listener.
    """

    def __init__(self, reactor, pki, senders, targets, cachingChecker=True):
        self._reactor = reactor
        self._pki = pki
        self.senders = senders
        self.targets = targets
        table = {domain: {ORIGINATING} for domain in senders}
        table.update({domain: {RECEIVING} for domain in targets})
        checker = CachingFakeChecker if cachingChecker else FakeDelegationChecker
        self.checker = checker(table)
        self.sinkA = Sink(reactor, recordPairs=True)
        self.sinkB = Sink(reactor, recordPairs=True)

    def _start(self, domains, name, sink):
        return startProvider(
            self._reactor, domains, {name: self._pki.certificates[name]},
            self._pki.trustRoot, self.checker, AddressResolver(hosts={}), sink,
            backlog=BACKLOG,
        )

    @defer.inlineCallbacks
    def start(self):
        self.b, portB = yield self._start(self.targets, RECEIVING, self.sinkB)
        self.acceptedB = ConnectionCounter(self.b.factory)
        self.a, portA = yield self._start(self.senders, ORIGINATING, self.sinkA)
        self.acceptedA = ConnectionCounter(self.a.factory)
        self.a.connector._resolve._hosts[RECEIVING] = ("127.0.0.1", portB.getHost().port)
        self.b.connector._resolve._hosts[ORIGINATING] = ("127.0.0.1", portA.getHost().port)

    @property
    def accepted(self):
        return self.acceptedA.count + self.acceptedB.count

    def send(self, stanza):
        self.a.send(stanza)

    def stop(self):
        return defer.gatherResults(
            [self.a.stopService(), self.b.stopService()], consumeErrors=True
        )


class DialbackRoutes:
    """
    Work-around 2: a replacement for C{wokkel.server.initiateS2S} that
    connects to a static address per domain instead of an SRV lookup through
    the system resolver.

    @ivar connects: How many outgoing connections wokkel asked for.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self.addresses = {}
        self.connects = 0

    def initiateS2S(self, factory):
        host, port = self.addresses[factory.authenticator.otherHost]
        self.connects += 1
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, _noDelay)
        self._reactor.connectTCP(host, port, factory, timeout=30)
        return factory.deferred

    def install(self):
        import wokkel.server

        self._original = wokkel.server.initiateS2S
        wokkel.server.initiateS2S = self.initiateS2S

    def uninstall(self):
        import wokkel.server

        wokkel.server.initiateS2S = self._original


class DialbackProviders:
    """
    A wokkel server dialback provider pair on loopback, plain TCP.
    """

    def __init__(self, reactor, senders, targets):
        self._reactor = reactor
        self.senders = senders
        self.targets = targets
        self.sinkB = Sink(reactor, recordPairs=True)
        self.routes = DialbackRoutes(reactor)

    def _service(self, domains):
        from wokkel.server import ServerService, XMPPS2SServerFactory

        router = component.Router()
        service = ServerService(router, secret=DIALBACK_SECRET)  # work-around 1
        service.domains.update(domains)  # work-around 3
        factory = XMPPS2SServerFactory(service)
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, _noDelay)
        counter = ConnectionCounter(factory)
        port = self._reactor.listenTCP(0, factory, backlog=BACKLOG, interface="127.0.0.1")
        return router, service, counter, port

    def start(self):
        self.routes.install()
        self.routerA, self.a, self.acceptedA, self.portA = self._service(self.senders)
        self.routerB, self.b, self.acceptedB, self.portB = self._service(self.targets)
        for domain in self.targets:
            # work-around 4: B's local deliveries
            route = utility.EventDispatcher()
            route.send = self.sinkB
            self.routerB.addRoute(domain, route)
        for domains, port in [(self.senders, self.portA), (self.targets, self.portB)]:
            for domain in domains:
                self.routes.addresses[domain] = ("127.0.0.1", port.getHost().port)

    @property
    def accepted(self):
        return self.acceptedA.count + self.acceptedB.count

    def send(self, stanza):
        self.routerA.route(stanza)

    @defer.inlineCallbacks
    def stop(self):
        try:
            yield defer.gatherResults(
                [
                    defer.maybeDeferred(self.portA.stopListening),
                    defer.maybeDeferred(self.portB.stopListening),
                ]
            )
            for xs in self.acceptedA.protocols + self.acceptedB.protocols:
                if xs.transport is not None and xs.transport.connected:
                    xs.transport.abortConnection()
            from twisted.internet.task import deferLater

            yield deferLater(self._reactor, 0.2, lambda: None)
        finally:
            self.routes.uninstall()
