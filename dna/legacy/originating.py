"""
Streams with servers that do not speak DNA (draft-ietf-xmpp-dna-01
section 7, Backward Compatibility), for the Originating Server, and the one
object a L{dna.app.service.DNAService} holds for all of it.

When a DNA attempt fails in a way that points at a legacy peer
(L{dna.legacy.policy.fallbackReason}), the pair is sent over a stream from our
sending domain to the target domain, "using the Remote Domain as stream
to-attribute": to the domain's SRV targets or the domain itself, with the
domain in SNI, our certificate for the sending domain when we hold one, and
STARTTLS first (Prosody requires it before dialback). The stream is
authenticated by SASL EXTERNAL (XEP-0178) when the peer offers it and our
certificate covers the sender, else by Server Dialback (XEP-0220) when the
policy allows it. A peer that offers C{<dna/>} there is refused: two DNA
servers never fall back. Features without C{<starttls/>} fail the stream
(L{dna.error.StartTLSStripped}, RFC 7590), logged and counted in
L{LegacyConnector.downgrades}: no legacy stream is ever unencrypted.

A legacy stream carries one domain pair, plus the pairs with the same
target that the peer accepts piggy-backed (draft-ietf-xmpp-dna-10 section
4.4): those with a key when the stream was authenticated by dialback, those
our certificate covers when it was authenticated by SASL EXTERNAL (a peer
that insists on certificates may never answer a dialback request). When a
piggy-backed request gets no answer, the pair gets a stream of its own.
"""

import collections

import attr
from twisted.internet import defer, endpoints
from twisted.internet import error as ierror
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT

from dna.channel.features import BidiInitializer, StartTLSInitializer, peerOffersDNA
from dna.channel.originating import (
    DEFAULT_CONNECT_TIMEOUT,
    DNAConnectAuthenticator,
    _StreamFactory,
    noteDowngrade,
)
from dna.channel.tls import daneIdentity, tlsFailure
from dna.core.coalesce import Coalescer
from dna.core.names import normalizeServerName
from dna.error import (
    ConnectFailed,
    DNAError,
    DowngradeAttempt,
    DowngradeRefused,
    NoDialback,
    NotDelegated,
    RequestTimedOut,
    StreamIDInUse,
)
from dna.legacy.authorization import LegacyAuthorization
from dna.legacy.dane import LegacyDANE
from dna.legacy.dialback import (
    AuthoritativeResponder,
    DialbackKeys,
    OriginatingDialbackInitializer,
    Verifier,
    offersDialback,
)
from dna.legacy.policy import fallbackReason, legacyTargets, mayPiggyback
from dna.legacy.receiving import LegacyListener
from dna.legacy.sasl import SASLExternalInitializer
from dna.legacy.tls import (
    LegacyServerContexts,
    certificateFor,
    legacyClientCreator,
    noteDANE,
    peerVerified,
)
from dna.namespaces import NS_DIALBACK

_log = Logger()

#: Seconds a domain that did not speak DNA is reached by legacy streams
#: straight away, without trying DNA first.
DEFAULT_LEGACY_MEMORY = 3600.0


@attr.s(frozen=True, slots=True)
class _Target:
    """
    Where a legacy stream's TLS goes: an SRV target (or the domain) and its
    port, and the usable TLSA records that decide its certificate, if any.
    """

    serverName = attr.ib()
    port = attr.ib()
    tlsa = attr.ib(converter=tuple)


class LegacyConnectAuthenticator(DNAConnectAuthenticator):
    """
    Originating Server: a stream from our domain to the peer's domain.
    Notes whether the peer's header declares the dialback namespace, as
    servers that predate the dialback stream feature do.
    """

    def streamStarted(self, rootElement):
        prefixes = getattr(rootElement, "localPrefixes", None) or {}
        self.xmlstream.peerDeclaresDialback = NS_DIALBACK in prefixes.values()
        DNAConnectAuthenticator.streamStarted(self, rootElement)


class PeerCheckInitializer:
    """
    After TLS on a legacy stream: refuse a peer that speaks DNA (no
    downgrade), and note in C{xs.peerVerified} whether its certificate
    proves the target domain: by PKIX, or by the TLSA records of the SRV
    target it was reached through (L{dna.legacy.dane}), which prove the
    target domain alone.
    """

    def __init__(self, xs, target):
        self.xmlstream = xs
        self._target = target

    def initialize(self):
        xs = self.xmlstream
        if peerOffersDNA(xs):
            _log.info(
                "Not falling back: {target} offers DNA on the legacy stream, so the "
                "refusal of the DNA stream stands",
                event="downgrade-refused",
                remote=self._target,
                reason="DNA offered on the legacy stream",
                target=self._target,
            )
            raise DowngradeRefused(self._target)
        dane = daneIdentity(xs.transport)
        if dane is not None:
            noteDANE(xs.transport, [self._target])
            _log.info(
                "The certificate of {target} is authenticated by DANE "
                "(TLSA records of {serverName}:{port})",
                target=self._target, serverName=dane[0], port=dane[1],
            )
        xs.peerVerified = peerVerified(xs.transport, self._target)
        if not xs.peerVerified:
            _log.info(
                "The certificate of {target} does not verify: relying on DNS, as "
                "dialback does (policy dna+pkix+dialback)",
                target=self._target,
            )
        return None


class LegacyBidiInitializer(BidiInitializer):
    """
    Ask for XEP-0288 only from a peer whose certificate proves its domain:
    we accept its stanzas on this stream then.
    """

    def initialize(self):
        if not self.xmlstream.peerVerified:
            self.xmlstream.bidi = False
            return None
        return BidiInitializer.initialize(self)


class LegacyConnector:
    """
    Open legacy streams: authenticated ones for a domain pair, and
    unauthenticated ones that carry C{<db:verify/>}.

    @ivar downgrades: A L{collections.Counter} of the downgrade attempts
        seen, by what was stripped.
    """

    def __init__(self, checker, addressResolver, policy, keys, certificates, trustRoot,
                 reactor, chains=None, connectTimeout=DEFAULT_CONNECT_TIMEOUT,
                 onConnected=None, dane=None, counters=None):
        """
        @param checker: An L{IDelegationChecker}, for the domains' SRV records.
        @param addressResolver: (host name, port) -> L{Deferred} of
            [(address, port)].
        @param policy: The L{dna.legacy.policy.FallbackPolicy}.
        @param keys: Our L{DialbackKeys}.
        @param certificates: C{{name: PrivateCertificate}}: the certificates
            we may present, the first being the default when none covers
            the sending domain.
        @param trustRoot: CAs trusted for peers' certificates.
        @param reactor: The L{IReactorTCP} and L{IReactorTime} to connect
            with.
        @param chains: C{{name: [Certificate]}} of intermediates.
        @param onConnected: Called with every new stream.
        @param dane: A L{dna.legacy.dane.LegacyDANE}, or L{None} for no
            DANE: with one, the TLSA records of a secure SRV target decide
            its certificate (RFC 7673).
        @param counters: A L{collections.Counter} the connections DANE
            refused are counted in (C{"tls-failed-dane-mismatch"},
            C{"tls-failed-dane-unavailable"}).
        """
        self._dane = dane
        self.counters = collections.Counter() if counters is None else counters
        self._checker = checker
        self._resolve = addressResolver
        self._policy = policy
        self._keys = keys
        self._certificates = dict(certificates)
        self._chains = dict(chains or {})
        self._defaultName = next(iter(self._certificates))
        self._trustRoot = trustRoot
        self._reactor = reactor
        self._connectTimeout = connectTimeout
        self._onConnected = onConnected
        self.downgrades = collections.Counter()

    def certificateCovers(self, domain):
        """
        Whether we hold a certificate valid for C{domain}.
        """
        return certificateFor(domain, self._certificates) is not None

    def _credentials(self, domain):
        name = certificateFor(domain, self._certificates)
        covers = name is not None
        if name is None:
            name = self._defaultName
        return self._certificates[name], self._chains.get(name, ()), covers

    def addresses(self, domain):
        """
        Where to connect for C{domain}: its SRV targets in order, or the
        domain on port 5269 (L{legacyTargets}), resolved.

        @return: A L{Deferred} firing with a non-empty list of
            (address, port), or failing with L{dna.legacy.policy.NoLegacyRoute}
            or L{dna.dns.addresses.NoAddress}.
        """
        d = self._routes(domain)
        return d.addCallback(lambda routes: [(host, port) for host, port, tls in routes])

    def _routes(self, domain):
        """
        L{addresses}, each with what its TLS checks: a L{_Target}.

        @return: A L{Deferred} firing with a non-empty list of
            (address, port, L{_Target}); failing as L{addresses} does, or
            with L{DANEUnavailable} when no target is left whose TLSA
            records could be learnt.
        """
        d = self._checker.check(domain)

        def resolveAll(result):
            lookups = [self._target(result, name, port) for name, port in legacyTargets(result)]
            return defer.DeferredList(lookups, consumeErrors=True).addCallback(collect)

        def collect(results):
            routes = [route for ok, found in results if ok for route in found]
            if not routes:
                return results[0][1]
            return routes

        return d.addCallback(resolveAll)

    def _target(self, result, name, port):
        resolved = self._resolve(name, port)
        if self._dane is None:
            tlsa = defer.succeed(())
        else:
            tlsa = self._dane.recordsFor(result, name, port)

        def both(outcomes):
            (addresses, records) = outcomes
            target = _Target(name, port, records)
            return [(host, hostPort, target) for host, hostPort in addresses]

        def firstError(failure):
            failure.trap(defer.FirstError)
            return failure.value.subFailure

        return defer.gatherResults([resolved, tlsa], consumeErrors=True).addCallbacks(
            both, firstError)

    def connect(self, sender, target):
        """
        A stream from C{sender} to C{target}, authenticated for that pair.

        @return: A L{Deferred} firing with the L{XmlStream}, whose
            C{legacyMechanism}, C{bidi} and C{peerVerified} tell how it went.
        """
        certificate, chain, covers = self._credentials(sender)
        verify = not self._policy.dialback
        policy = self._policy
        if not covers and not policy.dialback:
            return defer.fail(
                NoDialback(
                    target,
                    "no certificate of ours covers {}, and the policy ({}) does not "
                    "allow dialback".format(sender, policy.level),
                )
            )

        def initializers(route):
            return [
                lambda xs: StartTLSInitializer(
                    xs, self._tls(target, route, certificate, chain, verify)
                ),
                lambda xs: PeerCheckInitializer(xs, target),
                LegacyBidiInitializer,
                lambda xs: SASLExternalInitializer(
                    xs, sender, usable=policy.pkix and covers, fallback=policy.dialback
                ),
                lambda xs: OriginatingDialbackInitializer(
                    xs, sender, target, self._keys, allowed=policy.dialback
                ),
            ]

        return self._connect(sender, target, initializers)

    def connectForVerification(self, local, remote):
        """
        A stream from C{local} to C{remote} for C{<db:verify/>}: encrypted,
        not authenticated (XEP-0220 section 2.1.2).
        """
        certificate, chain, covers = self._credentials(local)

        def initializers(route):
            return [
                lambda xs: StartTLSInitializer(
                    xs, self._tls(remote, route, certificate, chain, False)
                ),
            ]

        return self._connect(local, remote, initializers)

    def _tls(self, domain, route, certificate, chain, verify):
        return legacyClientCreator(
            domain, self._trustRoot, certificate, chain, verify=verify, tlsa=route.tlsa,
            serverName=route.serverName, port=route.port, clock=self._reactor,
        )

    def _connect(self, local, remote, initializers):
        """
        Try C{remote}'s addresses in order.

        @return: A L{Deferred} firing with the stream, or failing with the
            last address's L{DNAError}, or L{ConnectFailed} when that was a
            network or stream error (which the peer, or anyone on the path
            before TLS, may cause: expected, not a bug).
        """
        d = self._routes(remote)
        attempts, reasons = [], []

        def tryAll(addresses):
            addresses = list(addresses)
            host, port, route = addresses.pop(0)

            def failed(failure):
                attempts.append(("{}:{}".format(host, port), failure.getErrorMessage()))
                reasons.append(failure.value)
                if addresses:
                    return tryAll(addresses)
                if failure.check(DNAError):
                    return failure
                raise ConnectFailed(remote, attempts, reasons)

            return self._connectOne(
                host, port, local, remote, initializers(route)).addErrback(failed)

        return d.addCallback(tryAll).addErrback(self._daneRefused, remote)

    def _daneRefused(self, failure, remote):
        """
        Count and log a connection DANE refused: the certificate matched
        none of the TLSA records (L{DANEMismatch}), or the records could
        not be learnt (L{DANEUnavailable}).
        """
        reasons = failure.value.reasons if failure.check(ConnectFailed) else [failure.value]
        for reason in reasons:
            label = tlsFailure(Failure(reason))
            if label in ("dane-mismatch", "dane-unavailable"):
                self.counters["tls-failed-" + label] += 1
                _log.info(
                    "Legacy stream to {remote} refused by DANE: {reason}",
                    event="connect-failed",
                    condition=label,
                    remote=remote,
                    reason=str(reason),
                )
        return failure

    def _connectOne(self, host, port, local, remote, initializers):
        authenticator = LegacyConnectAuthenticator(local, remote)
        negotiated = defer.Deferred()
        factory = _StreamFactory(authenticator, initializers, negotiated, self._onConnected)
        # Fired by the stream or by the timer, whichever comes first.
        authenticated = defer.Deferred()

        def settle(outcome):
            if not authenticated.called:
                if isinstance(outcome, Failure):
                    authenticated.errback(outcome)
                else:
                    authenticated.callback(outcome)

        negotiated.addBoth(settle)
        if ":" in host:
            endpoint = endpoints.TCP6ClientEndpoint(self._reactor, host, port, self._connectTimeout)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(self._reactor, host, port, self._connectTimeout)
        connecting = endpoint.connect(factory)
        connecting.addErrback(
            lambda failure: None if authenticated.called else authenticated.errback(failure)
        )

        def timedOut():
            connecting.cancel()
            factory.abort()
            if not authenticated.called:
                authenticated.errback(ierror.TimeoutError("no authenticated legacy stream in time"))

        timer = self._reactor.callLater(self._connectTimeout, timedOut)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        def downgraded(failure):
            if failure.check(DowngradeAttempt):
                noteDowngrade(self.downgrades, failure.value, self._policy.level)
            return failure

        return authenticated.addBoth(cancelTimer).addErrback(downgraded)


class Fallback:
    """
    Everything a DNA service needs for peers that do not speak DNA: the
    legacy streams it opens, accepts and verifies keys over, and the memory
    of which domains are legacy.

    @ivar policy: The L{dna.legacy.policy.FallbackPolicy}.
    @ivar keys: Our L{DialbackKeys}.
    @ivar connector: The L{LegacyConnector}.
    @ivar verifier: The L{Verifier}, or L{None} without dialback.
    @ivar listener: The L{LegacyListener} for the S2S listener.
    @ivar counters: The fallbacks by reason (C{"not-delegated"}: the
        delegation is not one DNA may use; C{"no-dna"}: the peer offered
        no DNA or refused our server name), for the metrics.
    @type counters: L{collections.Counter}
    """

    def __init__(self, federation, checker, addressResolver, policy, certificates,
                 trustRoot, defaultName, reactor, chains=None, secret=None,
                 domainCertificates=None, domainChains=None,
                 connectTimeout=DEFAULT_CONNECT_TIMEOUT, onConnected=None,
                 memory=DEFAULT_LEGACY_MEMORY, tlsaLookup=None):
        """
        @param federation: The service's L{dna.app.federation.Federation}.
        @param certificates: C{{server name: PrivateCertificate}}.
        @param defaultName: The server name presented by default.
        @param reactor: The L{IReactorTCP} and L{IReactorTime} of the legacy
            streams.
        @param secret: The dialback secret (text or bytes); random if
            L{None}.
        @param domainCertificates: C{{hosted domain: PrivateCertificate}}:
            certificates for hosted domains besides those the server names'
            certificates cover.
        @param memory: Seconds a legacy domain is remembered as such.
        @param tlsaLookup: A L{dna.dns.tlsa.TLSALookup} for DANE on legacy
            streams both ways (L{dna.legacy.dane}), or L{None} for none.
        """
        self.policy = policy
        self.counters = collections.Counter()
        self._federation = federation
        self._clock = reactor
        self._memory = memory
        self.keys = DialbackKeys(secret)
        self.responder = AuthoritativeResponder(self.keys, federation.hostedDomains)
        chains = dict(chains or {})
        domainChains = {normalizeServerName(k): v for k, v in (domainChains or {}).items()}
        domainCertificates = {
            normalizeServerName(k): v for k, v in (domainCertificates or {}).items()
        }
        ordered = dict(domainCertificates)
        ordered.update(certificates)
        allChains = dict(domainChains)
        allChains.update(chains)
        # Every hosted domain that is not a server name gets the certificate
        # that covers it, or the default one.
        serving, servingChains = {}, {}
        for domain in federation.hostedDomains:
            name = normalizeServerName(domain)
            if name in certificates:
                continue
            key = certificateFor(name, ordered) or defaultName
            serving[name] = ordered[key]
            servingChains[name] = allChains.get(key, ())
        contexts = LegacyServerContexts(serving, trustRoot, chains=servingChains)
        byPreference = {defaultName: certificates[defaultName]}
        byPreference.update(ordered)
        dane = None if tlsaLookup is None else LegacyDANE(checker, tlsaLookup, reactor)
        self.connector = LegacyConnector(
            checker, addressResolver, policy, self.keys, byPreference, trustRoot,
            chains=allChains, reactor=reactor, connectTimeout=connectTimeout,
            onConnected=onConnected, dane=dane, counters=federation.counters,
        )
        self.verifier = (
            Verifier(self.connector.connectForVerification, clock=reactor)
            if policy.dialback else None
        )
        self.listener = LegacyListener(
            federation.hostedDomains, frozenset(certificates), policy, self.responder,
            contexts, self._incomingAuthenticated, dane=dane, counters=federation.counters,
        )
        # domain -> time until which it is known not to speak DNA
        self._legacyUntil = {}
        # target domain -> [LegacyAuthorization] of the streams we opened
        self._outgoing = {}
        # target domain -> the stream being opened to it
        self._connecting = Coalescer()

    # Which way

    def isKnownLegacy(self, domain):
        """
        Whether C{domain} recently needed a legacy stream: new pairs to it
        skip the DNA attempt.
        """
        known = self._legacyUntil.get(domain)
        if known is None:
            return False
        if known[0] < self._clock.seconds():
            del self._legacyUntil[domain]
            return False
        return True

    def fallBack(self, failure, sender, target):
        """
        The errback of a DNA attempt: when the failure points at a peer
        without DNA, establish a legacy stream for the pair instead.

        @return: A L{Deferred} firing with a L{LegacyAuthorization} on which
            the pair is bound, or C{failure} when there is no reason to fall
            back.
        """
        why = fallbackReason(failure)
        if why is None:
            return failure
        label = "not-delegated" if failure.check(NotDelegated) else "no-dna"
        self.counters[label] += 1
        _log.info(
            "Falling back to a legacy stream for {sender} -> {target} ({policy}): {why}",
            event="fallback",
            local=sender,
            remote=target,
            reason=why,
            condition=label,
            sender=sender,
            target=target,
            policy=self.policy.level,
            why=why,
        )
        return self.establish(sender, target, why)

    # Originating Server

    def establish(self, sender, target, why=None):
        """
        A legacy stream that carries C{sender} -> C{target}: one already
        bound to it, one that accepts it piggy-backed, or a new one.

        @param why: Why a legacy stream, for the log; by default, because
            C{target} recently did not speak DNA (L{isKnownLegacy}).
        @return: A L{Deferred} firing with the L{LegacyAuthorization} once
            the pair is bound on it.
        """
        if why is None:
            known = self._legacyUntil.get(target)
            why = "known not to speak DNA ({})".format(known[1] if known else "no record")
        streams = [a for a in self._outgoing.get(target, ()) if a.canSend]
        for authorization in streams:
            if self._federation.tables.outgoing.accepts(authorization.streamID, sender, target):
                return defer.succeed(authorization)
        covers = self.connector.certificateCovers(sender)
        for authorization in streams:
            if authorization.offersDialback and mayPiggyback(covers, authorization.mechanism):
                return self._piggyback(authorization, sender, target)
        return self._connectNew(sender, target, why)

    def _piggyback(self, authorization, sender, target):
        d = authorization.request(sender, target)

        def unanswered(failure):
            failure.trap(RequestTimedOut)
            _log.info(
                "Legacy stream {streamID}: no answer for piggy-backed {sender} -> "
                "{target}: opening a stream for it",
                streamID=authorization.streamID,
                sender=sender,
                target=target,
            )
            authorization.offersDialback = False
            return self._connectNew(sender, target, "no answer to a piggy-backed request")

        return d.addCallbacks(lambda ignored: authorization, unanswered)

    def _connectNew(self, sender, target, why):
        # One stream at a time per target: the pairs that come while it is
        # being opened may ride on it, or get their own once it is up.
        joining = target in self._connecting
        d = self._connecting.wait(target, self._connect, sender, target, why)
        if joining:
            d.addCallback(lambda ignored: self.establish(sender, target, why))
        return d

    def _connect(self, sender, target, why):
        _log.info(
            "Opening a legacy stream {sender} -> {target}: {why}",
            sender=sender,
            target=target,
            why=why,
        )
        d = self.connector.connect(sender, target)
        return d.addCallback(self._outgoingAuthenticated, sender, target, why)

    def _outgoingAuthenticated(self, xs, sender, target, why):
        federation = self._federation
        if xs.sid in federation.streams or xs.sid in federation.tables.connections:
            xs.transport.abortConnection()
            raise StreamIDInUse(xs.sid)
        transport = xs.transport
        authorization = federation.streamAuthenticated(
            xs, initiating=True, serverNames=(), bidi=xs.bidi,
            factory=LegacyAuthorization, keys=self.keys, verifier=self.verifier,
            policy=self.policy, peerProves=lambda domain: peerVerified(transport, domain),
            domain=target, mechanism=xs.legacyMechanism, offersDialback=offersDialback(xs),
        )
        self.responder.install(xs)
        authorization.authenticated(sender, target, xs.legacyMechanism)
        if not self.isKnownLegacy(target):
            self._legacyUntil[target] = (self._clock.seconds() + self._memory, why)
        streams = self._outgoing.setdefault(target, [])
        streams.append(authorization)

        def gone(reason):
            streams.remove(authorization)
            if not streams:
                self._outgoing.pop(target, None)

        xs.addOnetimeObserver(STREAM_END_EVENT, gone)
        return authorization

    # Receiving Server

    def _incomingAuthenticated(self, xs, local, remote, mechanism):
        """
        The L{LegacyListener}'s callback: a stream from C{remote} to
        C{local} needs its L{LegacyAuthorization}; C{mechanism} is
        C{"EXTERNAL"} when SASL authenticated the pair, L{None} when the
        first C{<db:result/>} is still to be checked.
        """
        federation = self._federation
        transport = xs.transport
        authorization = federation.streamAuthenticated(
            xs, initiating=False, serverNames=(), bidi=xs.bidi,
            factory=LegacyAuthorization, keys=self.keys, verifier=self.verifier,
            policy=self.policy, peerProves=lambda domain: peerVerified(transport, domain),
            domain=remote, mechanism=mechanism, proven=mechanism is not None,
        )
        if mechanism is not None:
            authorization.authenticated(local, remote, mechanism)
        return authorization
