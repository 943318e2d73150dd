"""
DANE on legacy streams (RFC 7673): a domain whose DNSSEC-secure SRV records
point at a server name with secure TLSA records is proven by a certificate
that matches them, whatever authority issued it.

The decisions are those of DNA's streams, reused rather than copied: the
lookup and its downgrade rules are L{dna.dns.tlsa.TLSALookup}'s (a TLSA
lookup that is bogus, a SERVFAIL or unanswered for a target whose address
records are secure fails the connection; only a secure denial or an insecure
zone lets PKIX decide), the matching is L{dna.channel.dane.verifyChain}'s.

  - Originating Server: L{LegacyDANE.recordsFor} gives the TLSA records of
    each SRV target of the target domain; the handshake then checks the
    Receiving Server's certificate against them
    (L{dna.legacy.tls.legacyClientCreator}).
  - Receiving Server: when the peer's client certificate does not prove the
    stream's 'from' by PKIX, L{LegacyDANE.verifyClient} checks it against
    the TLSA records of that domain's SRV targets.
"""

from twisted.internet import defer
from twisted.logger import Logger

from dna.channel.dane import TLSARecord, usableRecords, verifyChain
from dna.channel.tls import peerChain
from dna.core.names import normalizeDomain
from dna.dns.verdict import SECURE
from dna.error import DANEMismatch, DANEUnavailable

_log = Logger()


def secureTargets(result):
    """
    The SRV targets of a delegation to which RFC 7673 applies: those of a
    DNSSEC-secure SRV RRset.

    @param result: An L{dna.interfaces.IDelegationResult}.
    @return: A list of (normalised server name, port); empty when the SRV
        records are not secure or absent.
    """
    if result.status != SECURE:
        return []
    return [(normalizeDomain(record.target), record.port)
            for record in result.records if record.target]


def usableTLSA(result):
    """
    The usable TLSA records of a L{dna.dns.tlsa.TLSAResult}.

    @return: A list of L{TLSARecord}; empty when DANE does not apply.
    @raise DANEUnavailable: When the lookup failed (no downgrade to PKIX).
    """
    if result.failed:
        raise DANEUnavailable(result.serverName, result.reason)
    return usableRecords([TLSARecord.fromRdata(rdata) for rdata in result.records])


class LegacyDANE:
    """
    DANE for the domains of legacy streams, through the delegation checker
    (for the SRV records) and a L{dna.dns.tlsa.TLSALookup}.
    """

    def __init__(self, checker, tlsaLookup, clock):
        """
        @param checker: An L{IDelegationChecker}.
        @param tlsaLookup: A L{dna.dns.tlsa.TLSALookup}.
        @param clock: An L{IReactorTime}, for the dates of DANE-TA chains.
        """
        self._checker = checker
        self._tlsa = tlsaLookup
        self._clock = clock

    @property
    def clock(self):
        """
        The L{IReactorTime} the certificates' dates are judged by.
        """
        return self._clock

    def recordsFor(self, result, target, port):
        """
        The TLSA records an Originating Server checks the certificate of
        one SRV target of a domain against.

        @param result: The domain's L{dna.interfaces.IDelegationResult}.
        @param target: One of its SRV targets, as L{legacyTargets} gave it.
        @return: A L{Deferred} firing with a list of usable L{TLSARecord}
            (empty when DANE does not apply: insecure SRV, insecure or
            securely denied TLSA), or failing with L{DANEUnavailable}.
        """
        if (normalizeDomain(target), port) not in secureTargets(result):
            return defer.succeed([])
        return self._tlsa.lookup(normalizeDomain(target), port).addCallback(usableTLSA)

    def verifyClient(self, transport, domain, chainVerified):
        """
        The Receiving Server's check of a client certificate that PKIX did
        not accept for C{domain}: against the TLSA records of C{domain}'s
        secure SRV targets.

        @param transport: The TLS transport of the stream.
        @param domain: The stream's 'from', normalised.
        @param chainVerified: Whether PKIX accepted the chain (names aside),
            which usages PKIX-TA and PKIX-EE need.
        @return: A L{Deferred} firing with the SRV target whose TLSA
            records authenticated the certificate, or L{None} when DANE
            does not apply to C{domain}; failing with L{DANEMismatch} when
            every target has TLSA records and none matches, or with
            L{DANEUnavailable} when a target's TLSA lookup failed and none
            matched.
        """
        d = self._checker.check(domain)

        def lookUp(result):
            targets = secureTargets(result)
            if not targets:
                return []
            lookups = [self._tlsa.lookup(name, port) for name, port in targets]
            return defer.gatherResults(lookups, consumeErrors=True)

        def judge(results):
            chain = peerChain(transport)
            now = self._clock.seconds()
            unavailable, mismatches, withoutDANE = [], [], False
            for result in results:
                try:
                    records = usableTLSA(result)
                except DANEUnavailable as e:
                    unavailable.append(f"{e.name}: {e.reason}")
                    continue
                if not records:
                    withoutDANE = True
                    continue
                verdict = verifyChain(records, chain, result.serverName, now)
                if verdict.authenticated and (chainVerified or not verdict.needsPKIX):
                    _log.info(
                        "The client certificate of {domain} is authenticated by DANE: "
                        "{reason} ({target})",
                        domain=domain, target=result.serverName, reason=verdict.reason,
                    )
                    return result.serverName
                mismatches.append(f"{result.serverName}: {verdict.reason or 'PKIX refuses it'}")
            if unavailable:
                raise DANEUnavailable(domain, "; ".join(unavailable))
            if mismatches and not withoutDANE:
                raise DANEMismatch(domain, "; ".join(mismatches))
            return None

        return d.addCallback(lookUp).addCallback(judge)
