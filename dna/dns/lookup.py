"""
The two ways of draft-ietf-xmpp-dna-01 section 5 step 2 to learn the SRV
records of C{_xmpp-server._tcp.<domain>} and their DNSSEC status ("may
either retrieve DNSSEC records directly or rely on a validating resolver"),
as L{IDelegationLookup} strategies for L{dna.dns.delegation.DelegationChecker}:

  - L{ResolverLookup} asks a validating resolver and trusts its AD bit. The
    path to it must be trustworthy (RFC 4033 section 4.9.3, RFC 6840 section
    5.8): only loopback resolvers unless C{trustedPath}.
  - L{SelfValidatingLookup} validates here from trust anchors
    (L{dna.dns.dnssec.walker.Validator}), asking a resolver with CD set or an
    authoritative server for every zone with RD clear.
"""

import dns.flags
import dns.rcode
import dns.rdatatype
from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from dna.core.hostport import isLoopback
from dna.core.names import normalizeDomain
from dna.dns.dnssec.proofs import (
    BOGUS,
    INDETERMINATE,
    INSECURE,
    SECURE,
    Validation,
    minimumTTL,
)
from dna.dns.dnssec.walker import Validator
from dna.dns.verdict import (
    _BOGUS_EDE,
    _followCNAMEs,
    extendedErrors,
    interpretResolverAnswer,
    resultFromValidation,
    serverText,
    srvName,
)
from dna.error import DNAError
from dna.interfaces import IDelegationLookup


def _domainText(domain):
    """
    The canonical text of the domain the checker built C{domain} from.
    """
    return normalizeDomain(domain.to_text(omit_final_dot=True))


def offLoopback(servers):
    """
    The resolvers whose AD bit an attacker on the path could set: those off
    loopback (RFC 4033 section 4.9.3, RFC 6840 section 5.8).

    @param servers: C{[(host, port)]}.
    @return: Their texts, C{host:port} or C{[host]:port}, in order.
    """
    return [serverText(s) for s in servers if not isLoopback(s[0])]


def resolverValidation(client, qname, rdtype, now, resolver):
    """
    The validation of any RRset by a validating resolver's AD bit (RFC 4035
    section 3.2.3, RFC 6840 section 5.8), as L{ResolverLookup} trusts it
    for SRV records; the TLSA look-ups of L{dna.dns.tlsa.TLSALookup} use it.

    A SERVFAIL is L{BOGUS} when an Extended DNS Error says so and
    L{INDETERMINATE} otherwise: both fail a DANE lookup alike.

    @param client: The L{IDNSClient} of the resolver.
    @param now: Seconds since the epoch, for signature lifetimes.
    @param resolver: The resolver's text, for reasons.
    @return: A L{Deferred} firing with a L{Validation}; it does not fail.
    """
    what = f"{dns.rdatatype.to_text(rdtype)} {qname.to_text(omit_final_dot=True)}"

    def answered(response):
        rcode = response.rcode()
        errors = extendedErrors(response)
        extra = "; ".join(text for _, text in errors)
        extra = f" ({extra})" if extra else ""
        if rcode == dns.rcode.SERVFAIL:
            status = BOGUS if any(code in _BOGUS_EDE for code, _ in errors) else INDETERMINATE
            return Validation(status, reason=f"the resolver {resolver} answered SERVFAIL "
                              f"for {what}{extra}")
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return Validation(INDETERMINATE, reason=f"the resolver {resolver} answered "
                              f"{dns.rcode.to_text(rcode)} for {what}{extra}")
        rrset, ttls = _followCNAMEs(response.answer, qname, rdtype)
        if rrset is None:
            ttls.append(minimumTTL(response))
        for sigs in response.answer:
            if sigs.rdtype == dns.rdatatype.RRSIG:
                ttls.extend(rrsig.expiration - now for rrsig in sigs)
        ttl = max(0, int(min(ttls))) if ttls else 0
        if not response.flags & dns.flags.AD:
            return Validation(INSECURE, rrset, f"the resolver {resolver} did not set "
                              f"the AD bit for {what}", ttl)
        return Validation(SECURE, rrset, None, ttl)

    def failed(failure):
        failure.trap(DNAError)
        reason = getattr(failure.value, "reason", None) or str(failure.value)
        return Validation(INDETERMINATE, reason=f"no usable answer for {what}: {reason}")

    d = client.query(qname, rdtype, dnssec=True)
    return d.addCallbacks(answered, failed)


@implementer(IDelegationLookup)
class ResolverLookup:
    """
    Ask a validating resolver and trust its AD bit (RFC 4035 section 3.2.3,
    RFC 6840 section 5.8); on a SERVFAIL it does not explain, ask again with
    CD set to tell bogus data from a failure to get any.
    """

    def __init__(self, client, clock, trustedPath=False):
        """
        @param client: An L{IDNSClient} asking the validating resolver(s).
        @param clock: An L{IReactorTime}: results are cached no longer than
            the signatures the resolver passes on are valid.
        @param trustedPath: Whether the path to a resolver off loopback is
            secured (IPsec, TSIG, a trusted network).
        @raise ValueError: With no resolver, or with a resolver off loopback
            and no C{trustedPath}: an attacker on the path could set the AD
            bit.
        """
        servers = [(str(host), int(port)) for host, port in client.servers]
        if not servers:
            raise ValueError("no DNS server given")
        if not trustedPath:
            remote = offLoopback(servers)
            if remote:
                raise ValueError(
                    f"mode 'ad' trusts the AD bit of the resolver, which an attacker "
                    f"on the path can set: resolver {', '.join(remote)} is not on "
                    f"loopback. Run a validating resolver on loopback, use mode "
                    f"'validate', or pass trustedPath=True if the path is secured "
                    f"(RFC 4033 section 4.9.3)")
        self._client = client
        self._clock = clock
        self._resolverText = ", ".join(serverText(s) for s in servers)

    def lookup(self, domain):
        """
        See L{IDelegationLookup.lookup}.
        """
        qname = srvName(domain)
        normal = _domainText(domain)

        def answered(response):
            validation = interpretResolverAnswer(response, qname, self._clock.seconds(),
                                                 self._resolverText)
            if validation is not None:
                return validation
            return self._retryWithCD(response, qname)

        def failed(failure):
            failure.trap(DNAError)
            return _queryFailed(failure.value, qname)

        d = self._client.query(qname, dns.rdatatype.SRV, dnssec=True)
        d.addCallbacks(answered, failed)
        return d.addCallback(lambda validation: resultFromValidation(normal, validation))

    def validate(self, qname, rdtype, now):
        """
        The validation of any RRset by the resolver's AD bit, for the TLSA
        look-ups of L{dna.dns.tlsa.TLSALookup}.

        @return: A L{Deferred} firing with a L{Validation}.
        """
        return resolverValidation(self._client, qname, rdtype, now, self._resolverText)

    @inlineCallbacks
    def _retryWithCD(self, response, qname):
        resolver = self._resolverText
        qtext = qname.to_text(omit_final_dot=True)
        extra = "; ".join(text for _, text in extendedErrors(response))
        extra = f" ({extra})" if extra else ""
        try:
            retry = yield self._client.query(qname, dns.rdatatype.SRV, dnssec=True,
                                             checkingDisabled=True)
        except DNAError as e:
            return Validation(
                INDETERMINATE, reason=f"the resolver {resolver} answered SERVFAIL for SRV "
                f"{qtext}{extra}, and failed again with CD set ({e.reason})")
        if retry.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return Validation(
                BOGUS, reason=f"the validating resolver {resolver} answered SERVFAIL for "
                f"SRV {qtext}{extra} but gives the data with CD set: it failed DNSSEC "
                f"validation")
        return Validation(
            INDETERMINATE, reason=f"the resolver {resolver} answered SERVFAIL for SRV "
            f"{qtext}{extra}, and {dns.rcode.to_text(retry.rcode())} with CD set")


def _queryFailed(error, qname):
    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
    return Validation(
        INDETERMINATE, reason=f"no usable answer for SRV "
        f"{qname.to_text(omit_final_dot=True)}: {reason}")


@implementer(IDelegationLookup)
class SelfValidatingLookup:
    """
    Validate here from trust anchors (RFC 4035 section 5), asking a resolver
    with CD set or an authoritative server for every zone with RD clear.
    """

    def __init__(self, client, clock, anchors=None, authoritative=False, maxZones=1000):
        """
        @param client: An L{IDNSClient}.
        @param clock: An L{IReactorTime}: the time signatures are checked
            against.
        @param anchors: Trust anchors, as from
            L{dna.dns.dnssec.proofs.parseAnchors}; the IANA root anchors by
            default.
        @param authoritative: Whether C{client} asks a server authoritative
            for every zone (queries with RD clear) rather than a resolver
            (queries with CD set).
        @param maxZones: How many validated zone key sets to keep.
        """
        self._client = client
        self._clock = clock
        self._authoritative = authoritative
        self._validator = Validator(self._query, anchors, maxZones=maxZones)

    def _query(self, name, rdtype):
        if self._authoritative:
            return self._client.query(name, rdtype, dnssec=True, checkingDisabled=False,
                                      recursionDesired=False)
        return self._client.query(name, rdtype, dnssec=True, checkingDisabled=True,
                                  recursionDesired=True)

    def lookup(self, domain):
        """
        See L{IDelegationLookup.lookup}.
        """
        normal = _domainText(domain)
        d = self._validator.resolve(srvName(domain), dns.rdatatype.SRV,
                                    self._clock.seconds())
        return d.addCallback(lambda validation: resultFromValidation(normal, validation))

    def validate(self, qname, rdtype, now):
        """
        The validation of any RRset from the trust anchors, for the TLSA
        look-ups of L{dna.dns.tlsa.TLSALookup}.

        @return: A L{Deferred} firing with a L{Validation}.
        """
        return self._validator.resolve(qname, rdtype, now)
