"""
Authorization of domain pairs with C{<db:result/>} on one stream.

draft-ietf-xmpp-dna-01 section 6. On a stream between two server names, the
Originating Server asks for each (Sender Domain, Target Domain) pair with
C{<db:result from='sender' to='target'/>}; the Receiving Server checks the
request (steps 1-5) and answers C{type='valid'} or C{type='invalid'}. Either
answer, and a later C{type='invalid'} that revokes a granted pair, updates the
binding table of both sides. Errors ride in the C{type='invalid'} result as an
C{<error/>} child, as XEP-0220 section 2.1.1 does.

One L{StreamAuthorization} holds the per-stream negotiation state of both
roles; the tables and the delegation checker it uses are shared by all
streams (L{dna.app.federation.Federation}).

On a bidirectional stream (XEP-0288) both roles run on both sides,
whoever opened the connection (draft-ietf-xmpp-dna-10 section 4.4,
piggybacking): the side that accepted it may ask for its own pairs on it,
and the side that opened it checks those requests with the very steps,
answers, counters and log events of a Receiving Server; its filter admits
what it granted there. Without bidi only the opener asks (L{canSend},
L{canReceive}).
"""

import collections

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from twisted.words.xish import domish

from dna.core.enforcement import StanzaFilter
from dna.core.loglevel import wanted
from dna.core.logthrottle import ThrottledLog
from dna.core.names import domainOf, normalizeDomain
from dna.core.proofs import INDETERMINATE, MAX_EXPLANATION, sanitize
from dna.core.tables import INCOMING, OUTGOING
from dna.error import (
    AuthorizationRefused,
    ConnectionLost,
    InvalidAddress,
    OneWayStream,
    RequestTimedOut,
)
from dna.namespaces import NS_DELIVERY, NS_DIALBACK, NS_STANZAS

_log = Logger()

#: At most this many requests from the peer are checked at once per stream.
DEFAULT_MAX_PENDING = 100

#: At most this many of our own requests are out, unanswered, on one stream
#: (issue 16). The peer's own limit is unknown: XEP-0478 advertises no
#: pending-requests field, so this stays below the L{DEFAULT_MAX_PENDING}
#: that DNA peers (us) enforce on the requests whose check is in flight. The
#: window grows to it from L{INITIAL_REQUEST_WINDOW} only as grants come back,
#: that is once the peer answers quickly (issue 13: with 32 at most, the two
#: servers of a set-up of 1,000 pairs took turns, each waiting for the
#: other's 32 answers or 32 requests and stanzas); a window halved by
#: overload refusals grows back the same way.
DEFAULT_REQUEST_WINDOW = 96

#: The window a new stream starts with, which is conservative already: the
#: peer may have to look up the delegation of each request's sender, on a
#: cold resolver (a smaller start serialises these look-ups: 1,000 pairs set
#: up in 2.7 s instead of 1.0 s with 8). Then additive increase,
#: multiplicative decrease: one more per granted answer, up to
#: L{DEFAULT_REQUEST_WINDOW}, halved when the peer says it is overloaded;
#: never changed by time-outs alone.
INITIAL_REQUEST_WINDOW = 32

#: The refusal conditions that mean "too much at once": they halve the window.
OVERLOAD_CONDITIONS = frozenset(["resource-constraint", "remote-server-timeout"])

#: Seconds an Originating Server waits for the answer to a request. Peers that
#: do not speak DNA may never answer one (Prosody 0.12 with secure auth).
DEFAULT_REQUEST_TIMEOUT = 30.0

#: A stream's peer certificate not read yet.
_UNREAD = object()

#: The longest text of a C{<db:result type='invalid'/>} refusal.
MAX_REFUSAL = 640

#: How many sent stanzas a stream remembers to recognise error replies.
SENT_MEMORY = 1024

#: The C{epoch} attribute of a request and the C{count} of its grant
#: (L{dna.channel.acks}, "Exactly once, in order").
EPOCH = (NS_DELIVERY, "epoch")
COUNT = (NS_DELIVERY, "count")

#: How many distinct (to, from) addresses a stream remembers the delivery
#: count of, for counting without parsing them again.
_COUNTED_ADDRESSES = 1024


def validEpoch(text):
    """
    Whether C{text} may be an epoch: 1 to 32 ASCII letters and digits.
    """
    return text is not None and 0 < len(text) <= 32 and text.isascii() and text.isalnum()


#: The XPath query for C{<db:result/>} elements.
DB_RESULT = "/result[@xmlns='%s']" % (NS_DIALBACK,)


def dialbackElement(name, sender, target, key=None, elementType=None, stanzaError=None, streamID=None):
    """
    Build a C{<db:result/>} or C{<db:verify/>}.

    @param name: C{"result"} or C{"verify"}.
    @param key: The dialback key, as text content.
    @param elementType: L{None}, C{"valid"}, C{"invalid"} or C{"error"}.
    @param stanzaError: An L{error.StanzaError} for C{type='error'}.
    @param streamID: The C{id} of a C{<db:verify/>}.
    @rtype: L{domish.Element}
    """
    element = domish.Element((NS_DIALBACK, name))
    element["from"] = sender
    element["to"] = target
    if streamID is not None:
        element["id"] = streamID
    if elementType is not None:
        element["type"] = elementType
    if key is not None:
        element.addContent(key)
    if stanzaError is not None:
        element.addChild(stanzaError.getElement())
    return element


def resultElement(sender, target, resultType=None, stanzaError=None):
    """
    Build a C{<db:result/>}.

    @param sender: The 'from' domain.
    @param target: The 'to' domain.
    @param resultType: L{None} for a request, C{'valid'} or C{'invalid'}.
    @param stanzaError: An L{error.StanzaError} to carry in an invalid result.
    @rtype: L{domish.Element}
    """
    return dialbackElement(
        "result", sender, target, elementType=resultType, stanzaError=stanzaError
    )


def refusalText(sender, serverNames, verdict):
    """
    Why C{sender} is not delegated to the peer named C{serverNames}: with a
    L{dna.core.proofs.DelegationVerdict}, every prooftype tried and why it
    failed (draft-ietf-xmpp-dna-10 section 5), such as C{"sender.tld is not
    delegated to xmpp.hosting.tld: dnssec-srv: insecure SRV (...); posh:
    fingerprint not listed (1 in the document)"}; bounded, in printable
    ASCII.
    """
    names = ", ".join(sorted(serverNames)) or "(no names)"
    explanation = getattr(verdict, "explanation", None)
    if not explanation:
        return sanitize(f"{sender} is not securely delegated to {names}", MAX_REFUSAL)
    return (sanitize(f"{sender} is not delegated to {names}", MAX_REFUSAL - MAX_EXPLANATION - 2)
            + ": " + explanation)


def errorFromResult(result):
    """
    Read the error condition and text of a C{type='invalid'} result.

    @return: A tuple (condition, text), each L{None} when absent.
    """
    for child in result.elements():
        if child.name != "error":
            continue
        condition = text = None
        for part in child.elements(NS_STANZAS):
            if part.name == "text":
                text = str(part)
            elif condition is None:
                condition = part.name
        return condition, text
    return None, None


class StreamAuthorization:
    """
    The C{<db:result/>} exchange of one stream, in both roles, and the
    enforcement filter of its incoming stanzas.

    Created when a stream has been authenticated: the remote side's server
    names are known and the stream id is final. It records the connection in
    the tables, and removes every trace of it when the stream ends.

    @ivar streamID: The connection's id in the tables (the stream id).
    @ivar initiating: Whether we opened the underlying connection.
    @ivar bidi: Whether XEP-0288 bidirectionality was negotiated.
    @ivar delivered: How many stanzas passed the filter and were handled.
    @ivar sent: How many stanzas were sent on this stream.
    @ivar acks: The stream's L{dna.channel.acks.StreamAcks}, or L{None}.
    """

    delivered = 0
    sent = 0
    acks = None
    #: Which of our server names the stream comes from (we opened it) or
    #: reached (the peer opened it); L{None}: our first.
    localName = None
    #: The peer's certificate once read (L{_peerCertificate}).
    _certificate = _UNREAD
    #: Whether our requests on this stream carry an epoch (the peer offered
    #: the delivery feature and acknowledgements are on; on a stream the
    #: peer opened, once it asked us with an epoch).
    delivery = False
    #: Called with (streamID, local, remote) to revoke a pair on another
    #: stream when a request with an epoch moves it here; L{None} to unbind
    #: it there without a word.
    revokeElsewhere = None
    #: Called with (sender, target, count) when a grant with a count comes
    #: after its request timed out (the pair is then bound all the same).
    lateGrant = None
    #: How many stanzas of pairs resumed with an epoch this stream counted.
    countedHandled = 0
    #: The C{count} of the grant being handled, for L{_onValid}.
    _grantCount = None
    #: The valid C{epoch} of the request being handled, for L{_admitRequest}.
    _requestEpoch = None
    #: How many of our requests may be out at once (see L{requestWindow}).
    window = INITIAL_REQUEST_WINDOW

    #: Called with no arguments after each request we send, or L{None}
    #: (L{dna.app.flow.FlowControl.requested}).
    onRequest = None

    #: Whether the peer's refusals carry an C{<error/>} (DNA: they do, see
    #: L{_refuse}), so that a bare C{type='invalid'} is a revocation even
    #: while we ask for the pair. XEP-0220 peers refuse without one.
    refusalsCarryErrors = True

    def __init__(
        self,
        xs,
        tables,
        hostedDomains,
        checker,
        initiating,
        serverNames=(),
        bidi=False,
        maxPending=DEFAULT_MAX_PENDING,
        requestTimeout=DEFAULT_REQUEST_TIMEOUT,
        *,
        clock,
        incidents=None,
        requestWindow=DEFAULT_REQUEST_WINDOW,
    ):
        """
        @param xs: The authenticated stream.
        @param tables: The shared L{dna.core.tables.Tables}.
        @param hostedDomains: A container of the normalised domains we host.
        @param checker: An L{IDelegationChecker}.
        @param initiating: C{True} when we opened the connection.
        @param serverNames: The server names the peer authenticated.
        @param bidi: Whether both directions are allowed on this stream.
        @param maxPending: How many requests from the peer may be checked at
            once; more is a C{<policy-violation/>} stream error.
        @param requestTimeout: Seconds to wait for answers to our requests.
        @param clock: An L{IReactorTime} for the request time-outs.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} that
            counts and logs refusals across streams (C{"pending-limit"},
            C{"filter-rejected"}); one of this stream's own if L{None}.
        @param requestWindow: The most of our requests that may be out at
            once on this stream; further ones wait in order.
        """
        if incidents is None:
            incidents = ThrottledLog(clock)
        self._incidents = incidents
        self.xs = xs
        self.streamID = xs.sid
        self.initiating = initiating
        self.bidi = bidi
        self._tables = tables
        self._hosted = hostedDomains
        self._checker = checker
        self._maxPending = maxPending
        self._requestTimeout = requestTimeout
        self._clock = clock
        self._closed = False
        # (sender, target) -> list of Deferreds waiting for the answer
        self._asked = {}
        # (sender, target) -> timeout IDelayedCall
        self._timers = {}
        # (sender, target) of our requests sent and not yet answered
        self._outstanding = set()
        # (pair, makeRequest) of our requests waiting for the window, in order
        self._queued = collections.deque()
        self.requestWindow = requestWindow
        self.window = min(INITIAL_REQUEST_WINDOW, requestWindow)
        # (target, sender) of the peer's requests being checked
        self._checking = set()
        # (sender, target) of our requests that timed out unanswered
        self._lapsed = set()
        # (sender, target) the peer revoked on this stream, for its replies
        self._revoked = set()
        # (id, from, to) of the last stanzas sent, for the peer's error
        # replies: the newest, and the SENT_MEMORY before them (two dicts
        # that take turns, rather than dropping the oldest one by one).
        self._sent = {}
        self._sentBefore = {}
        # (local, remote) -> DeliveryCount of the pairs the peer sends on
        # with an epoch, and (to, from) attributes -> the same, as counted
        self.counted = {}
        self._countedAddresses = {}

        tables.openConnection(self.streamID, serverNames)
        self.filter = StanzaFilter(
            xs, self.streamID, tables.incoming, isReply=self._isReply,
            incidents=incidents,
        )
        self.filter.install()
        xs.addObserver(DB_RESULT, self._onResult)
        xs.addObserver(STREAM_END_EVENT, self._onStreamEnd)

    @property
    def serverNames(self):
        """
        The server names the peer authenticated on this stream.
        """
        return frozenset(self._tables.connections.get(self.streamID).serverNames)

    @property
    def canSend(self):
        """
        Whether we may ask for pairs and send stanzas on this stream: on one
        we opened, or on one the peer opened with bidi (piggybacking).
        """
        return self.initiating or self.bidi

    @property
    def canReceive(self):
        """
        Whether the peer may ask for pairs and send stanzas on this stream:
        on one it opened, or on one we opened with bidi.
        """
        return not self.initiating or self.bidi

    # Originating role

    def request(self, sender, target, epoch=None):
        """
        Ask the peer to authorize stanzas from C{sender} to C{target} on this
        stream (section 6, Originating Server steps 1-3).

        @param sender: A hosted domain of ours (normalised).
        @param target: The peer's domain (normalised).
        @param epoch: Our epoch of the pair, on a stream with L{delivery}:
            the request carries it, even for a pair bound already, and the
            grant says how many stanzas of it the peer handled.
        @return: A L{Deferred} that fires once the pair is bound for sending
            on this stream, with the peer's delivery count (an C{int}) when
            the request carried an epoch and the grant a count, L{None}
            otherwise; or fails with L{AuthorizationRefused},
            L{RequestTimedOut} or L{ConnectionLost}. Requests for a pair
            already asked for share the one C{<db:result/>}.
        """
        if self._closed:
            return defer.fail(ConnectionLost(self.streamID))
        if not self.canSend:
            return defer.fail(
                OneWayStream(self.streamID)
            )
        pair = (sender, target)
        if epoch is not None and self.delivery:
            def makeRequest():
                element = resultElement(sender, target)
                element[EPOCH] = epoch
                return element
        elif self._tables.outgoing.accepts(self.streamID, sender, target):
            return defer.succeed(None)
        else:
            def makeRequest():
                return resultElement(sender, target)
        self._lapsed.discard(pair)
        return self._ask(pair, makeRequest)

    def _ask(self, pair, makeRequest):
        """
        Send the request C{makeRequest()} for C{pair}, unless one is out or
        waiting already, and wait for its answer or the time-out. When
        L{window} requests are out, it waits for an answer first, behind
        those that waited before it.

        @return: A fresh L{Deferred} for this caller.
        """
        d = defer.Deferred()
        if pair in self._asked:
            self._asked[pair].append(d)
            return d
        self._asked[pair] = [d]
        self._queued.append((pair, makeRequest))
        self._sendQueued()
        return d

    @property
    def waitingRequests(self):
        """
        How many of our requests wait for room in the window.
        """
        return len(self._queued)

    def _sendQueued(self):
        """
        Send waiting requests, oldest first, while the window has room; the
        time-out of each starts when it is sent.
        """
        while self._queued and not self._closed and len(self._outstanding) < int(self.window):
            pair, makeRequest = self._queued.popleft()
            if pair not in self._asked:
                # Answered while it waited (a grant that crossed it).
                continue
            self._outstanding.add(pair)
            self._timers[pair] = self._clock.callLater(
                self._requestTimeout, self._requestTimedOut, pair
            )
            self.xs.send(makeRequest())
            if self.onRequest is not None:
                self.onRequest()

    def _adapt(self, granted, condition=None):
        """
        Adapt the window to an answer: one more after a grant, up to
        L{requestWindow}; half after a refusal that says the peer is
        overloaded (L{OVERLOAD_CONDITIONS}). Other refusals, and time-outs,
        leave it alone.
        """
        if granted:
            self.window = min(self.requestWindow, self.window + 1)
        elif condition in OVERLOAD_CONDITIONS:
            self.window = max(1, self.window // 2)

    def _requestTimedOut(self, pair):
        del self._timers[pair]
        if len(self._lapsed) >= self._maxPending:
            self._lapsed.clear()
        self._lapsed.add(pair)
        self._pairEvent(
            None, "pair-timeout",
            "Stream {streamID}: no answer for {sender} -> {target} in {timeout}s",
            *pair, timeout=self._requestTimeout,
        )
        self._answered(pair, Failure(RequestTimedOut(pair[0], pair[1], self._requestTimeout)))

    def _answered(self, pair, outcome):
        """
        Fire every waiter of C{pair} with C{outcome} (L{None} or a failure).
        """
        timer = self._timers.pop(pair, None)
        if timer is not None and timer.active():
            timer.cancel()
        # A timed-out request frees its slot too: a peer that never answers
        # must not stall the pairs behind it (the window stays as it was).
        self._outstanding.discard(pair)
        for d in self._asked.pop(pair, ()):
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)
        self._sendQueued()

    def rememberSent(self, stanza, sender, target):
        """
        Note a stanza we send on this stream from domain C{sender} to domain
        C{target}, so that the peer's error reply to it is recognised
        (L{_isReply}). The last L{SENT_MEMORY} are kept, at least.
        """
        stanzaID = stanza.attributes.get("id")
        if stanzaID is None:
            return
        sent = self._sent
        if len(sent) >= SENT_MEMORY:
            self._sentBefore = sent
            sent = self._sent = {}
        sent[(stanzaID, sender, target)] = None

    def _isReply(self, sender, target, stanzaID):
        """
        Whether an error stanza with C{stanzaID} from C{target} to C{sender}
        answers a stanza we sent with that id on this stream, for a pair we
        send on, ask for, or sent on until the peer revoked it (see
        L{StanzaFilter}).
        """
        pair = (sender, target)
        key = (stanzaID, sender, target)
        return (key in self._sent or key in self._sentBefore) and (
            pair in self._asked
            or pair in self._revoked
            or self._tables.outgoing.accepts(self.streamID, sender, target)
        )

    # Receiving role

    def revoke(self, local, remote, stanzaError=None):
        """
        Withdraw the peer's authorization to send from C{remote} to C{local}
        on this stream (section 6: "A service may revoke authorization").

        @param stanzaError: An L{error.StanzaError} to say why in the
            C{type='invalid'} result (re-validation says C{<not-authorized/>}),
            or L{None} for a bare one.
        @return: Whether the pair was bound to this stream.
        """
        if not self._tables.unbind(INCOMING, local, remote, self.streamID):
            return False
        self.filter.forget()
        self._incidents.counters["revoked-local"] += 1
        _log.info(
            "Stream {streamID}: revoked {remote} -> {local}",
            event="revoked",
            side="local",
            streamID=self.streamID,
            remote=remote,
            local=local,
        )
        if not self._closed:
            self.xs.send(resultElement(local, remote, "invalid", stanzaError))
        return True

    def _onResult(self, result):
        result.handled = True
        resultType = result.getAttribute("type")
        try:
            sender = normalizeDomain(result.getAttribute("from"))
            target = normalizeDomain(result.getAttribute("to"))
        except InvalidAddress as e:
            _log.info(
                "Stream {streamID}: <db:result/> with bad address {address!r}",
                event="stream-refused",
                condition="improper-addressing",
                streamID=self.streamID,
                address=e.address,
            )
            self.xs.sendStreamError(error.StreamError("improper-addressing"))
            return
        if resultType is None:
            self._onRequest(sender, target, result)
            self._requestEpoch = None
        elif resultType == "valid":
            self._grantCount = result.getAttribute(COUNT)
            self._onValid(target, sender)
        elif resultType == "invalid":
            self._onInvalid(target, sender, result)
        else:
            _log.info(
                "Stream {streamID}: <db:result/> of unknown type {type!r}",
                event="stream-refused",
                condition="bad-format",
                streamID=self.streamID,
                type=resultType,
            )
            self.xs.sendStreamError(error.StreamError("bad-format"))

    def _onValid(self, sender, target):
        """
        The peer granted C{sender} -> C{target} (Originating steps 2-3).
        """
        pair = (sender, target)
        if pair in self._lapsed:
            # The answer to a request that timed out here: the peer bound the
            # pair, so bind it too (the next stanzas use it; it may still be
            # revoked like any other).
            self._lapsed.discard(pair)
            self._tables.bind(OUTGOING, sender, target, self.streamID)
            count = self._takeGrantCount()
            if count is not None and self.lateGrant is not None:
                self.lateGrant(sender, target, count)
            _log.info(
                "Stream {streamID}: late grant of {sender} -> {target} taken",
                streamID=self.streamID,
                sender=sender,
                target=target,
            )
            return
        if pair not in self._asked:
            _log.info(
                "Stream {streamID}: unsolicited valid result for {sender} -> "
                "{target} ignored",
                streamID=self.streamID,
                sender=sender,
                target=target,
            )
            return
        self._tables.bind(OUTGOING, sender, target, self.streamID)
        self._pairEvent(
            "answer-valid", "pair-granted-by-peer",
            "Stream {streamID}: may send {sender} -> {target}",
            sender, target, level=LogLevel.debug,
        )
        self._adapt(True)
        self._answered(pair, self._takeGrantCount())

    def _takeGrantCount(self):
        """
        The C{count} of the grant being handled, as an C{int}, or L{None}
        when it has none (or nonsense).
        """
        count, self._grantCount = self._grantCount, None
        if count is not None and count.isascii() and count.isdigit() and len(count) <= 20:
            return int(count)
        return None

    def _onInvalid(self, sender, target, result):
        """
        The peer refused our request for C{sender} -> C{target}, or revoked
        the pair.
        """
        pair = (sender, target)
        condition, text = errorFromResult(result)
        refusal = not self.refusalsCarryErrors or any(
            child.name == "error" for child in result.elements()
        )
        if pair in self._asked and not refusal:
            # Our refusals always carry an <error/>: this is the revocation
            # of an earlier binding crossing our new request, whose answer
            # is still to come.
            self._tables.unbind(OUTGOING, sender, target, self.streamID)
            self._pairEvent(
                "revoked-peer", "revoked",
                "Stream {streamID}: peer revoked {sender} -> {target} while we "
                "ask for it again",
                sender, target, side="peer",
            )
        elif pair in self._asked:
            self._pairEvent(
                "answer-" + (condition or "invalid"), "pair-refused-by-peer",
                "Stream {streamID}: {sender} -> {target} refused: {condition}",
                sender, target, condition=condition, reason=text,
            )
            self._adapt(False, condition)
            self._answered(
                pair, Failure(AuthorizationRefused(sender, target, condition, text))
            )
        elif self._tables.unbind(OUTGOING, sender, target, self.streamID):
            if len(self._revoked) >= self._maxPending:
                self._revoked.clear()
            self._revoked.add(pair)
            self._pairEvent(
                "revoked-peer", "revoked",
                "Stream {streamID}: peer revoked {sender} -> {target}",
                sender, target, side="peer",
            )
        else:
            _log.debug(
                "Stream {streamID}: invalid result for unknown pair "
                "{sender} -> {target} ignored",
                streamID=self.streamID,
                sender=sender,
                target=target,
            )

    def _onRequest(self, sender, target, result):
        """
        The peer asks to send from C{sender} to C{target}: Receiving Server
        steps 1-5.
        """
        epoch = result.getAttribute(EPOCH)
        self._requestEpoch = epoch if validEpoch(epoch) else None
        if (self._requestEpoch is not None and not self.initiating
                and not self.delivery and self.acks is not None):
            # On a stream the peer opened, nobody offers us the delivery
            # feature: a peer that asks with epochs counts deliveries as a
            # Receiving Server too, so what we piggyback here (bidi) is
            # counted and resumed like on a stream we open, not sent twice
            # after a break.
            self.delivery = True
        if self._admitRequest(sender, target):
            self._checkRequest(sender, target, result)

    def _admitRequest(self, sender, target):
        """
        What every kind of stream checks of a request first: the direction
        (step 1), duplicates, pairs already bound, the pending limit, and the
        target (step 2). Answers or refuses the request when that settles
        it.

        @return: Whether the request still needs checking.
        """
        # Step 1: direction.
        if not self.canReceive:
            self._pairEvent(
                None, "stream-refused",
                "Stream {streamID}: request {sender} -> {target} on a one-way "
                "stream we opened: closing",
                sender, target, incoming=True, condition="unsupported-stanza-type",
            )
            self.xs.sendStreamError(
                error.StreamError(
                    "unsupported-stanza-type",
                    text="this stream is one-way; negotiate bidi",
                )
            )
            return False
        pair = (target, sender)
        if pair in self._checking:
            # Coalesced: the answer to the first request covers this one.
            return False
        if self._tables.incoming.accepts(self.streamID, target, sender):
            self.xs.send(self._grant(target, sender, self._requestEpoch))
            return False
        if len(self._checking) >= self._maxPending:
            self._incidents.report(
                "pending-limit", _log,
                "Stream {streamID}: more than {limit} requests pending: closing",
                level=LogLevel.warn,
                streamID=self.streamID,
                limit=self._maxPending,
            )
            self.xs.sendStreamError(
                error.StreamError(
                    "policy-violation", text="too many pending <db:result/> requests"
                )
            )
            return False
        # Step 2: is the target ours?
        if target not in self._hosted:
            self._refuse(sender, target, "item-not-found", "cancel", "not hosted here")
            return False
        return True

    def _checkRequest(self, sender, target, result):
        """
        Steps 3-5: is C{sender} delegated to the peer's server names? Then
        record and grant.
        """
        pair = (target, sender)
        self._checking.add(pair)
        serverNames = self.serverNames
        epoch = self._requestEpoch
        certificate = self._peerCertificate()
        if certificate is None:
            d = defer.maybeDeferred(self._checker.isDelegated, sender, serverNames)
        else:
            # POSH delegates a domain to the certificate the peer presented.
            d = defer.maybeDeferred(self._checker.isDelegated, sender, serverNames,
                                    certificate=certificate)

        def checked(delegated):
            if self._closed:
                return
            if not delegated:
                if getattr(delegated, "status", None) == INDETERMINATE:
                    # Could not tell (a resolver down, a document not
                    # fetched): the peer may ask again later.
                    condition, errorType = "remote-server-timeout", "wait"
                else:
                    condition, errorType = "not-authorized", "auth"
                self._refuse(
                    sender, target, condition, errorType,
                    refusalText(sender, serverNames, delegated),
                )
                return
            # Step 4: record; step 5: answer.
            self._tables.connections.addDelegatedNames(self.streamID, [sender])
            self._tables.bind(INCOMING, target, sender, self.streamID)
            # Routine, one per pair: at debug, which the server's log
            # does not write by default (refusals stay at info).
            self._pairEvent(
                "result-valid", "pair-granted",
                "Stream {streamID}: granted {sender} -> {target}",
                sender, target, incoming=True, level=LogLevel.debug,
            )
            self.xs.send(self._grant(target, sender, epoch))

        def failed(failure):
            _log.failure(
                "Stream {streamID}: delegation check of {sender} failed",
                failure,
                streamID=self.streamID,
                sender=sender,
            )
            if not self._closed:
                self._refuse(
                    sender, target, "remote-server-timeout", "wait",
                    "delegation check failed",
                )

        def done(ignored):
            self._checking.discard(pair)

        def unexpected(failure):
            _log.failure(
                "Stream {streamID}: answering the request for {sender} -> {target} failed",
                failure,
                streamID=self.streamID,
                sender=sender,
                target=target,
            )

        d.addCallbacks(checked, failed)
        d.addErrback(unexpected)
        d.addBoth(done)

    def _peerCertificate(self):
        """
        The certificate the peer presented on this stream's TLS connection
        (a L{cryptography.x509.Certificate}), or L{None} without TLS; read
        once per stream.
        """
        if self._certificate is _UNREAD:
            self._certificate = None
            getPeerCertificate = getattr(self.xs.transport, "getPeerCertificate", None)
            if getPeerCertificate is not None:
                try:
                    certificate = getPeerCertificate()
                except Exception:
                    certificate = None
                if certificate is not None:
                    self._certificate = certificate.to_cryptography()
        return self._certificate

    def _grant(self, local, remote, epoch):
        """
        The grant of C{remote} -> C{local}, bound on this stream already.
        With an C{epoch}, the pair's delivery is counted on this stream from
        now on, after what was counted on the streams before it, and no
        longer on any other: the grant says how many were counted, and the
        pair is revoked on every other stream, so that stanzas still on
        their way there are not handled (they are sent again here).
        """
        grant = resultElement(local, remote, "valid")
        if epoch is None:
            return grant
        entry = self._tables.delivery.claim(
            local, remote, epoch, self.streamID, self._clock.seconds()
        )
        old = self.counted.get((local, remote))
        if old is not entry:
            self.counted[(local, remote)] = entry
            self._countedAddresses.clear()
        for other in self._tables.incoming.streams(local, remote):
            if other == self.streamID:
                continue
            if self.revokeElsewhere is not None:
                self.revokeElsewhere(other, local, remote)
            else:
                self._tables.unbind(INCOMING, local, remote, other)
        grant[EPOCH] = epoch
        grant[COUNT] = str(entry.count)
        if self.acks is not None and not self.acks.eager:
            self.acks.answerEagerly(lambda: self.countedHandled)
        return grant

    def countHandled(self, stanza):
        """
        Count a stanza handled on this stream in the delivery count of its
        pair, when the pair's epoch is counted here.
        """
        attributes = stanza.attributes
        key = (attributes.get("to"), attributes.get("from"))
        entry = self._countedAddresses.get(key)
        if entry is None:
            try:
                entry = self.counted.get((domainOf(key[0]), domainOf(key[1])))
            except InvalidAddress:
                return
            if entry is None:
                return
            if len(self._countedAddresses) >= _COUNTED_ADDRESSES:
                self._countedAddresses.clear()
            self._countedAddresses[key] = entry
        if entry.owner == self.streamID:
            entry.count += 1
            self.countedHandled += 1

    def _pairEvent(self, counter, event, message, sender, target, incoming=False,
                   level=LogLevel.info, **fields):
        """
        Count and log an event of the pair C{sender} -> C{target}, named both
        ways: as sender and target, and as this server's local and remote
        domain.

        @param counter: The name to count in the incidents' counters, or
            L{None} to count nothing.
        @param incoming: Whether the peer sends on the pair (we send on it
            otherwise).
        """
        if counter is not None:
            self._incidents.counters[counter] += 1
        if not wanted(level):
            return
        local, remote = (target, sender) if incoming else (sender, target)
        _log.emit(
            level, message, event=event, streamID=self.streamID,
            local=local, remote=remote, sender=sender, target=target, **fields
        )

    def _refuse(self, sender, target, condition, errorType, why):
        """
        Refuse the peer's request for C{sender} -> C{target}, saying why.
        """
        self._pairEvent(
            "result-" + condition, "pair-refused",
            "Stream {streamID}: refused {sender} -> {target}: {condition} ({why})",
            sender, target, incoming=True, condition=condition, reason=why, why=why,
        )
        self.xs.send(self._refusal(sender, target, condition, errorType, why))

    def _refusal(self, sender, target, condition, errorType, why):
        """
        The element that refuses a request: DNA answers C{type='invalid'}
        with an C{<error/>} (so that it differs from a revocation).
        """
        return resultElement(
            target, sender, "invalid", error.StanzaError(condition, type=errorType, text=why)
        )

    # Both roles

    def _onStreamEnd(self, reason):
        """
        The stream is gone: remove every trace of it (section 4: "both servers
        MUST delete its entry"), and fail what waits on it.
        """
        if self._closed:
            return
        self._closed = True
        self.xs.removeObserver(DB_RESULT, self._onResult)
        self.xs.removeObserver(STREAM_END_EVENT, self._onStreamEnd)
        self.filter.uninstall()
        self._tables.closeConnection(self.streamID)
        if self.counted:
            self._tables.delivery.retire(self.counted.values(), self._clock.seconds())
            self.counted = {}
            self._countedAddresses.clear()
        self._checking.clear()
        self._queued.clear()
        for pair in list(self._asked):
            self._answered(pair, Failure(ConnectionLost(self.streamID, reason)))
