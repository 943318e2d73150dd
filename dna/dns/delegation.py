"""
Secure delegation of a domain's XMPP service (draft-ietf-xmpp-dna-01 section 5
steps 1-3, section 6 step 3): the SRV records of C{_xmpp-server._tcp.<domain>},
their DNSSEC status, and the decision whether they delegate the domain to a
server that authenticated with a given set of names.
"""

import ipaddress
import re
from collections import OrderedDict

import functools

import attr
import dns.edns
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from zope.interface import implementer

import dna.dns.dnssec.proofs
from dna.dns.dnssec.proofs import BOGUS, INDETERMINATE, INSECURE, SECURE
from dna.error import DNAError
from dna.interfaces import IDelegationChecker, IDelegationResult

_log = Logger()

REQUIRE_SECURE = "require-secure"
ALLOW_INSECURE = "allow-insecure"
POLICIES = frozenset([REQUIRE_SECURE, ALLOW_INSECURE])

# Lower-case names that dnspython takes byte for byte (no IDNA, no escapes).
_PLAIN = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def domainName(domain):
    """
    Parse a domain name given in A-labels or U-labels (IDNA, as dnspython
    encodes it).

    @param domain: A domain name, with or without a trailing dot.
    @type domain: C{str} or L{dns.name.Name}
    @return: The absolute name.
    @rtype: L{dns.name.Name}
    @raise ValueError: When C{domain} is not a valid domain name or is the
        root.
    """
    if isinstance(domain, dns.name.Name):
        name = domain
    else:
        if not isinstance(domain, str):
            raise ValueError(f"not a domain name: {domain!r}")
        try:
            name = dns.name.from_text(domain)
        except (dns.exception.DNSException, UnicodeError, ValueError) as e:
            raise ValueError(f"invalid domain name {domain!r}: {e}") from e
    if not name.is_absolute():
        name = name.derelativize(dns.name.root)
    if len(name) < 2:
        raise ValueError(f"invalid domain name {domain!r}: the root")
    return name


def normalizeDomain(domain):
    """
    The canonical text form of a domain name: A-labels, lower case, no
    trailing dot.

    @param domain: See L{domainName}.
    @rtype: C{str}
    @raise ValueError: See L{domainName}.
    """
    if isinstance(domain, str):
        return _normalizeText(domain)
    return domainName(domain).to_text(omit_final_dot=True).lower()


@functools.lru_cache(maxsize=16384)
def _normalizeText(domain):
    # Pure and asked again for every check of the same names: remembered
    # (errors are not, so a hostile stream of bad names cannot fill it).
    return domainName(domain).to_text(omit_final_dot=True).lower()


@attr.s(frozen=True, slots=True)
class SRVRecord:
    """
    One SRV record of a delegation.

    @ivar target: The target host (A-labels, lower case, no trailing dot);
        C{""} for the "no service" target C{"."}.
    """

    priority = attr.ib()
    weight = attr.ib()
    port = attr.ib()
    target = attr.ib()

    def __str__(self):
        target = f"{self.target}." if self.target else "."
        return f"{self.priority} {self.weight} {self.port} {target}"


@implementer(IDelegationResult)
@attr.s(frozen=True, slots=True)
class DelegationResult:
    """
    The outcome of one delegation lookup (see L{IDelegationResult}).

    @ivar ttl: Seconds the result may be cached, counted from the lookup
        (a result served from the cache keeps the figure of its lookup).
    @ivar chain: What proved the status: a sequence of
        L{dna.dns.dnssec.proofs.ChainLink} (which key signed what), for people.
    """

    domain = attr.ib()
    records = attr.ib(converter=tuple)
    status = attr.ib()
    reason = attr.ib(default=None)
    ttl = attr.ib(default=0)
    chain = attr.ib(default=(), converter=tuple)


def _serverNameSet(serverNames):
    """
    Normalise server names for matching, dropping names that are not valid
    domain names (they can match nothing).
    """
    names = set()
    for name in serverNames:
        try:
            names.add(normalizeDomain(name))
        except ValueError:
            continue
    return names


def delegates(result, serverNames, allowInsecure=False, fallback=False):
    """
    The pure decision of L{IDelegationChecker.isDelegated}: whether a lookup
    result delegates its domain to one of C{serverNames}.

    @param result: The lookup result.
    @type result: L{IDelegationResult}
    @param serverNames: The names the remote server authenticated with
        (A-labels or U-labels; case and a trailing dot do not matter).
    @param allowInsecure: Whether a provably insecure (unsigned) delegation
        counts. A bogus or indeterminate one never does.
    @param fallback: Whether, when the domain provably has no SRV record,
        the domain itself counts as its server name (RFC 6120 section
        3.2.2). Off by default: a missing SRV record is not a delegation.
    @rtype: C{bool}
    """
    if result.status == SECURE:
        pass
    elif result.status == INSECURE and allowInsecure:
        pass
    else:
        return False
    names = _serverNameSet(serverNames)
    if not names:
        return False
    if not result.records:
        return fallback and result.domain in names
    # A single target of "." means "no service" (RFC 2782).
    return any(record.target and record.target in names for record in result.records)


def rfc2782Order(records, randint):
    """
    Order SRV records as RFC 2782 says a client should try them: by priority,
    lowest first, and among equal priorities by a weighted random choice.

    @param records: L{SRVRecord}s.
    @param randint: Like L{random.randint}: C{randint(a, b)} returns an
        integer N with a <= N <= b.
    @return: A new list.
    """
    ordered = []
    byPriority = {}
    for record in records:
        byPriority.setdefault(record.priority, []).append(record)
    for priority in sorted(byPriority):
        group = byPriority[priority]
        if len(group) == 1:
            ordered.extend(group)
            continue
        # Zero weights first, so that they get a small chance (RFC 2782).
        group.sort(key=lambda record: record.weight != 0)
        while len(group) > 1:
            total = sum(record.weight for record in group)
            pick = randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    break
            ordered.append(group.pop(index))
        ordered.append(group[0])
    return ordered


def _needsShuffle(records):
    priorities = [record.priority for record in records]
    return len(priorities) != len(set(priorities))


def srvRecords(rrset):
    """
    The L{SRVRecord}s of an SRV RRset, sorted by priority.
    """
    records = []
    for rd in rrset:
        if rd.target == dns.name.root:
            target = ""
        else:
            target = rd.target.to_text(omit_final_dot=True).lower()
        records.append(SRVRecord(rd.priority, rd.weight, rd.port, target))
    records.sort(key=lambda record: (record.priority, -record.weight, record.target))
    return records


def _srvName(name):
    return dns.name.Name((b"_xmpp-server", b"_tcp") + name.labels)


def _isLoopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serverText(server):
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# RFC 8914 Extended DNS Errors that mean the data failed validation.
_BOGUS_EDE = frozenset([6, 7, 8, 9, 10, 11, 12])
_EDE_NAMES = {
    0: "Other Error", 1: "Unsupported DNSKEY Algorithm", 2: "Unsupported DS Digest Type",
    3: "Stale Answer", 5: "DNSSEC Indeterminate", 6: "DNSSEC Bogus",
    7: "Signature Expired", 8: "Signature Not Yet Valid", 9: "DNSKEY Missing",
    10: "RRSIGs Missing", 11: "No Zone Key Bit Set", 12: "NSEC Missing",
    13: "Cached Error", 14: "Not Ready", 15: "Blocked", 18: "Prohibited",
    20: "Not Authoritative", 21: "Not Supported", 22: "No Reachable Authority",
    23: "Network Error", 24: "Invalid Data",
}


def _extendedErrors(response):
    errors = []
    for option in response.options:
        if isinstance(option, dns.edns.EDEOption):
            name = _EDE_NAMES.get(option.code)
            text = f"EDE {option.code} ({name})" if name else f"EDE {option.code}"
            if option.text:
                text += f": {option.text}"
            errors.append((option.code, text))
    return errors


def _followCNAMEs(answer, qname, rdtype):
    """
    The RRset for C{qname}/C{rdtype} in a resolver's answer section, after
    the CNAMEs it gives, and the smallest TTL on the way.
    """
    name = qname
    ttls = []
    for _ in range(dna.dns.dnssec.proofs.MAX_CNAMES + 1):
        cname = None
        for rrset in answer:
            if rrset.name != name:
                continue
            if rrset.rdtype == rdtype:
                ttls.append(rrset.ttl)
                return rrset, ttls
            if rrset.rdtype == dns.rdatatype.CNAME:
                cname = rrset
        if cname is None:
            return None, ttls
        ttls.append(cname.ttl)
        name = cname[0].target
    return None, ttls


def interpretResolverAnswer(response, qname, now, resolver):
    """
    The pure decision of C{mode='ad'}: what a validating resolver's answer to
    an SRV query says (RFC 4035 section 3.2.3, RFC 6840 section 5.8).

    @param response: The answer (DO and AD were set in the query, CD clear).
    @type response: L{dns.message.Message}
    @param qname: The SRV name asked.
    @param now: The time, seconds since the epoch.
    @param resolver: The resolver, for reasons and the chain (C{str}).
    @return: A L{dna.dns.dnssec.proofs.Validation}, or L{None} for SERVFAIL without an
        Extended DNS Error saying the data is bogus: only a retry with CD set
        can tell then.
    """
    rcode = response.rcode()
    if rcode == dns.rcode.SERVFAIL:
        for code, text in _extendedErrors(response):
            if code in _BOGUS_EDE:
                return dna.dns.dnssec.proofs.Validation(
                    BOGUS, reason=f"the validating resolver {resolver} answered "
                    f"SERVFAIL for SRV {qname.to_text(omit_final_dot=True)}: {text}")
        return None
    if rcode != dns.rcode.NOERROR and rcode != dns.rcode.NXDOMAIN:
        extra = "; ".join(text for _, text in _extendedErrors(response))
        return dna.dns.dnssec.proofs.Validation(
            INDETERMINATE, reason=f"the resolver {resolver} answered "
            f"{dns.rcode.to_text(rcode)} for SRV {qname.to_text(omit_final_dot=True)}"
            + (f" ({extra})" if extra else ""))
    secure = bool(response.flags & dns.flags.AD)
    if secure:
        how = f"validated by the resolver {resolver} (AD bit)"
    else:
        how = f"not validated by the resolver {resolver} (no AD bit)"
    rrset, ttls = _followCNAMEs(response.answer, qname, dns.rdatatype.SRV)
    chain = []
    reason = None
    if rrset is not None:
        owner = None
        for sigs in response.answer:
            if (sigs.rdtype == dns.rdatatype.RRSIG and sigs.covers == dns.rdatatype.SRV
                    and sigs.name == rrset.name):
                owner = owner or rrset.name.to_text()
                for rrsig in sigs:
                    ttls.append(rrsig.expiration - now)
                    ttls.append(rrsig.original_ttl)
                    chain.append(dna.dns.dnssec.proofs.ChainLink(
                        owner, "SRV", rrsig.signer.to_text(), rrsig.key_tag,
                        rrsig.algorithm, how))
        if not chain:
            chain.append(dna.dns.dnssec.proofs.ChainLink(rrset.name.to_text(), "SRV", "", note=how))
    else:
        kind = "NXDOMAIN" if rcode == dns.rcode.NXDOMAIN else "NODATA"
        chain.append(dna.dns.dnssec.proofs.ChainLink(qname.to_text(), "SRV", "",
                                          note=f"{kind} {how}"))
        ttls.append(dna.dns.dnssec.proofs._minimumTTL(response))
        reason = f"no SRV {qname.to_text(omit_final_dot=True)} ({kind})"
    if secure:
        status = SECURE
    else:
        status = INSECURE
        reason = (f"the resolver {resolver} did not set the AD bit: the answer for SRV "
                  f"{qname.to_text(omit_final_dot=True)} is not signed")
    ttl = max(0, int(min(ttls))) if ttls else 0
    return dna.dns.dnssec.proofs.Validation(status, rrset, reason, ttl, chain)


@implementer(IDelegationChecker)
class DelegationChecker:
    """
    Looks up C{_xmpp-server._tcp.<domain>} SRV records with DNSSEC and
    decides delegations (draft-ietf-xmpp-dna-01 section 5 steps 1-2).

    Two ways to learn the DNSSEC status (section 5 step 2: "may either
    retrieve DNSSEC records directly or rely on a validating resolver"):

      - C{mode='ad'}: ask a validating resolver and trust its AD bit. The
        path to it must be trustworthy (RFC 4033 section 4.9.3, RFC 6840
        section 5.8): only loopback resolvers unless C{trustedPath}.
      - C{mode='validate'}: validate here from trust anchors
        (L{dna.dns.dnssec.proofs.Validator}), asking a resolver with CD set or an
        authoritative server for every zone (C{upstream='authoritative'})
        with RD clear.

    Results, positive and negative, are cached for their TTL, no longer than
    the signatures they rest on, in a bounded LRU cache; concurrent checks of
    one domain share one lookup.
    """

    def __init__(self, servers, mode="ad", reactor=None, client=None, anchors=None,
                 upstream="resolver", trustedPath=False, policy=REQUIRE_SECURE,
                 domainPolicies=None, fallback=False, cacheSize=10000, timeout=1.0,
                 retries=2, deadline=5.0, random=None, maxTTL=86400, bogusTTL=60,
                 indeterminateTTL=5):
        """
        @param servers: C{[(host, port)]} of the resolver(s) or, with
            C{upstream='authoritative'}, of the authoritative server.
        @param mode: C{'ad'} or C{'validate'}.
        @param reactor: Provides L{IReactorTime} (the cache's clock and
            timeouts) and, without C{client}, UDP and TCP; the global
            reactor by default.
        @param client: Something with the C{query} method of
            L{dna.dns.client.DNSClient}; by default a C{DNSClient} for
            C{servers}.
        @param anchors: Trust anchors for C{mode='validate'}, as from
            L{dna.dns.dnssec.proofs.parseAnchors}; the IANA root anchors by default.
        @param upstream: C{'resolver'} or C{'authoritative'}, for
            C{mode='validate'}.
        @param trustedPath: Whether the path to a non-loopback resolver is
            secured (IPsec, TSIG, a trusted network), allowing C{mode='ad'}.
        @param policy: C{'require-secure'} or C{'allow-insecure'}: whether
            L{isDelegated} accepts a provably unsigned delegation.
        @param domainPolicies: C{{domain: policy}} overriding C{policy}.
        @param fallback: Whether L{isDelegated} accepts the domain itself
            as its server name when it provably has no SRV record (RFC 6120
            section 3.2.2).
        @param cacheSize: How many domains to cache results for.
        @param timeout: Seconds per DNS try (for the default client).
        @param retries: Rounds over C{servers} (for the default client).
        @param deadline: Seconds after which a check gives up as
            indeterminate, however many queries it needed.
        @param random: A L{random.Random} for the RFC 2782 weighted order.
        @param maxTTL: The longest a result is cached, in seconds.
        @param bogusTTL: The longest a bogus result is cached.
        @param indeterminateTTL: How long an indeterminate result is cached.
        @raise ValueError: On an unknown mode, upstream or policy, no
            servers, or C{mode='ad'} with a resolver off loopback and no
            C{trustedPath}.
        """
        if mode not in ("ad", "validate"):
            raise ValueError(f"unknown mode {mode!r}: use 'ad' or 'validate'")
        if upstream not in ("resolver", "authoritative"):
            raise ValueError(f"unknown upstream {upstream!r}: use 'resolver' or "
                             f"'authoritative'")
        servers = [(str(host), int(port)) for host, port in servers]
        if not servers:
            raise ValueError("no DNS server given")
        if mode == "ad" and upstream != "resolver":
            raise ValueError("mode 'ad' needs a validating resolver, not an "
                             "authoritative server")
        if mode == "ad" and not trustedPath:
            remote = [_serverText(s) for s in servers if not _isLoopback(s[0])]
            if remote:
                raise ValueError(
                    f"mode 'ad' trusts the AD bit of the resolver, which an attacker "
                    f"on the path can set: resolver {', '.join(remote)} is not on "
                    f"loopback. Run a validating resolver on loopback, use mode "
                    f"'validate', or pass trustedPath=True if the path is secured "
                    f"(RFC 4033 section 4.9.3)")
        domainPolicies = dict(domainPolicies or {})
        for name, value in [(None, policy)] + list(domainPolicies.items()):
            if value not in POLICIES:
                raise ValueError(f"unknown policy {value!r}"
                                 + (f" for {name}" if name else "")
                                 + ": use 'require-secure' or 'allow-insecure'")
        if reactor is None:
            from twisted.internet import reactor
        self._clock = reactor
        if client is None:
            from dna.dns.client import DNSClient
            client = DNSClient(servers, reactor=reactor, timeout=timeout, retries=retries,
                               deadline=deadline)
        self._client = client
        self._servers = servers
        self._resolverText = ", ".join(_serverText(s) for s in servers)
        self.mode = mode
        self._upstream = upstream
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
        self._pending = {}
        self._validator = None
        if mode == "validate":
            self._validator = dna.dns.dnssec.proofs.Validator(self._validatingQuery, anchors)

    def _validatingQuery(self, name, rdtype):
        if self._upstream == "resolver":
            return self._client.query(name, rdtype, dnssec=True, checkingDisabled=True,
                                      recursionDesired=True)
        return self._client.query(name, rdtype, dnssec=True, checkingDisabled=False,
                                  recursionDesired=False)

    # IDelegationChecker

    def check(self, domain):
        """
        See L{IDelegationChecker.check}.
        """
        key = domain
        if domain.__class__ is str:
            key = domain.lower()
            if key.endswith("."):
                key = key[:-1]
            entry = self._cache.get(key)
            if entry is not None and entry[0] > self._clock.seconds():
                self._cache.move_to_end(key)
                return succeed(self._present(entry))
        try:
            if key.__class__ is str and _PLAIN.fullmatch(key):
                # Plain ASCII: what dnspython would make of it, faster.
                normal = key
                qname = dns.name.Name((b"_xmpp-server", b"_tcp")
                                      + tuple(key.encode("ascii").split(b".")) + (b"",))
            else:
                name = domainName(domain)
                qname = _srvName(name)
                normal = name.to_text(omit_final_dot=True).lower()
        except (ValueError, dns.exception.DNSException) as e:
            return succeed(DelegationResult(str(domain), (), INDETERMINATE,
                                            reason=f"invalid domain: {e}"))
        entry = self._cache.get(normal)
        if entry is not None:
            if entry[0] > self._clock.seconds():
                self._cache.move_to_end(normal)
                return succeed(self._present(entry))
            del self._cache[normal]
        return self._wait(normal, qname)

    def isDelegated(self, domain, serverNames):
        """
        See L{IDelegationChecker.isDelegated}.
        """
        if isinstance(serverNames, str):
            serverNames = [serverNames]
        serverNames = list(serverNames)

        def decide(result):
            allowInsecure = self.policyFor(result.domain) == ALLOW_INSECURE
            verdict = delegates(result, serverNames, allowInsecure=allowInsecure,
                                fallback=self._fallback)
            _log.debug("Delegation of {domain} to {serverNames}: {verdict} "
                       "({status}: {reason})", domain=result.domain,
                       serverNames=serverNames, verdict=verdict, status=result.status,
                       reason=result.reason)
            return verdict

        return self.check(domain).addCallback(decide)

    @property
    def client(self):
        """
        The DNS client this checker asks (shared with address look-ups of
        SRV targets).
        """
        return self._client

    def policyFor(self, domain):
        """
        The policy (C{'require-secure'} or C{'allow-insecure'}) for a
        normalised domain.
        """
        return self._domainPolicies.get(domain, self._policy)

    # Cache and sharing

    def _present(self, entry):
        expires, result, shuffle = entry
        if shuffle:
            return DelegationResult(result.domain,
                                    rfc2782Order(result.records, self._randint),
                                    result.status, result.reason, result.ttl, result.chain)
        return result

    def _wait(self, normal, qname):
        pending = self._pending.get(normal)
        start = pending is None
        if start:
            pending = self._pending[normal] = (self._lookup(normal, qname), [])
        lookup, waiters = pending

        def cancel(waiter):
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._pending.get(normal) is pending:
                del self._pending[normal]
                lookup.cancel()

        waiter = Deferred(cancel)
        waiters.append(waiter)
        if start:
            lookup.addCallbacks(self._finished, self._abandoned,
                                callbackArgs=(normal, pending))
        return waiter

    @staticmethod
    def _abandoned(failure):
        failure.trap(defer.CancelledError)

    def _finished(self, result, normal, pending):
        if self._pending.get(normal) is pending:
            del self._pending[normal]
        ttl = result.ttl
        if result.status == BOGUS:
            ttl = min(ttl, self._bogusTTL)
        elif result.status == INDETERMINATE:
            ttl = self._indeterminateTTL
        ttl = min(ttl, self._maxTTL)
        entry = (self._clock.seconds() + ttl, result, _needsShuffle(result.records))
        if ttl > 0 and self._cacheSize > 0:
            self._cache[normal] = entry
            self._cache.move_to_end(normal)
            while len(self._cache) > self._cacheSize:
                self._cache.popitem(last=False)
        waiters, pending[1][:] = list(pending[1]), []
        for waiter in waiters:
            waiter.callback(self._present(entry))

    # Lookups

    def _lookup(self, normal, qname):
        """
        @return: A L{Deferred} that fires with a L{DelegationResult} and never
            fails.
        """
        if self.mode == "ad":
            d = self._lookupAD(qname)
        else:
            d = self._validator.resolve(qname, dns.rdatatype.SRV, self._clock.seconds())
        d.addTimeout(self._deadline, self._clock)
        d.addCallback(self._toResult, normal)
        d.addErrback(self._lookupFailed, normal)
        return d

    def _lookupAD(self, qname):
        """
        Ask the validating resolver; on a SERVFAIL it does not explain, ask
        again with CD set to tell bogus data from a failure to get any.
        """
        def answered(response):
            validation = interpretResolverAnswer(response, qname, self._clock.seconds(),
                                                 self._resolverText)
            if validation is not None:
                return validation
            return self._retryWithCD(response, qname)

        def failed(failure):
            failure.trap(DNAError)
            return self._queryFailed(failure.value, qname)

        d = self._client.query(qname, dns.rdatatype.SRV, dnssec=True)
        return d.addCallbacks(answered, failed)

    @inlineCallbacks
    def _retryWithCD(self, response, qname):
        resolver = self._resolverText
        qtext = qname.to_text(omit_final_dot=True)
        extra = "; ".join(text for _, text in _extendedErrors(response))
        extra = f" ({extra})" if extra else ""
        try:
            retry = yield self._client.query(qname, dns.rdatatype.SRV, dnssec=True,
                                             checkingDisabled=True)
        except DNAError as e:
            return dna.dns.dnssec.proofs.Validation(
                INDETERMINATE, reason=f"the resolver {resolver} answered SERVFAIL for SRV "
                f"{qtext}{extra}, and failed again with CD set ({e.reason})")
        if retry.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return dna.dns.dnssec.proofs.Validation(
                BOGUS, reason=f"the validating resolver {resolver} answered SERVFAIL for "
                f"SRV {qtext}{extra} but gives the data with CD set: it failed DNSSEC "
                f"validation")
        return dna.dns.dnssec.proofs.Validation(
            INDETERMINATE, reason=f"the resolver {resolver} answered SERVFAIL for SRV "
            f"{qtext}{extra}, and {dns.rcode.to_text(retry.rcode())} with CD set")

    def _queryFailed(self, error, qname):
        reason = getattr(error, "reason", None) or str(error) or type(error).__name__
        return dna.dns.dnssec.proofs.Validation(
            INDETERMINATE, reason=f"no usable answer for SRV "
            f"{qname.to_text(omit_final_dot=True)}: {reason}")

    def _toResult(self, validation, normal):
        records = srvRecords(validation.rrset) if validation.rrset is not None else []
        reason = validation.reason
        if (validation.status == SECURE and len(records) == 1 and records[0].target == ""):
            reason = "the SRV target '.' says the service is decidedly not available"
        result = DelegationResult(normal, records, validation.status, reason,
                                  validation.ttl, validation.chain)
        if result.status != SECURE:
            _log.info("Delegation of {domain} is {status}: {reason}", domain=normal,
                      status=result.status, reason=result.reason)
        return result

    def _lookupFailed(self, failure, normal):
        if failure.check(defer.CancelledError):
            return failure
        if failure.check(defer.TimeoutError):
            reason = f"no answer within the deadline of {self._deadline:g} s"
            _log.info("Delegation of {domain} is indeterminate: {reason}",
                      domain=normal, reason=reason)
        else:
            _log.failure("Unexpected error checking the delegation of {domain}",
                         failure, domain=normal)
            reason = f"internal error: {failure.getErrorMessage()}"
        return DelegationResult(normal, (), INDETERMINATE, reason)
