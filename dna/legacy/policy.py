"""
Backward compatibility: when and how to fall back from DNA to the ways
servers without DNA authenticate (draft-ietf-xmpp-dna-01 section 7).

Pure decisions, no I/O: which failures of a DNA attempt point at a peer that
does not speak DNA, which authentication methods the operator's policy
(C{[policy] fallback}, one of L{FALLBACKS}) allows, and where a legacy
connection for a domain goes (RFC 6120 section 3.2).

Section 7 says to retry "using the Remote Domain as stream to-attribute"
when a stream to our server name fails, and "presenting the certificate for
the Remote Domain" (RFC 6120 PKIX, SASL EXTERNAL as XEP-0178 profiles it), or
"a weaker identification mechanism such as Server Dialback, subject to local
policy" (XEP-0220). Two servers that both speak DNA never fall back: a
legacy stream whose peer offers C{<dna/>} is refused (L{DowngradeRefused}),
so a refusal by a DNA peer, or one forged before TLS, stays final.

Nothing a man in the middle can write calls for a fallback when it shows
that the peer speaks DNA or that the path is tampered with (issue 9 section
5): features without C{<starttls/>} (L{StartTLSStripped}), or a refusal in
plaintext from a server name we authenticated over DNA before
(L{PlaintextRefusal}). Either one among the attempts for a domain rules out
a fallback for that domain, whatever the other targets answered, under
every policy.

A refusal in plaintext from a server name we never reached over DNA still
calls for one: it is what a server without DNA answers for a name it does
not serve (Prosody's C{<host-unknown/>}), and a DNSSEC-signed delegation
does not say the server speaks DNA. Such a refusal may be forged; the
legacy stream then requires TLS, refuses a peer that offers C{<dna/>}, and
under C{dna+pkix} requires the peer's certificate for the domain.
"""

import attr
from twisted.words.protocols.jabber import error

from dna.dns.verdict import INSECURE, SECURE
from dna.error import (
    ConnectFailed,
    DowngradeAttempt,
    NoLegacyRoute,
    NotDelegated,
    PeerLacksDNA,
)

#: Speak DNA only: a peer that does not is not federated with.
FALLBACK_DNA = "dna"
#: Also use certificates for the domains themselves (plain RFC 6120 PKIX
#: authentication) with peers without DNA (draft-ietf-xmpp-dna-01 section 7,
#: Backward Compatibility).
FALLBACK_PKIX = "dna+pkix"
#: And then Server Dialback (XEP-0220), "subject to local policy" (section 7).
FALLBACK_DIALBACK = "dna+pkix+dialback"
#: The levels of C{[policy] fallback}, from the strictest.
FALLBACKS = (FALLBACK_DNA, FALLBACK_PKIX, FALLBACK_DIALBACK)

#: The port of the XMPP server-to-server service (RFC 6120 section 14.7),
#: used for a domain without SRV records (section 3.2.2).
XMPP_SERVER_PORT = 5269


@attr.s(frozen=True)
class FallbackPolicy:
    """
    What the operator allows with peers that do not speak DNA.

    @ivar level: One of L{FALLBACKS}.
    """

    level = attr.ib(default=FALLBACK_DNA)

    @level.validator
    def _check(self, attribute, value):
        if value not in FALLBACKS:
            raise ValueError(
                "unknown fallback {!r}: use {}".format(value, ", ".join(FALLBACKS))
            )

    @property
    def legacy(self):
        """
        Whether legacy streams (to and from domains) are used at all.
        """
        return self.level != FALLBACK_DNA

    @property
    def pkix(self):
        """
        Whether certificates for the domains themselves authenticate (SASL
        EXTERNAL, XEP-0344).
        """
        return self.level in (FALLBACK_PKIX, FALLBACK_DIALBACK)

    @property
    def dialback(self):
        """
        Whether Server Dialback authenticates domains, and peers whose
        certificates we cannot verify are accepted on the strength of DNS.
        """
        return self.level == FALLBACK_DIALBACK


def _legacyHint(reason):
    """
    Why one failed DNA attempt suggests a peer without DNA, or L{None}.
    """
    if isinstance(reason, PeerLacksDNA):
        return "{} does not offer DNA".format(reason.serverName)
    # A stream error before the DNA feature: the server name was refused
    # (host-unknown from a server that only knows its domains). A DNA peer
    # answering so is caught by the <dna/> check on the legacy stream.
    if isinstance(reason, error.StreamError):
        return "the stream to our server name was refused ({})".format(reason.condition)
    return None


def fallbackReason(failure):
    """
    Whether a failed DNA attempt to reach a domain calls for a legacy
    connection, and why.

    Only these do: the domain's delegation is not one DNA may use (an
    unsigned zone, no SRV record: L{NotDelegated}; the legacy route then
    decides whether the DNS data can be used at all), or a server it
    delegates to did not offer DNA or refused the stream to our server name.
    A refused domain pair, an unanswered request, a network failure or a
    bad certificate is no sign of a legacy peer, and a downgrade attempt
    (L{DowngradeAttempt}) rules a fallback out.

    @param failure: The L{Failure} of section 5's connection attempt.
    @return: A sentence saying why to fall back, or L{None} not to.
    @rtype: L{str} or L{None}
    """
    reason = failure.value
    if isinstance(reason, NotDelegated):
        if reason.status not in (SECURE, INSECURE):
            # Bogus or unreadable DNS data is no sign of a legacy peer.
            return None
        return "the delegation of {} is {} ({})".format(
            reason.domain, reason.status, reason.reason or "no SRV target"
        )
    if isinstance(reason, ConnectFailed):
        if any(isinstance(attempt, DowngradeAttempt) for attempt in reason.reasons):
            return None
        for attempt in reason.reasons:
            hint = _legacyHint(attempt)
            if hint is not None:
                return hint
        return None
    return _legacyHint(reason)


def legacyTargets(result):
    """
    Where legacy connections for a domain go, in order (RFC 6120 section
    3.2): its SRV targets, or the domain itself on port 5269 when it has no
    SRV record. DNSSEC is not required, but DNS data that failed validation
    or could not be read is not used.

    @param result: The domain's L{dna.interfaces.IDelegationResult}.
    @return: A non-empty list of (host name, port).
    @raise NoLegacyRoute: When the result is bogus or indeterminate, or
        every target is C{"."} (RFC 2782: service not available).
    """
    if result.status not in (SECURE, INSECURE):
        raise NoLegacyRoute(result.domain, "DNS status {}: {}".format(result.status, result.reason))
    if not result.records:
        return [(result.domain, XMPP_SERVER_PORT)]
    targets = [(record.target, record.port) for record in result.records if record.target]
    if not targets:
        raise NoLegacyRoute(result.domain, "the SRV record says the service is not offered")
    return targets


def mayPiggyback(certificateCoversSender, mechanism):
    """
    Whether another sender domain may be piggy-backed with C{<db:result/>}
    on a legacy stream (draft-ietf-xmpp-dna-10 section 4.4).

    The peer proves nothing about us when we piggy-back: it checks the
    dialback key, or, by XEP-0344, our certificate. A peer that accepted
    this stream by SASL EXTERNAL may insist on certificates (Prosody with
    C{s2s_secure_auth} never answers a dialback request), so only senders our
    certificate covers are piggy-backed there.

    @param certificateCoversSender: Whether the certificate we presented on
        the stream is valid for the new sender domain.
    @param mechanism: How the stream was authenticated: C{"EXTERNAL"} or
        C{"dialback"}.
    @rtype: L{bool}
    """
    return mechanism == "dialback" or certificateCoversSender
