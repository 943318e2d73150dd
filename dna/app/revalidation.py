"""
An authorization lives no longer than its proof (issue 11;
draft-ietf-xmpp-dna-01 section 6, "A service may revoke authorization").

Every new binding, both directions, DNA and legacy, gets a
L{dna.core.proofs.Proof}: when the delegation lookup that proved it stops
being valid, and the peer certificate's notAfter. Shortly before the lookup
expires (L{dna.core.proofs.recheckTime}: spread so that many bindings do not
re-check at once) the delegation is checked again through the server's
checker and its cache; L{dna.core.proofs.decide} says whether that extends
the binding, keeps it a while (indeterminate, up to the proof's hard limit
plus C{[limits] revalidation-grace}) or revokes the pair: C{<db:result
type='invalid'/>} with C{<not-authorized/>} to the peer for a pair it holds
from us, unbound here for one we hold from it. A connection whose peer
certificate expires is closed at that moment.

With POSH among the delegation prooftypes (C{[policy] delegation-proofs}),
re-checks ask the prooftypes again in order, with the peer's certificate
(L{dna.dns.delegation.ProofChecker.prove}): a binding POSH proved lasts until
the POSH document expires (its C{expires}, capped), and is re-checked then
like one a DNSSEC lookup proved.

A connection whose peer was authenticated by DANE (RFC 7673) rests on the
TLSA records too: they are looked up again before they expire (their TTL,
no longer than their signatures, L{dna.dns.tlsa.TLSAResult.expires}),
through the same L{dna.dns.tlsa.TLSALookup} and its cache, and the peer's
certificate is matched again (L{tlsaOutcome}). Still matching: the proof is
extended. No longer matching, no TLSA records any more, or bogus: the
connection is closed like one whose certificate expired (streams are
re-established on fresh proof). Indeterminate: kept until the proof's
expiry plus the grace, then closed.

One heap of due times and one L{IDelayedCall} for the earliest, however
many bindings there are.
"""

import heapq
import itertools

from twisted.logger import Logger
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT

from dna.channel.dane import TLSARecord, verifyChain
from dna.channel.receiving import CLOSE_GRACE
from dna.channel.tls import daneIdentity, peerCertificate, peerChain
from dna.core.proofs import (
    DEFAULT_GRACE,
    DEFAULT_MAX_SPREAD,
    DEFAULT_RETRY_INTERVAL,
    DEFAULT_SPREAD,
    DELEGATED,
    EXTEND,
    INDETERMINATE,
    NOT_DELEGATED,
    REVOKE,
    Proof,
    decide,
    recheckTime,
)
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.dnssec.proofs import BOGUS as DNSSEC_BOGUS
from dna.dns.tlsa import DANE, DANE_FAILED
from dna.dns.verdict import ALLOW_INSECURE, BOGUS, delegates
from dna.dns.verdict import INDETERMINATE as LOOKUP_INDETERMINATE

_log = Logger()

#: The heap key of a connection's certificate expiry: C{(CERTIFICATE,
#: streamID)}; a binding's is C{(direction, local, remote, streamID)}.
CERTIFICATE = "certificate"

#: The heap key of the TLSA proof of a connection authenticated by DANE:
#: C{(TLSA, streamID)}.
TLSA = "tlsa"

#: How many (result, server names) verdicts are remembered.
_VERDICT_MEMORY = 10000


def transportCertificateExpiry(xs):
    """
    The notAfter of the peer certificate of a stream, in seconds since the
    epoch, or L{None} when there is none (or no TLS).
    """
    try:
        certificate = peerCertificate(xs.transport)
    except Exception:
        return None
    if certificate is None:
        return None
    return certificate.not_valid_after_utc.timestamp()


def transportDANEIdentity(xs):
    """
    What DANE proved of the peer of a stream: C{(server name, port, chain)}
    of the TLSA records that authenticated it and of the certificates it
    presented (leaf first), or L{None} when DANE did not authenticate it.
    """
    try:
        identity = daneIdentity(xs.transport)
        if identity is None:
            return None
        serverName, port = identity
        return serverName, port, peerChain(xs.transport)
    except Exception:
        return None


def tlsaOutcome(result, chain, serverName, now):
    """
    What a new TLSA lookup says of a peer that DANE authenticated: pure,
    like L{dna.channel.dane.verifyChain} that it applies.

    @param result: The L{dna.dns.tlsa.TLSAResult} of the peer's server name
        and port.
    @param chain: The certificates the peer presented, leaf first.
    @param serverName: The server name DANE authenticated it for.
    @param now: Seconds since the epoch.
    @return: C{(outcome, expires, reason)} as L{decide} takes them:
        L{DELEGATED} when a record still matches the certificate;
        L{NOT_DELEGATED} when none does, when DANE no longer applies (no
        TLSA records, or an insecure zone: the peer's identity is no longer
        proved by what proved it), or when the answer is bogus;
        L{INDETERMINATE} when no usable answer came.
    """
    expires = result.expires if result.expires is not None else now + result.ttl
    if result.status == DANE_FAILED:
        if result.dnssec == DNSSEC_BOGUS:
            return NOT_DELEGATED, expires, f"bogus: {result.reason}"
        return INDETERMINATE, expires, result.reason
    if result.status != DANE:
        return NOT_DELEGATED, expires, f"DANE no longer applies: {result.reason}"
    records = [TLSARecord.fromRdata(rdata) for rdata in result.records]
    verdict = verifyChain(records, chain, serverName, now)
    if not verdict.authenticated:
        return NOT_DELEGATED, expires, f"the certificate no longer matches: {verdict.reason}"
    return DELEGATED, expires, None


class Revalidator:
    """
    Re-validation of every binding of a L{dna.app.federation.Federation}.

    @ivar proofs: C{(direction, local, remote, streamID)} -> the L{Proof} of
        each binding it watches.
    @ivar checks: How many re-checks were made.
    @ivar grace: Seconds past a proof's expiry that indeterminate re-checks
        may keep a binding.
    """

    def __init__(self, federation, checker, clock, grace=DEFAULT_GRACE,
                 retryInterval=DEFAULT_RETRY_INTERVAL, spread=DEFAULT_SPREAD,
                 maxSpread=DEFAULT_MAX_SPREAD, random=None,
                 certificateExpiry=transportCertificateExpiry, tlsaLookup=None,
                 daneIdentity=transportDANEIdentity):
        """
        @param federation: The L{dna.app.federation.Federation}: its tables,
            streams and counters.
        @param checker: The L{IDelegationChecker} that granted the bindings;
            its C{check} takes C{after} (L{dna.dns.delegation.DelegationChecker.check}).
        @param clock: An L{IReactorTime}.
        @param grace: Seconds past a proof's expiry that indeterminate
            re-checks may keep a binding.
        @param retryInterval: Seconds between indeterminate re-checks.
        @param spread: See L{recheckTime}.
        @param maxSpread: See L{recheckTime}.
        @param random: A L{random.Random} for the spread.
        @param certificateExpiry: Called with a stream, returns its peer
            certificate's notAfter (seconds since the epoch) or L{None}.
        @param tlsaLookup: The L{dna.dns.tlsa.TLSALookup} that DANE
            authenticated peers with, or L{None} (no DANE: nothing to
            re-check).
        @param daneIdentity: Called with a stream, returns what DANE proved
            of its peer (L{transportDANEIdentity}) or L{None}.
        """
        self._federation = federation
        self._tables = federation.tables
        self._checker = checker
        self._clock = clock
        self.grace = grace
        self._retryInterval = retryInterval
        self._spread = spread
        self._maxSpread = maxSpread
        if random is None:
            # Jitter, not secrets: the Mersenne Twister, seeded from the OS.
            from random import Random
            random = Random()
        self._random = random.random
        self._certificateExpiry = certificateExpiry
        self._tlsaLookup = tlsaLookup
        self._daneIdentity = daneIdentity
        # stream id -> (server name, port, chain) DANE authenticated
        self._dane = {}
        self._cached = getattr(checker, "cached", None)
        # (result, server names) -> whether it delegates: the results of
        # one domain are shared by its bindings, and so is the verdict.
        self._verdicts = {}
        self.proofs = {}
        self.checks = 0
        # stream id -> its certificate's notAfter (or None)
        self._certificates = {}
        # stream id -> the keys of its bindings' proofs
        self._byStream = {}
        # (due, tie-breaker, key, proof); stale entries are skipped
        self._heap = []
        self._tie = itertools.count()
        self._call = None
        self._callTime = None
        self._tables.bindObservers.append(self._bound)

    # Watching

    def watchStream(self, authorization):
        """
        Close C{authorization}'s stream when its peer certificate expires.
        """
        streamID = authorization.streamID
        notAfter = self._certificateExpiry(authorization.xs)
        self._certificates[streamID] = notAfter
        self._byStream.setdefault(streamID, set())
        authorization.xs.addOnetimeObserver(
            STREAM_END_EVENT, lambda reason: self._forget(streamID))
        if notAfter is not None:
            proof = Proof(None, notAfter)
            key = (CERTIFICATE, streamID)
            self.proofs[key] = proof
            self._schedule(key, proof, notAfter)
        if self._tlsaLookup is not None:
            identity = self._daneIdentity(authorization.xs)
            if identity is not None:
                self._dane[streamID] = identity
                proof = Proof(None, checked=self._clock.seconds())
                key = (TLSA, streamID)
                self.proofs[key] = proof
                self._checkTLSA(key, proof, None)

    def _forget(self, streamID):
        """
        A stream ended: drop its proofs (their heap entries go stale).
        """
        self._certificates.pop(streamID, None)
        self.proofs.pop((CERTIFICATE, streamID), None)
        self.proofs.pop((TLSA, streamID), None)
        self._dane.pop(streamID, None)
        for key in self._byStream.pop(streamID, ()):
            self.proofs.pop(key, None)
        self._prune()

    def _bound(self, direction, local, remote, streamID):
        """
        A new binding (L{dna.core.tables.Tables.bindObservers}): record its
        proof and schedule its re-check.
        """
        key = (direction, local, remote, streamID)
        authorization = self._federation.streams.get(streamID)
        certificate = self._certificates.get(streamID)
        proof = Proof(None, certificate, checked=self._clock.seconds())
        self.proofs[key] = proof
        keys = self._byStream.get(streamID)
        if keys is not None:
            keys.add(key)
        if authorization is None or getattr(authorization, "legacy", False):
            # A legacy binding rests on dialback or the certificate, whose
            # expiry closes the connection.
            return
        try:
            self._lookUp(key, proof, None, self._granted)
        except Exception:
            # Never in the way of the binding itself.
            _log.failure("Recording the proof of {remote} -> {local} failed",
                         local=local, remote=remote)

    def _lookUp(self, key, proof, after, then):
        """
        Call C{then(key, proof, (outcome, expires, reason))} with what the
        checker says of the delegation of a binding's remote domain: at once
        from its cache when it holds a result outlasting C{after} (the one
        a new binding was just granted on, or one another binding of the
        domain refreshed: no L{Deferred} on the common path), or else
        through L{_check}.
        """
        direction, local, remote, streamID = key
        if getattr(self._checker, "usesPOSH", False):
            # A proof may rest on the peer's certificate (POSH): ask the
            # prooftypes again, in order, with it.
            d = self._prove(remote, streamID, after)
            d.addCallback(lambda found: then(key, proof, found))
            d.addErrback(lambda failure: _log.failure(
                "Proving the delegation of {remote} -> {local} on {streamID} failed",
                failure, local=local, remote=remote, streamID=streamID))
            return
        cached = self._cached(remote) if self._cached is not None else None
        if cached is not None and (after is None or (
                cached.expires is not None and cached.expires > after)):
            then(key, proof, self._outcome(cached, remote, streamID))
            return
        d = self._check(remote, streamID, after)
        d.addCallback(lambda found: then(key, proof, found))
        d.addErrback(lambda failure: _log.failure(
            "Checking the delegation of {remote} -> {local} on {streamID} failed",
            failure, local=local, remote=remote, streamID=streamID))

    def _granted(self, key, proof, found):
        """
        Record the lookup a new binding was granted on, and schedule its
        re-check.
        """
        outcome, expires, reason = found
        if self.proofs.get(key) is not proof or outcome != DELEGATED:
            # Unbound already, or granted on other grounds than the
            # delegation (the certificate names the domain itself).
            return
        proof.dnsExpires = expires
        self._schedule(key, proof, self._recheckTime(expires))

    def _recheckTime(self, expires):
        return recheckTime(expires, self._clock.seconds(), self._random,
                           self._spread, self._maxSpread)

    def _check(self, domain, streamID, after):
        """
        Look C{domain}'s delegation up again, through the checker and its
        cache, for a proof that outlasts C{after}.

        @return: A L{Deferred} firing with L{_outcome}'s triple.
        """
        d = self._checker.check(domain, after=after)
        return d.addCallback(self._outcome, domain, streamID)

    def _prove(self, domain, streamID, after):
        """
        Prove C{domain}'s delegation to the peer of C{streamID} again by the
        checker's prooftypes (L{dna.dns.delegation.ProofChecker.prove}), for
        a proof that outlasts C{after}: a POSH proof lasts as long as the
        document, its C{expires} capped (RFC 7711 section 3.2).

        @return: A L{Deferred} firing with L{_outcome}'s triple.
        """
        row = self._tables.connections.get(streamID)
        serverNames = row.serverNames if row is not None else frozenset()
        certificate = None
        authorization = self._federation.streams.get(streamID)
        if authorization is not None:
            try:
                certificate = peerCertificate(authorization.xs.transport)
            except Exception:
                certificate = None

        def found(verdict):
            expires = verdict.expires
            if expires is None:
                expires = self._clock.seconds()
            if verdict:
                return DELEGATED, expires, None
            return verdict.status, expires, (
                f"{domain} is no longer delegated to "
                f"{', '.join(sorted(serverNames)) or '(no names)'}: {verdict.explanation}")

        d = self._checker.prove(domain, serverNames, certificate, after=after)
        return d.addCallback(found)

    def _outcome(self, result, domain, streamID):
        """
        What a lookup result says of C{domain}'s delegation to the server
        names of C{streamID}, under the checker's policy.

        @return: C{(outcome, expires, reason)}: L{DELEGATED},
            L{NOT_DELEGATED} or L{INDETERMINATE}, when the result expires,
            and why it is not delegated (or L{None}).
        """
        expires = result.expires
        if expires is None:
            expires = self._clock.seconds() + result.ttl
        if result.status == LOOKUP_INDETERMINATE:
            return INDETERMINATE, expires, result.reason
        if result.status == BOGUS:
            return NOT_DELEGATED, expires, f"bogus: {result.reason}"
        row = self._tables.connections.get(streamID)
        serverNames = row.serverNames if row is not None else frozenset()
        verdictKey = (id(result), serverNames)
        memo = self._verdicts.get(verdictKey)
        if memo is not None and memo[0] is result:
            delegated = memo[1]
        else:
            checker = self._checker
            policyFor = getattr(checker, "policyFor", None)
            delegated = delegates(
                result, serverNames,
                allowInsecure=(policyFor is not None
                               and policyFor(result.domain) == ALLOW_INSECURE),
                fallback=getattr(checker, "fallback", False))
            if len(self._verdicts) >= _VERDICT_MEMORY:
                self._verdicts.clear()
            self._verdicts[verdictKey] = (result, delegated)
        if delegated:
            return DELEGATED, expires, None
        targets = ", ".join(str(record) for record in result.records)
        return NOT_DELEGATED, expires, (
            f"{domain} is no longer delegated to "
            f"{', '.join(sorted(serverNames)) or '(no names)'} "
            f"({result.status}: {result.reason or targets or 'no SRV records'})")

    # Scheduling

    def _schedule(self, key, proof, when):
        proof.nextCheck = when
        heapq.heappush(self._heap, (when, next(self._tie), key, proof))
        if self._callTime is None or when < self._callTime:
            self._arm()

    def _isStale(self, entry):
        when, _, key, proof = entry
        return self.proofs.get(key) is not proof or proof.nextCheck != when

    def _prune(self):
        """
        Drop the stale entries at the top of the heap, so that the timer is
        not kept for proofs that are gone.
        """
        heap = self._heap
        top = heap[0][0] if heap else None
        while heap and self._isStale(heap[0]):
            heapq.heappop(heap)
        if not heap:
            self.stop()
        elif heap[0][0] != top:
            self._arm()

    def _arm(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self._callTime = None
        if self._heap:
            when = self._heap[0][0]
            self._callTime = when
            self._call = self._clock.callLater(
                max(0.0, when - self._clock.seconds()), self._fire)

    def _fire(self):
        self._call = self._callTime = None
        now = self._clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._isStale(entry):
                continue
            when, _, key, proof = entry
            proof.nextCheck = None
            if key[0] == CERTIFICATE:
                self._certificateExpired(key[1], proof)
            elif key[0] == TLSA:
                self.checks += 1
                self._checkTLSA(key, proof, proof.dnsExpires)
            else:
                self._recheck(key, proof)
        if self._call is None:
            self._arm()

    def stop(self):
        """
        Cancel the timer (the service is stopping).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self._callTime = None

    # Re-checking

    def _isBound(self, key):
        direction, local, remote, streamID = key
        table = self._tables.incoming if direction == INCOMING else self._tables.outgoing
        return table.accepts(streamID, local, remote)

    def _drop(self, key):
        self.proofs.pop(key, None)
        keys = self._byStream.get(key[3])
        if keys is not None:
            keys.discard(key)

    def _recheck(self, key, proof):
        if not self._isBound(key):
            self._drop(key)
            return
        self.checks += 1
        self._lookUp(key, proof, proof.dnsExpires, self._rechecked)

    def _rechecked(self, key, proof, found):
        """
        Apply L{decide} to a re-check's C{(outcome, expires, reason)}.
        """
        if self.proofs.get(key) is not proof or not self._isBound(key):
            return
        self._apply(key, proof, found, lambda reason: self.revoke(key, reason),
                    "{remote} on {streamID}", streamID=key[3], remote=key[2])

    def _apply(self, key, proof, found, revoke, what, **fields):
        """
        Apply L{decide} to a check's C{(outcome, expires, reason)} of a
        proof still held: extend it, call C{revoke} with the reason, or keep
        it and check again later.

        @param what: What was checked, in the log format of a kept proof,
            with C{fields}.
        """
        outcome, expires, reason = found
        now = self._clock.seconds()
        proof.checked = now
        action, until = decide(proof, outcome, expires, now, self.grace,
                               self._retryInterval)
        if action == EXTEND:
            proof.dnsExpires = until
            self._schedule(key, proof, self._recheckTime(until))
        elif action == REVOKE:
            if outcome == INDETERMINATE:
                reason = f"indeterminate past the proof's hard limit: {reason}"
            revoke(reason)
        else:
            _log.info(
                "Re-check of " + what + " indeterminate ({reason}): kept until {until}",
                reason=reason, until=until, **fields)
            self._schedule(key, proof, until)

    def revoke(self, key, reason):
        """
        Revoke a binding whose proof no longer holds: tell the peer for a
        pair it holds from us, unbind one we hold from it; log and count.

        @param key: C{(direction, local, remote, streamID)}.
        @param reason: Why, for the log.
        """
        direction, local, remote, streamID = key
        self._drop(key)
        if direction == INCOMING:
            authorization = self._federation.streams.get(streamID)
            if authorization is None:
                return
            authorization.revoke(local, remote, error.StanzaError(
                "not-authorized", type="auth", text=reason))
        elif not self._tables.unbind(OUTGOING, local, remote, streamID):
            return
        self._federation.counters["revalidation-revoked"] += 1
        _log.info(
            "Stream {streamID}: {remote} -> {local} revoked ({direction}): {reason}",
            event="revalidation-revoked", streamID=streamID, local=local,
            remote=remote, direction=direction, reason=reason)

    def _certificateExpired(self, streamID, proof):
        self.proofs.pop((CERTIFICATE, streamID), None)
        self._certificates.pop(streamID, None)
        authorization = self._federation.streams.get(streamID)
        if authorization is None:
            return
        self._federation.counters["certificate-expired"] += 1
        _log.info(
            "Stream {streamID}: the peer certificate expired: closing",
            event="certificate-expired", streamID=streamID, local=None,
            remote=sorted(authorization.serverNames),
            reason="peer certificate expired")
        self._end(authorization.xs, "the certificate expired")

    def _end(self, xs, text):
        """
        End a stream whose peer's identity is no longer proved: a
        C{<policy-violation/>} stream error, and the connection aborted if
        it lingers past L{CLOSE_GRACE} (a peer that does not answer the TLS
        close).
        """
        xs.sendStreamError(error.StreamError("policy-violation", text=text))
        transport = xs.transport
        if transport is None or not getattr(transport, "connected", True):
            return
        timer = self._clock.callLater(CLOSE_GRACE, transport.abortConnection)
        xs.addOnetimeObserver(STREAM_END_EVENT,
                              lambda reason: timer.active() and timer.cancel())

    # DANE

    def _checkTLSA(self, key, proof, after):
        """
        Look up again the TLSA records that authenticated the peer of a
        stream, for a proof outlasting C{after}, and match its certificate
        with them.
        """
        streamID = key[1]
        serverName, port, chain = self._dane[streamID]
        d = self._tlsaLookup.lookup(serverName, port, after=after)
        d.addCallback(lambda result: self._tlsaChecked(
            key, proof, tlsaOutcome(result, chain, serverName, self._clock.seconds())))
        d.addErrback(lambda failure: _log.failure(
            "Checking the TLSA records of {serverName}:{port} on {streamID} failed",
            failure, serverName=serverName, port=port, streamID=streamID))

    def _tlsaChecked(self, key, proof, found):
        """
        Apply L{decide} to a TLSA check's C{(outcome, expires, reason)}.
        """
        if self.proofs.get(key) is not proof:
            # The stream ended meanwhile.
            return
        self._apply(key, proof, found, lambda reason: self._tlsaFailed(key[1], reason),
                    "the TLSA records on {streamID}", streamID=key[1])

    def _tlsaFailed(self, streamID, reason):
        """
        The TLSA records no longer prove the identity of a stream's peer:
        close the connection, as when its certificate expires.
        """
        self.proofs.pop((TLSA, streamID), None)
        identity = self._dane.pop(streamID, None)
        authorization = self._federation.streams.get(streamID)
        if authorization is None:
            return
        self._federation.counters["tlsa-expired"] += 1
        _log.info(
            "Stream {streamID}: the TLSA records no longer prove {serverName}: "
            "closing ({reason})", event="revalidation-tlsa-failed", streamID=streamID,
            serverName=identity[0] if identity is not None else None,
            remote=sorted(authorization.serverNames), reason=reason)
        self._end(authorization.xs, "the TLSA records no longer match the certificate")

    def identityProofExpires(self, streamID):
        """
        @return: When the TLSA proof of a stream whose peer DANE
            authenticated expires (seconds since the epoch), or L{None}.
        """
        proof = self.proofs.get((TLSA, streamID))
        return proof.dnsExpires if proof is not None else None

    # The control API

    def proofOf(self, direction, local, remote, streamID):
        """
        @return: The L{Proof} of a binding, or L{None} if none is known.
        """
        return self.proofs.get((direction, local, remote, streamID))
