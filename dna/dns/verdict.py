"""
The pure decisions of secure delegation (draft-ietf-xmpp-dna-01 section 5
steps 1-3, section 6 step 3): what the SRV records of
C{_xmpp-server._tcp.<domain>} and their DNSSEC status say, what a validating
resolver's answer says, and whether a result delegates a domain to a server
that authenticated with a given set of names. No I/O and no reactor:
L{dna.dns.delegation} and L{dna.dns.lookup} do the asking.
"""


import attr
import dns.edns
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
from zope.interface import implementer

from dna.core.names import (
    coversServerName,
    normalizeDomain,
    normalizeServerPattern,
)
from dna.dns.dnssec.proofs import (
    BOGUS,
    INDETERMINATE,
    INSECURE,
    MAX_CNAMES,
    SECURE,
    ChainLink,
    Validation,
    minimumTTL,
)
from dna.error import InvalidAddress
from dna.interfaces import IDelegationResult

REQUIRE_SECURE = "require-secure"
ALLOW_INSECURE = "allow-insecure"
POLICIES = frozenset([REQUIRE_SECURE, ALLOW_INSECURE])

def checkPolicy(policy, domain=None):
    """
    Refuse an unknown delegation policy.

    @param policy: C{'require-secure'} or C{'allow-insecure'}.
    @param domain: The domain it applies to, for the message, or L{None}
        for the default policy.
    @raise ValueError: When C{policy} is neither.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}"
                         + (f" for {domain}" if domain else "")
                         + ": use 'require-secure' or 'allow-insecure'")


@attr.s(frozen=True, slots=True)
class SRVRecord:
    """
    One SRV record of a delegation.

    @ivar target: The target host as DNS gives it (dnspython's text, lower
        case, no trailing dot), to connect to; C{""} for the "no service"
        target C{"."}.  L{delegates} compares it in the canonical form of
        L{dna.core.names}.
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
    @ivar expires: When the proof stops being valid (seconds since the
        epoch): the lookup's time plus C{ttl}, itself the smallest of the
        TTLs and signature expirations along the chain (or, in AD mode, what
        the resolver passes on). Set by the checker that made the lookup,
        L{None} until then.
    """

    domain = attr.ib()
    records = attr.ib(converter=tuple)
    status = attr.ib()
    reason = attr.ib(default=None)
    ttl = attr.ib(default=0)
    chain = attr.ib(default=(), converter=tuple)
    expires = attr.ib(default=None)


def _serverNameSet(serverNames):
    """
    Normalise the names a server authenticated with for matching
    (L{normalizeServerPattern}: wildcards stay patterns), dropping those
    that are no server names (they can match nothing).
    """
    names = set()
    for name in serverNames:
        try:
            names.add(normalizeServerPattern(name))
        except InvalidAddress:
            continue
    return names


def _covered(target, names):
    """
    Whether an SRV target, as DNS gave it, is covered by C{names}: compared
    in the canonical form of L{dna.core.names}, by the rule stream
    authentication uses (L{coversServerName}).  A target that is no server
    name (an underscore, a raw octet) is covered by nothing.
    """
    try:
        return coversServerName(names, normalizeDomain(target))
    except InvalidAddress:
        return False


def delegates(result, serverNames, allowInsecure=False, fallback=False):
    """
    The pure decision of L{IDelegationChecker.isDelegated}: whether a lookup
    result delegates its domain to one of C{serverNames}.

    A target is delegated to a server whose names cover it as they would
    for stream authentication (RFC 6125 section 6.4.3): a certificate for
    C{*.provider.example} covers the target C{xmpp1.provider.example}.

    @param result: The lookup result.
    @type result: L{IDelegationResult}
    @param serverNames: The names the remote server authenticated with
        (A-labels or U-labels, wildcards as certificates present them; case
        and one trailing dot do not matter).
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
        return fallback and _covered(result.domain, names)
    # A single target of "." means "no service" (RFC 2782).
    return any(record.target and _covered(record.target, names)
               for record in result.records)


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


def needsShuffle(records):
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


def absoluteName(domain):
    """
    The absolute DNS name of a domain, built byte for byte: normalising is
    L{normalizeDomain}'s job, done before.

    @param domain: A domain in the form L{normalizeDomain} gives.
    @type domain: C{str}
    @rtype: L{dns.name.Name}
    """
    return dns.name.Name(tuple(domain.encode("ascii").split(b".")) + (b"",))


def srvName(name):
    """
    The owner name of a domain's XMPP server SRV records (RFC 6120 section
    3.2.1), C{_xmpp-server._tcp.<domain>}: the only place underscore labels
    are made, from a domain already normalised.

    @param name: The L{absoluteName} of a domain.
    @type name: L{dns.name.Name}
    @rtype: L{dns.name.Name}
    @raise dns.name.NameTooLong: When the domain is too long to prefix.
    """
    return dns.name.Name((b"_xmpp-server", b"_tcp") + name.labels)


def serverText(server):
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


def extendedErrors(response):
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
    for _ in range(MAX_CNAMES + 1):
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
    The pure decision of L{dna.dns.lookup.ResolverLookup}: what a validating
    resolver's answer to an SRV query says (RFC 4035 section 3.2.3, RFC 6840 section 5.8).

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
        for code, text in extendedErrors(response):
            if code in _BOGUS_EDE:
                return Validation(
                    BOGUS, reason=f"the validating resolver {resolver} answered "
                    f"SERVFAIL for SRV {qname.to_text(omit_final_dot=True)}: {text}")
        return None
    if rcode != dns.rcode.NOERROR and rcode != dns.rcode.NXDOMAIN:
        extra = "; ".join(text for _, text in extendedErrors(response))
        return Validation(
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
                    chain.append(ChainLink(
                        owner, "SRV", rrsig.signer.to_text(), rrsig.key_tag,
                        rrsig.algorithm, how))
        if not chain:
            chain.append(ChainLink(rrset.name.to_text(), "SRV", "", note=how))
    else:
        kind = "NXDOMAIN" if rcode == dns.rcode.NXDOMAIN else "NODATA"
        chain.append(ChainLink(qname.to_text(), "SRV", "",
                                          note=f"{kind} {how}"))
        ttls.append(minimumTTL(response))
        reason = f"no SRV {qname.to_text(omit_final_dot=True)} ({kind})"
    if secure:
        status = SECURE
    else:
        status = INSECURE
        reason = (f"the resolver {resolver} did not set the AD bit: the answer for SRV "
                  f"{qname.to_text(omit_final_dot=True)} is not signed")
    ttl = max(0, int(min(ttls))) if ttls else 0
    return Validation(status, rrset, reason, ttl, chain)


def resultFromValidation(domain, validation):
    """
    The L{DelegationResult} of an SRV lookup's validation.

    @param domain: The normalised domain (C{str}).
    @param validation: A L{dna.dns.dnssec.proofs.Validation} of the SRV
        RRset of C{_xmpp-server._tcp.<domain>}.
    @rtype: L{DelegationResult}
    """
    records = srvRecords(validation.rrset) if validation.rrset is not None else []
    reason = validation.reason
    if validation.status == SECURE and len(records) == 1 and records[0].target == "":
        reason = "the SRV target '.' says the service is decidedly not available"
    return DelegationResult(domain, records, validation.status, reason,
                            validation.ttl, validation.chain)
