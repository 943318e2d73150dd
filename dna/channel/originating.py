"""
The Originating Server's side of a DNA connection.

draft-ietf-xmpp-dna-01 section 5, the eight steps: look up the target
domain's SRV records and require them to be DNSSEC-secure (steps 1-2); reuse a
connection whose server names include an SRV target (step 3); otherwise
connect to the targets in RFC 2782 order, open a stream from our server name
(the one the sender domain is delegated to: the peer checks it against that
name) to the target's, require STARTTLS with SNI and our client certificate, and
check the peer's certificate against the target name (steps 4-8). The
connection then carries C{<db:result/>} requests for every domain pair
between us and the names it serves (section 6).

No downgrade (issue 9 section 5): everything before TLS is plaintext that a
man in the middle may rewrite, so a stream whose features lack
C{<starttls/>} fails with L{StartTLSStripped}, and a refusal before TLS by a
server name we authenticated over DNA before (L{Connector.knowsDNA}) fails
with L{PlaintextRefusal}: neither is a reason to fall back
(L{dna.legacy.policy.fallbackReason}). Each is logged once and counted in
L{Connector.downgrades}. C{<dna/>} itself is only offered inside TLS, where
nobody can strip it.
"""

import collections

from twisted.internet import defer, endpoints, interfaces, protocol
from twisted.internet import error as ierror
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.xish import xmlstream as xishstream

from dna.channel.dane import TLSARecord, usableRecords
from dna.channel.features import BidiInitializer, StartTLSInitializer
from dna.channel.stream import S2SStream
from dna.channel.tls import clientContextFactory
from dna.core.coalesce import Coalescer
from dna.core.names import normalizeDomain
from dna.error import (
    DANEUnavailable,
    DowngradeAttempt,
    InvalidAddress,
    NoAddress,
    NotDelegated,
    PeerLacksDNA,
    PlaintextRefusal,
    StartTLSStripped,
)
from dna.namespaces import NS_DIALBACK, NS_DNA, NS_SERVER, NS_STREAMS

_log = Logger()

#: Seconds allowed for one connection attempt, TCP to authenticated stream.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Seconds a server name we authenticated over DNA is remembered as
#: speaking DNA, so that a refusal of it in plaintext is not believed (as
#: HTTP Strict Transport Security remembers a site).
DEFAULT_DNA_MEMORY = 30 * 24 * 3600.0


def noteDowngrade(counts, reason, policy):
    """
    Log a downgrade attempt once and count it.

    @param counts: A L{collections.Counter} keyed by what was stripped or
        forged.
    @param reason: The L{DowngradeAttempt}.
    @param policy: The fallback policy's level, for the log.
    """
    if isinstance(reason, StartTLSStripped):
        feature = "starttls"
    else:
        feature = "plaintext <{}/>".format(reason.condition)
    counts[feature] += 1
    _log.warn(
        "Downgrade attempt on the stream to {peer}: {feature} before TLS; "
        "not falling back (policy {policy})",
        event="downgrade-refused",
        remote=reason.serverName,
        reason=feature,
        peer=reason.serverName,
        feature=feature,
        policy=policy,
    )


class DNAInitializer(xmlstream.BaseFeatureInitiatingInitializer):
    """
    Require the DNA feature: a Receiving Server without it does not accept
    C{<db:result/>} requests for delegated domains on a server-name stream.
    """

    feature = (NS_DNA, "dna")

    def __init__(self, xs):
        xmlstream.BaseFeatureInitiatingInitializer.__init__(self, xs, required=True)

    def start(self):
        return defer.succeed(None)


class DNAConnectAuthenticator(xmlstream.ConnectAuthenticator):
    """
    Originating Server: a stream from our server name to the peer's.
    """

    namespace = NS_SERVER

    def __init__(self, thisName, otherName):
        xmlstream.ConnectAuthenticator.__init__(self, otherName)
        self.thisName = thisName

    def connectionMade(self):
        xs = self.xmlstream
        xs.thisEntity = jid.JID(self.thisName)
        xs.prefixes = {NS_STREAMS: "stream", NS_DIALBACK: "db"}
        xmlstream.ConnectAuthenticator.connectionMade(self)

    def streamStarted(self, rootElement):
        """
        Refuse a peer that answers for another name than the one we asked.
        """
        peerName = rootElement.getAttribute("from")
        if peerName is not None:
            try:
                peerName = normalizeDomain(peerName)
            except InvalidAddress:
                peerName = None
            if peerName != normalizeDomain(self.otherHost):
                self.xmlstream.sendStreamError(error.StreamError("invalid-from"))
                return
            # Keep ConnectAuthenticator from interning a hostile name.
            del rootElement.attributes["from"]
        xmlstream.ConnectAuthenticator.streamStarted(self, rootElement)


class _StreamFactory(xishstream.BootstrapMixin, protocol.ClientFactory):
    """
    Connect one stream and fire a L{Deferred} with it once authenticated,
    or with the reason it was not; a stream that fails is closed.

    @ivar stream: The stream, once TCP is connected.
    """

    def __init__(self, authenticator, initializers, deferred, onConnected):
        xishstream.BootstrapMixin.__init__(self)
        self._authenticator = authenticator
        self._initializers = initializers
        self._deferred = deferred
        self._onConnected = onConnected
        self.stream = None
        self.initializers = ()
        self.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._connected)
        self.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        self.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._failed)
        self.addBootstrap(xmlstream.STREAM_ERROR_EVENT, self._failed)
        self.addBootstrap(xmlstream.STREAM_END_EVENT, self._failed)

    def buildProtocol(self, addr):
        xs = S2SStream(self._authenticator)
        xs.factory = self
        self.installBootstraps(xs)
        return xs

    def _connected(self, xs):
        self.stream = xs
        if interfaces.ITCPTransport.providedBy(xs.transport):
            # Nagle stalls the TLS handshake's last flight (~40 ms per link).
            xs.transport.setTcpNoDelay(True)
        xs.initializers = [make(xs) for make in self._initializers]
        # The stream pops them as they complete.
        self.initializers = tuple(xs.initializers)
        if self._onConnected is not None:
            self._onConnected(xs)

    def _authenticated(self, xs):
        d, self._deferred = self._deferred, None
        if d is not None:
            d.callback(xs)

    def _failed(self, reason):
        if not isinstance(reason, Failure):
            reason = Failure(ierror.ConnectionLost("stream ended: {!r}".format(reason)))
        self.fail(reason)

    def fail(self, reason):
        """
        Give up: drop the connection and fail the L{Deferred} with
        C{reason}, unless it has fired already (every way of failing goes
        through here, so it fires once).
        """
        d, self._deferred = self._deferred, None
        if d is None:
            return
        self.abort()
        d.errback(reason)

    @property
    def encrypted(self):
        """
        Whether TLS started on the stream: until then, everything received
        could have been written by anyone on the path.
        """
        return any(getattr(i, "encrypted", False) for i in self.initializers)

    def abort(self):
        """
        Drop the connection, if any.
        """
        if self.stream is not None and self.stream.transport is not None:
            self.stream.transport.abortConnection()


class Connector:
    """
    Open authenticated DNA streams to other providers' servers.

    @ivar downgrades: A L{collections.Counter} of the downgrade attempts
        seen, by what was stripped or forged.
    """

    def __init__(
        self,
        checker,
        addressResolver,
        localName,
        clientCertificate,
        trustRoot,
        reactor,
        connectTimeout=DEFAULT_CONNECT_TIMEOUT,
        chain=(),
        onConnected=None,
        policy="dna",
        dnaMemory=DEFAULT_DNA_MEMORY,
        tlsaLookup=None,
        pkix=True,
        certificates=None,
        chains=None,
    ):
        """
        @param checker: An L{IDelegationChecker} whose C{check} gives SRV
            records and whose C{policyFor} (when present) tells whether an
            insecure delegation is allowed for a domain.
        @param addressResolver: A callable (serverName, port) -> L{Deferred}
            firing with a list of (host, port) to connect to.
        @param localName: Our server name, the stream 'from' unless
            L{connect} is given another of C{certificates}.
        @param clientCertificate: Our L{PrivateCertificate} for C{localName}.
        @param trustRoot: CAs trusted for peers' certificates.
        @param reactor: An L{IReactorTCP} and L{IReactorTime}.
        @param connectTimeout: Seconds for one target, TCP to authenticated.
        @param onConnected: Called with every new stream (idle time-outs).
        @param policy: The fallback policy's level, for the log.
        @param dnaMemory: Seconds a server name is remembered as speaking
            DNA after a DNA stream to it was authenticated.
        @param tlsaLookup: A L{dna.dns.tlsa.TLSALookup}, or L{None} for no
            DANE: with one, the TLSA records of a target decide its
            certificate (RFC 7673), and a failed TLSA lookup fails the
            connection (L{DANEUnavailable}).
        @param pkix: Whether PKIX decides for a target without TLSA
            records; if not, such a target is refused (L{DANEUnavailable}).
        @param certificates: C{{serverName: PrivateCertificate}} of our other
            server names, which streams may come from too (L{connect}).
        @param chains: C{{serverName: [Certificate]}}, their intermediates.
        """
        self._pkix = pkix
        self._checker = checker
        self._resolve = addressResolver
        self.localName = localName
        # server name -> (client certificate, intermediates)
        self._credentials = {
            name: (certificate, tuple((chains or {}).get(name, ())))
            for name, certificate in (certificates or {}).items()
        }
        self._credentials[localName] = (clientCertificate, tuple(chain))
        self._trustRoot = trustRoot
        self._reactor = reactor
        self._connectTimeout = connectTimeout
        self._onConnected = onConnected
        # (local name, server name, port) -> the connection attempt in progress
        self._connecting = Coalescer()
        self._policy = policy
        self._dnaMemory = dnaMemory
        # server name -> time until which it is known to speak DNA
        self._speaksDNA = {}
        self.downgrades = collections.Counter()
        self._tlsaLookup = tlsaLookup

    def knowsDNA(self, serverName):
        """
        Whether we authenticated a DNA stream to C{serverName} in the last
        C{dnaMemory} seconds.
        """
        until = self._speaksDNA.get(serverName)
        if until is None:
            return False
        if until < self._reactor.seconds():
            del self._speaksDNA[serverName]
            return False
        return True

    def _learnDNA(self, xs, serverName, localName=None):
        # The name it comes from, for reuse (which our sender domains it
        # may carry: the peer checks them against that name).
        xs.localName = localName if localName is not None else self.localName
        now = self._reactor.seconds()
        # Forget the expired names, so that the memory holds only the peers
        # of the last dnaMemory seconds.
        for name in [n for n, until in self._speaksDNA.items() if until < now]:
            del self._speaksDNA[name]
        self._speaksDNA[serverName] = now + self._dnaMemory
        return xs

    def delegation(self, domain):
        """
        Steps 1-2: the SRV records of C{domain}, if the checker's policy lets
        us use them.

        @return: A L{Deferred} firing with the L{IDelegationResult}, or
            failing with L{NotDelegated}.
        """
        d = self._checker.check(domain)

        def decide(result):
            targets = [record.target for record in result.records if record.target]
            if not targets:
                raise NotDelegated(domain, result.status, result.reason or "no SRV target")
            # The checker's isDelegated applies its policy (secure required,
            # or insecure allowed for this domain); its cache makes it cheap.
            verdict = self._checker.isDelegated(domain, targets)

            def judged(delegated):
                if not delegated:
                    # POSH (issue 12) may still prove it, by the certificate
                    # of the server we connect to: the service confirms.
                    poshCandidates = getattr(self._checker, "poshCandidates", None)
                    candidates = poshCandidates and poshCandidates(result)
                    if candidates is not None:
                        return candidates
                    raise NotDelegated(domain, result.status, result.reason)
                return result

            return verdict.addCallback(judged)

        return d.addCallback(decide)

    @property
    def localNames(self):
        """
        The server names our streams may come from.
        """
        return frozenset(self._credentials)

    def connect(self, serverName, port, localName=None):
        """
        Steps 4-8 for one SRV target: an authenticated stream from
        C{localName} to C{serverName}; concurrent calls for one pair of
        names share the attempt.

        @param localName: The server name the stream comes from (its 'from'
            and client certificate), one of L{localNames}; L{None} for
            L{localName}.
        @return: A L{Deferred} firing with the authenticated L{XmlStream};
            its C{localName} is the name it comes from.
        """
        if localName is None:
            localName = self.localName
        if localName not in self._credentials:
            raise ValueError(f"not one of our server names: {localName!r}")
        return self._connecting.wait(
            (localName, serverName, port), self._attempt, serverName, port, localName)

    def _attempt(self, serverName, port, localName):
        d = self._resolve(serverName, port)
        if self._tlsaLookup is None:
            return d.addCallback(self._tryAddresses, serverName, (), localName=localName)
        # Whether DANE applies is looked up along with the addresses, not
        # after them: on a cold resolver, round trips before the first
        # connection are the longest wait of a set-up. (The addresses fail
        # first, as before; the TLSA outcome is cached all the same.)
        lookup = self._tlsaLookup.lookup(serverName, port)

        def withTLSA(addresses):
            return lookup.addCallback(daneRecords, addresses)

        def daneRecords(result, addresses):
            if result.failed:
                raise DANEUnavailable(serverName, result.reason)
            records = [TLSARecord.fromRdata(rdata) for rdata in result.records]
            if not self._pkix and not usableRecords(records):
                raise DANEUnavailable(serverName, f"{result.reason}, and PKIX is not "
                                      f"an accepted identity proof")
            return self._tryAddresses(addresses, serverName, records, port, localName)

        return d.addCallback(withTLSA)

    def _tryAddresses(self, addresses, serverName, tlsa, tlsaPort=None, localName=None):
        addresses = list(addresses)
        if not addresses:
            return defer.fail(NoAddress(serverName, "no address"))
        host, port = addresses.pop(0)
        d = self._connectOne(host, port, serverName, tlsa, tlsaPort, localName)
        if addresses:
            d.addErrback(lambda f: self._tryAddresses(
                addresses, serverName, tlsa, tlsaPort, localName))
        return d

    def _connectOne(self, host, port, serverName, tlsa=(), tlsaPort=None, localName=None):
        if localName is None:
            localName = self.localName
        certificate, chain = self._credentials[localName]
        authenticator = DNAConnectAuthenticator(localName, serverName)
        context = clientContextFactory(
            serverName, self._trustRoot, certificate, chain=chain,
            tlsa=tlsa, clock=self._reactor, tlsaPort=tlsaPort,
        )
        initializers = [
            lambda xs: StartTLSInitializer(xs, context),
            BidiInitializer,
            DNAInitializer,
        ]
        authenticated = defer.Deferred()
        factory = _StreamFactory(authenticator, initializers, authenticated, self._onConnected)
        if ":" in host:
            endpoint = endpoints.TCP6ClientEndpoint(self._reactor, host, port, self._connectTimeout)
        else:
            endpoint = endpoints.TCP4ClientEndpoint(self._reactor, host, port, self._connectTimeout)
        connecting = endpoint.connect(factory)
        connecting.addErrback(factory.fail)
        timer = self._reactor.callLater(self._connectTimeout, self._timedOut, connecting, factory)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        authenticated.addBoth(cancelTimer)
        authenticated.addCallbacks(
            self._learnDNA, self._explain, callbackArgs=(serverName, localName),
            errbackArgs=(serverName, factory),
        )
        return authenticated

    def _timedOut(self, connecting, factory):
        factory.fail(Failure(ierror.TimeoutError("no authenticated stream in time")))
        connecting.cancel()

    def _explain(self, failure, serverName, factory):
        """
        Say why an attempt failed in terms of section 7: a peer without
        DNA, or a downgrade attempt.
        """
        if (failure.check(error.StreamError) and not factory.encrypted
                and self.knowsDNA(serverName)):
            failure = Failure(PlaintextRefusal(serverName, failure.value.condition))
        if failure.check(DowngradeAttempt):
            noteDowngrade(self.downgrades, failure.value, self._policy)
            return failure
        if failure.check(xmlstream.FeatureNotAdvertized):
            # Only DNAInitializer requires a feature, and it runs after TLS.
            raise PeerLacksDNA(serverName)
        return failure
