"""
The proofs of DNSSEC validation from trust anchors (RFC 4033, RFC 4034, RFC
4035 section 5, RFC 5155 section 8), for the secure SRV lookup of
draft-ietf-xmpp-dna-01 section 5 step 2 ("The originating server may either
retrieve DNSSEC records directly or rely on a validating resolver").

Pure functions of DNS messages, keys and the time (like
L{dns.dnssec.validate}): signature verification, DS matching, NSEC and NSEC3
proofs of absence, trust anchors, and the data classes and statuses of a
chain of trust. L{dna.dns.dnssec.walker.Validator} walks the chain with them,
asking for the data it needs.
"""

import base64
import datetime
import functools

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

# KeyTrap (CVE-2023-50387): a zone can publish many DNSKEYs sharing a key
# tag and many RRSIGs, making a validator try every key on every signature.
# Past these bounds the data is bogus, at once.
#: DNSKEYs with the tag and algorithm of one RRSIG (or one DS) that are tried.
MAX_KEYS_PER_SIGNATURE = 4
#: Signature verifications (or DS digests) spent on one RRset.
MAX_VERIFICATIONS_PER_RRSET = 8
#: Signature verifications spent on one answer, its chain and its proofs.
MAX_VERIFICATIONS = 64
#: The longest RSA public exponent, in bytes, of a key that is tried: a
#: long one makes every verification a full modular exponentiation (as
#: OpenSSL bounds it for moduli above 3072 bits).
MAX_RSA_EXPONENT_BYTES = 8
_RSA = frozenset([Algorithm.RSASHA1, Algorithm.RSASHA1NSEC3SHA1, Algorithm.RSASHA256,
                  Algorithm.RSASHA512])


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
                text += f" ({algorithmText(self.algorithm)})"
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


def algorithmText(algorithm):
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


def keyCostBounded(key):
    """
    Whether verifying with a DNSKEY costs a bounded time: an RSA key's public
    exponent is at most L{MAX_RSA_EXPONENT_BYTES} long (RFC 3110 section 2
    allows 4096 bits, which no signer uses and an attacker would).
    """
    if key.algorithm not in _RSA:
        return True
    data = key.key
    if not data:
        return False
    length = data[0] if data[0] else int.from_bytes(data[1:3], "big")
    return length <= MAX_RSA_EXPONENT_BYTES


def _keysByTag(keys):
    """
    The zone keys (RFC 4034 section 2.1.1) of bounded cost by C{(key tag,
    algorithm)}.
    """
    tagged = {}
    for key in keys:
        if key.flags & _ZONE_FLAG and key.protocol == 3 and keyCostBounded(key):
            tagged.setdefault((dns.dnssec.key_id(key), key.algorithm), []).append(key)
    return tagged


def _keyTrap(count, what):
    return Bogus(f"{count} DNSKEYs share the key tag of {what}: more than "
                 f"{MAX_KEYS_PER_SIGNATURE} (KeyTrap, CVE-2023-50387)")


class VerificationBudget:
    """
    The signature verifications one validation may still spend (KeyTrap,
    CVE-2023-50387).
    """

    def __init__(self, limit=MAX_VERIFICATIONS):
        self.limit = limit
        self.spent = 0

    def spend(self, what, count=1):
        """
        Count C{count} verifications of C{what}.

        @raise Bogus: When that would overspend the budget.
        """
        if self.spent + count > self.limit:
            raise Bogus(f"more than {self.limit} signature verifications for one answer, "
                        f"at {what} (KeyTrap, CVE-2023-50387)")
        self.spent += count


def verifyRRset(rrset, sigs, zone, keys, now, budget=None):
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
    @param budget: The L{VerificationBudget} of the whole validation, or
        L{None}.
    @return: The RRSIG that verified.
    @raise Bogus: With a reason naming the data, the key and the failure,
        such as C{"RRSIG expired at 2024-01-01T00:00:00Z for SRV
        _xmpp-server._tcp.expired.example (key 4711 of expired.example.)"};
        also past L{MAX_KEYS_PER_SIGNATURE} keys for one RRSIG or
        L{MAX_VERIFICATIONS_PER_RRSET} verifications, or the budget.
    """
    what = _label(rrset)
    if not sigs:
        raise Bogus(f"missing RRSIG for {what}")
    problems = []
    tagged = None
    verifications = 0
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
                            f"{algorithmText(rrsig.algorithm)}")
            continue
        if tagged is None:
            tagged = _keysByTag(keys)
        candidates = tagged.get((rrsig.key_tag, rrsig.algorithm), ())
        keyText = f"key {rrsig.key_tag} of {zone}"
        if len(candidates) > MAX_KEYS_PER_SIGNATURE:
            raise _keyTrap(len(candidates), f"the RRSIG over {what} ({keyText})")
        if not candidates:
            problems.append(f"no DNSKEY {rrsig.key_tag} "
                            f"({algorithmText(rrsig.algorithm)}) in {zone} for the "
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
        verifications += len(candidates)
        if verifications > MAX_VERIFICATIONS_PER_RRSET:
            raise Bogus(f"more than {MAX_VERIFICATIONS_PER_RRSET} signature "
                        f"verifications for {what} (KeyTrap, CVE-2023-50387): "
                        + "; ".join(problems))
        if budget is not None:
            budget.spend(what, len(candidates))
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
    tagged = _keysByTag(dnskeys)
    digests = 0
    for ds in usable:
        candidates = tagged.get((ds.key_tag, ds.algorithm), ())
        if len(candidates) > MAX_KEYS_PER_SIGNATURE:
            raise _keyTrap(len(candidates), f"the DS {_dsText(ds)} of {zone}")
        for key in candidates:
            if digests >= MAX_VERIFICATIONS_PER_RRSET:
                raise Bogus(f"more than {MAX_VERIFICATIONS_PER_RRSET} DS digests to "
                            f"compute for {zone} (KeyTrap, CVE-2023-50387)")
            digests += 1
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
    supports, without the SHA-1 ones when there are SHA-256 ones (RFC 4509
    section 3).

    @raise Insecure: When there are none: RFC 4035 section 5.2 treats the
        zone as unsigned.
    """
    usable = [ds for ds in dsRRset
              if algorithmSupported(ds.algorithm) and digestSupported(ds.digest_type)]
    if any(ds.digest_type == DSDigest.SHA256 for ds in usable):
        # RFC 4509 section 3: SHA-1 digests are ignored beside SHA-256 ones.
        usable = [ds for ds in usable if ds.digest_type != DSDigest.SHA1]
    if not usable:
        raise Insecure(f"the DS records of {zone} use only unsupported algorithms or "
                       f"digests ({', '.join(_dsText(ds) for ds in dsRRset)})")
    return usable


def _dsText(ds):
    return f"{ds.key_tag}/{algorithmText(ds.algorithm)}/digest {ds.digest_type}"


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


def _isCut(types):
    """
    Whether an NSEC or NSEC3 type bitmap is that of the parent side of a
    zone cut: NS set, SOA clear.
    """
    return NS in types and SOA not in types


def _provesNothingBelow(owner, rd, name):
    """
    Whether the NSEC at C{owner} is barred from proving anything about
    C{name}, a name below it: it is the parent side of a zone cut, or a
    DNAME (RFC 6840 section 4.1).
    """
    if name == owner or not name.is_subdomain(owner):
        return False
    types = typeBitmap(rd)
    return _isCut(types) or dns.rdatatype.DNAME in types


def _cutNoData(owner, types, rdtype, what):
    """
    Refuse the parent side of a zone cut as proof that its owner lacks a
    type other than DS: the data lives in the child zone (RFC 6840 section
    4.1).
    """
    if rdtype != DS and _isCut(types):
        raise Bogus(f"the record at {owner} is the parent side of a zone cut: it "
                    f"proves nothing about {what} (RFC 6840 section 4.1)")


def _hashCovers(owner, nextHash, value):
    if owner < nextHash:
        return owner < value < nextHash
    return value > owner or value < nextHash


class Section:
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


class ZoneProof:
    """
    Validation state for one zone: verifies RRsets with its keys and records
    the links and the lifetime.
    """

    def __init__(self, zone, keys, now, chain, lifetime, budget=None):
        self.zone = zone
        self.keys = keys
        self.now = now
        self.chain = chain
        self.lifetime = lifetime
        self.budget = VerificationBudget() if budget is None else budget

    def verify(self, rrset, sigs, note=""):
        rrsig = verifyRRset(rrset, sigs, self.zone, self.keys, self.now, self.budget)
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
        The NSEC3 records of the authority section that this zone signed.

        @rtype: L{NSEC3Records}
        """
        records = NSEC3Records(self.zone)
        for rrset, sigs in authority.ofType(NSEC3):
            if rrset.name.parent() != self.zone:
                continue
            self.verify(rrset, sigs)
            try:
                ownerHash = base64.b32hexdecode(rrset.name.labels[0].upper())
            except ValueError:
                raise Bogus(f"NSEC3 owner {rrset.name} is not a base32 hash")
            for rd in rrset:
                records.add(ownerHash, rd)
        return records


@functools.lru_cache(maxsize=1024)
def _nsec3Hash(name, salt, iterations):
    return base64.b32hexdecode(dns.dnssec.nsec3_hash(name, salt, iterations, 1))


class NSEC3Records:
    """
    The NSEC3 records of one zone in a response, each hashed with its own
    parameters.

    Records with an unknown hash algorithm or more than
    L{MAX_NSEC3_ITERATIONS} iterations are set aside: they count only where
    a proof cannot be made without them, and then make it insecure (RFC
    9276 section 3.2); a record nobody needs costs nothing.

    @ivar unusable: Why records were set aside (C{str}), or L{None}.
    """

    def __init__(self, zone):
        self.zone = zone
        self._records = []
        self.unusable = None

    def add(self, ownerHash, rd):
        if rd.algorithm != 1:
            self.unusable = (f"NSEC3 of {self.zone} uses unknown hash algorithm "
                             f"{rd.algorithm}")
        elif rd.iterations > MAX_NSEC3_ITERATIONS:
            self.unusable = (f"NSEC3 of {self.zone} uses {rd.iterations} iterations "
                             f"(more than {MAX_NSEC3_ITERATIONS}, RFC 9276)")
        else:
            self._records.append((ownerHash, rd))

    def __bool__(self):
        return bool(self._records) or self.unusable is not None

    def match(self, name):
        """
        The NSEC3 record whose owner is the hash of C{name}, or L{None}.
        """
        for ownerHash, rd in self._records:
            if ownerHash == _nsec3Hash(name, rd.salt, rd.iterations):
                return rd
        return None

    def cover(self, name):
        """
        An NSEC3 record whose span covers the hash of C{name}, or L{None}.
        """
        for ownerHash, rd in self._records:
            if _hashCovers(ownerHash, rd.next, _nsec3Hash(name, rd.salt, rd.iterations)):
                return rd
        return None

    def prove(self, proof, *args):
        """
        Call C{proof(*args)}; should it fail where records were set aside,
        the outcome is insecure instead.

        @raise Insecure: Then.
        """
        try:
            return proof(*args)
        except Bogus:
            if self.unusable is not None:
                raise Insecure(self.unusable) from None
            raise


def _closestEncloserNSEC3(records, name, zone):
    """
    The closest encloser proof of RFC 5155 section 8.3.

    @return: C{(closest encloser, NSEC3 covering the next closer name)}.
    @raise Bogus: When the records do not prove one.
    """
    candidate = name
    while True:
        if not candidate.is_subdomain(zone) or len(candidate) < len(zone):
            raise Bogus(f"no NSEC3 closest encloser proof for {name}")
        match = records.match(candidate)
        if match is not None and candidate != name:
            types = typeBitmap(match)
            if DNSKEY not in types and (NS in types and SOA not in types
                                        or dns.rdatatype.DNAME in types):
                raise Bogus(f"NSEC3 closest encloser {candidate} of {name} is a "
                            f"delegation or DNAME")
            nextCloser = name.split(len(candidate) + 1)[1]
            cover = records.cover(nextCloser)
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
    @type authority: L{Section}
    @type proof: L{ZoneProof}
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
    records = proof.nsec3s(authority)
    if records:
        return records.prove(_proveAbsenceNSEC3, qname, rdtype, rcode, records, proof.zone,
                             what)
    raise Bogus(f"no NSEC or NSEC3 proof that {what} does not exist")


def _proveAbsenceNSEC(qname, rdtype, rcode, nsecs, what):
    for owner, rd in nsecs:
        if owner == qname:
            if rcode == dns.rcode.NXDOMAIN:
                raise Bogus(f"NXDOMAIN for {what} but an NSEC shows the name exists")
            types = typeBitmap(rd)
            _cutNoData(owner, types, rdtype, what)
            if rdtype in types:
                raise Bogus(f"NSEC at {owner} lists {dns.rdatatype.to_text(rdtype)}: "
                            f"the data was withheld")
            if CNAME in types:
                raise Bogus(f"NSEC at {owner} lists CNAME: the data was withheld")
            return f"no {what} (NODATA proven by NSEC)"
    covering = [(owner, rd) for owner, rd in nsecs if _nsecCovers(owner, rd.next, qname)]
    if not covering:
        raise Bogus(f"no NSEC covers {what}")
    usable = [(owner, rd) for owner, rd in covering
              if not _provesNothingBelow(owner, rd, qname)]
    if not usable:
        raise Bogus(f"the NSEC at {covering[0][0]} is the parent side of a zone cut "
                    f"(or a DNAME): it proves nothing below it, such as {what} "
                    f"(RFC 6840 section 4.1)")
    owner, rd = usable[0]
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
    if not any(_nsecCovers(o, r.next, wildcard) and not _provesNothingBelow(o, r, wildcard)
               for o, r in nsecs):
        raise Bogus(f"no NSEC proves the wildcard {wildcard} absent for {what}")
    if rcode != dns.rcode.NXDOMAIN:
        raise Bogus(f"NODATA for {what} but the NSEC records prove NXDOMAIN")
    return f"no {what} (NXDOMAIN proven by NSEC)"


def _proveAbsenceNSEC3(qname, rdtype, rcode, records, zone, what):
    match = records.match(qname)
    if match is not None:
        if rcode == dns.rcode.NXDOMAIN:
            raise Bogus(f"NXDOMAIN for {what} but an NSEC3 shows the name exists")
        types = typeBitmap(match)
        _cutNoData(qname, types, rdtype, what)
        if rdtype in types or CNAME in types:
            raise Bogus(f"NSEC3 for {qname} lists {dns.rdatatype.to_text(rdtype)} or "
                        f"CNAME: the data was withheld")
        return f"no {what} (NODATA proven by NSEC3)"
    encloser, cover = _closestEncloserNSEC3(records, qname, zone)
    if rdtype == DS and rcode != dns.rcode.NXDOMAIN:
        if cover.flags & _OPT_OUT:
            raise Insecure(f"{qname} lies in an NSEC3 opt-out span of {zone}")
        raise Bogus(f"no NSEC3 matches {qname} for the DS NODATA proof")
    wildcard = dns.name.Name((b"*",) + encloser.labels)
    wildMatch = records.match(wildcard)
    if wildMatch is not None:
        if rcode == dns.rcode.NXDOMAIN:
            raise Bogus(f"NXDOMAIN for {what} but the wildcard {wildcard} exists")
        types = typeBitmap(wildMatch)
        if rdtype in types or CNAME in types:
            raise Bogus(f"the wildcard {wildcard} has the data asked for {what}")
        return f"no {what} (wildcard NODATA proven by NSEC3)"
    if records.cover(wildcard) is None:
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
    if any(_nsecCovers(owner, rd.next, qname) and not _provesNothingBelow(owner, rd, qname)
           for owner, rd in nsecs):
        return
    records = proof.nsec3s(authority)
    if records.cover(nextCloser) is not None:
        return
    if records.unusable is not None:
        raise Insecure(records.unusable)
    raise Bogus(f"wildcard answer for {qname} without proof that the name does not exist")


def minimumTTL(message):
    """
    The negative caching TTL of a response (RFC 2308 section 5).
    """
    for rrset in message.authority:
        if rrset.rdtype == SOA:
            return min(rrset.ttl, rrset[0].minimum)
    return 0


def checkRcode(response, name, rdtype):
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise Indeterminate(f"{dns.rcode.to_text(rcode)} for "
                            f"{name.to_text(omit_final_dot=True)} "
                            f"{dns.rdatatype.to_text(rdtype)}")
    return rcode


def dsTags(dsRRset):
    """
    The key tags of a DS RRset, for messages.
    """
    return ", ".join(str(ds.key_tag) for ds in dsRRset)


def keyList(keys):
    """
    The key tags and algorithms of DNSKEYs, for messages.
    """
    return ", ".join(f"{dns.dnssec.key_id(key)}/{algorithmText(key.algorithm)}"
                     for key in keys) or "none"


def anchorKeys(zone, anchor, keys):
    """
    The DNSKEYs of the trust anchor zone C{zone} that its anchor vouches for.

    @param anchor: The anchor's RRset of DS or DNSKEY records.
    @param keys: The zone's DNSKEY RRset, not yet verified.
    @return: C{(trusted keys, how they are trusted)}.
    @raise Bogus: When no key is vouched for.
    """
    if anchor.rdtype == DS:
        matched = matchDS(zone, anchor, keys)
        if not matched:
            raise Bogus(f"no DNSKEY of {zone} matches the trust anchor "
                        f"(anchor DS {dsTags(anchor)}; DNSKEY "
                        f"{keyList(keys)})")
        return [key for _, key in matched], "matches trust anchor DS"
    trusted = [key for key in keys if any(key == a for a in anchor)]
    if not trusted:
        raise Bogus(f"no DNSKEY of {zone} is a trust anchor key "
                    f"(DNSKEY {keyList(keys)})")
    return trusted, "is a trust anchor"


def delegatedKeys(child, dsRRset, keys):
    """
    The DNSKEYs of C{child} that its parent's verified DS RRset vouches for
    (RFC 4035 section 5.2).

    @return: C{(trusted keys, their tags as text)}.
    @raise Bogus: When no DS matches.
    """
    matched = matchDS(child, dsRRset, keys)
    if not matched:
        raise Bogus(f"no DS matches DNSKEY of {child} (DS {dsTags(dsRRset)}; "
                    f"DNSKEY {keyList(keys)})")
    return [key for _, key in matched], ", ".join(str(ds.key_tag) for ds, _ in matched)


def _matchedNoDS(child, types, where, kind, proof):
    """
    What an NSEC or NSEC3 record matching C{child} says of its DS RRset.
    """
    if DS in types:
        raise Bogus(f"{where} lists DS but no DS was given")
    if NS in types and SOA not in types:
        proof.chain.append(ChainLink(child.to_text(), "DS", _zoneText(proof.zone),
                                     note=f"{kind} proves no DS: insecure delegation"))
        raise Insecure(f"{child} is an unsigned delegation ({kind} from "
                       f"{proof.zone} proves no DS)")
    return None


def proveNoDS(child, rcode, authority, proof):
    """
    Interpret a signed response without a DS RRset for C{child}, a name below
    C{proof.zone}.

    @param rcode: The response code (NOERROR or NXDOMAIN).
    @type authority: L{Section}
    @type proof: L{ZoneProof}
    @return: L{None} when C{child} is not a zone cut, C{False} when it
        provably does not exist.
    @raise Insecure: When the delegation is provably unsigned.
    @raise Bogus: When the proof is missing or wrong.
    """
    nsecs = proof.nsecs(authority)
    for owner, rd in nsecs:
        if owner != child:
            continue
        return _matchedNoDS(child, typeBitmap(rd), f"NSEC at {child}", "NSEC", proof)
    if nsecs:
        # NXDOMAIN or an empty non-terminal: not a zone cut.
        proveAbsence(child, DS, rcode, authority, proof)
        return False if rcode == dns.rcode.NXDOMAIN else None
    records = proof.nsec3s(authority)
    if not records:
        raise Bogus(f"no DS for {child} and no NSEC or NSEC3 proof of its absence "
                    f"from {proof.zone}")
    match = records.match(child)
    if match is not None:
        return _matchedNoDS(child, typeBitmap(match), f"NSEC3 for {child}", "NSEC3", proof)
    try:
        records.prove(_proveAbsenceNSEC3, child, DS, rcode, records, proof.zone,
                      f"DS {child.to_text(omit_final_dot=True)}")
    except Insecure:
        proof.chain.append(ChainLink(child.to_text(), "DS", _zoneText(proof.zone),
                                     note="in an NSEC3 opt-out span: insecure"))
        raise
    return False if rcode == dns.rcode.NXDOMAIN else None
