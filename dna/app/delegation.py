"""
The edge where an operator's choice of DNSSEC mode (C{[dns] mode} in the
configuration, C{dna-check --mode}) becomes a lookup strategy of
L{dna.dns.lookup} for a L{dna.dns.delegation.DelegationChecker}, and where
the delegation prooftypes (C{[policy] delegation-proofs}) become a
L{dna.dns.delegation.ProofChecker}.
"""

from dna.core.proofs import PROOF_DNSSEC_SRV, PROOF_POSH
from dna.dns.client import DEFAULT_DEADLINE, DEFAULT_RETRIES, DEFAULT_TIMEOUT, DNSClient
from dna.dns.delegation import DelegationChecker, ProofChecker
from dna.dns.lookup import ResolverLookup, SelfValidatingLookup

#: Trust the AD bit of a validating resolver (C{[dns] mode = "ad"}).
MODE_AD = "ad"
#: Validate DNSSEC here from trust anchors (C{[dns] mode = "validate"}).
MODE_VALIDATE = "validate"
#: The modes, as the configuration and C{dna-check --mode} accept them.
DNS_MODES = (MODE_AD, MODE_VALIDATE)

#: Ask a (recursive) resolver; with L{MODE_VALIDATE} with CD set.
UPSTREAM_RESOLVER = "resolver"
#: Ask a server authoritative for every zone, with RD clear.
UPSTREAM_AUTHORITATIVE = "authoritative"


def makeLookup(mode, client, clock, anchors=None, upstream=UPSTREAM_RESOLVER,
               trustedPath=False):
    """
    The L{IDelegationLookup} of a mode.

    @param mode: L{MODE_AD} or L{MODE_VALIDATE}.
    @param client: The L{IDNSClient} to ask.
    @param clock: An L{IReactorTime}.
    @param anchors: Trust anchors for L{MODE_VALIDATE}, as from
        L{dna.dns.dnssec.proofs.parseAnchors}; the IANA root anchors by
        default.
    @param upstream: L{UPSTREAM_RESOLVER} or L{UPSTREAM_AUTHORITATIVE}.
    @param trustedPath: Whether the path to a resolver off loopback is
        secured, allowing L{MODE_AD} with it.
    @raise ValueError: On an unknown mode or upstream, L{MODE_AD} with an
        authoritative server, or L{MODE_AD} with a resolver off loopback and
        no C{trustedPath}.
    """
    if mode not in (MODE_AD, MODE_VALIDATE):
        raise ValueError(f"unknown mode {mode!r}: use 'ad' or 'validate'")
    if upstream not in (UPSTREAM_RESOLVER, UPSTREAM_AUTHORITATIVE):
        raise ValueError(f"unknown upstream {upstream!r}: use 'resolver' or "
                         f"'authoritative'")
    if mode == MODE_VALIDATE:
        return SelfValidatingLookup(client, clock, anchors,
                                    authoritative=upstream == UPSTREAM_AUTHORITATIVE)
    if upstream != UPSTREAM_RESOLVER:
        raise ValueError("mode 'ad' needs a validating resolver, not an "
                         "authoritative server")
    return ResolverLookup(client, clock, trustedPath=trustedPath)


def makeDelegationChecker(reactor, servers, mode, anchors=None, upstream=UPSTREAM_RESOLVER,
                          trustedPath=False, timeout=DEFAULT_TIMEOUT,
                          retries=DEFAULT_RETRIES, deadline=DEFAULT_DEADLINE,
                          client=None, **options):
    """
    The L{DelegationChecker} of a mode, asking C{servers}.

    @param reactor: Provides L{IReactorTime} and, without C{client}, UDP
        and TCP.
    @param servers: C{[(host, port)]} of the resolver(s) or, with
        L{UPSTREAM_AUTHORITATIVE}, of the authoritative server.
    @param mode: See L{makeLookup}, as are C{anchors}, C{upstream} and
        C{trustedPath}.
    @param timeout: Seconds per DNS try (for the client made here).
    @param retries: Rounds over C{servers} (for the client made here).
    @param deadline: Seconds after which a check gives up.
    @param client: The L{IDNSClient} to ask, to share one with address
        look-ups; by default a L{DNSClient} for C{servers}.
    @param options: More keyword arguments of L{DelegationChecker}
        (C{policy}, C{domainPolicies}, C{fallback}, ...).
    @raise ValueError: See L{makeLookup}; also on no servers or an unknown
        policy.
    """
    if not servers:
        raise ValueError("no DNS server given")
    if client is None:
        client = DNSClient(servers, reactor, timeout=timeout, retries=retries,
                           deadline=deadline)
    lookup = makeLookup(mode, client, reactor, anchors, upstream, trustedPath)
    return DelegationChecker(lookup, reactor, deadline=deadline, **options)


def makeTLSALookup(reactor, client, mode, anchors=None, upstream=UPSTREAM_RESOLVER,
                   trustedPath=False, hosts=(), **ignored):
    """
    The L{dna.dns.tlsa.TLSALookup} of a mode (RFC 7673): the TLSA records
    of SRV targets, learnt as the delegations are.

    @param client: The L{IDNSClient} the delegation checker asks.
    @param mode: See L{makeLookup}, as are C{anchors}, C{upstream} and
        C{trustedPath}.
    @param hosts: The server names with static addresses: no DANE for them.
    @param ignored: The other arguments of L{makeDelegationChecker}.
    """
    from dna.dns.tlsa import TLSALookup

    lookup = makeLookup(mode, client, reactor, anchors, upstream, trustedPath)
    return TLSALookup(lookup, reactor, static=hosts)


def makeProofChecker(reactor, checker, proofs=(PROOF_DNSSEC_SRV,), agent=None, **posh):
    """
    The L{ProofChecker} deciding delegations by C{proofs}, in order.

    @param reactor: Provides L{IReactorTime} and, without C{agent}, TCP.
    @param checker: The L{DelegationChecker} for C{dnssec-srv}.
    @param proofs: The prooftypes, in order (C{[policy] delegation-proofs}).
    @param agent: The L{twisted.web.iweb.IAgent} that fetches POSH
        documents; by default one that verifies HTTPS servers against the
        platform's trust store (RFC 7711 section 3: PKIX for the domain).
    @param posh: More keyword arguments of L{dna.dns.posh.POSHFetcher}
        (C{maxSize}, C{deadline}, C{maxCache}, C{negativeCache}).
    """
    fetcher = None
    if PROOF_POSH in proofs:
        from dna.dns.posh import POSHFetcher

        if agent is None:
            from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

            agent = Agent(reactor, BrowserLikePolicyForHTTPS())
        fetcher = POSHFetcher(agent, reactor, **posh)
    return ProofChecker(checker, reactor, proofs, fetcher)
