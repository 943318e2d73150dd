"""
Test doubles for DNA's pluggable parts, for DNA's own tests and for
applications built on it.
"""

import base64

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.util
import dns.rrset
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from zope.interface import implementer

from dna.core.names import normalizeDomain
from dna.dns.dnssec.walker import Validator
from dna.dns.verdict import (
    ALLOW_INSECURE,
    BOGUS,
    INDETERMINATE,
    INSECURE,
    REQUIRE_SECURE,
    SECURE,
    DelegationResult,
    SRVRecord,
    delegates,
)
from dna.error import InvalidAddress
from dna.interfaces import IDelegationChecker, IDelegationPolicy, IDNSClient

#: Where the fake DNS servers pretend to be.
FAKE_SERVERS = (("127.0.0.1", 53),)


@implementer(IDelegationChecker, IDelegationPolicy)
class FakeDelegationChecker:
    """
    An L{IDelegationChecker} answering from a table instead of DNS.

    Every delegated domain gets one SRV record (priority 0, weight 0, port
    5269) per server name. A domain missing from the table has provably no
    SRV record (status C{'secure'}, no records).

    @ivar delegations: The table, C{{domain: set of server names}}; tests may
        change it between calls.
    @ivar insecure: Domains whose delegation is provably unsigned (status
        C{'insecure'}).
    @ivar bogus: Domains whose DNS data fails validation (status C{'bogus'}).
    @ivar indeterminate: Domains whose lookup fails (status
        C{'indeterminate'}, such as a timeout).
    @ivar allowInsecure: Whether L{isDelegated} accepts insecure
        delegations.
    @ivar fallback: Whether L{isDelegated} accepts the domain itself as its
        server name when it has no SRV record.
    @ivar checked: The domains asked about, in order (as given).
    @ivar paused: When true, answers are held in C{pending} until
        L{release} is called.
    """

    def __init__(self, delegations=None, insecure=(), bogus=(), indeterminate=(),
                 allowInsecure=False, fallback=False):
        self.delegations = {} if delegations is None else delegations
        self.insecure = set(insecure)
        self.bogus = set(bogus)
        self.indeterminate = set(indeterminate)
        self.allowInsecure = allowInsecure
        self.fallback = fallback
        self.checked = []
        self.paused = False
        self.pending = []

    def _lookup(self, domain):
        try:
            normal = normalizeDomain(domain)
        except InvalidAddress as e:
            return DelegationResult(str(domain), (), INDETERMINATE, reason=str(e.__cause__))
        table = {normalizeDomain(d): names for d, names in self.delegations.items()}
        names = table.get(normal, ())
        records = sorted(SRVRecord(0, 0, 5269, normalizeDomain(name)) for name in names)
        for status, domains in [(INDETERMINATE, self.indeterminate), (BOGUS, self.bogus),
                                (INSECURE, self.insecure)]:
            if normal in {normalizeDomain(d) for d in domains}:
                if status != INSECURE:
                    records = []
                return DelegationResult(normal, records, status,
                                        reason=f"{status} (fake)", ttl=60)
        reason = None if records else f"no SRV records for {normal} (fake)"
        return DelegationResult(normal, records, SECURE, reason=reason, ttl=60)

    def _answer(self, value):
        if not self.paused:
            return succeed(value)
        d = Deferred()
        self.pending.append((d, value))
        return d

    def release(self):
        """
        Fire every answer held while C{paused}, in order, and stop pausing.
        """
        self.paused = False
        pending, self.pending = self.pending, []
        for d, value in pending:
            d.callback(value)

    def check(self, domain, after=None):
        """
        See L{IDelegationChecker.check}; nothing is cached, so C{after} (see
        L{dna.dns.delegation.DelegationChecker.check}) changes nothing.
        """
        self.checked.append(domain)
        return self._answer(self._lookup(domain))

    def cached(self, domain):
        """
        Like L{dna.dns.delegation.DelegationChecker.cached}: the answer,
        not recorded in C{checked}.
        """
        return self._lookup(domain)

    def isDelegated(self, domain, serverNames, certificate=None):
        """
        See L{IDelegationChecker.isDelegated}; by the table only, so
        C{certificate} is not looked at.
        """
        self.checked.append(domain)
        result = self._lookup(domain)
        return self._answer(delegates(result, serverNames,
                                      allowInsecure=self.allowInsecure,
                                      fallback=self.fallback))

    def policyFor(self, domain):
        """
        See L{IDelegationPolicy.policyFor}: C{allowInsecure} for every
        domain.
        """
        return ALLOW_INSECURE if self.allowInsecure else REQUIRE_SECURE


def signZone(zone, keys, inception, expiration, nsec3=None):
    """
    Sign a dnspython zone in place, with NSEC (by L{dns.dnssec.sign_zone}) or
    NSEC3 (built here: dnspython cannot sign with NSEC3).

    @param zone: A zone with absolute names (C{relativize=False}).
    @param keys: C{[(private key, DNSKEY)]}, as for L{dns.dnssec.sign_zone}.
    @param inception: Signature inception, seconds since the epoch.
    @param expiration: Signature expiration, seconds since the epoch.
    @param nsec3: L{None} for NSEC, or C{(salt bytes, iterations, optOut)}.
    """
    if nsec3 is None:
        dns.dnssec.sign_zone(zone, keys=keys, dnskey_ttl=3600, inception=inception,
                             expiration=expiration)
        return
    salt, iterations, optOut = nsec3
    origin = zone.origin
    soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
    with zone.writer() as txn:
        for _, dnskey in keys:
            txn.add(origin, 3600, dnskey)
        txn.add(origin, 0, dns.rdata.from_text(
            "IN", "NSEC3PARAM", f"1 0 {iterations} {salt.hex() or '-'}"))
    names = sorted(zone.nodes.keys())
    delegations = [n for n in names
                   if n != origin and zone.get_rdataset(n, dns.rdatatype.NS) is not None]

    def occluded(name):
        return any(name != d and name.is_subdomain(d) for d in delegations)

    def sign(txn, name, rdataset):
        rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
        rrset.update(rdataset)
        for private, dnskey in keys:
            if dnskey.flags & 0x0001 and rdataset.rdtype != dns.rdatatype.DNSKEY \
                    and len(keys) > 1:
                continue
            rrsig = dns.dnssec.sign(rrset, private, origin, dnskey, inception=inception,
                                    expiration=expiration, origin=origin)
            txn.add(name, rdataset.ttl, rrsig)

    hashed = {}
    with zone.writer() as txn:
        for name in names:
            if occluded(name):
                continue
            node = zone.get_node(name)
            isDelegation = name in delegations
            types = set()
            for rdataset in list(node.rdatasets):
                if rdataset.rdtype == dns.rdatatype.RRSIG:
                    continue
                types.add(rdataset.rdtype)
                if isDelegation and rdataset.rdtype != dns.rdatatype.DS:
                    continue
                sign(txn, name, rdataset)
            if isDelegation and dns.rdatatype.DS not in types and optOut:
                continue
            if not isDelegation or dns.rdatatype.DS in types:
                types.add(dns.rdatatype.RRSIG)
            hashed[name] = types
            # empty non-terminals between the name and the apex
            parent = name.parent()
            while parent != origin and parent.is_subdomain(origin):
                hashed.setdefault(parent, set())
                parent = parent.parent()
        chain = sorted(
            (base64.b32hexdecode(dns.dnssec.nsec3_hash(name, salt, iterations, 1)), types)
            for name, types in hashed.items())
        flags = 1 if optOut else 0
        ttl = soa.ttl if soa is not None else 3600
        for i, (ownerHash, types) in enumerate(chain):
            nextHash = chain[(i + 1) % len(chain)][0]
            owner = dns.name.Name(
                (base64.b32hexencode(ownerHash).lower(),) + origin.labels)
            rdata = dns.rdtypes.ANY.NSEC3.NSEC3(
                dns.rdataclass.IN, dns.rdatatype.NSEC3, 1, flags, iterations, salt,
                nextHash, dns.rdtypes.util.Bitmap.from_rdtypes(sorted(types)).windows)
            txn.add(owner, ttl, rdata)
            rdataset = dns.rdataset.from_rdata(ttl, rdata)
            sign(txn, owner, rdataset)


def collidingKeys(dnskey, count):
    """
    DNSKEYs with the key tag, algorithm and flags of C{dnskey} but other key
    material, as a KeyTrap zone (CVE-2023-50387) publishes them: two bytes
    of the key at the same parity, one raised and one lowered, keep the
    RFC 4034 appendix B checksum.

    @param count: How many (a few hundred at most).
    @return: A list of new DNSKEY rdatas.
    """
    tag = dns.dnssec.key_id(dnskey)
    original = dnskey.key
    made = []
    for position in range(len(original) // 2, len(original) - 2):
        for delta in range(1, min(255 - original[position], original[position + 2]) + 1):
            key = bytearray(original)
            key[position] += delta
            key[position + 2] -= delta
            forged = dnskey.replace(key=bytes(key))
            assert dns.dnssec.key_id(forged) == tag
            made.append(forged)
            if len(made) == count:
                return made
    raise ValueError(f"cannot make {count} keys colliding with key {tag}")


class _Served:
    """
    The answer logic of an authoritative server for one zone.
    """

    def __init__(self, zone):
        self.zone = zone
        self.origin = zone.origin
        self.names = sorted(zone.nodes.keys())
        self.nsecOwners = [n for n in self.names
                           if zone.get_rdataset(n, dns.rdatatype.NSEC) is not None]
        param = zone.get_rdataset(self.origin, dns.rdatatype.NSEC3PARAM)
        self.nsec3 = None
        if param is not None:
            p = param[0]
            self.nsec3 = (p.salt, p.iterations)
            self.hashes = sorted(
                (base64.b32hexdecode(n.labels[0].upper()), n) for n in self.names
                if zone.get_rdataset(n, dns.rdatatype.NSEC3) is not None)

    def exists(self, name):
        return any(n.is_subdomain(name) for n in self.names)

    def delegationAbove(self, name, includeSelf):
        for n in self.names:
            if n == self.origin or not name.is_subdomain(n):
                continue
            if n == name and not includeSelf:
                continue
            if self.zone.get_rdataset(n, dns.rdatatype.NS) is not None:
                return n
        return None

    def add(self, section, name, rdtype, owner=None, dnssec=True):
        rdataset = self.zone.get_rdataset(name, rdtype)
        if rdataset is None:
            return False
        rrset = dns.rrset.RRset(owner or name, rdataset.rdclass, rdtype)
        rrset.update(rdataset)
        section.append(rrset)
        if dnssec:
            sigs = self.zone.get_rdataset(name, dns.rdatatype.RRSIG, covers=rdtype)
            if sigs is not None:
                rrset = dns.rrset.RRset(owner or name, sigs.rdclass, dns.rdatatype.RRSIG,
                                        rdtype)
                rrset.update(sigs)
                section.append(rrset)
        return True

    def coveringNSEC(self, name):
        best = None
        for owner in self.nsecOwners:
            if owner < name:
                best = owner
        return best if best is not None else self.nsecOwners[-1]

    def nsec3Owner(self, name, cover):
        wanted = base64.b32hexdecode(dns.dnssec.nsec3_hash(name, *self.nsec3, 1))
        best = self.hashes[-1][1]
        for h, owner in self.hashes:
            if h == wanted:
                return owner
            if h < wanted:
                best = owner
        return best if cover else None

    def closestEncloser(self, name):
        candidate = name
        while not self.exists(candidate):
            candidate = candidate.parent()
        return candidate

    def denial(self, section, name, nodata, dnssec):
        """
        Add the NSEC/NSEC3 records proving C{name} absent (or, for
        C{nodata}, having no data of the type asked).
        """
        if not dnssec:
            return
        if self.nsecOwners:
            if nodata and self.zone.get_node(name) is not None:
                self.add(section, name, dns.rdatatype.NSEC)
                return
            owner = self.coveringNSEC(name)
            self.add(section, owner, dns.rdatatype.NSEC)
            if not nodata:
                encloser = self.closestEncloser(name)
                wildcard = dns.name.Name((b"*",) + encloser.labels)
                wOwner = self.coveringNSEC(wildcard)
                if wOwner != owner:
                    self.add(section, wOwner, dns.rdatatype.NSEC)
        elif self.nsec3 is not None:
            match = self.nsec3Owner(name, cover=False)
            if nodata and match is not None:
                self.add(section, match, dns.rdatatype.NSEC3)
                return
            # the closest provable encloser: an ancestor with an NSEC3
            encloser = name.parent() if match is None else name
            while self.nsec3Owner(encloser, cover=False) is None:
                encloser = encloser.parent()
            owners = [self.nsec3Owner(encloser, cover=False)]
            nextCloser = name.split(len(encloser) + 1)[1]
            owners.append(self.nsec3Owner(nextCloser, cover=True))
            if not nodata:
                wildcard = dns.name.Name((b"*",) + encloser.labels)
                owners.append(self.nsec3Owner(wildcard, cover=True))
            for owner in dict.fromkeys(o for o in owners if o is not None):
                self.add(section, owner, dns.rdatatype.NSEC3)

    def answer(self, response, qname, rdtype, dnssec):
        isDS = rdtype == dns.rdatatype.DS
        cut = self.delegationAbove(qname, includeSelf=not isDS)
        if cut is not None:
            # a referral to a zone not served here
            response.flags &= ~dns.flags.AA
            self.add(response.authority, cut, dns.rdatatype.NS, dnssec=False)
            if not self.add(response.authority, cut, dns.rdatatype.DS, dnssec=dnssec):
                self.denial(response.authority, cut, True, dnssec)
            return
        node = self.zone.get_node(qname)
        if node is not None:
            if self.add(response.answer, qname, rdtype, dnssec=dnssec):
                return
            if self.add(response.answer, qname, dns.rdatatype.CNAME, dnssec=dnssec):
                return
            self.add(response.authority, self.origin, dns.rdatatype.SOA, dnssec=dnssec)
            self.denial(response.authority, qname, True, dnssec)
            return
        if self.exists(qname):
            # an empty non-terminal
            self.add(response.authority, self.origin, dns.rdatatype.SOA, dnssec=dnssec)
            self.denial(response.authority, qname, True, dnssec)
            return
        encloser = self.closestEncloser(qname)
        wildcard = dns.name.Name((b"*",) + encloser.labels)
        if self.zone.get_node(wildcard) is not None:
            if self.add(response.answer, wildcard, rdtype, owner=qname, dnssec=dnssec):
                if dnssec and self.nsecOwners:
                    self.add(response.authority, self.coveringNSEC(qname),
                             dns.rdatatype.NSEC)
                elif dnssec and self.nsec3 is not None:
                    nextCloser = qname.split(len(encloser) + 1)[1]
                    self.add(response.authority, self.nsec3Owner(nextCloser, True),
                             dns.rdatatype.NSEC3)
                return
            self.add(response.authority, self.origin, dns.rdatatype.SOA, dnssec=dnssec)
            self.denial(response.authority, wildcard, True, dnssec)
            return
        response.set_rcode(dns.rcode.NXDOMAIN)
        self.add(response.authority, self.origin, dns.rdatatype.SOA, dnssec=dnssec)
        self.denial(response.authority, qname, False, dnssec)


def _recordQuery(fake, name, rdtype, dnssec, checkingDisabled, recursionDesired):
    """
    Note a query in C{fake.queries} and look up the failure scripted for it
    in C{fake.failures} (by (name, type), then by name).

    @return: (the query name, its type, the failure or L{None}).
    """
    qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    key = (qname.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(rdtype))
    fake.queries.append(key + (dict(dnssec=dnssec, checkingDisabled=checkingDisabled,
                                    recursionDesired=recursionDesired),))
    return qname, rdtype, fake.failures.get(key, fake.failures.get(key[0]))


@implementer(IDNSClient)
class FakeDNSClient:
    """
    An in-memory authoritative server for a set of dnspython zones, with the
    query API of L{dna.dns.client.DNSClient}: answers with the RRSIGs and
    NSEC/NSEC3 proofs a real one would add, C{DS} from the parent side.

    @ivar servers: Where it pretends to be, as L{IDNSClient} says.
    @ivar queries: Every query asked, as C{(name text, type text, keyword
        arguments)}.
    @ivar failures: C{{(name text, type text): value}} to break answers:
        an exception instance fails the query, an C{int} is answered as that
        rcode, C{'hang'} never answers (until cancelled) and a callable gets
        the response message to change.
    """

    def __init__(self, zones, clock=None, delay=0.0, servers=FAKE_SERVERS):
        """
        @param zones: dnspython zones with absolute names.
        @param clock: An L{IReactorTime} for C{delay}.
        @param delay: Seconds before each answer (needs C{clock}).
        @param servers: Where it pretends to be.
        """
        self.servers = tuple(servers)
        self._served = {zone.origin: _Served(zone) for zone in zones}
        self._clock = clock
        self._delay = delay
        self.queries = []
        self.failures = {}

    def _zoneFor(self, name, rdtype):
        best = None
        for origin in self._served:
            if not name.is_subdomain(origin):
                continue
            if rdtype == dns.rdatatype.DS and origin == name and len(name) > 1:
                continue
            if best is None or len(origin) > len(best):
                best = origin
        return self._served.get(best)

    def respond(self, name, rdtype, dnssec=True):
        """
        The response message to a query, without the failure settings.
        """
        qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        rdtype = dns.rdatatype.RdataType.make(rdtype)
        query = dns.message.make_query(qname, rdtype, want_dnssec=dnssec)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        served = self._zoneFor(qname, rdtype)
        if served is None:
            response.set_rcode(dns.rcode.REFUSED)
            response.flags &= ~dns.flags.AA
        else:
            served.answer(response, qname, rdtype, dnssec)
        return dns.message.from_wire(response.to_wire())

    def query(self, name, rdtype, dnssec=True, checkingDisabled=False,
              recursionDesired=True):
        """
        Answer like the server would.

        @return: A L{Deferred} firing with a L{dns.message.Message}.
        """
        qname, rdtype, failure = _recordQuery(
            self, name, rdtype, dnssec, checkingDisabled, recursionDesired)
        if failure == "hang":
            return Deferred()
        if isinstance(failure, BaseException):
            return fail(failure)
        response = self.respond(qname, rdtype, dnssec)
        if isinstance(failure, int):
            response = dns.message.make_response(dns.message.make_query(qname, rdtype))
            response.set_rcode(failure)
        elif callable(failure):
            response = failure(response) or response
        if self._delay and self._clock is not None:
            return deferLater(self._clock, self._delay, lambda: response)
        return succeed(response)


@implementer(IDNSClient)
class FakeValidatingResolver:
    """
    A validating resolver in memory: answers from a L{FakeDNSClient} after
    validating with L{dna.dns.dnssec.walker.Validator}, setting AD on secure answers,
    answering SERVFAIL (with an RFC 8914 Extended DNS Error) on bogus ones
    unless asked with CD set. It follows CNAMEs. A callable in C{failures}
    changes the answer after validation, like an attacker on the path.

    @ivar servers: Where it pretends to be, as L{IDNSClient} says.
    @ivar queries: As for L{FakeDNSClient}.
    """

    def __init__(self, upstream, anchors, clock, delay=0.0, servers=FAKE_SERVERS):
        """
        @param upstream: The L{FakeDNSClient} holding the zones.
        @param anchors: Trust anchors, as from L{dna.dns.dnssec.proofs.parseAnchors}.
        @param clock: An L{IReactorTime}: the time for validation, and for
            C{delay}.
        @param delay: Seconds before each answer.
        @param servers: Where it pretends to be.
        """
        self.servers = tuple(servers)
        self.upstream = upstream
        self.delay = delay
        self._validator = Validator(self._upstreamQuery, anchors, maxZones=0)
        self._clock = clock
        self.queries = []
        self.failures = upstream.failures

    def _upstreamQuery(self, name, rdtype):
        return succeed(self.upstream.respond(name, rdtype))

    def query(self, name, rdtype, dnssec=True, checkingDisabled=False,
              recursionDesired=True):
        """
        Answer like a validating resolver would.
        """
        qname, rdtype, failure = _recordQuery(
            self, name, rdtype, dnssec, checkingDisabled, recursionDesired)
        if failure == "hang":
            return Deferred()
        if isinstance(failure, BaseException):
            return fail(failure)
        if isinstance(failure, int):
            response = dns.message.make_response(dns.message.make_query(qname, rdtype))
            response.set_rcode(failure)
            return succeed(response)
        response = self.upstream.respond(qname, rdtype, dnssec)
        name = qname
        for _ in range(8):
            cname = response.get_rrset(response.answer, name, dns.rdataclass.IN,
                                       dns.rdatatype.CNAME)
            if cname is None or response.get_rrset(response.answer, name,
                                                   dns.rdataclass.IN, rdtype):
                break
            name = cname[0].target
            more = self.upstream.respond(name, rdtype, dnssec)
            response.answer.extend(more.answer)
            response.authority = more.authority
            response.set_rcode(more.rcode())
        response.flags &= ~dns.flags.AA
        response.flags |= dns.flags.RA

        def tampered(response):
            if callable(failure):
                return failure(response) or response
            return response

        def later(response):
            if not self.delay:
                return succeed(response)
            return deferLater(self._clock, self.delay, lambda: response)

        if checkingDisabled:
            return later(tampered(response))

        def validated(validation):
            if validation.status == SECURE:
                response.flags |= dns.flags.AD
                return tampered(response)
            if validation.status == INSECURE:
                return tampered(response)
            failed = dns.message.make_response(
                dns.message.make_query(qname, rdtype, want_dnssec=dnssec))
            failed.set_rcode(dns.rcode.SERVFAIL)
            failed.flags |= dns.flags.RA
            if validation.status == BOGUS:
                failed.use_edns(0, options=[dns.edns.EDEOption(
                    dns.edns.EDECode.DNSSEC_BOGUS, validation.reason)])
            return dns.message.from_wire(failed.to_wire())

        d = self._validator.resolve(qname, rdtype, self._clock.seconds())
        return d.addCallback(validated).addCallback(later)


def chatMessage(sender, target, stanzaID=None, body="hi", uri=None):
    """
    A chat message as a local user's client hands it to its server: no
    namespace (the stream's default), or C{uri}.

    @rtype: L{twisted.words.xish.domish.Element}
    """
    from twisted.words.xish import domish

    element = domish.Element((uri, "message"))
    element["from"] = sender
    element["to"] = target
    element["type"] = "chat"
    if stanzaID is not None:
        element["id"] = stanzaID
    element.addElement("body", content=body)
    return element
