"""
The limits that make a server on a public port safe from its peers (issue 9,
"Connections and buffers"), in one object: the C{[limits]} section of the
configuration (docs/configuration.rst), handed by L{dna.app.service.DNAService}
to the parts that enforce them.

Each default is defined where it is enforced and imported here:
L{dna.channel.receiving} (deadline and caps of unauthenticated connections,
listen backlog), L{dna.channel.stream} (stanza size and depth),
L{dna.channel.acks} (unacknowledged stanzas), L{dna.app.federation}
(stanzas waiting for all pairs; those for one pair are C{[server]
queue-limit}), L{dna.app.flow} (the high-water mark of the transports we
write to, past which the connections feeding them pause).
"""

import attr

from dna.app.federation import DEFAULT_WAITING_LIMIT
from dna.app.flow import DEFAULT_HIGH_WATER
from dna.channel.acks import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_MAX_UNACKED,
    DEFAULT_MAX_UNACKED_BYTES,
)
from dna.channel.receiving import (
    DEFAULT_AUTH_TIMEOUT,
    DEFAULT_BACKLOG,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
    ConnectionGate,
)
from dna.channel.stream import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STANZA_SIZE,
    DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH,
    StreamLimits,
)


@attr.s(frozen=True)
class Limits:
    """
    Every configurable limit of issue 9, section 3, and the stanza limits of
    section 2.

    @ivar authTimeout: Seconds an incoming connection has, from accept, to
        finish TLS and authenticate (C{auth-timeout}).
    @ivar maxUnauthenticatedPerAddress: Unauthenticated connections one
        source address may hold (C{max-unauthenticated-per-address}).
    @ivar maxUnauthenticated: Unauthenticated connections in all
        (C{max-unauthenticated}).
    @ivar backlog: The listen backlog, when the listen description sets none
        (C{listen-backlog}).
    @ivar maxStanzaSize: Bytes of a top-level element on an authenticated
        stream (C{max-stanza-size}).
    @ivar maxStanzaSizeUnauthenticated: The same before authentication
        (C{max-stanza-size-unauthenticated}).
    @ivar maxDepth: Elements a stanza may nest (C{max-depth}).
    @ivar maxUnacked: Stanzas a stream keeps unacknowledged before it pauses
        (C{max-unacked}).
    @ivar maxUnackedBytes: Bytes of them (C{max-unacked-bytes}).
    @ivar ackTimeout: Seconds a paused stream waits for an acknowledgement
        before it is closed (C{ack-timeout}).
    @ivar maxWaiting: Stanzas that may wait for all domain pairs together
        (C{max-waiting}).
    @ivar highWater: Bytes the transport of an S2S stream or a component
        may buffer before the connections feeding it stop being read; they
        are read again once it has drained (C{high-water}).
    """

    authTimeout = attr.ib(default=DEFAULT_AUTH_TIMEOUT)
    maxUnauthenticatedPerAddress = attr.ib(default=DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS)
    maxUnauthenticated = attr.ib(default=DEFAULT_MAX_UNAUTHENTICATED)
    backlog = attr.ib(default=DEFAULT_BACKLOG)
    maxStanzaSize = attr.ib(default=DEFAULT_MAX_STANZA_SIZE)
    maxStanzaSizeUnauthenticated = attr.ib(default=DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH)
    maxDepth = attr.ib(default=DEFAULT_MAX_DEPTH)
    maxUnacked = attr.ib(default=DEFAULT_MAX_UNACKED)
    maxUnackedBytes = attr.ib(default=DEFAULT_MAX_UNACKED_BYTES)
    ackTimeout = attr.ib(default=DEFAULT_ACK_TIMEOUT)
    maxWaiting = attr.ib(default=DEFAULT_WAITING_LIMIT)
    highWater = attr.ib(default=DEFAULT_HIGH_WATER)

    def streamLimits(self, idleSeconds=None):
        """
        The L{StreamLimits} of every stream, advertising C{idleSeconds}.
        """
        return StreamLimits(
            maxStanzaSize=self.maxStanzaSize,
            maxStanzaSizeBeforeAuth=self.maxStanzaSizeUnauthenticated,
            maxDepth=self.maxDepth,
            idleSeconds=idleSeconds,
        )

    def gate(self, clock, incidents):
        """
        The L{ConnectionGate} of the listener.

        @param clock: The L{IReactorTime} of the deadlines.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} of refusals.
        """
        return ConnectionGate(
            clock,
            incidents,
            authTimeout=self.authTimeout,
            maxPerAddress=self.maxUnauthenticatedPerAddress,
            maxInAll=self.maxUnauthenticated,
        )

    def ackLimits(self):
        """
        The keyword arguments of L{dna.channel.acks.StreamAcks} that bound it.
        """
        return dict(
            maxUnacked=self.maxUnacked,
            maxUnackedBytes=self.maxUnackedBytes,
            ackTimeout=self.ackTimeout,
        )
