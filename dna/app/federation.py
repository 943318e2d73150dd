"""
The state shared by all S2S streams: tables, hosted domains, the delegation
checker, the streams, and the stanzas waiting for a domain pair.

draft-ietf-xmpp-dna-01 section 4 (the binding table as routing table for
outgoing stanzas and filter for incoming ones) and section 6 (stanzas are sent
only once a pair is authorized). A server hands stanzas to L{Federation.send};
accepted incoming stanzas and bounces reach the local router through the
C{deliver} callable.

Every buffer here is bounded, and what happens at the bound is defined
(issue 9, "Connections and buffers"): stanzas waiting for one pair, and for
all pairs together, past which a new one bounces with
C{<resource-constraint/>} (type C{wait}); a stream's unacknowledged stanzas
(L{dna.channel.acks}), past which the stream pauses and its stanzas wait for
their pairs like the others until the peer acknowledges. Each refusal is
counted by name in L{Federation.counters}.

Back-pressure (issue 16, L{dna.app.flow}): a stream whose transport holds
more than the high-water mark is full too; the connection whose stanzas
wait for a full stream stops being read until all went, and the pairs
waiting for one stream take turns (round-robin), one stanza each.
"""

import collections
import secrets

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.words.protocols.jabber import error

from dna.app.revalidation import Revalidator
from dna.channel.acks import StreamAcks, peerOffersAcks
from dna.channel.features import peerLimits, peerOffersDelivery
from dna.channel.stream import RawStanza, provenStream
from dna.core.authorization import (
    DEFAULT_MAX_PENDING,
    DEFAULT_REQUEST_TIMEOUT,
    StreamAuthorization,
)
from dna.core.enforcement import errorResponse
from dna.core.logthrottle import ThrottledLog
from dna.core.names import domainOf, normalizeDomain
from dna.core.tables import INCOMING, Tables
from dna.error import (
    AuthorizationRefused,
    ConnectionLost,
    DNAError,
    InvalidAddress,
    NoRoute,
    RequestTimedOut,
    ServiceStopping,
)
from dna.namespaces import NS_SERVER, STANZA_NAMES

_log = Logger()

#: How many stanzas may wait for one domain pair before new ones bounce.
DEFAULT_QUEUE_LIMIT = 1000
#: How many stanzas may wait for all pairs together before new ones bounce.
DEFAULT_WAITING_LIMIT = 10000

#: How many streams a stanza may be sent on before it bounces, when each
#: ends before the peer acknowledged it.
MAX_ATTEMPTS = 3

#: How many pairs' delivery sequences are kept (the oldest go first: their
#: stanzas still kept are then sent again at least once).
MAX_SEQUENCES = 100000
#: How long, after a first failure to resume a pair, stanzas whose fate
#: only the peer knows (numbered, unacknowledged, on a stream that ended)
#: wait for it to be resumed (the Receiving Server keeps its counts as long,
#: L{dna.core.tables.DEFAULT_DELIVERY_EXPIRY}); then they bounce.
RESYNC_PATIENCE = 600.0
#: Seconds before trying again to resume such pairs on our own (without a
#: new stanza for them or a new stream), doubling up to L{RESYNC_RETRY_MAX}.
RESYNC_RETRY = 1.0
RESYNC_RETRY_MAX = 30.0

#: How many of the peers' error replies are remembered, so that the
#: stanzas they answer are not sent again.
_REFUSALS_KEPT = 1024

#: How many past generations of a sequence keep their cutoff.
_GENERATIONS = 16


class _Sequence:
    """
    The Originating Server's numbering of one pair's stanzas, for the
    resumption of its delivery on a new stream (L{dna.channel.acks}).

    Each grant with a count starts a generation: the stanzas sent on the
    granted stream get the positions C{count}, C{count + 1}, ... of it. The
    next grant's count is the generation's cutoff: the peer handled those of
    its stanzas below it, and will never handle the others.

    @ivar epoch: Random, chosen when the pair first asked with an epoch.
    @ivar generation: The current generation.
    @ivar next: The position of the next stanza sent.
    @ivar streamID: The stream the current generation is counted on.
    @ivar cutoffs: Past generation -> its cutoff.
    """

    __slots__ = ("epoch", "generation", "next", "streamID", "cutoffs")

    def __init__(self, epoch):
        self.epoch = epoch
        self.generation = 0
        self.next = 0
        self.streamID = None
        self.cutoffs = {}

    def resume(self, streamID, count):
        """
        The peer granted the pair on C{streamID}, having handled C{count}.
        """
        self.cutoffs[self.generation] = count
        if len(self.cutoffs) > _GENERATIONS:
            del self.cutoffs[min(self.cutoffs)]
        self.generation += 1
        self.next = count
        self.streamID = streamID

    def knows(self, stanza):
        """
        Whether C{stanza} was numbered in a generation with a cutoff: then
        L{handled} says for sure whether the peer handled it.
        """
        position = stanza.__dict__.get("dnaPosition")
        return (
            position is not None and position[0] == self.epoch
            and position[1] in self.cutoffs
        )

    def handled(self, stanza):
        """
        Whether the peer certainly handled C{stanza}.
        """
        position = stanza.__dict__.get("dnaPosition")
        if position is None or position[0] != self.epoch:
            return False
        cutoff = self.cutoffs.get(position[1])
        return cutoff is not None and position[2] < cutoff

    def numbered(self, stanza):
        """
        Whether C{stanza} was numbered in this sequence (its fate can be
        known at the next grant).
        """
        position = stanza.__dict__.get("dnaPosition")
        return position is not None and position[0] == self.epoch


def toServerNamespace(stanza):
    """
    Move a stanza that arrived on a client or component stream into the
    C{jabber:server} namespace, with every child that shared its default
    namespace (RFC 6120 section 4.8.3: the default namespace is the
    stream's, so it changes when a stanza changes streams).
    """
    old = stanza.uri
    if stanza.__class__ is RawStanza and stanza.moveNamespace(old, NS_SERVER):
        return
    pending = [stanza]
    while pending:
        element = pending.pop()
        if element.uri == old:
            element.uri = NS_SERVER
            if element.defaultUri == old:
                element.defaultUri = NS_SERVER
        # Children are text or elements; Element.elements() asks zope about
        # each child, a cost paid on every stanza from a component.
        for child in element.children:
            if not isinstance(child, str):
                pending.append(child)


#: The conditions of a refusal that says the peer could not check the
#: delegation now (a resolver down): asking again later may succeed.
_TEMPORARY_REFUSALS = frozenset(["remote-server-timeout", "internal-server-error"])


def _bounceCondition(failure):
    """
    The stanza error for stanzas that could not be sent because of C{failure}.
    """
    if failure.check(AuthorizationRefused):
        if failure.value.condition == "item-not-found":
            # The peer does not host the target domain.
            return error.StanzaError(
                "remote-server-not-found", type="cancel",
                text="the remote server does not host the target domain",
            )
        if failure.value.condition in _TEMPORARY_REFUSALS:
            return error.StanzaError(
                "remote-server-timeout", type="wait",
                text="the remote server could not check the delegation",
            )
        return error.StanzaError(
            "not-authorized", type="auth", text="the remote server refused the domain pair"
        )
    if failure.check(RequestTimedOut):
        return error.StanzaError("remote-server-timeout", type="wait")
    return error.StanzaError("remote-server-not-found", type="cancel")


class Federation:
    """
    Cross-stream state of a DNA server.

    @ivar tables: The connection and binding tables.
    @ivar streams: Stream id -> L{StreamAuthorization} of every open stream.
    @ivar counters: Refusal name -> how many times it happened (the
        metrics' source): C{"queue-limit"}, C{"waiting-limit"},
        C{"acks-full"}, C{"ack-timeout"}, C{"pending-limit"},
        C{"filter-rejected"}, C{"stream-refused-<condition>"},
        C{"flow-paused"}, C{"flow-resumed"} (L{dna.app.flow}) and, through
        the service's listener, C{"unauthenticated-cap"},
        C{"unauthenticated-cap-address"} and C{"auth-timeout"}; and the
        decisions L{dna.app.metrics} reads: C{"stanza-refused-<reason>"},
        C{"result-<condition>"} (our answers), C{"answer-<condition>"}
        (the peer's), C{"revoked-local"}, C{"revoked-peer"},
        C{"bounced-<condition>"}, C{"acks-resent"},
        C{"acks-refused-not-resent"}, the resumption of pairs' delivery
        (C{docs/delivery.rst}: C{"delivery-deduplicated"},
        C{"delivery-moved"}, C{"delivery-resume-failed"}), and the stanzas
        delivered and sent on streams that ended (C{"stanzas-delivered"},
        C{"stanzas-sent"}).
    @type counters: L{collections.Counter}
    @ivar incidents: The L{ThrottledLog} that counts in C{counters} and logs
        each burst of refusals once.
    @ivar waitingCount: How many stanzas wait, for all pairs together.
    """

    def __init__(
        self,
        hostedDomains,
        checker,
        deliver,
        clock,
        establish=None,
        maxPending=DEFAULT_MAX_PENDING,
        requestTimeout=DEFAULT_REQUEST_TIMEOUT,
        queueLimit=DEFAULT_QUEUE_LIMIT,
        waitingLimit=DEFAULT_WAITING_LIMIT,
        ackLimits=None,
        revalidation=None,
        flow=None,
    ):
        """
        @param hostedDomains: The domains we host.
        @param checker: An L{IDelegationChecker}.
        @param deliver: Called with each accepted incoming stanza and each
            bounce, to hand it to the local router.
        @param clock: The L{IReactorTime} of request timeouts.
        @param establish: Called with (sender, target) when no stream carries
            the pair; returns a L{Deferred} firing with the
            L{StreamAuthorization} to ask on. The default looks for an open
            stream on which the peer has proved to represent the target.
        @param maxPending: Per-stream limit of the peer's pending requests.
        @param requestTimeout: Seconds to wait for the peer's answer.
        @param queueLimit: Stanzas that may wait per pair.
        @param waitingLimit: Stanzas that may wait for all pairs together.
        @param ackLimits: Keyword arguments of L{StreamAcks} that bound what
            a stream keeps unacknowledged (C{maxUnacked}, C{maxUnackedBytes},
            C{ackTimeout}); its defaults if L{None}.
        @param revalidation: Keyword arguments of the L{Revalidator} of the
            bindings' proofs (C{grace}, ...); its defaults if L{None}.
        @param flow: The L{dna.app.flow.FlowControl} whose sources are
            paused while the streams they feed are full, or L{None}.
        """
        self.tables = Tables()
        self.streams = {}
        self.hostedDomains = frozenset(normalizeDomain(d) for d in hostedDomains)
        self._checker = checker
        self._deliver = deliver
        self._establish = establish if establish is not None else self._existingStream
        self._maxPending = maxPending
        self._requestTimeout = requestTimeout
        self._queueLimit = queueLimit
        self._waitingLimit = waitingLimit
        self._ackLimits = dict(ackLimits or {})
        self._clock = clock
        self.counters = collections.Counter()
        self.incidents = ThrottledLog(clock, counters=self.counters)
        # (sender, target) -> deque of stanzas waiting for the pair: while it
        # is being authorized, or while the stream it is bound to is paused
        self._waiting = {}
        self.waitingCount = 0
        # stream id -> the pairs whose stanzas wait for it to have room, in
        # the order they began to wait (a dict as an ordered set)
        self._paused = {}
        self.revalidator = Revalidator(self, checker, clock, **(revalidation or {}))
        self.flow = flow
        # (sender, target) -> _Sequence of the pairs sent with an epoch
        self._sequences = {}
        # pairs being authorized, and those of them whose stanzas wait for
        # the grant's count before anything of them is sent
        self._authorizing = set()
        self._resyncing = set()
        # pair -> when trying to resume it gives up
        self._resyncDeadlines = {}
        # the call that tries again to resume them, and its next delay
        self._resyncTimer = None
        self._resyncDelay = RESYNC_RETRY
        self._stopped = False
        # (id, from, to) of our stanzas the peers answered with an error
        self._refused = {}

    # Streams

    def streamAuthenticated(self, xs, initiating, serverNames=(), bidi=False,
                            factory=StreamAuthorization, proven=True, **options):
        """
        Take an authenticated stream into the tables and start authorizing
        domain pairs and enforcing bindings on it.

        @param xs: The stream; C{xs.sid} is its connection id.
        @param initiating: C{True} when we opened the connection.
        @param serverNames: Names the peer authenticated (from its certificate).
        @param bidi: Whether XEP-0288 was negotiated.
        @param proven: Whether the peer has proved who it is: C{False} for a
            legacy stream whose first C{<db:result/>} is still to be verified
            by dialback; it stays under the limits of unauthenticated
            connections until a pair is granted on it (L{provenStream}).
        @param factory: The L{StreamAuthorization} class; legacy streams use
            L{dna.legacy.authorization.LegacyAuthorization}, called with C{options} too.
        @return: The stream's L{StreamAuthorization}.
        """
        streamID = xs.sid
        authorization = factory(
            xs,
            self.tables,
            self.hostedDomains,
            self._checker,
            initiating=initiating,
            serverNames=serverNames,
            bidi=bidi,
            maxPending=self._maxPending,
            requestTimeout=self._requestTimeout,
            clock=self._clock,
            incidents=self.incidents,
            **options,
        )
        self.streams[streamID] = authorization
        self.revalidator.watchStream(authorization)
        if self.flow is not None:
            # A slice that sends requests is followed by smaller ones.
            authorization.onRequest = self.flow.requested

        def handledCount():
            return authorization.delivered + authorization.filter.rejected

        acksOptions = dict(
            self._ackLimits,
            onRoom=lambda: self._resume(streamID),
            incidents=self.incidents,
        )
        if initiating:
            xs.peerLimits = peerLimits(xs)
            authorization.acks = (
                StreamAcks.initiate(xs, handledCount, self._resend, self._clock, **acksOptions)
                if peerOffersAcks(xs)
                else None
            )
            authorization.delivery = (
                authorization.acks is not None and peerOffersDelivery(xs)
                and not getattr(authorization, "legacy", False)
            )
        else:
            authorization.acks = StreamAcks.accept(
                xs, handledCount, self._resend, self._clock, **acksOptions
            )
            authorization.revokeElsewhere = self._revokeElsewhere
        authorization.lateGrant = (
            lambda sender, target, count:
            self._resumeDelivery((sender, target), streamID, count)
        )
        if self.flow is not None:
            # Past the high-water mark the stream takes no more stanzas; the
            # components feeding it pause until what waited has gone.
            self.flow.sink(xs, key=streamID, onRoom=lambda: self._resume(streamID))
        xs.addObserver("/*", self._onStanza, -1, authorization=authorization)
        xs.addOnetimeObserver(
            "//event/stream/end", self._onStreamEnd, 0, streamID=streamID
        )
        if proven:
            provenStream(xs)
        if initiating and self._resyncing:
            self._retryResumes()
        return authorization

    def _revokeElsewhere(self, streamID, local, remote):
        """
        A pair the peer resumed on another stream is revoked on
        C{streamID}: what still arrives there for it is not handled.
        """
        self.counters["delivery-moved"] += 1
        authorization = self.streams.get(streamID)
        if authorization is None:
            self.tables.unbind(INCOMING, local, remote, streamID)
        else:
            authorization.revoke(local, remote)

    def _onStreamEnd(self, reason, streamID):
        authorization = self.streams.pop(streamID, None)
        if authorization is not None:
            authorization.xs.removeObserver("/*", self._onStanza)
            # The metrics add the open streams' counts to these.
            self.counters["stanzas-delivered"] += authorization.delivered
            self.counters["stanzas-sent"] += authorization.sent
        # Stanzas that waited for the stream's room look for another stream.
        self._resume(streamID)

    def _resume(self, streamID):
        """
        Send what waits for a stream that has room again, or that ended.

        The pairs take turns, one stanza each (round-robin), so that a busy
        pair does not starve the others sharing the stream; whatever the
        stream has no room for keeps waiting, in its turn. Once nothing
        waits for it, the sources it held resume.
        """
        pairs = self._paused.pop(streamID, None)
        authorization = self.streams.get(streamID)
        if pairs and authorization is not None:
            ring = collections.deque(pairs)
            while ring and not self._isFull(authorization):
                pair = ring.popleft()
                waiting = self._waiting.get(pair)
                if not waiting or pair in self._resyncing:
                    # (A resyncing pair is sent once granted.)
                    continue
                if self.tables.route(*pair) != streamID:
                    # Revoked meanwhile: ask again, or bounce.
                    self._flush(*pair)
                    continue
                self.waitingCount -= 1
                self._transmit(authorization, waiting.popleft(), *pair)
                if waiting:
                    ring.append(pair)
                else:
                    del self._waiting[pair]
            if ring:
                left = dict.fromkeys(ring)
                left.update(self._paused.get(streamID, {}))
                self._paused[streamID] = left
        elif pairs:
            # The stream ended: its pairs look for another.
            for sender, target in pairs:
                self._flush(sender, target)
        if streamID not in self._paused and self.flow is not None:
            self.flow.release(streamID)

    def _waitForRoom(self, streamID, pair):
        """
        Stanzas for C{pair} wait until the full stream C{streamID} has room;
        the source they come from pauses until then.
        """
        self._paused.setdefault(streamID, {})[pair] = None
        if self.flow is not None:
            self.flow.hold(streamID)

    def _isFull(self, authorization):
        if authorization.acks is not None and authorization.acks.full:
            return True
        return self.flow is not None and self.flow.isFull(authorization.streamID)

    def _onStanza(self, stanza, authorization):
        """
        Hand an incoming stanza that passed the filter to the local router.
        """
        if stanza.name not in STANZA_NAMES:
            return
        authorization.delivered += 1
        if authorization.counted:
            authorization.countHandled(stanza)
        if stanza.attributes.get("type") == "error":
            self._noteRefusal(stanza)
        if stanza.handled:
            return
        stanza.handled = True
        self._deliver(stanza)

    def _noteRefusal(self, reply):
        """
        Remember an error reply from a peer, so that the stanza it answers,
        if it is still kept unacknowledged when its stream ends, is not sent
        again: the peer handled it by refusing it, and its sender has heard.
        """
        stanzaID = reply.getAttribute("id")
        if stanzaID is None:
            return
        refused = self._refused
        refused[(stanzaID, reply.getAttribute("to"), reply.getAttribute("from"))] = None
        if len(refused) > _REFUSALS_KEPT:
            del refused[next(iter(refused))]

    def _transmit(self, authorization, stanza, sender, target):
        """
        Send a stanza on a stream, keeping it until the peer acknowledges it
        when acknowledgements are on.
        """
        if stanza.uri != NS_SERVER:
            toServerNamespace(stanza)
        if stanza.attributes.get("type") != "error":
            # Remembered so that the peer's error reply to it gets through.
            authorization.rememberSent(stanza, sender, target)
        if authorization.delivery:
            self._number(authorization, stanza, (sender, target))
        xs = authorization.xs
        before = xs.bytesSent
        xs.send(stanza)
        if authorization.acks is not None:
            authorization.acks.sent(stanza, xs.bytesSent - before)
        authorization.sent += 1

    def _number(self, authorization, stanza, pair):
        """
        Give C{stanza} the next position of its pair, when the pair's
        current generation is counted on the stream it goes on.
        """
        sequence = self._sequences.get(pair)
        if sequence is not None and sequence.streamID == authorization.streamID:
            stanza.__dict__["dnaPosition"] = (
                sequence.epoch, sequence.generation, sequence.next
            )
            sequence.next += 1

    def _sequence(self, pair):
        """
        The L{_Sequence} of C{pair}, with a new random epoch if it has none.
        """
        sequence = self._sequences.get(pair)
        if sequence is None:
            if len(self._sequences) >= MAX_SEQUENCES:
                del self._sequences[next(iter(self._sequences))]
            sequence = self._sequences[pair] = _Sequence("%016x" % secrets.randbits(64))
        return sequence

    def _resend(self, stanzas):
        """
        Send again, over whatever stream now carries their pairs, the stanzas
        a stream that ended never acknowledged. They go to the front of their
        pair's waiting queue, and nothing of the pair is sent before them.

        A stanza numbered in its pair's sequence (L{dna.channel.acks},
        "Exactly once, in order") waits for the pair's next grant, whose
        count says whether the peer handled it: only then is it dropped as
        handled or sent again. Any other stanza that has already been on
        L{MAX_ATTEMPTS} streams bounces instead (a peer that drops every
        connection must not make us loop); numbered ones are counted at the
        grant.
        """
        self.counters["acks-resent"] += len(stanzas)
        byPair = {}
        refused = self._refused
        for stanza in stanzas:
            if refused and (
                stanza.getAttribute("id"), stanza.getAttribute("from"), stanza.getAttribute("to")
            ) in refused:
                self.counters["acks-refused-not-resent"] += 1
                continue
            byPair.setdefault(self._pairOf(stanza), []).append(stanza)
        for pair, resent in byPair.items():
            sequence = self._sequences.get(pair)
            kept = []
            numbered = False
            for stanza in resent:
                if sequence is not None and sequence.handled(stanza):
                    self.counters["delivery-deduplicated"] += 1
                    continue
                # domish.Element.__getattr__ answers child elements: use __dict__.
                attempts = stanza.__dict__.get("dnaAttempts", 1) + 1
                if sequence is not None and sequence.numbered(stanza):
                    numbered = True
                elif attempts > MAX_ATTEMPTS:
                    self._bounceAttempts(stanza, attempts - 1)
                    continue
                stanza.dnaAttempts = attempts
                kept.append(stanza)
            if not kept:
                continue
            waiting = self._waiting.get(pair)
            if waiting is not None:
                waiting.extendleft(reversed(kept))
                self.waitingCount += len(kept)
            else:
                self._putBack(pair[0], pair[1], collections.deque(kept))
            if numbered:
                self._resyncing.add(pair)
                self._authorize(*pair)
            elif waiting is None:
                self._flush(*pair)

    def _bounceAttempts(self, stanza, attempts):
        """
        Bounce a stanza that was on C{attempts} streams, unacknowledged.
        """
        _log.info(
            "Stanza from {sender!r} to {to!r} lost {attempts} streams: bouncing",
            event="stanza-bounced",
            condition="remote-server-timeout",
            sender=stanza.getAttribute("from"),
            to=stanza.getAttribute("to"),
            attempts=attempts,
        )
        self._bounce([stanza], error.StanzaError("remote-server-timeout", type="wait"))

    def _resumeDelivery(self, pair, streamID, count):
        """
        The peer granted C{pair} on C{streamID} having handled C{count} of
        its epoch: drop what waits that it handled, bounce what it did not
        and has been on L{MAX_ATTEMPTS} streams, and number the rest anew
        on this stream.
        """
        sequence = self._sequences.get(pair)
        if sequence is None:
            return
        sequence.resume(streamID, count)
        waiting = self._waiting.get(pair)
        if not waiting:
            return
        kept = collections.deque()
        for stanza in waiting:
            if sequence.handled(stanza):
                self.counters["delivery-deduplicated"] += 1
            elif sequence.knows(stanza) and stanza.__dict__.get("dnaAttempts", 1) > MAX_ATTEMPTS:
                self._bounceAttempts(stanza, stanza.__dict__["dnaAttempts"] - 1)
            else:
                kept.append(stanza)
        self.waitingCount -= len(waiting) - len(kept)
        if kept:
            self._waiting[pair] = kept
        else:
            del self._waiting[pair]
        if not count:
            # A first grant: nothing was resumed.
            return
        _log.info(
            "Resumed {sender} -> {target} on stream {streamID}: the peer had "
            "handled {count}; {dropped} kept stanzas dropped as handled, "
            "{left} to send",
            event="delivery-resumed",
            sender=pair[0],
            target=pair[1],
            streamID=streamID,
            count=count,
            dropped=len(waiting) - len(kept),
            left=len(kept),
        )

    @staticmethod
    def _pairOf(stanza):
        """
        The (sender, target) domains of a stanza.

        @raise InvalidAddress: When either address is not a JID.
        """
        return domainOf(stanza.getAttribute("from")), domainOf(stanza.getAttribute("to"))

    def _existingStream(self, sender, target):
        """
        The default way to reach C{target}: an open stream that may send and
        whose peer proved to represent C{target} (its delegated or server
        names), as section 5 step 3 reuses connections.
        """
        for streamID in self.tables.connections:
            authorization = self.streams.get(streamID)
            if authorization is None or not authorization.canSend:
                continue
            row = self.tables.connections.get(streamID)
            if target in row.delegatedNames or target in row.serverNames:
                return defer.succeed(authorization)
        return defer.fail(NoRoute(target))

    # Outgoing stanzas

    def send(self, stanza, pair=None):
        """
        Send a stanza to a remote domain: on the first stream of its binding
        row, or once the pair has been authorized; bounced to its sender with a
        stanza error when that fails.

        @param stanza: A message, presence or iq with 'from' and 'to'.
        @param pair: The normalised (sender, target) domains of C{stanza}
            when the caller has them already; read from it if L{None}.
        """
        if pair is None:
            try:
                pair = self._pairOf(stanza)
            except InvalidAddress as e:
                _log.info("Not sending stanza with bad address {address!r}",
                          address=e.address)
                self._bounce([stanza], error.StanzaError("jid-malformed", type="modify"))
                return
        sender, target = pair
        waiting = self._waiting.get(pair)
        if waiting is None:
            streamID = self.tables.route(sender, target)
            if streamID is not None:
                authorization = self.streams[streamID]
                if not self._isFull(authorization):
                    self._transmit(authorization, stanza, sender, target)
                    return
            if self._overLimit(0, sender, target, stanza):
                return
            self._waiting[pair] = collections.deque([stanza])
            self.waitingCount += 1
            if streamID is None:
                self._authorize(sender, target)
            else:
                self._waitForRoom(streamID, pair)
        elif not self._overLimit(len(waiting), sender, target, stanza):
            waiting.append(stanza)
            self.waitingCount += 1
            if pair in self._resyncing and pair not in self._authorizing:
                # Kept for a resumption that failed: try it again.
                self._authorize(sender, target)
            streamID = self.tables.route(sender, target)
            if streamID is not None and pair in self._paused.get(streamID, ()):
                self._waitForRoom(streamID, pair)

    def _overLimit(self, waiting, sender, target, stanza):
        """
        Whether one more stanza for C{sender} -> C{target}, which has
        C{waiting} waiting, would pass a limit; if so, bounce C{stanza}.
        """
        if waiting >= self._queueLimit:
            name, limit, which = "queue-limit", self._queueLimit, "for {sender} -> {target}"
        elif self.waitingCount >= self._waitingLimit:
            name, limit, which = "waiting-limit", self._waitingLimit, "in all"
        else:
            return False
        self.incidents.report(
            name, _log,
            "More than {limit} stanzas wait " + which + ": bouncing",
            level=LogLevel.warn,
            limit=limit,
            sender=sender,
            target=target,
        )
        self._bounce([stanza], error.StanzaError("resource-constraint", type="wait"))
        return True

    def _authorize(self, sender, target, attempts=MAX_ATTEMPTS):
        """
        Get C{sender} -> C{target} bound on some stream, then flush its queue.
        """
        pair = (sender, target)
        if pair in self._authorizing:
            # The grant on its way flushes what waits, or its failure
            # bounces it.
            return
        self._authorizing.add(pair)
        d = self._establish(sender, target)

        def ask(authorization):
            if not authorization.delivery:
                request = authorization.request(sender, target)
            else:
                request = authorization.request(
                    sender, target, self._sequence(pair).epoch
                )
            return request.addCallback(lambda count: (authorization.streamID, count))

        d.addCallback(ask)

        def granted(result):
            self._authorizing.discard(pair)
            self._resyncing.discard(pair)
            self._resyncDeadlines.pop(pair, None)
            streamID, count = result
            if count is not None:
                self._resumeDelivery(pair, streamID, count)
            self._flush(sender, target)

        def failed(failure):
            self._authorizing.discard(pair)
            if failure.check(ConnectionLost) and attempts > 1:
                _log.info(
                    "Stream lost while authorizing {sender} -> {target}: retrying",
                    sender=sender,
                    target=target,
                )
                self._authorize(sender, target, attempts - 1)
                return
            if pair in self._resyncing and self._keepForResume(pair, failure):
                return
            # What waits bounces (the sequence goes on: the next grant's
            # count numbers what follows anew).
            self._resyncing.discard(pair)
            self._resyncDeadlines.pop(pair, None)
            if not failure.check(DNAError):
                _log.failure(
                    "Authorizing {sender} -> {target} failed",
                    failure,
                    sender=sender,
                    target=target,
                )
            self._bounce(self._takeWaiting(sender, target), _bounceCondition(failure))

        d.addCallbacks(granted, failed)

    def _keepForResume(self, pair, failure):
        """
        The pair could not be resumed: keep the stanzas whose fate only the
        peer knows (numbered, unacknowledged, not yet covered by a grant's
        count) for the next attempt, which the next stanza sent to the pair
        or the next stream we open makes; bounce the others, which it did
        not get. Unless the peer refused the pair for good (not a refusal
        that says it could not check the delegation now), the service
        stops, or L{RESYNC_PATIENCE} is over since the first failure: then
        everything bounces (and what the peer handled may bounce too).

        @return: Whether stanzas are kept.
        """
        if failure.check(ServiceStopping) or (
            failure.check(AuthorizationRefused)
            and failure.value.condition not in _TEMPORARY_REFUSALS
        ):
            return False
        now = self._clock.seconds()
        if now >= self._resyncDeadlines.setdefault(pair, now + RESYNC_PATIENCE):
            return False
        sequence = self._sequences.get(pair)
        waiting = self._takeWaiting(*pair)
        kept = collections.deque()
        others = []
        for stanza in waiting:
            if sequence is not None and sequence.numbered(stanza) and not sequence.knows(stanza):
                kept.append(stanza)
            else:
                others.append(stanza)
        if kept:
            self._putBack(pair[0], pair[1], kept)
        self._bounce(others, _bounceCondition(failure))
        if not kept:
            return False
        self.counters["delivery-resume-failed"] += 1
        self._scheduleResumes()
        _log.info(
            "Cannot resume {sender} -> {target} now ({reason}): keeping {count} "
            "stanzas the peer may have handled until it can be",
            sender=pair[0],
            target=pair[1],
            reason=failure.getErrorMessage(),
            count=len(kept),
        )
        return True

    def _retryResumes(self):
        """
        Try again to resume the pairs whose stanzas wait for it.
        """
        for pair in [p for p in self._resyncing if p not in self._authorizing]:
            self._authorize(*pair)

    def _scheduleResumes(self):
        """
        Try again later to resume the pairs whose stanzas wait for it, even
        if nothing new is sent to them (the peer that was down may be back):
        after L{RESYNC_RETRY} seconds, doubling while they still wait, up to
        L{RESYNC_RETRY_MAX}.
        """
        if self._resyncTimer is not None or self._stopped:
            return
        delay = self._resyncDelay
        self._resyncDelay = min(delay * 2, RESYNC_RETRY_MAX)

        def retry():
            self._resyncTimer = None
            if not self._resyncing:
                self._resyncDelay = RESYNC_RETRY
                return
            self._retryResumes()
            # A failure that keeps the stanzas again schedules the next try.

        self._resyncTimer = self._clock.callLater(delay, retry)

    def stop(self):
        """
        The service stops: no more tries of our own (what waits bounces as
        the streams close).
        """
        self._stopped = True
        if self._resyncTimer is not None:
            self._resyncTimer.cancel()
            self._resyncTimer = None
        self.revalidator.stop()

    def _flush(self, sender, target):
        """
        Send the stanzas waiting for a pair that is now bound, in order.
        """
        if (sender, target) in self._resyncing:
            # Sent once the pair's grant says what the peer handled.
            return
        waiting = self._takeWaiting(sender, target)
        if not waiting:
            return
        streamID = self.tables.route(sender, target)
        if streamID is None:
            # Revoked or lost between the grant and now: ask again.
            self._putBack(sender, target, waiting)
            self._authorize(sender, target)
            return
        authorization = self.streams[streamID]
        while waiting:
            if self._isFull(authorization):
                # The rest waits until the stream has room, or ends.
                self._putBack(sender, target, waiting)
                self._waitForRoom(streamID, (sender, target))
                return
            self._transmit(authorization, waiting.popleft(), sender, target)

    def _takeWaiting(self, sender, target):
        """
        Remove and return the stanzas waiting for a pair (an empty tuple when
        none).
        """
        waiting = self._waiting.pop((sender, target), ())
        self.waitingCount -= len(waiting)
        return waiting

    def _putBack(self, sender, target, waiting):
        self._waiting[(sender, target)] = waiting
        self.waitingCount += len(waiting)

    def _bounce(self, stanzas, stanzaError):
        """
        Return stanzas that cannot be sent to their senders, except errors
        (RFC 6120 section 8.3.1).
        """
        for stanza in stanzas:
            if stanza.getAttribute("type") == "error":
                _log.info(
                    "Dropped undeliverable error stanza from {sender!r}",
                    sender=stanza.getAttribute("from"),
                )
                continue
            self.counters["bounced-" + stanzaError.condition] += 1
            self._deliver(errorResponse(stanza, stanzaError))
