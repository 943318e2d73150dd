"""
Secure delegation of a domain's XMPP service (draft-ietf-xmpp-dna-01 section 5
steps 1-3, section 6 step 3): L{DelegationChecker} looks up the SRV records
of C{_xmpp-server._tcp.<domain>} with their DNSSEC status through an
L{IDelegationLookup} strategy (L{dna.dns.lookup}), caches the results and
decides delegations with the pure L{dna.dns.verdict.delegates}.

L{ProofChecker} decides them by the prooftypes an operator accepts, in
order (C{[policy] delegation-proofs}, draft-ietf-xmpp-dna-10 sections 5-6):
a DNSSEC-signed SRV record through a L{DelegationChecker}, and POSH (RFC
7711): a domain is delegated to the peer whose certificate's fingerprint its
POSH document lists, whatever names that certificate carries.
"""

from bisect import bisect_left
from collections import Counter, OrderedDict

import attr
import dns.exception
from twisted.internet import defer
from twisted.internet.defer import succeed
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from dna.core.coalesce import Coalescer
from dna.core.loglevel import wanted
from dna.core.names import normalizeDomain
from dna.core.proofs import (
    DELEGATED,
    NOT_DELEGATED,
    PROOF_DNSSEC_SRV,
    PROOF_POSH,
    DelegationVerdict,
    combine,
)
from dna.core.proofs import INDETERMINATE as VERDICT_INDETERMINATE
from dna.dns.client import DEFAULT_DEADLINE
from dna.dns.verdict import (
    ALLOW_INSECURE,
    BOGUS,
    INDETERMINATE,
    INSECURE,
    REQUIRE_SECURE,
    SECURE,
    DelegationResult,
    absoluteName,
    checkPolicy,
    delegates,
    needsShuffle,
    rfc2782Order,
    srvName,
)
from dna.error import InvalidAddress
from dna.interfaces import IDelegationChecker, IDelegationPolicy

_log = Logger()

#: The upper bounds, in seconds, of the lookup latency buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CheckStatistics:
    """
    What a L{DelegationChecker} has done, for the metrics: checks by status
    (cache hits included), cache hits, and a histogram of lookup latency
    (cache misses only), in L{LATENCY_BUCKETS}.

    @ivar checks: Status -> how many checks answered it.
    @type checks: L{collections.Counter}
    @ivar cacheHits: Checks answered from the cache.
    @ivar buckets: Lookups per bucket of L{LATENCY_BUCKETS} (not
        cumulative), and one more for those slower than the last bound.
    @ivar latencySum: Seconds spent in lookups, in all.
    """

    def __init__(self):
        self.checks = Counter()
        self.cacheHits = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latencySum = 0.0

    def lookedUp(self, seconds):
        """
        Count one lookup that took C{seconds}.
        """
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latencySum += seconds


@implementer(IDelegationChecker, IDelegationPolicy)
class DelegationChecker:
    """
    Looks up C{_xmpp-server._tcp.<domain>} SRV records with DNSSEC and
    decides delegations (draft-ietf-xmpp-dna-01 section 5 steps 1-2).

    How the records and their status are learnt is the L{IDelegationLookup}
    strategy's business (L{dna.dns.lookup.ResolverLookup} trusts a
    validating resolver, L{dna.dns.lookup.SelfValidatingLookup} validates
    here). Results, positive and negative, are cached for their TTL, no
    longer than the signatures they rest on, in a bounded LRU cache;
    concurrent checks of one domain share one lookup.

    @ivar statistics: The L{CheckStatistics} of this checker.
    """

    def __init__(self, lookup, clock, policy=REQUIRE_SECURE, domainPolicies=None,
                 fallback=False, cacheSize=10000, deadline=DEFAULT_DEADLINE, random=None,
                 maxTTL=86400, bogusTTL=60, indeterminateTTL=5):
        """
        @param lookup: The L{IDelegationLookup} asked on a cache miss.
        @param clock: An L{IReactorTime}: the cache's clock and the deadline.
        @param policy: C{'require-secure'} or C{'allow-insecure'}: whether
            L{isDelegated} accepts a provably unsigned delegation.
        @param domainPolicies: C{{domain: policy}} overriding C{policy}.
        @param fallback: Whether L{isDelegated} accepts the domain itself
            as its server name when it provably has no SRV record (RFC 6120
            section 3.2.2).
        @param cacheSize: How many domains to cache results for.
        @param deadline: Seconds after which a check gives up as
            indeterminate, however many queries it needed.
        @param random: A L{random.Random} for the RFC 2782 weighted order.
        @param maxTTL: The longest a result is cached, in seconds.
        @param bogusTTL: The longest a bogus result is cached.
        @param indeterminateTTL: How long an indeterminate result is cached.
        @raise ValueError: On an unknown policy.
        """
        domainPolicies = dict(domainPolicies or {})
        checkPolicy(policy)
        for name, value in domainPolicies.items():
            checkPolicy(value, name)
        self._lookupStrategy = lookup
        self._clock = clock
        self._policy = policy
        self._domainPolicies = {normalizeDomain(name): value
                                for name, value in domainPolicies.items()}
        self._fallback = fallback
        self._cacheSize = cacheSize
        self._deadline = deadline
        if random is None:
            from random import SystemRandom
            random = SystemRandom()
        self._randint = random.randint
        self._maxTTL = maxTTL
        self._bogusTTL = bogusTTL
        self._indeterminateTTL = indeterminateTTL
        self._cache = OrderedDict()
        self._pending = Coalescer()
        self.statistics = CheckStatistics()

    # IDelegationChecker

    def check(self, domain, after=None):
        """
        See L{IDelegationChecker.check}.

        @param after: When given, a cached result that expires at or before
            this time is not used: re-validation (L{dna.app.revalidation})
            asks for a proof that outlasts the one it has, before that one
            expires, and the first such check of a domain refreshes the
            cache for the others.
        """
        try:
            normal = normalizeDomain(domain)
        except InvalidAddress as e:
            return succeed(DelegationResult(str(domain), (), INDETERMINATE,
                                            reason=f"invalid domain: {e.__cause__}"))
        entry = self._cache.get(normal)
        if entry is not None:
            now = self._clock.seconds()
            if entry[0] > (now if after is None else max(now, after)):
                self._cache.move_to_end(normal)
                self.statistics.cacheHits += 1
                return succeed(self._present(entry))
            del self._cache[normal]
        name = absoluteName(normal)
        try:
            srvName(name)
        except dns.exception.DNSException as e:
            # A domain too long to prefix with _xmpp-server._tcp is invalid.
            return succeed(DelegationResult(normal, (), INDETERMINATE,
                                            reason=f"invalid domain: {e}"))
        return self._pending.wait(normal, self._lookup, normal, name).addCallback(
            self._present)

    def cached(self, domain):
        """
        The cached result of C{domain}'s last lookup, without looking it up
        (re-validation reads the proof a binding was just granted on).

        @param domain: A normalised domain.
        @return: A L{DelegationResult}, or L{None} when none is cached and
            valid.
        """
        entry = self._cache.get(domain)
        if entry is None or entry[0] <= self._clock.seconds():
            return None
        return entry[1]

    @property
    def fallback(self):
        """
        Whether a domain without SRV records is its own server name (see
        L{__init__}), for L{delegates}.
        """
        return self._fallback

    def isDelegated(self, domain, serverNames, certificate=None):
        """
        See L{IDelegationChecker.isDelegated}: by DNSSEC-signed SRV records
        only, so C{certificate} is not looked at (see L{ProofChecker}).

        @return: A L{Deferred} firing with C{True} or C{False}.
        """
        if isinstance(serverNames, str):
            serverNames = [serverNames]
        serverNames = list(serverNames)

        def decide(result):
            allowInsecure = self.policyFor(result.domain) == ALLOW_INSECURE
            verdict = delegates(result, serverNames, allowInsecure=allowInsecure,
                                fallback=self._fallback)
            if wanted(LogLevel.debug):
                # One per pair checked.
                _log.debug("Delegation of {domain} to {serverNames}: {verdict} "
                           "({status}: {reason})", domain=result.domain,
                           serverNames=serverNames, verdict=verdict, status=result.status,
                           reason=result.reason)
            return verdict

        return self.check(domain).addCallback(decide)

    # IDelegationPolicy

    def policyFor(self, domain):
        """
        See L{IDelegationPolicy.policyFor}.
        """
        return self._domainPolicies.get(domain, self._policy)

    # Cache and sharing

    def _present(self, entry):
        expires, result, shuffle = entry
        self.statistics.checks[result.status] += 1
        if shuffle:
            return DelegationResult(result.domain,
                                    rfc2782Order(result.records, self._randint),
                                    result.status, result.reason, result.ttl, result.chain,
                                    result.expires)
        return result

    def _lookup(self, normal, name):
        """
        One lookup, cached before its waiters wake.

        @return: A L{Deferred} that fires with the cache entry of a
            L{DelegationResult} and fails only when cancelled.
        """
        started = self._clock.seconds()
        d = self._lookupStrategy.lookup(name)
        d.addTimeout(self._deadline, self._clock)
        d.addCallback(self._looked, normal)
        d.addErrback(self._lookupFailed, normal)

        def timed(result):
            self.statistics.lookedUp(self._clock.seconds() - started)
            return result

        return d.addCallback(timed).addCallback(self._store, normal)

    def _store(self, result, normal):
        ttl = result.ttl
        if result.status == BOGUS:
            ttl = min(ttl, self._bogusTTL)
        elif result.status == INDETERMINATE:
            ttl = self._indeterminateTTL
        ttl = min(ttl, self._maxTTL)
        expires = self._clock.seconds() + ttl
        result = attr.evolve(result, expires=expires)
        entry = (expires, result, needsShuffle(result.records))
        if ttl > 0 and self._cacheSize > 0:
            self._cache[normal] = entry
            self._cache.move_to_end(normal)
            while len(self._cache) > self._cacheSize:
                self._cache.popitem(last=False)
        return entry

    @staticmethod
    def _looked(result, normal):
        if result.status != SECURE:
            _log.info("Delegation of {domain} is {status}: {reason}", domain=normal,
                      status=result.status, reason=result.reason,
                      event="delegation-checked", remote=normal, condition=result.status)
        return result

    def _lookupFailed(self, failure, normal):
        if failure.check(defer.CancelledError):
            return failure
        if failure.check(defer.TimeoutError):
            reason = f"no answer within the deadline of {self._deadline:g} s"
            _log.info("Delegation of {domain} is indeterminate: {reason}",
                      domain=normal, reason=reason, event="delegation-checked",
                      remote=normal, condition=INDETERMINATE)
        else:
            _log.failure("Unexpected error checking the delegation of {domain}",
                         failure, domain=normal)
            reason = f"internal error: {failure.getErrorMessage()}"
        return DelegationResult(normal, (), INDETERMINATE, reason)


def srvVerdict(result, serverNames, allowInsecure, fallback):
    """
    What a delegation lookup proves of C{serverNames}, as the
    C{dnssec-srv} prooftype's L{DelegationVerdict}: pure, by
    L{dna.dns.verdict.delegates}.

    @param result: The L{DelegationResult} of the domain.
    """
    expires = result.expires
    if delegates(result, serverNames, allowInsecure=allowInsecure, fallback=fallback):
        return DelegationVerdict(DELEGATED, PROOF_DNSSEC_SRV, expires)
    if result.status == INDETERMINATE:
        return DelegationVerdict(VERDICT_INDETERMINATE, None, expires, [
            (PROOF_DNSSEC_SRV, f"indeterminate: {result.reason}")])
    if result.status == SECURE and result.records:
        targets = ", ".join(sorted({record.target for record in result.records}))
        why = f"SRV targets {targets}, not the peer"
    elif result.status == SECURE:
        why = "no SRV record"
    else:
        why = f"{result.status} SRV ({result.reason or 'no reason given'})"
    return DelegationVerdict(NOT_DELEGATED, None, expires, [(PROOF_DNSSEC_SRV, why)])


def poshVerdict(result, certificate, now):
    """
    What a POSH document proves of the peer that presented C{certificate},
    as the C{posh} prooftype's L{DelegationVerdict} (RFC 7711 section 3:
    a listed fingerprint, whatever names the certificate carries). A
    document that could not be had is "no POSH", indeterminate: a binding
    it proved is kept until its expiry while it cannot be fetched again.

    @param result: The domain's L{dna.dns.posh.POSHResult}.
    @param certificate: The peer's L{cryptography.x509.Certificate}.
    @param now: Seconds since the epoch.
    """
    from dna.dns.posh import matches

    expires = result.expires if result.expires is not None else now + result.ttl
    if result.document is None:
        return DelegationVerdict(VERDICT_INDETERMINATE, None, expires, [
            (PROOF_POSH, f"no POSH document ({result.reason})")])
    if matches(result.document, certificate):
        return DelegationVerdict(DELEGATED, PROOF_POSH, expires)
    return DelegationVerdict(NOT_DELEGATED, None, expires, [
        (PROOF_POSH, f"fingerprint not listed ({len(result.document.fingerprints)} "
                     f"in the document)")])


@implementer(IDelegationChecker, IDelegationPolicy)
class ProofChecker:
    """
    Decides a delegation by the prooftypes accepted, in order
    (draft-ietf-xmpp-dna-10 sections 5-6): the first that proves it wins;
    when none does, the verdict says why each failed.

    Lookups (L{check}, L{cached}) and the policy are the wrapped
    L{DelegationChecker}'s: where to connect is always what DNS says.
    """

    def __init__(self, checker, clock, proofs=(PROOF_DNSSEC_SRV,), posh=None):
        """
        @param checker: The L{DelegationChecker} for C{dnssec-srv}.
        @param clock: An L{IReactorTime}.
        @param proofs: The prooftypes accepted, in order: C{"dnssec-srv"},
            C{"posh"}.
        @param posh: The L{dna.dns.posh.POSHFetcher}, required with
            C{"posh"}.
        @raise ValueError: On an unknown prooftype, none, or C{"posh"}
            without a fetcher.
        """
        proofs = tuple(proofs)
        unknown = set(proofs) - {PROOF_DNSSEC_SRV, PROOF_POSH}
        if unknown or not proofs:
            raise ValueError(f"delegation prooftypes must be dnssec-srv or posh: {proofs!r}")
        if PROOF_POSH in proofs and posh is None:
            raise ValueError("the posh prooftype needs a POSH fetcher")
        self._checker = checker
        self._clock = clock
        self.proofs = proofs
        self._posh = posh

    @property
    def statistics(self):
        """
        The wrapped checker's L{CheckStatistics}.
        """
        return self._checker.statistics

    @property
    def fallback(self):
        """
        See L{DelegationChecker.fallback}.
        """
        return self._checker.fallback

    @property
    def usesPOSH(self):
        """
        Whether a verdict may rest on a POSH document (and so on the
        peer's certificate): re-validation then asks L{prove}.
        """
        return PROOF_POSH in self.proofs

    def check(self, domain, after=None):
        """
        See L{DelegationChecker.check}.
        """
        return self._checker.check(domain, after=after)

    def cached(self, domain):
        """
        See L{DelegationChecker.cached}.
        """
        return self._checker.cached(domain)

    def policyFor(self, domain):
        """
        See L{IDelegationPolicy.policyFor}.
        """
        return self._checker.policyFor(domain)

    def poshCandidates(self, result):
        """
        Where to connect for a domain that DNSSEC does not delegate, when
        POSH may prove the delegation once the server's certificate is
        known (originating side, RFC 7711 section 3: the insecure SRV
        records' targets, whose certificates the domain's POSH document may
        list).

        @param result: The domain's L{DelegationResult}.
        @return: The L{DelegationResult} with the records to try, or L{None}
            when POSH is not accepted, when DNS is bogus or indeterminate
            (an attack or an outage: nothing to trust), or when there is no
            SRV target.
        """
        if not self.usesPOSH or result.status not in (SECURE, INSECURE):
            return None
        records = [record for record in result.records if record.target]
        if not records:
            return None
        return attr.evolve(result, records=records)

    def isDelegated(self, domain, serverNames, certificate=None):
        """
        See L{IDelegationChecker.isDelegated}.

        @return: A L{Deferred} firing with a L{DelegationVerdict}, true when
            delegated.
        """
        return self.prove(domain, serverNames, certificate)

    def prove(self, domain, serverNames, certificate=None, after=None):
        """
        Try each prooftype in order until one proves that C{domain} is
        delegated to the peer named C{serverNames} that presented
        C{certificate}.

        @param after: Re-validation: cached proofs that expire at or before
            this time are not used.
        @return: A L{Deferred} firing with a L{DelegationVerdict}; it does
            not fail.
        """
        if isinstance(serverNames, str):
            serverNames = [serverNames]
        serverNames = list(serverNames)
        try:
            normal = normalizeDomain(domain)
        except InvalidAddress as e:
            return succeed(DelegationVerdict(NOT_DELEGATED, None, None, [
                (proof, f"invalid domain: {e.__cause__}") for proof in self.proofs]))
        verdicts = []

        def tryNext():
            if len(verdicts) == len(self.proofs):
                return decided()
            proof = self.proofs[len(verdicts)]
            return self._try(proof, normal, serverNames, certificate, after).addCallback(tried)

        def tried(verdict):
            verdicts.append(verdict)
            if verdict:
                return decided()
            return tryNext()

        def decided():
            verdict = combine(verdicts)
            if wanted(LogLevel.debug):
                # One per pair checked.
                _log.debug("Delegation of {domain} to {serverNames}: {status} "
                           "({prooftype}{explanation})", domain=normal,
                           serverNames=serverNames, status=verdict.status,
                           prooftype=verdict.prooftype or "", explanation=verdict.explanation)
            return verdict

        return tryNext()

    def _try(self, proof, domain, serverNames, certificate, after):
        """
        One prooftype's L{DelegationVerdict}, in a L{Deferred} that does not
        fail.
        """
        if proof == PROOF_DNSSEC_SRV:
            allowInsecure = self.policyFor(domain) == ALLOW_INSECURE
            return self._checker.check(domain, after=after).addCallback(
                srvVerdict, serverNames, allowInsecure, self._checker.fallback)
        if certificate is None:
            return succeed(DelegationVerdict(NOT_DELEGATED, None, None, [
                (PROOF_POSH, "no peer certificate")]))
        d = self._posh.fetch(domain, after=after)
        return d.addCallback(
            lambda result: poshVerdict(result, certificate, self._clock.seconds()))
