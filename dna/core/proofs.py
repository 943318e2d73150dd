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

Pure: no I/O, no reactor. Times are seconds since the epoch, given by the
caller.
"""

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
