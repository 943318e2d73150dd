"""
The DNA S2S service: what a Wokkel-based server plugs in where it would use
L{wokkel.server.ServerService}.

It takes stanzas to send from the server's router and routes them by the
binding table (the first stream of a pair's row), authorizing pairs and
opening connections as draft-ietf-xmpp-dna-01 sections 5 and 6 say; it hands
the stanzas it accepts from peers to the router. One connection between two
providers carries every domain pair between them.
"""

from functools import partial

from twisted.application import service, strports
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT

from dna.app.federation import DEFAULT_QUEUE_LIMIT, Federation
from dna.app.flow import FlowControl
from dna.app.limits import Limits
from dna.app.router import DefaultRoute, route
from dna.channel.features import BIDI_REQUEST
from dna.channel.originating import DEFAULT_CONNECT_TIMEOUT, Connector
from dna.channel.receiving import S2SServerFactory, withBacklog
from dna.channel.tls import (
    DANEPeerVerifier,
    ServerContextFactory,
    peerCertificate,
    peerServerNames,
    tlsFailure,
)
from dna.core.authorization import DEFAULT_MAX_PENDING, DEFAULT_REQUEST_TIMEOUT
from dna.core.coalesce import Coalescer
from dna.core.enforcement import errorResponse
from dna.core.names import domainOf, normalizeServerName
from dna.core.proofs import DEFAULT_GRACE
from dna.error import (
    ConnectFailed,
    InvalidAddress,
    NotDelegated,
    ServiceStopping,
    StreamIDInUse,
)
from dna.legacy.policy import FALLBACK_DNA, FallbackPolicy

_log = Logger()

#: Seconds without traffic after which a connection is closed.
DEFAULT_IDLE_TIMEOUT = 600.0


class IdleWatch:
    """
    Close a stream that has carried no data, either way, for a while.
    """

    def __init__(self, xs, timeout, clock):
        self._xs = xs
        self._timeout = timeout
        self._clock = clock
        self._last = clock.seconds()
        self._inner = (xs.rawDataInFn, xs.rawDataOutFn)
        xs.rawDataInFn = self._activityIn
        xs.rawDataOutFn = self._activityOut
        self._call = clock.callLater(timeout, self._check)
        xs.addOnetimeObserver(STREAM_END_EVENT, self._stop)

    def _activityIn(self, data):
        self._last = self._clock.seconds()
        if self._inner[0] is not None:
            self._inner[0](data)

    def _activityOut(self, data):
        self._last = self._clock.seconds()
        if self._inner[1] is not None:
            self._inner[1](data)

    def _check(self):
        idle = self._clock.seconds() - self._last
        if idle < self._timeout:
            self._call = self._clock.callLater(self._timeout - idle, self._check)
            return
        self._call = None
        _log.info(
            "Closing stream {streamID}: idle for {idle:.0f}s",
            event="stream-closed",
            reason="idle",
            streamID=getattr(self._xs, "sid", None),
            idle=idle,
        )
        self._xs.sendFooter()
        self._xs.transport.loseConnection()

    def _stop(self, reason):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class StreamMeter:
    """
    What the control API tells of one stream besides the tables: when it
    opened, the XML bytes each way and when the last went by. One integer
    add and one clock read per chunk of data, none per stanza.

    @ivar opened: When the stream connected (the clock's seconds).
    @ivar last: When data last went either way.
    @ivar bytesIn: XML bytes received (after TLS).
    @ivar bytesOut: XML bytes sent.
    """

    def __init__(self, xs, clock):
        self._clock = clock
        self.opened = self.last = clock.seconds()
        self.bytesIn = self.bytesOut = 0
        self._inner = (xs.rawDataInFn, xs.rawDataOutFn)
        xs.rawDataInFn = self._dataIn
        xs.rawDataOutFn = self._dataOut

    def _dataIn(self, data):
        self.bytesIn += len(data)
        self.last = self._clock.seconds()
        if self._inner[0] is not None:
            self._inner[0](data)

    def _dataOut(self, data):
        self.bytesOut += len(data)
        self.last = self._clock.seconds()
        if self._inner[1] is not None:
            self._inner[1](data)


class DNAService(service.MultiService):
    """
    Secure, multiplexed S2S for the domains hosted here.

    @ivar federation: The L{Federation}: tables, streams, waiting stanzas.
    @ivar connector: The L{Connector} for outgoing connections.
    @ivar factory: The L{S2SServerFactory} for incoming connections.
    @ivar port: The listening port once started with a C{listen} strport.
    @ivar checker: The L{IDelegationChecker} of this server (and its cache).
    @ivar meters: Stream -> L{StreamMeter} of every open stream.
    @ivar dnsClient: The L{dna.dns.client.DNSClient} the checker and the
        address resolver ask, when L{fromConfiguration} made it (for the
        metrics); L{None} otherwise.
    @ivar configuration: The L{dna.app.config.Configuration} it was built
        from (L{fromConfiguration}), or L{None}.
    @ivar streamObservers: Callables given each new stream, either way, as
        it connects (L{dna.app.embed.Monitor} watches streams with it).
    @ivar flow: The L{FlowControl} between the components and the streams.
    """

    dnsClient = None
    configuration = None

    def __init__(
        self,
        hostedDomains,
        certificates,
        trustRoot,
        checker,
        addressResolver,
        router=None,
        deliver=None,
        listen=None,
        chains=None,
        reactor=None,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
        connectTimeout=DEFAULT_CONNECT_TIMEOUT,
        maxPending=DEFAULT_MAX_PENDING,
        requestTimeout=DEFAULT_REQUEST_TIMEOUT,
        queueLimit=DEFAULT_QUEUE_LIMIT,
        fallback=FALLBACK_DNA,
        dialbackSecret=None,
        domainCertificates=None,
        domainChains=None,
        limits=None,
        revalidationGrace=DEFAULT_GRACE,
        tlsaLookup=None,
        pkix=True,
    ):
        """
        @param hostedDomains: The domains we serve.
        @param certificates: C{{serverName: PrivateCertificate}}: our server
            names. The streams we open for a sender domain come from the one
            it is delegated to (L{localNameFor}), or from the first.
        @param trustRoot: CAs trusted for peers' certificates.
        @param checker: An L{IDelegationChecker}.
        @param addressResolver: (serverName, port) -> L{Deferred} of
            [(host, port)], such as L{dna.dns.addresses.AddressResolver}.
        @param router: A L{wokkel.component.Router}: we become its default
            route (stanzas for domains it has no route for are sent to
            peers), and accepted incoming stanzas and bounces are routed
            through it. Or give C{deliver}.
        @param deliver: Called with each accepted incoming stanza and each
            bounce, when there is no C{router}.
        @param listen: A strport description to listen on, or L{None}.
        @param chains: C{{serverName: [Certificate]}} of intermediates.
        @param fallback: What to do with peers without DNA (section 7), one
            of L{dna.legacy.policy.FALLBACKS}; see L{dna.legacy.originating}.
        @param dialbackSecret: The Server Dialback secret (text or bytes),
            shared by servers that share the domains; random if L{None}.
        @param domainCertificates: C{{hosted domain: PrivateCertificate}}
            for legacy streams, besides the server names' certificates
            (which may cover hosted domains too); C{domainChains} their
            intermediates.
        @param limits: The L{dna.app.limits.Limits} of connections, streams
            and buffers; the defaults if L{None}.
        @param revalidationGrace: Seconds past its proof's expiry that a
            binding whose re-check is indeterminate is kept
            (L{dna.app.revalidation}).
        @param tlsaLookup: A L{dna.dns.tlsa.TLSALookup} for DANE on the
            streams we open and accept (RFC 7673), or L{None} for none.
        @param pkix: Whether PKIX proves a peer's identity where DANE does
            not apply; if not, C{tlsaLookup} is required and a peer without
            TLSA records is refused.
        """
        if not pkix and tlsaLookup is None:
            raise ValueError("without PKIX, DANE is the only identity proof: give tlsaLookup")
        service.MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        if (router is None) == (deliver is None):
            raise ValueError("give exactly one of router and deliver")
        self._reactor = reactor
        self.checker = checker
        self.meters = {}
        # Not router.route: wokkel's logs every stanza in full (dna.app.router).
        self._deliver = deliver if deliver is not None else partial(route, router)
        self.limits = limits if limits is not None else Limits()
        self._idleTimeout = idleTimeout
        names = [normalizeServerName(name) for name in certificates]
        certificates = dict(zip(names, certificates.values()))
        chains = {normalizeServerName(k): v for k, v in (chains or {}).items()}
        self.serverNames = frozenset(names)
        localName = names[0]
        self.federation = Federation(
            hostedDomains,
            checker,
            self._deliver,
            establish=self._establishUntilStopped,
            maxPending=maxPending,
            requestTimeout=requestTimeout,
            queueLimit=queueLimit,
            waitingLimit=self.limits.maxWaiting,
            ackLimits=self.limits.ackLimits(),
            revalidation={"grace": revalidationGrace, "tlsaLookup": tlsaLookup},
            clock=reactor,
        )
        self.flow = FlowControl(self.federation.counters, reactor, self.limits.highWater)
        self.federation.flow = self.flow
        self.connector = Connector(
            checker,
            addressResolver,
            localName,
            certificates[localName],
            trustRoot,
            reactor=reactor,
            connectTimeout=connectTimeout,
            chain=chains.get(localName, ()),
            onConnected=self._streamConnected,
            policy=fallback,
            tlsaLookup=tlsaLookup,
            pkix=pkix,
            certificates=certificates,
            chains=chains,
        )
        self.contextFactory = ServerContextFactory(
            certificates, trustRoot, localName, chains=chains, dane=tlsaLookup is not None
        )
        dane = (None if tlsaLookup is None
                else DANEPeerVerifier(tlsaLookup, self.contextFactory, reactor, pkix=pkix))
        self._streamLimits = self.limits.streamLimits(idleSeconds=idleTimeout or None)
        self.legacy = None
        policy = FallbackPolicy(fallback)
        if policy.legacy:
            # Only a server that falls back loads the legacy machinery.
            from dna.legacy.originating import Fallback

            self.legacy = Fallback(
                self.federation, checker, addressResolver, policy, certificates,
                trustRoot, localName, chains=chains, secret=dialbackSecret,
                domainCertificates=domainCertificates, domainChains=domainChains,
                reactor=reactor, connectTimeout=connectTimeout,
                onConnected=self._streamConnected, tlsaLookup=tlsaLookup,
            )
        self.factory = S2SServerFactory(
            self.serverNames,
            self.contextFactory,
            self._incomingAuthenticated,
            onConnected=self._streamConnected,
            legacy=self.legacy and self.legacy.listener,
            gate=self.limits.gate(reactor, self.federation.incidents),
            limits=self._streamLimits,
            incidents=self.federation.incidents,
            dane=dane,
        )
        self.port = None
        self._listen = listen
        self._streams = set()
        self._stopping = False
        self.streamObservers = []
        self._attempts = {}
        # (local name, target) -> the search for a stream to it in flight
        self._reaching = Coalescer()
        if router is not None:
            # The router's default route feeds send() (wokkel's
            # ServerService puts a pipe there: one more dispatch per stanza).
            router.addRoute(None, DefaultRoute(self.send))

    @classmethod
    def fromConfiguration(cls, configuration, router=None, deliver=None, reactor=None):
        """
        Build the service an operator's configuration describes.

        @param configuration: A L{dna.app.config.Configuration}.
        @param router: See L{__init__}; or C{deliver}.
        @rtype: L{DNAService}
        """
        from dna.app.delegation import (
            makeDelegationChecker,
            makeProofChecker,
            makeTLSALookup,
        )
        from dna.dns.addresses import AddressResolver
        from dna.dns.client import DNSClient

        if reactor is None:
            from twisted.internet import reactor
        arguments = configuration.delegationCheckerArguments()
        client = DNSClient(arguments["servers"], reactor, deadline=arguments["deadline"])
        checker = makeProofChecker(
            reactor, makeDelegationChecker(reactor, client=client, **arguments),
            configuration.delegationProofs)
        resolver = AddressResolver(client=client, hosts=configuration.hosts)
        tlsaLookup = None
        if "dane" in configuration.identityProofs:
            tlsaLookup = makeTLSALookup(reactor, client, hosts=configuration.hosts, **arguments)
        s2s = cls(
            configuration.domains,
            configuration.certificates,
            configuration.trustRoot,
            checker,
            resolver,
            router=router,
            deliver=deliver,
            listen=configuration.listen,
            chains=configuration.chains,
            reactor=reactor,
            idleTimeout=configuration.idleTimeout,
            connectTimeout=configuration.connectTimeout,
            maxPending=configuration.maxPending,
            requestTimeout=configuration.requestTimeout,
            queueLimit=configuration.queueLimit,
            fallback=configuration.fallback,
            dialbackSecret=configuration.dialbackSecret,
            tlsaLookup=tlsaLookup,
            pkix="pkix" in configuration.identityProofs,
            domainCertificates={d.name: d.certificate for d in configuration.domainCertificates},
            domainChains={d.name: d.chain for d in configuration.domainCertificates},
            limits=configuration.limits,
            revalidationGrace=configuration.revalidationGrace,
        )
        s2s.dnsClient = client
        s2s.configuration = configuration
        return s2s

    def startService(self):
        self._stopping = False
        if self._listen is not None and self.port is None:
            listener = strports.service(
                withBacklog(self._listen, self.limits.backlog), self.factory, reactor=self._reactor
            )
            listener.setServiceParent(self)
        service.MultiService.startService(self)

    def listen(self, endpoint):
        """
        Listen on an L{IStreamServerEndpoint} (instead of a strport).

        @return: A L{Deferred} firing with the L{IListeningPort}.
        """

        def listening(port):
            self.port = port
            return port

        return endpoint.listen(self.factory).addCallback(listening)

    def stopService(self):
        """
        Stop listening and close every connection; the L{Deferred} returned
        fires once all are closed (aborted after a few seconds).
        """
        self._stopping = True
        self.federation.stop()
        stopping = [defer.maybeDeferred(service.MultiService.stopService, self)]
        if self.port is not None:
            port, self.port = self.port, None
            stopping.append(defer.maybeDeferred(port.stopListening))
        for xs in list(self._streams):
            stopping.append(self._close(xs))
        self._abandonAttempts()
        return defer.gatherResults(stopping, consumeErrors=True)

    def _establishUntilStopped(self, sender, target):
        """
        L{_establish}, failing with L{ServiceStopping} if the service stops
        first: the stanzas waiting for the pair then bounce at once instead
        of waiting on a DNS lookup or connection that outlives the service.
        """
        attempt = self._establish(sender, target)
        outcome = defer.Deferred()
        self._attempts[outcome] = attempt

        def settled(result):
            # The outcome has the result, or (stopped) nobody wants it.
            if self._attempts.pop(outcome, None) is not None:
                outcome.callback(result)

        attempt.addBoth(settled)
        return outcome

    def _abandonAttempts(self):
        attempts, self._attempts = self._attempts, {}
        for outcome, attempt in attempts.items():
            outcome.errback(ServiceStopping())
            attempt.cancel()

    def _close(self, xs, grace=3.0):
        """
        Close a stream gracefully, abort it if it lingers.
        """
        transport = xs.transport
        if transport is None or not transport.connected:
            # Already lost; its end event may be being dispatched right now.
            self._streams.discard(xs)
            return defer.succeed(None)
        ended = defer.Deferred()
        xs.addOnetimeObserver(STREAM_END_EVENT, lambda reason: ended.callback(None))
        if xs.transport is not None:
            if xs.headerSent:
                xs.sendFooter()
            xs.transport.loseConnection()
            timer = self._reactor.callLater(grace, xs.transport.abortConnection)
            ended.addBoth(lambda result: timer.active() and timer.cancel())
        return ended

    # Router side

    def send(self, stanza):
        """
        Send a stanza from one of our domains to a remote domain (the
        router's default route).

        A stanza that is not from one of our domains is not sent out: when it
        is for one of our domains, nothing here serves its recipient, and the
        sender gets C{<service-unavailable/>} (RFC 6120 section 8.3.3.19).
        """
        attributes = stanza.attributes
        try:
            sender = domainOf(attributes.get("from"))
            target = domainOf(attributes.get("to"))
        except InvalidAddress as e:
            _log.info("Not routing stanza with bad address {address!r}", address=e.address)
            return
        if sender in self.federation.hostedDomains:
            self.federation.send(stanza, (sender, target))
        elif target in self.federation.hostedDomains and stanza.getAttribute("type") != "error":
            _log.info(
                "No local route to {to!r}: answering service-unavailable",
                to=stanza.getAttribute("to"),
            )
            self.federation.send(
                errorResponse(stanza, error.StanzaError("service-unavailable", type="cancel"))
            )
        else:
            _log.info(
                "Dropped stanza from {sender!r} to {to!r}: not from a hosted domain, "
                "and no local route (errors are never answered)",
                sender=stanza.getAttribute("from"),
                to=stanza.getAttribute("to"),
            )

    # Streams

    def _streamConnected(self, xs):
        """
        Every new stream, either way: watch it for idleness, and keep it until
        it ends so that stopping closes it.
        """
        self._streams.add(xs)
        # Outgoing streams too: the receiving factory's already are.
        self._streamLimits.apply(xs, self.federation.incidents)
        xs.addOnetimeObserver(STREAM_END_EVENT, lambda reason: self._streams.discard(xs))
        self._meter(xs)
        # What it delivers to a full component pauses it (dna.app.flow).
        self.flow.source(xs)
        if self._idleTimeout:
            IdleWatch(xs, self._idleTimeout, self._reactor)
        for observer in list(self.streamObservers):
            observer(xs)
        if self._stopping:
            # Connected while stopping (an attempt abandoned too late, or
            # accepted before the port closed): it would outlive the service.
            self._close(xs)

    def componentConnected(self, xs):
        """
        A local service connected as an XEP-0114 component: pause it while
        an S2S stream it feeds is full, and stop reading the S2S streams
        feeding it while its own transport is (L{dna.app.flow}).
        """
        self.flow.source(xs)
        self.flow.sink(xs, holdOnSend=True)

    # The control API (dna.app.control)

    def _meter(self, xs):
        """
        Count a new stream's bytes and activity until it ends.
        """
        self.meters[xs] = StreamMeter(xs, self._reactor)
        xs.addOnetimeObserver(STREAM_END_EVENT, lambda reason: self.meters.pop(xs, None))

    def closeStream(self, streamID):
        """
        Close one authenticated stream cleanly: what the peer has not
        acknowledged is sent again, or bounced, as on any loss.

        @return: A L{Deferred} firing once it is closed, or L{None} when no
            open stream has that id.
        """
        authorization = self.federation.streams.get(streamID)
        if authorization is None:
            return None
        _log.info("Closing stream {streamID} as the operator asked",
                  event="stream-closed", reason="operator", streamID=streamID)
        return self._close(authorization.xs)

    def _incomingAuthenticated(self, xs, serverNames, ourName):
        authorization = self.federation.streamAuthenticated(
            xs, initiating=False, serverNames=serverNames, bidi=False
        )

        # The name the peer reached: our pairs ride this stream only when it
        # is the one our own streams come from (L{_reuse}).
        authorization.localName = ourName

        def onBidi(element):
            authorization.bidi = True

        xs.addOnetimeObserver(BIDI_REQUEST, onBidi)
        _log.info(
            "Stream {streamID} from {names} to {ourName} authenticated",
            event="stream-authenticated",
            streamID=xs.sid,
            names=sorted(serverNames),
            ourName=ourName,
        )

    def _establish(self, sender, target):
        """
        Section 5: a stream that may carry C{sender} -> C{target}.
        """
        if self._stopping:
            # Stanzas still unsent when we stop bounce rather than reconnect.
            return defer.fail(ServiceStopping())
        if self.legacy is not None and self.legacy.isKnownLegacy(target):
            return self.legacy.establish(sender, target)
        d = self.localNameFor(sender)

        def reach(localName):
            return self._reaching.wait((localName, target), self._reach, target, localName)

        d.addCallback(reach)
        if self.legacy is not None:
            # Section 7: peers without DNA get streams between domains.
            d.addErrback(self.legacy.fallBack, sender, target)
        return d

    def _reach(self, target, localName):
        """
        Steps 1-8 for C{target}, from our server name C{localName}: its
        delegation, then an open stream to reuse or a new one. The pairs of
        one target share one such attempt while it is in flight (L{_reaching}):
        a burst of new pairs checks each target's delegation once, not once
        per pair.

        @return: A L{Deferred} firing with the L{StreamAuthorization}.
        """
        lookup = self.connector.delegation(target)

        def reuseOrConnect(result):
            targets = [record for record in result.records if record.target]
            authorization = self._reuse(targets, target, localName)
            if authorization is not None:
                return authorization
            return self._connectInOrder(targets, target, [], localName=localName)

        return lookup.addCallback(reuseOrConnect)

    def localNameFor(self, sender):
        """
        The server name our streams for C{sender} come from: the one of ours
        its SRV records name (the peer checks C{sender} against the name our
        stream comes from), our first (C{connector.localName}) when they
        name it among others, or name none of ours, or cannot be trusted
        (bogus or indeterminate), or when we have one name only.
        The delegation checker's cache makes it cheap.

        @param sender: One of our hosted domains, normalised.
        @return: A L{Deferred} firing with the server name.
        """
        first = self.connector.localName
        if len(self.serverNames) == 1:
            return defer.succeed(first)
        d = defer.maybeDeferred(self.checker.check, sender)

        def chosen(result):
            if result.status not in ("secure", "insecure"):
                return first
            targets = [record.target for record in result.records
                       if record.target in self.serverNames]
            if not targets or first in targets:
                return first
            return targets[0]

        def failed(failure):
            _log.failure("Could not tell which server name {sender} is delegated to",
                         failure, sender=sender)
            return first

        return d.addCallbacks(chosen, failed)

    def _reuse(self, records, domain, localName=None):
        """
        Step 3: an open stream whose server names include an SRV target.

        Whoever opened it: a stream the peer opened with XEP-0288 carries
        our pairs too (draft-ietf-xmpp-dna-10 section 4.4.2,
        piggybacking). Its server names were authenticated by the peer's
        certificate (or DANE), so an SRV target among them proves that the
        peer serves C{domain}, as the delegation check would
        (L{IDelegationChecker.isDelegated} with those names); a one-way
        stream the peer opened is never used (C{canSend}), nor one that
        comes from or reached another of our server names than
        C{localName}, the one the sender is delegated to
        (L{localNameFor}): the peer checks our sender domains against the
        name our stream comes from or it reached.

        @param localName: Our server name the stream must come from, or
            L{None} for the first (C{connector.localName}).
        """
        connections = self.federation.tables.connections
        first = self.connector.localName
        ourName = first if localName is None else localName
        for record in records:
            for streamID in connections.streamsForServerName(record.target):
                authorization = self.federation.streams.get(streamID)
                if authorization is not None and authorization.canSend and (
                        (authorization.localName or first) == ourName):
                    if getattr(self.checker, "usesPOSH", False):
                        return self._confirmDelegation(authorization, domain)
                    connections.addDelegatedNames(streamID, [domain])
                    if not authorization.initiating:
                        _log.debug(
                            "Stream {streamID}: reaching {domain} on the bidi stream "
                            "{target} opened",
                            event="piggyback", streamID=streamID, remote=domain,
                            domain=domain, target=record.target,
                        )
                    return authorization
        return None

    def _confirmDelegation(self, authorization, domain):
        """
        With POSH among the delegation prooftypes (issue 12): C{domain} is
        delegated to the peer of C{authorization}, by the prooftypes in
        order with the certificate it presented, before the stream carries
        the domain's stanzas.

        @return: A L{Deferred} firing with C{authorization}, or failing with
            L{NotDelegated} saying why each prooftype failed.
        """
        try:
            certificate = peerCertificate(authorization.xs.transport)
        except Exception:
            certificate = None
        d = defer.maybeDeferred(self.checker.isDelegated, domain, authorization.serverNames,
                                certificate=certificate)

        def decided(verdict):
            if not verdict:
                raise NotDelegated(domain, getattr(verdict, "status", "not-delegated"),
                                   getattr(verdict, "explanation", None))
            self.federation.tables.connections.addDelegatedNames(
                authorization.streamID, [domain])
            return authorization

        return d.addCallback(decided)

    def _connectInOrder(self, records, domain, attempts, reasons=None, localName=None):
        """
        Steps 4-8: connect to the SRV targets in order until one works, from
        our server name C{localName} (L{None}: the first).
        """
        reasons = [] if reasons is None else reasons
        record = records[0]
        d = self.connector.connect(record.target, record.port, localName)

        def connected(xs):
            authorization = self.federation.streams.get(xs.sid)
            if authorization is None or authorization.xs is not xs:
                if xs.sid in self.federation.streams or xs.sid in self.federation.tables.connections:
                    xs.transport.abortConnection()
                    raise StreamIDInUse(xs.sid)
                names = peerServerNames(xs.transport)
                authorization = self.federation.streamAuthenticated(
                    xs, initiating=True, serverNames=names, bidi=xs.bidi
                )
                authorization.localName = getattr(xs, "localName", None)
                _log.info(
                    "Stream {streamID} to {target} ({names}) authenticated",
                    event="stream-authenticated",
                    streamID=xs.sid,
                    remote=domain,
                    target=record.target,
                    names=sorted(names),
                )
            if getattr(self.checker, "usesPOSH", False):
                return self._confirmDelegation(authorization, domain)
            self.federation.tables.connections.addDelegatedNames(xs.sid, [domain])
            return authorization

        def failed(failure):
            attempts.append((record.target, failure.getErrorMessage()))
            reasons.append(failure.value)
            tls = tlsFailure(failure)
            if tls is not None:
                self.federation.counters["tls-failed-" + tls] += 1
            _log.info(
                "Could not connect to {target} for {domain}: {reason}",
                event="connect-failed",
                remote=domain,
                target=record.target,
                domain=domain,
                reason=failure.getErrorMessage(),
                condition=tls,
            )
            if len(records) > 1 and not self._stopping:
                return self._connectInOrder(records[1:], domain, attempts, reasons, localName)
            raise ConnectFailed(domain, attempts, reasons)

        return d.addCallbacks(connected, failed)
