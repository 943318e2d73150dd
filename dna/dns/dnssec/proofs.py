"""
DNSSEC validation from trust anchors, done by DNA itself (RFC 4033, RFC 4034,
RFC 4035 section 5, RFC 5155 section 8), for the secure SRV lookup of
draft-ietf-xmpp-dna-01 section 5 step 2 ("The originating server may either
retrieve DNSSEC records directly or rely on a validating resolver").

The checks are pure functions of DNS messages, keys and the time (like
L{dns.dnssec.validate}); L{Validator} walks the chain of trust from a trust
anchor down to an answer, asking a C{query(name, rdtype)} callable for the
data it needs.
"""

import base64
import datetime

import attr
import dns.dnssec
import dns.dnssecalgs
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile
from dns.dnssectypes import Algorithm, DSDigest
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()

SECURE = "secure"
INSECURE = "insecure"
BOGUS = "bogus"
INDETERMINATE = "indeterminate"

DNSKEY = dns.rdatatype.DNSKEY
DS = dns.rdatatype.DS
NSEC = dns.rdatatype.NSEC
NSEC3 = dns.rdatatype.NSEC3
RRSIG = dns.rdatatype.RRSIG
SOA = dns.rdatatype.SOA
NS = dns.rdatatype.NS
CNAME = dns.rdatatype.CNAME

_ZONE_FLAG = 0x0100
_OPT_OUT = 0x01

# The IANA root zone trust anchors (https://data.iana.org/root-anchors/),
# KSK-2017 and KSK-2024.
ROOT_ANCHORS = """\
. 172800 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. 172800 IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
"""

# RFC 9276 section 3.2: above this many NSEC3 iterations a proof is treated as
# insecure (unbound and BIND do the same).
MAX_NSEC3_ITERATIONS = 150
MAX_CNAMES = 8
MAX_DEPTH = 32


class Bogus(Exception):
    """
    Data failed validation; the argument says why.
    """


class Insecure(Exception):
    """
    The answer lies below a provably unsigned delegation; the argument says
    where.
    """


class Indeterminate(Exception):
    """
    The data needed to decide could not be had (a failed query, an unusable
    response).
    """


@attr.s(frozen=True, slots=True)
class ChainLink:
    """
    One step of a chain of trust: C{name}/C{rdtype} was vouched for by key
    C{keyTag} of C{signer}.

    @ivar name: The owner name (C{str}, absolute).
    @ivar rdtype: The type vouched for (C{str}, such as C{'DS'}).
    @ivar signer: The zone whose key vouched (C{str}, absolute), or a
        description such as C{'trust anchor'}.
    @ivar keyTag: The key tag (C{int}) or L{None}.
    @ivar algorithm: The DNSSEC algorithm number or L{None}.
    @ivar note: More detail (C{str}).
    """

    name = attr.ib()
    rdtype = attr.ib()
    signer = attr.ib()
    keyTag = attr.ib(default=None)
    algorithm = attr.ib(default=None)
    note = attr.ib(default="")

    def __str__(self):
        text = f"{self.name} {self.rdtype}"
        if self.keyTag is not None:
            text += f" signed by {self.signer} key {self.keyTag}"
            if self.algorithm is not None:
                text += f" ({_algorithmText(self.algorithm)})"
        elif self.signer:
            text += f" vouched for by {self.signer}"
        if self.note:
            text += f": {self.note}"
        return text


@attr.s(frozen=True, slots=True)
class Validation:
    """
    The outcome of validating one answer.

    @ivar status: L{SECURE}, L{INSECURE}, L{BOGUS} or L{INDETERMINATE}.
    @ivar rrset: The answer RRset (after following CNAMEs), or L{None} when
        the name or type provably does not exist or nothing is known.
    @ivar reason: Why the status is not secure, or what a secure negative
        answer proved (C{str}), or L{None}.
    @ivar ttl: How long, in seconds from the time of validation, the outcome
        holds: the smallest TTL and signature lifetime used.
    @ivar chain: The L{ChainLink}s that led to the status, from the anchor
        down.
    """

    status = attr.ib()
    rrset = attr.ib(default=None)
    reason = attr.ib(default=None)
    ttl = attr.ib(default=0)
    chain = attr.ib(default=(), converter=tuple)


def parseAnchors(text):
    """
    Read trust anchors in zone file syntax: DS or DNSKEY records with
    absolute owner names, such as C{'. IN DS 20326 8 2 E06D...'}.

    @param text: The zone file text.
    @type text: C{str}
    @return: C{{zone name: RRset of DS or DNSKEY}}; both kinds may be given
        for one zone, the DS records win.
    @rtype: C{dict}
    @raise ValueError: On a syntax error or a record that is not a DS or
        DNSKEY.
    """
    try:
        rrsets = dns.zonefile.read_rrsets(text, rdclass=None, default_ttl=3600,
                                          origin=dns.name.root, relativize=False)
    except dns.exception.DNSException as e:
        raise ValueError(f"invalid trust anchor: {e}") from e
    anchors = {}
    for rrset in rrsets:
        if rrset.rdtype not in (DS, DNSKEY):
            raise ValueError(
                f"invalid trust anchor: {rrset.name} "
                f"{dns.rdatatype.to_text(rrset.rdtype)} is neither DS nor DNSKEY")
        previous = anchors.get(rrset.name)
        if previous is not None and previous.rdtype == DS and rrset.rdtype == DNSKEY:
            continue
        if previous is not None and previous.rdtype == rrset.rdtype:
            previous.union_update(rrset)
            continue
        anchors[rrset.name] = rrset
    if not anchors:
        raise ValueError("invalid trust anchor: no DS or DNSKEY record")
    return anchors


def readAnchors(path):
    """
    L{parseAnchors} on the contents of a file.

    @raise ValueError: See L{parseAnchors}; also when the file cannot be
        read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"cannot read trust anchor file {path}: {e.strerror}") from e
    return parseAnchors(text)


def _algorithmText(algorithm):
    try:
        return Algorithm(algorithm).name
    except ValueError:
        return f"algorithm {algorithm}"


def _isoTime(timestamp):
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label(rrset):
    return f"{dns.rdatatype.to_text(rrset.rdtype)} {rrset.name.to_text(omit_final_dot=True)}"


def _zoneText(zone):
    return zone.to_text()


def algorithmSupported(algorithm):
    """
    Whether signatures of a DNSSEC algorithm can be checked here: dnspython
    implements it and RFC 8624 / RFC 9904 allow validating with it.

    @type algorithm: C{int}
    @rtype: C{bool}
    """
    try:
        dns.dnssecalgs.get_algorithm_cls(algorithm)
    except (dns.exception.DNSException, ValueError):
        return False
    return algorithm not in (Algorithm.RSAMD5, Algorithm.DSA, Algorithm.DSANSEC3SHA1)


def digestSupported(digestType):
    """
    Whether a DS digest type can be checked here.

    @type digestType: C{int}
    @rtype: C{bool}
    """
    return digestType in (DSDigest.SHA1, DSDigest.SHA256, DSDigest.SHA384)


def _keyTags(keys):
    return [(dns.dnssec.key_id(key), key) for key in keys]


def verifyRRset(rrset, sigs, zone, keys, now):
    """
    Check that one of C{sigs} is a currently valid signature over C{rrset} by
    one of C{keys}, the DNSKEYs of C{zone} (RFC 4035 section 5.3).

    @param rrset: The signed data.
    @type rrset: L{dns.rrset.RRset}
    @param sigs: The RRSIGs over it, or L{None}.
    @type sigs: L{dns.rrset.RRset}
    @param zone: The zone the data belongs to: the only acceptable signer.
    @type zone: L{dns.name.Name}
    @param keys: The zone's trusted DNSKEYs.
    @param now: The time, in seconds since the epoch.
    @return: The RRSIG that verified.
    @raise Bogus: With a reason naming the data, the key and the failure,
        such as C{"RRSIG expired at 2024-01-01T00:00:00Z for SRV
        _xmpp-server._tcp.expired.example (key 4711 of expired.example.)"}.
    """
    what = _label(rrset)
    if not sigs:
        raise Bogus(f"missing RRSIG for {what}")
    problems = []
    tagged = None
    for rrsig in sigs:
        if rrsig.type_covered != rrset.rdtype:
            continue
        if rrsig.signer != zone:
            problems.append(f"RRSIG for {what} is by {rrsig.signer}, not by its zone {zone}")
            continue
        if rrsig.labels > len(rrset.name) - 1:
            problems.append(f"RRSIG for {what} has an invalid labels field {rrsig.labels}")
            continue
        if not algorithmSupported(rrsig.algorithm):
            problems.append(f"RRSIG for {what} uses unsupported "
                            f"{_algorithmText(rrsig.algorithm)}")
            continue
        if tagged is None:
            tagged = _keyTags(keys)
        candidates = [key for tag, key in tagged
                      if tag == rrsig.key_tag and key.algorithm == rrsig.algorithm
                      and key.flags & _ZONE_FLAG and key.protocol == 3]
        keyText = f"key {rrsig.key_tag} of {zone}"
        if not candidates:
            problems.append(f"no DNSKEY {rrsig.key_tag} "
                            f"({_algorithmText(rrsig.algorithm)}) in {zone} for the "
                            f"RRSIG over {what}")
            continue
        if rrsig.expiration < now:
            problems.append(f"RRSIG expired at {_isoTime(rrsig.expiration)} for {what} "
                            f"({keyText})")
            continue
        if rrsig.inception > now:
            problems.append(f"RRSIG not valid before {_isoTime(rrsig.inception)} for "
                            f"{what} ({keyText})")
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, rrsig, {zone: candidates}, now=now,
                                      policy=dns.dnssec.allow_all_policy)
        except (dns.dnssec.ValidationFailure, dns.exception.DNSException, ValueError) as e:
            problems.append(f"signature by {keyText} does not verify for {what} ({e})")
            continue
        return rrsig
    if not problems:
        raise Bogus(f"missing RRSIG for {what}")
    raise Bogus("; ".join(problems))


def matchDS(zone, dsRRset, dnskeys):
    """
    The DNSKEYs of C{zone} that the DS records of its parent vouch for
    (RFC 4035 section 5.2).

    @return: A list of C{(ds, dnskey)} pairs, possibly empty.
    @raise Insecure: When no DS record has an algorithm and a digest type
        this validator supports: RFC 4035 section 5.2 treats the zone as
        unsigned.
    """
    usable = usableDS(zone, dsRRset)
    matched = []
    tagged = _keyTags(dnskeys)
    for ds in usable:
        for tag, key in tagged:
            if (tag != ds.key_tag or key.algorithm != ds.algorithm
                    or not key.flags & _ZONE_FLAG or key.protocol != 3):
                continue
            try:
                made = dns.dnssec.make_ds(zone, key, ds.digest_type,
                                          policy=dns.dnssec.allow_all_policy)
            except dns.exception.DNSException:
                continue
            if made.digest == ds.digest:
                matched.append((ds, key))
    return matched


def usableDS(zone, dsRRset):
    """
    The DS records of C{zone} whose algorithm and digest type this validator
    supports.

    @raise Insecure: When there are none: RFC 4035 section 5.2 treats the
        zone as unsigned.
    """
    usable = [ds for ds in dsRRset
              if algorithmSupported(ds.algorithm) and digestSupported(ds.digest_type)]
    if not usable:
        raise Insecure(f"the DS records of {zone} use only unsupported algorithms or "
                       f"digests ({', '.join(_dsText(ds) for ds in dsRRset)})")
    return usable


def _dsText(ds):
    return f"{ds.key_tag}/{_algorithmText(ds.algorithm)}/digest {ds.digest_type}"


def typeBitmap(rdata):
    """
    The set of types in an NSEC or NSEC3 type bitmap.
    """
    types = set()
    for window, bitmap in rdata.windows:
        base = window * 256
        for i, byte in enumerate(bitmap):
            if not byte:
                continue
            for j in range(8):
                if byte & (0x80 >> j):
                    types.add(base + i * 8 + j)
    return types


def _nsecCovers(owner, nextName, name):
    """
    Whether an NSEC from C{owner} to C{nextName} proves C{name} absent
    (canonical order, RFC 4034 section 6.1; the last NSEC wraps to the apex).
    """
    if owner < nextName:
        return owner < name < nextName
    return name > owner or name < nextName


def _hashCovers(owner, nextHash, value):
    if owner < nextHash:
        return owner < value < nextHash
    return value > owner or value < nextHash


class _Section:
    """
    The RRsets of a message section, by name and type, and their RRSIGs.
    """

    def __init__(self, rrsets):
        self.rrsets = {}
        self.sigs = {}
        for rrset in rrsets:
            if rrset.rdtype == RRSIG:
                self.sigs[(rrset.name, rrset.covers)] = rrset
            else:
                self.rrsets[(rrset.name, rrset.rdtype)] = rrset

    def get(self, name, rdtype):
        return self.rrsets.get((name, rdtype)), self.sigs.get((name, rdtype))

    def ofType(self, rdtype):
        return [(rrset, self.sigs.get((rrset.name, rdtype)))
                for (_, t), rrset in self.rrsets.items() if t == rdtype]

    def signers(self):
        return {rd.signer for sigs in self.sigs.values() for rd in sigs}


class _Proof:
    """
    Validation state for one zone: verifies RRsets with its keys and records
    the links and the lifetime.
    """

    def __init__(self, zone, keys, now, chain, lifetime):
        self.zone = zone
        self.keys = keys
        self.now = now
        self.chain = chain
        self.lifetime = lifetime

    def verify(self, rrset, sigs, note=""):
        rrsig = verifyRRset(rrset, sigs, self.zone, self.keys, self.now)
        self.chain.append(ChainLink(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype),
                                    _zoneText(self.zone), rrsig.key_tag, rrsig.algorithm,
                                    note))
        self.lifetime.append(min(rrset.ttl, rrsig.original_ttl, rrsig.expiration - self.now))
        return rrsig

    def nsecs(self, authority):
        """
        The NSEC records of the authority section that this zone signed.
        """
        found = []
        for rrset, sigs in authority.ofType(NSEC):
            if not rrset.name.is_subdomain(self.zone):
                continue
            self.verify(rrset, sigs)
            for rd in rrset:
                found.append((rrset.name, rd))
        return found

    def nsec3s(self, authority):
        """
        The NSEC3 records of the authority section that this zone signed, as
        C{(owner hash, rdata)}, and their common parameters.

        @raise Insecure: When the iteration count is above
            L{MAX_NSEC3_ITERATIONS} or the hash algorithm is unknown.
        """
        found = []
        params = None
        for rrset, sigs in authority.ofType(NSEC3):
            if rrset.name.parent() != self.zone:
                continue
            self.verify(rrset, sigs)
            try:
                ownerHash = base64.b32hexdecode(rrset.name.labels[0].upper())
            except ValueError:
                raise Bogus(f"NSEC3 owner {rrset.name} is not a base32 hash")
            for rd in rrset:
                if rd.algorithm != 1:
                    raise Insecure(f"NSEC3 of {self.zone} uses unknown hash algorithm "
                                   f"{rd.algorithm}")
                if rd.iterations > MAX_NSEC3_ITERATIONS:
                    raise Insecure(f"NSEC3 of {self.zone} uses {rd.iterations} iterations "
                                   f"(more than {MAX_NSEC3_ITERATIONS}, RFC 9276)")
                if params is None:
                    params = (rd.salt, rd.iterations)
                elif params != (rd.salt, rd.iterations):
                    raise Bogus(f"NSEC3 records of {self.zone} disagree on salt or "
                                f"iterations")
                found.append((ownerHash, rd))
        return found, params


def _nsec3Hash(name, params):
    salt, iterations = params
    return base64.b32hexdecode(dns.dnssec.nsec3_hash(name, salt, iterations, 1))


def _nsec3Match(records, name, params):
    wanted = _nsec3Hash(name, params)
    for ownerHash, rd in records:
        if ownerHash == wanted:
            return rd
    return None


def _nsec3Cover(records, name, params):
    wanted = _nsec3Hash(name, params)
    for ownerHash, rd in records:
        if _hashCovers(ownerHash, rd.next, wanted):
            return rd
    return None


def _closestEncloserNSEC3(records, params, name, zone):
    """
    The closest encloser proof of RFC 5155 section 8.3.

    @return: C{(closest encloser, NSEC3 covering the next closer name)}.
    @raise Bogus: When the records do not prove one.
    """
    candidate = name
    while True:
        if not candidate.is_subdomain(zone) or len(candidate) < len(zone):
            raise Bogus(f"no NSEC3 closest encloser proof for {name}")
        match = _nsec3Match(records, candidate, params)
        if match is not None and candidate != name:
            types = typeBitmap(match)
            if DNSKEY not in types and (NS in types and SOA not in types
                                        or dns.rdatatype.DNAME in types):
                raise Bogus(f"NSEC3 closest encloser {candidate} of {name} is a "
                            f"delegation or DNAME")
            nextCloser = name.split(len(candidate) + 1)[1]
            cover = _nsec3Cover(records, nextCloser, params)
            if cover is None:
                raise Bogus(f"no NSEC3 covers the next closer name {nextCloser}")
            return candidate, cover
        if candidate == zone:
            raise Bogus(f"no NSEC3 closest encloser proof for {name}")
        candidate = candidate.parent()


def proveAbsence(qname, rdtype, rcode, authority, proof):
    """
    Check the proof that C{qname}/C{rdtype} does not exist (RFC 4035 section
    5.4, RFC 5155 section 8): NXDOMAIN, NODATA, the empty non-terminal and
    wildcard cases, with NSEC or NSEC3 records of C{proof.zone}.

    @param rcode: The response code (NOERROR or NXDOMAIN).
    @param authority: The authority section.
    @type authority: L{_Section}
    @type proof: L{_Proof}
    @return: A description of what was proved (C{str}).
    @raise Bogus: When the proof is missing or wrong.
    @raise Insecure: When an NSEC3 opt-out span covers the name (possible
        only for DS) or the NSEC3 parameters are unusable.
    """
    typeText = dns.rdatatype.to_text(rdtype)
    what = f"{typeText} {qname.to_text(omit_final_dot=True)}"
    nsecs = proof.nsecs(authority)
    if nsecs:
        return _proveAbsenceNSEC(qname, rdtype, rcode, nsecs, what)
    records, params = proof.nsec3s(authority)
    if records:
        return _proveAbsenceNSEC3(qname, rdtype, rcode, records, params, proof.zone, what)
    raise Bogus(f"no NSEC or NSEC3 proof that {what} does not exist")


def _proveAbsenceNSEC(qname, rdtype, rcode, nsecs, what):
    for owner, rd in nsecs:
        if owner == qname:
            if rcode == dns.rcode.NXDOMAIN:
                raise Bogus(f"NXDOMAIN for {what} but an NSEC shows the name exists")
            types = typeBitmap(rd)
            if rdtype in types:
                raise Bogus(f"NSEC at {owner} lists {dns.rdatatype.to_text(rdtype)}: "
                            f"the data was withheld")
            if CNAME in types:
                raise Bogus(f"NSEC at {owner} lists CNAME: the data was withheld")
            return f"no {what} (NODATA proven by NSEC)"
    covering = [(owner, rd) for owner, rd in nsecs if _nsecCovers(owner, rd.next, qname)]
    if not covering:
        raise Bogus(f"no NSEC covers {what}")
    owner, rd = covering[0]
    if rcode != dns.rcode.NXDOMAIN and rd.next.is_subdomain(qname):
        return f"no {what} (empty non-terminal, proven by NSEC)"
    # The closest encloser is the longest common ancestor with either end.
    common = [qname.fullcompare(owner)[2], qname.fullcompare(rd.next)[2]]
    encloser = qname.split(max(common))[1]
    wildcard = dns.name.Name((b"*",) + encloser.labels)
    for wOwner, wRd in nsecs:
        if wOwner == wildcard:
            if rcode == dns.rcode.NXDOMAIN:
                raise Bogus(f"NXDOMAIN for {what} but the wildcard {wildcard} exists")
            types = typeBitmap(wRd)
            if rdtype in types or CNAME in types:
                raise Bogus(f"the wildcard {wildcard} has the data asked for {what}")
            return f"no {what} (wildcard NODATA proven by NSEC)"
    if not any(_nsecCovers(o, r.next, wildcard) for o, r in nsecs):
        raise Bogus(f"no NSEC proves the wildcard {wildcard} absent for {what}")
    if rcode != dns.rcode.NXDOMAIN:
        raise Bogus(f"NODATA for {what} but the NSEC records prove NXDOMAIN")
    return f"no {what} (NXDOMAIN proven by NSEC)"


def _proveAbsenceNSEC3(qname, rdtype, rcode, records, params, zone, what):
    match = _nsec3Match(records, qname, params)
    if match is not None:
        if rcode == dns.rcode.NXDOMAIN:
            raise Bogus(f"NXDOMAIN for {what} but an NSEC3 shows the name exists")
        types = typeBitmap(match)
        if rdtype in types or CNAME in types:
            raise Bogus(f"NSEC3 for {qname} lists {dns.rdatatype.to_text(rdtype)} or "
                        f"CNAME: the data was withheld")
        return f"no {what} (NODATA proven by NSEC3)"
    encloser, cover = _closestEncloserNSEC3(records, params, qname, zone)
    if rdtype == DS and rcode != dns.rcode.NXDOMAIN:
        if cover.flags & _OPT_OUT:
            raise Insecure(f"{qname} lies in an NSEC3 opt-out span of {zone}")
        raise Bogus(f"no NSEC3 matches {qname} for the DS NODATA proof")
    wildcard = dns.name.Name((b"*",) + encloser.labels)
    wildMatch = _nsec3Match(records, wildcard, params)
    if wildMatch is not None:
        if rcode == dns.rcode.NXDOMAIN:
            raise Bogus(f"NXDOMAIN for {what} but the wildcard {wildcard} exists")
        types = typeBitmap(wildMatch)
        if rdtype in types or CNAME in types:
            raise Bogus(f"the wildcard {wildcard} has the data asked for {what}")
        return f"no {what} (wildcard NODATA proven by NSEC3)"
    if _nsec3Cover(records, wildcard, params) is None:
        raise Bogus(f"no NSEC3 proves the wildcard {wildcard} absent for {what}")
    if rcode != dns.rcode.NXDOMAIN:
        if cover.flags & _OPT_OUT:
            raise Insecure(f"{qname} lies in an NSEC3 opt-out span of {zone}")
        raise Bogus(f"NODATA for {what} but the NSEC3 records prove NXDOMAIN")
    return f"no {what} (NXDOMAIN proven by NSEC3)"


def proveWildcardExpansion(qname, rrsig, authority, proof):
    """
    For an answer synthesised from a wildcard (RRSIG labels field shorter
    than the owner), check that the records prove C{qname} itself absent
    (RFC 4035 section 5.3.4, RFC 5155 section 8.8).

    @raise Bogus: When they do not.
    """
    encloser = qname.split(rrsig.labels + 1)[1]
    nextCloser = qname.split(len(encloser) + 1)[1]
    nsecs = proof.nsecs(authority)
    if any(_nsecCovers(owner, rd.next, qname) for owner, rd in nsecs):
        return
    records, params = proof.nsec3s(authority)
    if records and _nsec3Cover(records, nextCloser, params) is not None:
        return
    raise Bogus(f"wildcard answer for {qname} without proof that the name does not exist")


def _minimumTTL(message):
    """
    The negative caching TTL of a response (RFC 2308 section 5).
    """
    for rrset in message.authority:
        if rrset.rdtype == SOA:
            return min(rrset.ttl, rrset[0].minimum)
    return 0


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


class _Fetcher:
    """
    Queries shared by the steps of one validation: each (name, type) is asked
    once, can be started ahead of need, and what is still outstanding at the
    end is cancelled.
    """

    def __init__(self, query):
        self._query = query
        self._done = {}
        self._waiting = {}
        self._started = {}

    def prefetch(self, name, rdtype):
        """
        Start asking C{name}/C{rdtype} unless that is under way or done.
        """
        key = (name, rdtype)
        if key in self._started:
            return
        self._waiting[key] = []
        d = maybeDeferred(self._query, name, rdtype)
        self._started[key] = d

        def finished(result):
            if isinstance(result, Failure) and not result.check(CancelledError):
                result = Failure(Indeterminate(
                    f"query for {name.to_text(omit_final_dot=True)} "
                    f"{dns.rdatatype.to_text(rdtype)} failed ({describeFailure(result)})"))
            self._done[key] = result
            for waiter in self._waiting.pop(key):
                self._fire(waiter, result)
            return None

        d.addBoth(finished)

    @staticmethod
    def _fire(waiter, result):
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)

    def fetch(self, name, rdtype):
        """
        @return: A fresh L{Deferred} firing with the response.
        """
        self.prefetch(name, rdtype)
        key = (name, rdtype)
        waiter = Deferred()
        if key in self._done:
            self._fire(waiter, self._done[key])
        else:
            self._waiting[key].append(waiter)
        return waiter

    def cancel(self):
        for key, d in list(self._started.items()):
            if key not in self._done:
                d.cancel()


def _checkRcode(response, name, rdtype):
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise Indeterminate(f"{dns.rcode.to_text(rcode)} for "
                            f"{name.to_text(omit_final_dot=True)} "
                            f"{dns.rdatatype.to_text(rdtype)}")
    return rcode


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
        statuses = []
        name = qname
        rrset = None
        reason = None
        try:
            for _ in range(MAX_CNAMES + 1):
                status, rrset, reason, target = yield self._resolveOne(
                    fetcher, name, rdtype, now, chain, lifetime)
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
    def _resolveOne(self, fetcher, qname, rdtype, now, chain, lifetime):
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
        rcode = _checkRcode(response, qname, rdtype)
        answer = _Section(response.answer)
        authority = _Section(response.authority)

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
                                     lifetime)
        except Insecure as e:
            if rrset is not None:
                lifetime.append(rrset.ttl)
            else:
                lifetime.append(_minimumTTL(response))
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
        negative = _minimumTTL(response)
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
    def _walk(self, fetcher, anchorZone, target, cached, now, chain, lifetime):
        """
        Establish trusted keys from the anchor (or a cached zone) down to the
        zone holding C{target}.

        @return: A Deferred firing with the L{_Proof} of that zone.
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
            keys = yield self._anchorKeys(fetcher, anchorZone, now, chain, lifetime)
            remember(anchorZone, keys)
        for depth in range(start, len(target) + 1):
            child = target.split(depth)[1]
            proof = _Proof(zone, keys, now, chain, lifetime)
            childKeys = yield self._delegation(fetcher, proof, child)
            if childKeys is None:
                continue
            if childKeys is False:
                break
            zone, keys = child, childKeys
            remember(zone, keys)
        return _Proof(zone, keys, now, chain, lifetime)

    @inlineCallbacks
    def _anchorKeys(self, fetcher, zone, now, chain, lifetime):
        anchor = self.anchors[zone]
        response = yield fetcher.fetch(zone, DNSKEY)
        _checkRcode(response, zone, DNSKEY)
        keys, sigs = _Section(response.answer).get(zone, DNSKEY)
        if keys is None:
            raise Bogus(f"no DNSKEY RRset for the trust anchor {zone}")
        if anchor.rdtype == DS:
            matched = matchDS(zone, anchor, keys)
            if not matched:
                raise Bogus(f"no DNSKEY of {zone} matches the trust anchor "
                            f"(anchor DS {self._tags(anchor)}; DNSKEY "
                            f"{self._keyList(keys)})")
            trusted = [key for _, key in matched]
            how = "matches trust anchor DS"
        else:
            trusted = [key for key in keys if any(key == a for a in anchor)]
            if not trusted:
                raise Bogus(f"no DNSKEY of {zone} is a trust anchor key "
                            f"(DNSKEY {self._keyList(keys)})")
            how = "is a trust anchor"
        tags = ", ".join(str(dns.dnssec.key_id(key)) for key in trusted)
        proof = _Proof(zone, trusted, now, chain, lifetime)
        proof.verify(keys, sigs, f"key {tags} {how}")
        return keys

    @staticmethod
    def _tags(dsRRset):
        return ", ".join(str(ds.key_tag) for ds in dsRRset)

    @staticmethod
    def _keyList(keys):
        return ", ".join(f"{dns.dnssec.key_id(key)}/{_algorithmText(key.algorithm)}"
                         for key in keys) or "none"

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
        rcode = _checkRcode(response, child, DS)
        answer = _Section(response.answer)
        authority = _Section(response.authority)
        dsRRset, dsSigs = answer.get(child, DS)
        if dsRRset is None:
            cname, cnameSigs = answer.get(child, CNAME)
            if cname is not None:
                proof.verify(cname, cnameSigs)
                raise Bogus(f"{child} is a CNAME: names below it cannot exist")
            return self._noDS(child, rcode, authority, proof)
        proof.verify(dsRRset, dsSigs)
        usableDS(child, dsRRset)
        keysResponse = yield fetcher.fetch(child, DNSKEY)
        _checkRcode(keysResponse, child, DNSKEY)
        keys, keySigs = _Section(keysResponse.answer).get(child, DNSKEY)
        if keys is None:
            raise Bogus(f"no DNSKEY RRset for {child} although {proof.zone} has a DS "
                        f"for it")
        matched = matchDS(child, dsRRset, keys)
        if not matched:
            raise Bogus(f"no DS matches DNSKEY of {child} (DS {self._tags(dsRRset)}; "
                        f"DNSKEY {self._keyList(keys)})")
        trusted = [key for _, key in matched]
        tags = ", ".join(str(ds.key_tag) for ds, _ in matched)
        childProof = _Proof(child, trusted, proof.now, proof.chain, proof.lifetime)
        childProof.verify(keys, keySigs, f"key {tags} matches DS")
        return keys

    def _noDS(self, child, rcode, authority, proof):
        """
        Interpret a response without a DS RRset for C{child}.
        """
        nsecs = proof.nsecs(authority)
        for owner, rd in nsecs:
            if owner != child:
                continue
            types = typeBitmap(rd)
            if DS in types:
                raise Bogus(f"NSEC at {child} lists DS but no DS was given")
            if NS in types and SOA not in types:
                proof.chain.append(ChainLink(child.to_text(), "DS", _zoneText(proof.zone),
                                             note="NSEC proves no DS: insecure delegation"))
                raise Insecure(f"{child} is an unsigned delegation (NSEC from "
                               f"{proof.zone} proves no DS)")
            return None
        if nsecs:
            # NXDOMAIN or an empty non-terminal: not a zone cut.
            proveAbsence(child, DS, rcode, authority, proof)
            return False if rcode == dns.rcode.NXDOMAIN else None
        records, params = proof.nsec3s(authority)
        if not records:
            raise Bogus(f"no DS for {child} and no NSEC or NSEC3 proof of its absence "
                        f"from {proof.zone}")
        match = _nsec3Match(records, child, params)
        if match is not None:
            types = typeBitmap(match)
            if DS in types:
                raise Bogus(f"NSEC3 for {child} lists DS but no DS was given")
            if NS in types and SOA not in types:
                proof.chain.append(ChainLink(child.to_text(), "DS", _zoneText(proof.zone),
                                             note="NSEC3 proves no DS: insecure delegation"))
                raise Insecure(f"{child} is an unsigned delegation (NSEC3 from "
                               f"{proof.zone} proves no DS)")
            return None
        try:
            proveAbsence(child, DS, rcode, authority, proof)
        except Insecure:
            proof.chain.append(ChainLink(child.to_text(), "DS", _zoneText(proof.zone),
                                         note="in an NSEC3 opt-out span: insecure"))
            raise
        return False if rcode == dns.rcode.NXDOMAIN else None
