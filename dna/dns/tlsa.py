"""
The TLSA records of an SRV target, and whether DANE applies to it (RFC 7673
section 3, RFC 7672 section 2.2).

A server name reached through a DNSSEC-secure SRV record is looked up for
TLSA at C{_PORT._tcp.TARGET} when its address records are secure too.  The
outcome, a L{TLSAResult}, is one of:

  - L{DANE}: secure TLSA records: the peer's certificate must match one of
    them (L{dna.channel.dane.verifyChain}); PKIX no longer decides.
  - L{NO_DANE}: a secure denial of TLSA, an insecure zone, insecure address
    records, or no usable record: PKIX decides, as without DANE.
  - L{DANE_FAILED}: the TLSA answer, or the addresses', is bogus, a SERVFAIL
    or no answer at all.  The connection must fail: an attacker who can make
    the lookup fail must not get a downgrade to PKIX (RFC 7672 section
    2.2.2's lesson).

L{decide} is the pure decision; L{TLSALookup} asks through either strategy
of L{dna.dns.lookup} (their C{validate}) and caches the outcomes for their
TTL, capped.
"""

import attr
import dns.name
import dns.rdatatype
from twisted.internet import defer
from twisted.logger import Logger

from dna.core.coalesce import Coalescer
from dna.dns.dnssec.proofs import INSECURE, SECURE
from dna.dns.verdict import absoluteName

_log = Logger()

DANE = "dane"
NO_DANE = "no-dane"
DANE_FAILED = "failed"

#: Seconds an outcome is cached at most, whatever its TTL.
MAX_CACHE_SECONDS = 3600


@attr.s(frozen=True, slots=True)
class TLSAResult:
    """
    What DNS says about DANE for one SRV target and port.

    @ivar status: L{DANE}, L{NO_DANE} or L{DANE_FAILED}.
    @ivar records: The TLSA records (L{dna.channel.dane.TLSARecord} is built
        from them by the channel), as dnspython rdata; empty unless L{DANE}.
    @ivar reason: How it came to C{status}, for logs and refusals.
    @ivar ttl: Seconds the outcome holds (the smallest TTL and signature
        lifetime of the records it rests on).
    @ivar dnssec: The DNSSEC status behind a L{DANE_FAILED} outcome:
        L{BOGUS}, or L{INDETERMINATE} when no usable answer came; L{None}
        otherwise.
    @ivar expires: When the outcome stops being valid, in seconds since
        the epoch: the time of the lookup plus C{ttl}; L{None} when it was
        not made by L{TLSALookup}.
    """

    serverName = attr.ib()
    port = attr.ib()
    status = attr.ib()
    records = attr.ib(default=(), converter=tuple)
    reason = attr.ib(default="")
    ttl = attr.ib(default=0)
    dnssec = attr.ib(default=None)
    expires = attr.ib(default=None, eq=False)

    @property
    def failed(self):
        """
        Whether the connection must fail (L{DANE_FAILED}).
        """
        return self.status == DANE_FAILED


def tlsaName(serverName, port):
    """
    The owner name of the TLSA records of a server name and port (RFC 6698
    section 3): C{_PORT._tcp.TARGET.}.

    @param serverName: The SRV target, normalised (A-labels).
    @rtype: L{dns.name.Name}
    """
    return dns.name.Name((f"_{int(port)}".encode("ascii"), b"_tcp")
                         + absoluteName(serverName).labels)


def _tlsaOwner(serverName, port):
    """
    L{tlsaName}, or L{None} when the server name is too long to carry
    C{_PORT._tcp.} in front: no TLSA record can exist for it.
    """
    try:
        return tlsaName(serverName, port)
    except dns.name.NameTooLong:
        return None


def decide(serverName, port, addresses, tlsa=None):
    """
    The pure decision of RFC 7673 section 3 on the validations of a
    target's address records and of its TLSA records.

    @param addresses: The L{Validation} of its A (or AAAA) records.
    @param tlsa: The L{Validation} of its TLSA records, L{None} when they
        were not asked (insecure or failed addresses).
    @rtype: L{TLSAResult}
    """
    owner = _tlsaOwner(serverName, port)
    where = None if owner is None else f"{owner.to_text(omit_final_dot=True)} TLSA"
    if addresses.status == INSECURE:
        return TLSAResult(serverName, port, NO_DANE,
                          reason=f"the address records of {serverName} are insecure: "
                          f"no DANE", ttl=addresses.ttl)
    if addresses.status != SECURE:
        return TLSAResult(serverName, port, DANE_FAILED,
                          reason=f"the address records of {serverName} are "
                          f"{addresses.status}: {addresses.reason}", ttl=addresses.ttl,
                          dnssec=addresses.status)
    if where is None:
        return TLSAResult(serverName, port, NO_DANE,
                          reason=f"_{int(port)}._tcp.{serverName} is longer than a DNS "
                          f"name may be: no TLSA record can exist, no DANE",
                          ttl=addresses.ttl)
    ttl = min(addresses.ttl, tlsa.ttl)
    if tlsa.status == INSECURE:
        return TLSAResult(serverName, port, NO_DANE,
                          reason=f"{where} is in an insecure zone: no DANE", ttl=ttl)
    if tlsa.status != SECURE:
        return TLSAResult(serverName, port, DANE_FAILED,
                          reason=f"{where} is {tlsa.status}: {tlsa.reason}", ttl=ttl,
                          dnssec=tlsa.status)
    if tlsa.rrset is None or not len(tlsa.rrset):
        return TLSAResult(serverName, port, NO_DANE,
                          reason=f"{where} is securely denied: no DANE", ttl=ttl)
    return TLSAResult(serverName, port, DANE, list(tlsa.rrset),
                      reason=f"{where}: {len(tlsa.rrset)} secure record(s)", ttl=ttl)


class TLSALookup:
    """
    Look up whether DANE applies to an SRV target, through a strategy of
    L{dna.dns.lookup}, caching the outcomes (L{DANE_FAILED} too, briefly).
    """

    def __init__(self, validator, clock, maxEntries=10000, maxCache=MAX_CACHE_SECONDS,
                 static=()):
        """
        @param validator: A strategy with C{validate(qname, rdtype, now)}
            firing with a L{Validation}, such as
            L{dna.dns.lookup.ResolverLookup} or
            L{dna.dns.lookup.SelfValidatingLookup}.
        @param clock: An L{IReactorTime}.
        @param maxEntries: How many outcomes to keep.
        @param maxCache: Seconds an outcome is kept at most.
        @param static: Server names whose addresses the operator configured
            (L{dna.dns.addresses.AddressResolver}'s C{hosts}): DNS did not
            give them, so DANE does not apply (PKIX decides).
        """
        self._static = frozenset(static)
        self._validator = validator
        self._clock = clock
        self._maxEntries = maxEntries
        self._maxCache = maxCache
        self._cache = {}
        self._inFlight = Coalescer()

    def lookup(self, serverName, port, after=None):
        """
        Whether DANE applies to C{serverName} on C{port}.

        @param serverName: The SRV target, normalised (A-labels).
        @param port: The SRV port.
        @param after: When given, a cached outcome that expires no later
            than this time is not used: the re-validation of a connection
            authenticated by DANE (L{dna.app.revalidation}) asks for a proof
            outlasting the one it holds.
        @return: A L{Deferred} firing with a L{TLSAResult}; it does not
            fail.
        """
        if serverName in self._static:
            return defer.succeed(TLSAResult(
                serverName, port, NO_DANE,
                reason=f"{serverName} has a static address: no DANE"))
        key = (serverName, int(port))
        now = self._clock.seconds()
        cached = self._cache.get(key)
        if cached is not None:
            until, result = cached
            if until > now and (after is None or (
                    result.expires is not None and result.expires > after)):
                return defer.succeed(result)
            del self._cache[key]
        return self._inFlight.wait(key, self._askAndRemember, key, now)

    def _askAndRemember(self, key, now):
        d = self._ask(key[0], key[1], now)

        def remember(result):
            result = attr.evolve(result, expires=now + result.ttl)
            self._remember(key, result)
            return result

        return d.addCallback(remember)

    def _remember(self, key, result):
        if len(self._cache) >= self._maxEntries:
            self._cache.pop(next(iter(self._cache)))
        ttl = min(result.ttl, self._maxCache)
        if result.status == DANE_FAILED:
            ttl = min(ttl, 5)
        if ttl > 0:
            self._cache[key] = (self._clock.seconds() + ttl, result)

    @defer.inlineCallbacks
    def _ask(self, serverName, port, now):
        name = absoluteName(serverName)
        # The TLSA records are asked along with the addresses, not after
        # them: one round trip instead of two to a cold resolver, on the way
        # of every first connection. They count only when the addresses are
        # secure (decide); otherwise the question is withdrawn.
        owner = _tlsaOwner(serverName, port)
        tlsaAsked = None
        if owner is not None:
            tlsaAsked = self._validator.validate(owner, dns.rdatatype.TLSA, now)
        try:
            addresses = yield self._validator.validate(name, dns.rdatatype.A, now)
            if addresses.status == SECURE and addresses.rrset is None:
                addresses = yield self._validator.validate(name, dns.rdatatype.AAAA, now)
            if addresses.status != SECURE or tlsaAsked is None:
                return decide(serverName, port, addresses)
            question, tlsaAsked = tlsaAsked, None
            tlsa = yield question
        finally:
            if tlsaAsked is not None:
                # Not waited for (the addresses failed or are not secure).
                _withdraw(tlsaAsked)
        result = decide(serverName, port, addresses, tlsa)
        _log.debug("DANE for {serverName}:{port}: {status} ({reason})",
                   serverName=serverName, port=port, status=result.status,
                   reason=result.reason)
        return result


def _withdraw(question):
    """
    Cancel a question whose answer no longer counts.
    """
    question.addErrback(lambda failure: failure.trap(defer.CancelledError))
    question.cancel()
