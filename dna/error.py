"""
Errors raised by DNA: the one hierarchy, for every part of the package.

Every error is a L{DNAError}; the leaves are grouped below by the part that
raises them (core, DNS, channels, the legacy fallback, the application). Leaves carry the data a caller needs as
attributes; mapping them to stream errors or C{type='invalid'} dialback results
happens only at the stream edge.
"""

import attr


class DNAError(Exception):
    """
    Root of all DNA errors.
    """


@attr.s(auto_exc=True)
class UnknownConnection(DNAError):
    """
    A table operation named a stream that is not in the connection table.

    @ivar streamID: The stream id.
    """

    streamID = attr.ib()


@attr.s(auto_exc=True)
class AuthorizationRefused(DNAError):
    """
    The Receiving Server answered C{<db:result type='invalid'/>} for a pair.

    @ivar sender: The Sender Domain (local to the Originating Server).
    @ivar target: The Target Domain.
    @ivar condition: The stanza error condition the peer gave, such as
        C{'item-not-found'} or C{'not-authorized'}, or L{None} when it gave none.
    @ivar text: Human-readable text from the peer's error, or L{None}.
    """

    sender = attr.ib()
    target = attr.ib()
    condition = attr.ib(default=None)
    text = attr.ib(default=None)



@attr.s(auto_exc=True)
class ConnectionLost(DNAError):
    """
    The stream carrying a request or stanzas went away before an answer.
    """

    streamID = attr.ib()
    reason = attr.ib(default=None)



# The core: addresses and pair authorization


@attr.s(auto_exc=True)
class InvalidAddress(DNAError):
    """
    A JID or domain failed to parse.

    @ivar address: The string as received.
    """

    address = attr.ib()


@attr.s(auto_exc=True)
class InvalidHostPort(DNAError):
    """
    A C{host[:port]} text, such as a resolver's address, failed to parse.

    @ivar text: The text as given.
    @ivar reason: What is wrong with it, a phrase for messages.
    """

    text = attr.ib()
    reason = attr.ib()


@attr.s(auto_exc=True)
class RequestTimedOut(DNAError):
    """
    The peer did not answer a C{<db:result/>} request in time.
    """

    sender = attr.ib()
    target = attr.ib()
    timeout = attr.ib()


@attr.s(auto_exc=True)
class OneWayStream(DNAError):
    """
    A pair was to be sent on a stream that carries stanzas only towards us
    (no XEP-0288 bidirectionality negotiated on a stream the peer opened).
    """

    streamID = attr.ib()


@attr.s(auto_exc=True)
class StreamIDInUse(DNAError):
    """
    A newly authenticated stream has the id of a stream already in the
    tables; it is aborted.
    """

    streamID = attr.ib()


@attr.s(auto_exc=True)
class CannotCarry(DNAError):
    """
    A legacy stream (between two domains) was asked to carry a pair other
    than its own, or one its authentication does not allow.
    """

    streamID = attr.ib()
    sender = attr.ib()
    target = attr.ib()

# DNS


@attr.s(auto_exc=True)
class DNSQueryError(DNAError):
    """
    A DNS query got no usable answer.

    @ivar name: The name queried (C{str}).
    @ivar rdtype: The type queried (C{str}, such as C{'SRV'}).
    @ivar reason: What went wrong, for people (C{str}).
    """

    name = attr.ib()
    rdtype = attr.ib()
    reason = attr.ib()


class DNSTimeout(DNSQueryError):
    """
    No usable answer came before the tries ran out or the deadline passed.
    """


class DNSMalformed(DNSQueryError):
    """
    A server answered with something that is not a valid reply to the query:
    unparsable, oversized, or for another ID or question over TCP.
    """


class DNSInvalidQuery(DNSQueryError):
    """
    The query cannot be made: the name or the type is not valid (such as a
    label longer than 63 octets).
    """


class DNSUnreachable(DNSQueryError):
    """
    Every try was refused (ICMP port unreachable, TCP connection refused).
    """


@attr.s(auto_exc=True)
class NoAddress(DNAError):
    """
    A server name has no address we could find.
    """

    serverName = attr.ib()
    reason = attr.ib()


# Channels: TLS and the Originating Server's connections


@attr.s(auto_exc=True)
class CertificateNameMismatch(DNAError):
    """
    A certificate is not valid for a server name.

    @ivar name: The name that was looked for, as given.
    @type name: L{str}

    @ivar presentedNames: The server names the certificate presents, as
        L{serverNamesFromCertificate} returns them.
    @type presentedNames: L{frozenset} of L{str}
    """

    name = attr.ib()
    presentedNames = attr.ib(default=frozenset())


@attr.s(auto_exc=True)
class DANEMismatch(DNAError):
    """
    The peer's certificate matches none of the usable TLSA records of its
    SRV target (RFC 6698 section 4.1: the connection fails; PKIX does not
    decide instead).

    @ivar name: The SRV target.
    @ivar reason: Why each record did not match.
    """

    name = attr.ib()
    reason = attr.ib()

    def __str__(self):
        return f"DANE refuses the certificate of {self.name}: {self.reason}"


@attr.s(auto_exc=True)
class DANEUnavailable(DNAError):
    """
    The TLSA records of a server name whose address records are secure
    could not be learnt securely (bogus, SERVFAIL, no answer): no connection,
    lest an attacker downgrade it to PKIX (RFC 7673 section 3, RFC 7672
    section 2.2).

    @ivar name: The SRV target.
    @ivar reason: What DNS said.
    """

    name = attr.ib()
    reason = attr.ib()

    def __str__(self):
        return f"no secure TLSA answer for {self.name}: {self.reason}"


@attr.s(auto_exc=True)
class NotDelegated(DNAError):
    """
    The target domain's delegation does not allow a connection under our
    policy (section 5 step 2: "If the SRV records are not secured with
    DNSSEC, then the connection fails").
    """

    domain = attr.ib()
    status = attr.ib()
    reason = attr.ib(default=None)


@attr.s(auto_exc=True)
class PeerLacksDNA(DNAError):
    """
    The Receiving Server did not offer the DNA stream feature.
    """

    serverName = attr.ib()


class DowngradeAttempt(DNAError):
    """
    What a man in the middle would do to make us use a weaker channel:
    never a reason to fall back (issue 9 section 5).
    """


@attr.s(auto_exc=True)
class StartTLSStripped(DowngradeAttempt):
    """
    The stream features before TLS did not offer C{<starttls/>}: anyone on
    the path can strip it from plaintext, and every stream we open requires
    TLS (RFC 7590), so the attempt fails.

    @ivar serverName: The name the stream was addressed to (a server name,
        or a domain on a legacy stream).
    """

    serverName = attr.ib()

    def __str__(self):
        return "the stream features of {} offered no <starttls/>".format(self.serverName)


@attr.s(auto_exc=True)
class PlaintextRefusal(DowngradeAttempt):
    """
    A server name we authenticated over DNA before refused a stream before
    TLS: the refusal travelled in plaintext, where anyone on the path could
    have forged it, and that server speaks DNA, so it is no sign of a legacy
    peer.

    @ivar serverName: The server name.
    @ivar condition: The stream error condition received.
    """

    serverName = attr.ib()
    condition = attr.ib()

    def __str__(self):
        return "a plaintext <{}/> for {}, which speaks DNA".format(
            self.condition, self.serverName
        )


@attr.s(auto_exc=True)
class ConnectFailed(DNAError):
    """
    No SRV target of a domain could be reached and authenticated.

    @ivar attempts: (target, reason) for every target tried, in order.
    @ivar reasons: The exceptions of those attempts, in the same order (for
        L{dna.legacy.policy.fallbackReason}).
    """

    domain = attr.ib()
    attempts = attr.ib()
    reasons = attr.ib(default=(), eq=False, repr=False)


# The fallback to servers without DNA


@attr.s(auto_exc=True)
class NoLegacyRoute(DNAError):
    """
    A domain cannot be reached by a legacy connection either: its DNS data is
    bogus or could not be read, or it says the service is not offered.
    """

    domain = attr.ib()
    reason = attr.ib()


@attr.s(auto_exc=True)
class DowngradeRefused(DNAError):
    """
    The peer of a legacy stream offered C{<dna/>}: it speaks DNA, so the
    failure that led here stands and no legacy authentication is tried.
    """

    domain = attr.ib()


@attr.s(auto_exc=True)
class SASLFailed(DNAError):
    """
    The Receiving Server refused our SASL EXTERNAL authentication.

    @ivar condition: The SASL failure condition (RFC 6120 section 6.5).
    """

    domain = attr.ib()
    condition = attr.ib(default=None)


@attr.s(auto_exc=True)
class DialbackFailed(DNAError):
    """
    The Receiving Server did not accept our key for a pair: C{type='invalid'}
    (no condition) or a dialback error (XEP-0220 section 2.4).
    """

    sender = attr.ib()
    target = attr.ib()
    condition = attr.ib(default=None)
    text = attr.ib(default=None)


@attr.s(auto_exc=True)
class NoDialback(DNAError):
    """
    Dialback cannot authenticate this stream: the policy forbids it, or the
    peer does not offer it.
    """

    domain = attr.ib()
    reason = attr.ib()


@attr.s(auto_exc=True)
class VerificationFailed(DNAError):
    """
    The Authoritative Server could not be asked: no connection, no answer in
    time, or a dialback error.
    """

    domain = attr.ib()
    reason = attr.ib()


# The application


@attr.s(auto_exc=True)
class ServiceStopping(DNAError):
    """
    The S2S service is stopping: no new stream is opened, and stanzas that
    still wait for one bounce.
    """


class NoRoute(DNAError):
    """
    No stream can carry a pair: nothing connects us to the target domain.
    """


@attr.s(auto_exc=True)
class ConfigurationError(DNAError):
    """
    The configuration is wrong; C{twistd dna} does not start.

    @ivar path: The configuration file, as it was named.
    @type path: L{str}

    @ivar message: What is wrong and where, starting with the section and key
        such as C{"[server] listen: ..."}.
    @type message: L{str}
    """

    path = attr.ib()
    message = attr.ib()

    def __str__(self):
        return f"{self.path}: {self.message}"
