"""
The chain walker of DNSSEC validation from trust anchors (RFC 4035 section
5): L{Validator} asks for the DS and DNSKEY RRsets from a trust anchor down
to an answer, over Twisted, and checks each step with the pure proofs of
L{dna.dns.dnssec.proofs}.
"""

import attr
import dns.dnssec
import dns.flags
import dns.rcode
import dns.rdatatype
from twisted.internet.defer import (
    CancelledError,
    fail,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure

from dna.core.coalesce import Coalescer
from dna.dns.dnssec.proofs import (
    BOGUS,
    CNAME,
    DNSKEY,
    DS,
    INDETERMINATE,
    INSECURE,
    MAX_CNAMES,
    MAX_DEPTH,
    NS,
    ROOT_ANCHORS,
    SECURE,
    SOA,
    Bogus,
    Indeterminate,
    Insecure,
    Section,
    Validation,
    VerificationBudget,
    ZoneProof,
    anchorKeys,
    checkRcode,
    delegatedKeys,
    minimumTTL,
    parseAnchors,
    proveAbsence,
    proveNoDS,
    proveWildcardExpansion,
    usableDS,
)


def describeFailure(failure):
    """
    A short text for a failed query.
    """
    value = failure.value
    text = getattr(value, "reason", None)
    if not isinstance(text, str):
        text = str(value)
    name = type(value).__name__
    return f"{name}: {text}" if text else name


def _ignore(failure):
    return None


class _Fetcher:
    """
    Queries shared by the steps of one validation: each (name, type) is asked
    once, can be started ahead of need, and what is still outstanding at the
    end is cancelled.
    """

    def __init__(self, query):
        self._query = query
        self._done = {}
        self._inFlight = Coalescer()
        # (name, type) -> the waiter that keeps an attempt going until the
        # answer comes or cancel() withdraws it.
        self._holders = {}

    def prefetch(self, name, rdtype):
        """
        Start asking C{name}/C{rdtype} unless that is under way or done.
        """
        key = (name, rdtype)
        if key in self._holders:
            return
        holder = self._holders[key] = self._inFlight.wait(key, self._ask, name, rdtype)
        holder.addErrback(_ignore)

    def _ask(self, name, rdtype):
        def finished(result):
            if isinstance(result, Failure) and not result.check(CancelledError):
                result = Failure(Indeterminate(
                    f"query for {name.to_text(omit_final_dot=True)} "
                    f"{dns.rdatatype.to_text(rdtype)} failed ({describeFailure(result)})"))
            # Kept before the waiters wake, for the fetches still to come.
            self._done[(name, rdtype)] = result
            return result

        return maybeDeferred(self._query, name, rdtype).addBoth(finished)

    def fetch(self, name, rdtype):
        """
        @return: A fresh L{Deferred} firing with the response.
        """
        self.prefetch(name, rdtype)
        key = (name, rdtype)
        if key in self._done:
            result = self._done[key]
            return fail(result) if isinstance(result, Failure) else succeed(result)
        return self._inFlight.wait(key, self._ask, name, rdtype)

    def cancel(self):
        """
        Cancel the queries still outstanding.
        """
        for key in self._inFlight.keys():
            self._holders[key].cancel()


@attr.s(frozen=True, slots=True)
class _ZoneKeys:
    zone = attr.ib()
    keys = attr.ib()
    expires = attr.ib()
    chain = attr.ib()


class Validator:
    """
    Walks the chain of trust from a trust anchor down to an answer (RFC 4035
    section 5), asking C{query} for every RRset it needs.

    Zone cuts are found from the signer of the answer (or, for an unsigned
    answer, from the SOA of a negative answer or by asking for the DS of
    every name below the anchor): at each one the parent's DS RRset (or its
    signed proof of absence) and the child's DNSKEY RRset are checked. The
    DNSKEYs of zones validated before are reused until their TTL or a
    signature over them runs out.

    @ivar anchors: C{{zone: RRset of DS or DNSKEY}}.
    """

    def __init__(self, query, anchors=None, maxZones=1000):
        """
        @param query: A callable C{(name, rdtype)} returning a L{Deferred}
            that fires with the L{dns.message.Message} answering it, asked
            with DO set and without relying on upstream validation (CD set
            toward a resolver, RD clear toward an authoritative server).
        @param anchors: Trust anchors as returned by L{parseAnchors};
            L{ROOT_ANCHORS} by default.
        @param maxZones: How many validated zone key sets to keep.
        """
        self._query = query
        self.anchors = parseAnchors(ROOT_ANCHORS) if anchors is None else dict(anchors)
        self._maxZones = maxZones
        self._zones = {}

    def _anchorFor(self, name):
        best = None
        for zone in self.anchors:
            if name.is_subdomain(zone) and (best is None or len(zone) > len(best)):
                best = zone
        return best

    def resolve(self, qname, rdtype, now):
        """
        Look up and validate C{qname}/C{rdtype}, following CNAMEs.

        @param qname: The name.
        @type qname: L{dns.name.Name}
        @param rdtype: The type.
        @param now: The time, in seconds since the epoch, for signature
            validity and lifetimes.
        @return: A L{Deferred} firing with a L{Validation}; it does not fail
            except when cancelled.
        """
        fetcher = _Fetcher(self._query)
        d = self._resolve(fetcher, qname, rdtype, now)

        def cleanUp(result):
            fetcher.cancel()
            return result

        return d.addBoth(cleanUp)

    @inlineCallbacks
    def _resolve(self, fetcher, qname, rdtype, now):
        chain = []
        lifetime = []
        # One budget of signature verifications for the answer, its CNAMEs,
        # chains and proofs (KeyTrap, CVE-2023-50387).
        budget = VerificationBudget()
        statuses = []
        name = qname
        rrset = None
        reason = None
        try:
            for _ in range(MAX_CNAMES + 1):
                status, rrset, reason, target = yield self._resolveOne(
                    fetcher, name, rdtype, now, chain, lifetime, budget)
                statuses.append(status)
                if target is None:
                    break
                name = target
            else:
                raise Indeterminate(f"more than {MAX_CNAMES} CNAMEs from {qname}")
        except Insecure as e:
            return self._result(INSECURE, None, str(e), lifetime, chain)
        except Bogus as e:
            return self._result(BOGUS, None, str(e), lifetime, chain)
        except Indeterminate as e:
            return self._result(INDETERMINATE, None, str(e), lifetime, chain)
        if INSECURE in statuses:
            return self._result(INSECURE, rrset, reason, lifetime, chain)
        return self._result(SECURE, rrset, reason, lifetime, chain)

    def _result(self, status, rrset, reason, lifetime, chain):
        ttl = max(0, int(min(lifetime))) if lifetime else 0
        return Validation(status, rrset, reason, ttl, chain)

    @inlineCallbacks
    def _resolveOne(self, fetcher, qname, rdtype, now, chain, lifetime, budget):
        """
        @return: A Deferred firing with C{(status, rrset, reason, cname
            target or None)}.
        """
        anchorZone = self._anchorFor(qname)
        if anchorZone is None:
            raise Indeterminate(f"no trust anchor covers {qname}")
        cached = self._cachedZone(qname, anchorZone, now)
        if cached is None:
            fetcher.prefetch(anchorZone, DNSKEY)
            start = anchorZone
        else:
            start = cached.zone
        # Ask for the DS and DNSKEY RRsets of the likely zone cuts along with
        # the data, not one round trip after it: every name between the
        # anchor and the data except service labels (_tcp, _xmpp-server),
        # which are hardly ever zone apexes.
        for depth in range(len(start) + 1, min(len(qname), len(start) + MAX_DEPTH) + 1):
            name = qname.split(depth)[1]
            if not name.labels[0].startswith(b"_"):
                fetcher.prefetch(name, DS)
                fetcher.prefetch(name, DNSKEY)
        response = yield fetcher.fetch(qname, rdtype)
        rcode = checkRcode(response, qname, rdtype)
        answer = Section(response.answer)
        authority = Section(response.authority)

        rrset, sigs = answer.get(qname, rdtype)
        cname = None
        if rrset is None:
            cname, cnameSigs = answer.get(qname, CNAME)
            if cname is not None:
                rrset, sigs = cname, cnameSigs
        if rrset is not None:
            hints = {rd.signer for rd in sigs or ()}
        else:
            hints = authority.signers()
            for soa, _ in authority.ofType(SOA):
                hints.add(soa.name)
            self._checkReferral(response, qname, authority)
        hints = [h for h in hints if qname.is_subdomain(h) and h.is_subdomain(anchorZone)]
        # One signer names the zone; none or several disagreeing: ask for the
        # DS of every name below the anchor and let the data decide.
        target = hints[0] if len(hints) == 1 else qname

        try:
            proof = yield self._walk(fetcher, anchorZone, target, cached, now, chain,
                                     lifetime, budget)
        except Insecure as e:
            if rrset is not None:
                lifetime.append(rrset.ttl)
            else:
                lifetime.append(minimumTTL(response))
            if cname is not None:
                return (INSECURE, None, str(e), cname[0].target)
            return (INSECURE, rrset, str(e), None)

        if rrset is not None:
            rrsig = proof.verify(rrset, sigs)
            if rrsig.labels < len(rrset.name) - 1:
                proveWildcardExpansion(qname, rrsig, authority, proof)
            if cname is not None:
                return (SECURE, None, None, cname[0].target)
            return (SECURE, rrset, None, None)
        reason = proveAbsence(qname, rdtype, rcode, authority, proof)
        negative = minimumTTL(response)
        lifetime.append(negative)
        return (SECURE, None, reason, None)

    def _checkReferral(self, response, qname, authority):
        if response.flags & dns.flags.AA:
            return
        for ns, _ in authority.ofType(NS):
            if qname.is_subdomain(ns.name) and not authority.ofType(SOA):
                raise Indeterminate(
                    f"referral to {ns.name} for {qname}: the server queried is not "
                    f"authoritative for it and does not recurse")

    def _cachedZone(self, name, anchorZone, now):
        best = None
        for depth in range(len(name), len(anchorZone) - 1, -1):
            zone = name.split(depth)[1] if depth < len(name) else name
            entry = self._zones.get(zone)
            if entry is not None:
                if entry.expires > now:
                    best = entry
                    break
                del self._zones[zone]
        return best

    def _remember(self, zone, keys, now, chain, lifetime):
        if self._maxZones <= 0:
            return
        expires = now + (min(lifetime) if lifetime else 0)
        if expires <= now:
            return
        if len(self._zones) >= self._maxZones:
            self._zones.pop(next(iter(self._zones)))
        self._zones[zone] = _ZoneKeys(zone, keys, expires, tuple(chain))

    @inlineCallbacks
    def _walk(self, fetcher, anchorZone, target, cached, now, chain, lifetime, budget):
        """
        Establish trusted keys from the anchor (or a cached zone) down to the
        zone holding C{target}.

        @return: A Deferred firing with the L{ZoneProof} of that zone.
        @raise Insecure: On a provably unsigned delegation on the way.
        """
        chainBase, lifetimeBase = len(chain), len(lifetime)
        if cached is not None and target.is_subdomain(cached.zone):
            zone, keys = cached.zone, cached.keys
            chain.extend(cached.chain)
            lifetime.append(cached.expires - now)
        else:
            cached = None
            zone = anchorZone

        def remember(zone, keys):
            self._remember(zone, keys, now, chain[chainBase:], lifetime[lifetimeBase:])

        start = len(zone) + 1
        if len(target) - start > MAX_DEPTH:
            raise Indeterminate(f"{target} is too deep below {zone}")
        for depth in range(start, len(target) + 1):
            child = target.split(depth)[1]
            fetcher.prefetch(child, DS)
        for depth in range(start, len(target) + 1):
            fetcher.prefetch(target.split(depth)[1], DNSKEY)
        if cached is None:
            keys = yield self._anchorKeys(fetcher, anchorZone, now, chain, lifetime, budget)
            remember(anchorZone, keys)
        for depth in range(start, len(target) + 1):
            child = target.split(depth)[1]
            proof = ZoneProof(zone, keys, now, chain, lifetime, budget)
            childKeys = yield self._delegation(fetcher, proof, child)
            if childKeys is None:
                continue
            if childKeys is False:
                break
            zone, keys = child, childKeys
            remember(zone, keys)
        return ZoneProof(zone, keys, now, chain, lifetime, budget)

    @inlineCallbacks
    def _anchorKeys(self, fetcher, zone, now, chain, lifetime, budget):
        response = yield fetcher.fetch(zone, DNSKEY)
        checkRcode(response, zone, DNSKEY)
        keys, sigs = Section(response.answer).get(zone, DNSKEY)
        if keys is None:
            raise Bogus(f"no DNSKEY RRset for the trust anchor {zone}")
        trusted, how = anchorKeys(zone, self.anchors[zone], keys)
        tags = ", ".join(str(dns.dnssec.key_id(key)) for key in trusted)
        proof = ZoneProof(zone, trusted, now, chain, lifetime, budget)
        proof.verify(keys, sigs, f"key {tags} {how}")
        return keys

    @inlineCallbacks
    def _delegation(self, fetcher, proof, child):
        """
        Check whether C{child} is a zone cut below C{proof.zone}, and if so
        establish its keys.

        @return: A Deferred firing with the child's DNSKEY RRset, L{None} when
            C{child} is not a zone cut, or C{False} when it provably does
            not exist.
        @raise Insecure: When the delegation is provably unsigned.
        """
        response = yield fetcher.fetch(child, DS)
        rcode = checkRcode(response, child, DS)
        answer = Section(response.answer)
        authority = Section(response.authority)
        dsRRset, dsSigs = answer.get(child, DS)
        if dsRRset is None:
            cname, cnameSigs = answer.get(child, CNAME)
            if cname is not None:
                proof.verify(cname, cnameSigs)
                raise Bogus(f"{child} is a CNAME: names below it cannot exist")
            return proveNoDS(child, rcode, authority, proof)
        proof.verify(dsRRset, dsSigs)
        usableDS(child, dsRRset)
        keysResponse = yield fetcher.fetch(child, DNSKEY)
        checkRcode(keysResponse, child, DNSKEY)
        keys, keySigs = Section(keysResponse.answer).get(child, DNSKEY)
        if keys is None:
            raise Bogus(f"no DNSKEY RRset for {child} although {proof.zone} has a DS "
                        f"for it")
        trusted, tags = delegatedKeys(child, dsRRset, keys)
        childProof = ZoneProof(child, trusted, proof.now, proof.chain, proof.lifetime,
                               proof.budget)
        childProof.verify(keys, keySigs, f"key {tags} matches DS")
        return keys
