"""
How long a binding's proof lasts, when to check it again, and what a new
check means for it (issue 11; draft-ietf-xmpp-dna-01 section 6: "A service
may revoke authorization").

A binding of the tables (L{dna.core.tables}) is granted on a proof: a
delegation lookup, valid for the smallest of the TTLs and signature
expirations along its chain, made over a connection whose peer certificate
is valid until its notAfter. A L{Proof} records those instants;
L{recheckTime} spreads the re-checks of many bindings before their expiry;
L{decide} says what a new lookup does to a binding.

A L{DelegationVerdict} is what deciding a delegation by several prooftypes
in order found (draft-ietf-xmpp-dna-10 section 5: C{dnssec-srv}, C{posh}):
which one proved it and until when, or why each failed, in a bounded text
fit for a C{<db:result/>} refusal and the log.

Pure: no I/O, no reactor. Times are seconds since the epoch, given by the
caller.
"""

import attr

#: The re-check confirms the delegation: the binding lasts until the new
#: proof expires.
EXTEND = "extend"
#: The re-check says the domain is no longer delegated to the peer (moved,
#: gone, bogus), or the proof's hard limit passed: the pair is revoked.
REVOKE = "revoke"
#: The re-check was indeterminate: the binding is kept, for now, and
#: checked again.
RETRY = "retry"

#: What a re-check found.
DELEGATED = "delegated"
NOT_DELEGATED = "not-delegated"
INDETERMINATE = "indeterminate"

#: Seconds past a proof's expiry that an indeterminate re-check may keep a
#: binding (C{[limits] revalidation-grace}).
DEFAULT_GRACE = 0.0

#: Seconds between re-checks while they are indeterminate.
DEFAULT_RETRY_INTERVAL = 5.0

#: The share of a proof's remaining lifetime over which its re-check is
#: spread, before the expiry.
DEFAULT_SPREAD = 0.1

#: The longest such spread, in seconds.
DEFAULT_MAX_SPREAD = 60.0


#: Prooftypes of a delegation (draft-ietf-xmpp-dna-10 sections 5 and 6): a
#: DNSSEC-signed SRV record naming the server, and a POSH document (RFC
#: 7711) listing its certificate's fingerprint.
PROOF_DNSSEC_SRV = "dnssec-srv"
PROOF_POSH = "posh"

#: Prooftypes of a server's identity: DANE (RFC 7673: TLSA records of its
#: DNSSEC-secure SRV target) and PKIX (a certificate authority).
PROOF_DANE = "dane"
PROOF_PKIX = "pkix"

#: The longest a prooftype's reason is in a verdict's explanation.
MAX_REASON = 160

#: The longest a verdict's explanation is.
MAX_EXPLANATION = 400


def sanitize(text, limit=MAX_REASON):
    """
    Make text that may hold what a peer chose (DNS names, a POSH document's
    content, an HTTP error) fit for a refusal and a log line: printable
    ASCII only (anything else becomes C{?}), blanks collapsed, at most
    C{limit} characters (cut with C{...}).

    @type text: C{str}
    @rtype: C{str}
    """
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in " ".join(str(text).split()))
    if len(cleaned) > limit:
        cleaned = cleaned[:max(0, limit - 3)] + "..."
    return cleaned


def earliest(*instants):
    """
    @return: The earliest of C{instants} that are not L{None}, or L{None}.
    """
    known = [instant for instant in instants if instant is not None]
    return min(known) if known else None


class Proof:
    """
    What a binding was granted on, and until when.

    @ivar dnsExpires: When the delegation lookup stops being valid, or
        L{None} when the binding does not rest on one (a legacy stream, or
        a grant on other grounds than the delegation, such as the peer's
        certificate naming the domain itself).
    @ivar certificateExpires: The peer certificate's notAfter, or L{None}.
    @ivar nextCheck: When the binding is checked again.
    @ivar checked: When it was last checked (granted or re-checked).
    """

    __slots__ = ("dnsExpires", "certificateExpires", "nextCheck", "checked")

    def __init__(self, dnsExpires, certificateExpires=None, nextCheck=None, checked=None):
        self.dnsExpires = dnsExpires
        self.certificateExpires = certificateExpires
        self.nextCheck = nextCheck
        self.checked = checked

    @property
    def expires(self):
        """
        When the proof stops being valid: the earliest of the lookup's and
        the certificate's expiry, or L{None} if neither is known.
        """
        return earliest(self.dnsExpires, self.certificateExpires)

    def __repr__(self) -> str:
        return (f"<Proof dnsExpires={self.dnsExpires!r} certificateExpires="
                f"{self.certificateExpires!r} nextCheck={self.nextCheck!r}>")


def recheckTime(expires, now, random, spread=DEFAULT_SPREAD, maxSpread=DEFAULT_MAX_SPREAD):
    """
    When to check again a proof that expires at C{expires}: a uniformly
    random instant in the last C{spread} of its remaining lifetime (at most
    C{maxSpread} seconds), so that bindings granted together are not all
    re-checked at once, and all are re-checked before they expire.

    @param random: A callable returning a float in [0, 1), like
        L{random.random}.
    @return: A time no earlier than C{now} and no later than C{expires}.
    """
    remaining = max(0.0, expires - now)
    window = min(maxSpread, spread * remaining)
    return max(now, expires - window * random())


def decide(proof, outcome, newExpires, now, grace=DEFAULT_GRACE,
           retryInterval=DEFAULT_RETRY_INTERVAL):
    """
    What a re-check of a binding's delegation does to it.

    @param proof: The binding's L{Proof}.
    @param outcome: L{DELEGATED} (still to the same server names),
        L{NOT_DELEGATED} (no longer, elsewhere, or bogus) or
        L{INDETERMINATE}.
    @param newExpires: When the new lookup stops being valid.
    @param now: The time of the re-check.
    @param grace: Seconds past the proof's expiry an indeterminate
        re-check may keep the binding.
    @param retryInterval: Seconds to the next try after an indeterminate
        one.
    @return: C{(action, until)}: (L{EXTEND}, when the new proof expires);
        (L{RETRY}, when to try again); or (L{REVOKE}, L{None}).
    """
    if outcome == DELEGATED:
        # A lookup valid for no time at all (TTL 0) is tried again later,
        # not in a loop.
        return EXTEND, max(newExpires, now + retryInterval)
    if outcome == NOT_DELEGATED:
        return REVOKE, None
    hardLimit = (proof.dnsExpires if proof.dnsExpires is not None else now) + grace
    if now >= hardLimit:
        return REVOKE, None
    return RETRY, min(now + retryInterval, hardLimit)


@attr.s(frozen=True, slots=True)
class DelegationVerdict:
    """
    Whether a domain is delegated to a peer, by which prooftype, and until
    when; or why each prooftype tried failed.

    True when delegated, so that it stands where a C{bool} did
    (L{dna.interfaces.IDelegationChecker.isDelegated}).

    @ivar status: L{DELEGATED}, L{NOT_DELEGATED}, or L{INDETERMINATE} (no
        prooftype proved it and one could not tell: a DNS time-out, a POSH
        document that could not be fetched).
    @ivar prooftype: The prooftype that proved it, or L{None}.
    @ivar expires: When the proof stops being valid (seconds since the
        epoch); for a refusal, when what was found expires; or L{None}.
    @ivar tried: C{((prooftype, reason), ...)} of the prooftypes that
        failed, in the order tried; reasons are L{sanitize}d.
    """

    status = attr.ib()
    prooftype = attr.ib(default=None)
    expires = attr.ib(default=None)
    tried = attr.ib(default=(), converter=tuple)

    def __bool__(self):
        return self.status == DELEGATED

    @property
    def explanation(self):
        """
        Why no prooftype proved the delegation, at most L{MAX_EXPLANATION}
        characters, e.g. C{"dnssec-srv: insecure: ...; posh: fingerprint not
        listed"}; or C{""} when one did.
        """
        if self:
            return ""
        return sanitize("; ".join(f"{prooftype}: {sanitize(reason)}"
                                  for prooftype, reason in self.tried) or "no prooftype tried",
                        MAX_EXPLANATION)


def combine(verdicts):
    """
    The verdict of prooftypes tried in order: the first that proved the
    delegation, or a refusal listing every one's reason (indeterminate if
    one of them was).

    @param verdicts: L{DelegationVerdict}s, one per prooftype tried, each
        with its own reason in C{tried} when it failed.
    @rtype: L{DelegationVerdict}
    """
    tried = []
    status = NOT_DELEGATED
    for verdict in verdicts:
        if verdict:
            return attr.evolve(verdict, tried=tuple(tried))
        tried.extend(verdict.tried)
        if verdict.status == INDETERMINATE:
            status = INDETERMINATE
    expires = earliest(*(verdict.expires for verdict in verdicts))
    return DelegationVerdict(status, None, expires, tried)
