"""
Errors raised by DNA.

Every error is a L{DNAError}. Leaves carry the data a caller needs as
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
class AuthorizationRevoked(DNAError):
    """
    A binding was revoked while stanzas or a request depended on it.
    """

    sender = attr.ib()
    target = attr.ib()


@attr.s(auto_exc=True)
class ConnectionLost(DNAError):
    """
    The stream carrying a request or stanzas went away before an answer.
    """

    streamID = attr.ib()
    reason = attr.ib(default=None)


@attr.s(auto_exc=True)
class DelegationError(DNAError):
    """
    A delegation check could not be completed (DNS failure, timeout, bogus
    data). The checker's result, when there is one, says more.
    """

    domain = attr.ib()
    reason = attr.ib()
