"""
Model-based tests of two L{Federation}s talking to each other in memory.

draft-ietf-xmpp-dna-01 section 4 (the binding table routes outgoing stanzas
and filters incoming ones; a closed connection leaves no trace) and section 6
(a pair is used only once authorized; a refused pair is never bound; a revoked
pair must be asked for again).

Server A (the Originating Server, C{xmpp.a.tld}) hosts the Sender Domains
a1.tld, a2.tld and a3.tld; server B (the Receiving Server, C{xmpp.b.tld}) hosts
the Target Domains b1.tld and b2.tld, and its delegation checker says a1 and a2
are delegated to C{xmpp.a.tld} while a3 is not. Every connection is a pair of
real L{XmlStream}s (A's initiating side, B's receiving side, one stream id)
joined by L{StringTransport}s that L{TwoServers} pumps by hand, so that a
test decides exactly which bytes are in flight when something else happens.

L{FederationModel} drives random sequences of opening and closing
connections, sending, revoking, hostile injections, paused delegation checks,
clock steps and pumping. After every step it checks what must always hold
(B delivers only what is bound on the stream it arrived on, never from a3;
A sends only on streams it has bound; the tables are consistent and keep
nothing of closed streams). Whenever no bytes are in flight it also checks
that every message A accepted is accounted for exactly once: delivered (once,
in send order per pair), bounced with the condition the step that caused it
allows, lost with a connection that closed under it, or waiting on a request
that can still be answered or time out. At the end it closes everything,
lets every timer run and checks the accounting is exact.
L{AcksFederationModel} does the same with acknowledgements (L{dna.channel.acks}) on,
where nothing may be lost with a connection and delivery is at least once.
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from dna.app.federation import Federation
from dna.channel.acks import smFeature
from dna.channel.stream import S2SStream
from dna.core.authorization import DEFAULT_REQUEST_TIMEOUT, resultElement
from dna.core.names import domainOf
from dna.error import NoRoute
from dna.namespaces import NS_DIALBACK, NS_DNA_ERRORS, NS_SM
from dna.testing.fakes import FakeDelegationChecker
from tests.unit import examples
from tests.unit.streams import HEADER, stanza, stanzaErrorOf

SERVER_A = "xmpp.a.tld"
SERVER_B = "xmpp.b.tld"
SENDERS = ("a1.tld", "a2.tld", "a3.tld")
TARGETS = ("b1.tld", "b2.tld")
DELEGATED = frozenset(["a1.tld", "a2.tld"])
TIMEOUT = DEFAULT_REQUEST_TIMEOUT

#: The bounce conditions each kind of step may cause.
ALLOWED_BOUNCES = {
    # establish finds no connection A believes open
    "send": {"remote-server-not-found"},
    # the request was not answered in time
    "clock": {"remote-server-timeout"},
    # the stream carrying the request went away, and no retry was possible
    "close": {"remote-server-not-found"},
    # B refused the pair (checked further: only a3 may be refused)
    "pump": {"not-authorized"},
}

#: With acknowledgements, what a message may have been through before it is
#: sent again: delivered or rejected by B with the acknowledgement lost, or
#: written to a connection that died.
_RESENDABLE = frozenset(
    ["delivered", "lost in transit", "rejected at B", "refused by B"]
)


class _Stream(S2SStream):
    """
    An L{XmlStream} that tells its link about every element it sends.
    """

    def __init__(self, onSend):
        S2SStream.__init__(self, xmlstream.Authenticator())
        self._onSend = onSend

    def send(self, obj):
        if domish.IElement.providedBy(obj):
            self._onSend(obj)
        S2SStream.send(self, obj)


def _started(xs, sid, us, peer):
    """
    Connect C{xs} to a fresh L{StringTransport} and feed it the peer's
    stream header, as if the stream had been negotiated.
    """
    xs.makeConnection(StringTransport())
    xs.dataReceived(HEADER.format(peer=peer, us=us, sid=sid).encode("utf-8"))
    xs.sid = sid
    # As if our header had gone out: stream errors are then really sent.
    xs._headerSent = True
    xs.transport.clear()
    return xs


class _Link:
    """
    One connection between A and B: A's initiating stream and B's receiving
    stream, with the same stream id.

    @ivar aOpen: Whether A's side has not seen the connection close.
    @ivar bOpen: The same for B.
    @ivar aToB: Ids of the messages A wrote since the bytes from A to B were
        last moved.
    """

    def __init__(self, servers, sid):
        self.sid = sid
        self.aOpen = self.bOpen = True
        self.aToB = []
        self._servers = servers
        self.a = _started(_Stream(self._aSent), sid, SERVER_A, SERVER_B)
        self.b = _started(_Stream(self._bSent), sid, SERVER_B, SERVER_A)
        # Mark what passed the filter, before the routing observer sees it.
        self.a.addObserver("/*", self._arrived, 1, side="a")
        self.b.addObserver("/*", self._arrived, 1, side="b")
        if servers.acks:
            # B offered acknowledgements in its stream features.
            self.a.features = {(NS_SM, "sm"): smFeature(delivery=servers.delivery)}
        self.aAuth = servers.a.streamAuthenticated(
            self.a, initiating=True, serverNames=[SERVER_B], bidi=False
        )
        self.bAuth = servers.b.streamAuthenticated(
            self.b, initiating=False, serverNames=[SERVER_A], bidi=False
        )

    def __repr__(self) -> str:
        return f"<_Link {self.sid} a={self.aOpen} b={self.bOpen}>"

    def _arrived(self, element, side):
        element.arrivedOn = (side, self.sid)

    def _aSent(self, element):
        self._servers._aSent(self, element)

    def _bSent(self, element):
        self._servers._bSent(self, element)


class TwoServers:
    """
    Two L{Federation}s, their connections, and the bookkeeping every
    invariant is checked against.

    @ivar sent: Message id -> ((sender, target), sequence number), for the
        messages given to C{A.send}.
    @ivar delivered: Message id -> stream id, for A's messages B delivered.
    @ivar bounced: Message id -> (condition, step), for A's bounces.
    @ivar lostInTransit: Ids of messages written to a connection that closed
        before they reached B (without stream management they are lost with
        the TCP connection, which the model allows).
    @ivar rejectedAtB: Message id -> (stream id, condition), for A's messages
        B's filter dropped and whose error reply has not reached A's deliver.
    @ivar refusedByB: The same, once the error reply reached A's deliver:
        the sender heard of it.
    @ivar revoked: Every (stream id, (local, remote)) B ever revoked.
    @ivar bBound: The reference model of B's incoming bindings, as a set of
        (stream id, (local, remote)): what B answered C{type='valid'} on a
        stream, until it answered C{type='invalid'} there or the stream closed.
    @ivar violations: Every broken safety property, as text.
    @ivar acks: Whether B offers acknowledgements (L{dna.channel.acks}). Then a
        message lost with a connection is sent again on another, so that
        delivery is at least once: the model allows duplicates on distinct
        streams and a bounce after a delivery whose acknowledgement was lost,
        and no longer checks the order across connection losses.
    @ivar delivery: Whether B offers the resumption of pairs' delivery too
        (needs C{acks}; L{tests.unit.test_delivery} checks what it adds).
    """

    def __init__(self, acks=False, delivery=False):
        self.acks = acks
        self.delivery = delivery
        self.clock = Clock()
        self.checker = FakeDelegationChecker(
            {domain: [SERVER_A] for domain in DELEGATED}
        )
        self.a = Federation(
            SENDERS,
            FakeDelegationChecker(),
            self._deliveredAtA,
            establish=self._establish,
            clock=self.clock,
        )
        self.b = Federation(TARGETS, self.checker, self._deliveredAtB, clock=self.clock)
        self.links = []
        self._sids = 0
        self._ids = 0
        self._hostile = 0
        self.step = None
        self.receiving = None
        self.sent = {}
        self.delivered = {}
        self.deliveries = {}
        self._lastDelivered = {}
        self.bounced = {}
        self.lostInTransit = set()
        self.rejectedAtB = {}
        self.refusedByB = {}
        self.hostileRejected = {}
        self.hostileDelivered = []
        self.revoked = set()
        self.bBound = set()
        self.violations = []
        globalLogPublisher.addObserver(self._logged)

    def stop(self):
        """
        Stop watching the log.
        """
        globalLogPublisher.removeObserver(self._logged)

    def _logged(self, event):
        if "log_failure" in event:
            self.violations.append(
                "logged failure: {}".format(event["log_failure"].getTraceback())
            )

    # A's establish, both servers' deliver

    def _establish(self, sender, target):
        """
        A's C{establish}: the first connection A believes open. Like
        L{dna.app.service}, it records the target as represented by the peer
        (section 5 step 3: b1 and b2 are delegated to C{xmpp.b.tld}).
        """
        for link in self.links:
            if link.aOpen:
                self.a.tables.connections.addDelegatedNames(link.sid, [target])
                return defer.succeed(link.aAuth)
        return defer.fail(NoRoute(target))

    def _deliveredAtB(self, element):
        arrival = getattr(element, "arrivedOn", None)
        stanzaID = element.getAttribute("id")
        if arrival is None or arrival[0] != "b":
            self.violations.append(f"B delivered {stanzaID}, which it did not receive")
            return
        sid = arrival[1]
        local = domainOf(element["to"])
        remote = domainOf(element["from"])
        if (sid, (local, remote)) not in self.bBound:
            self.violations.append(
                f"B delivered {stanzaID} ({remote} -> {local}) on {sid}, "
                f"which is not bound there"
            )
        if remote not in DELEGATED:
            self.violations.append(f"B delivered {stanzaID} from {remote}")
        if stanzaID.startswith("h"):
            self.hostileDelivered.append(stanzaID)
            return
        deliveries = self.deliveries.setdefault(stanzaID, [])
        if sid in deliveries:
            self.violations.append(f"{stanzaID} delivered twice on {sid}")
        deliveries.append(sid)
        if self.outcomes(stanzaID) and not (
            self.acks and set(self.outcomes(stanzaID)) <= _RESENDABLE
        ):
            self.violations.append(
                f"{stanzaID} delivered, but was {self.outcomes(stanzaID)}"
            )
        pair, seq = self.sent[stanzaID]
        if not self.acks and self._lastDelivered.get(pair, -1) > seq:
            self.violations.append(
                f"{stanzaID} delivered after message {self._lastDelivered[pair]} "
                f"of {pair}, which was sent later"
            )
        self._lastDelivered[pair] = seq
        self.delivered[stanzaID] = sid

    def _deliveredAtA(self, element):
        stanzaID = element.getAttribute("id")
        arrival = getattr(element, "arrivedOn", None)
        if arrival is not None:
            # A's incoming table is always empty: only B's error replies to
            # A's messages may come in (or to what the hostile peer wrote as
            # if it were A).
            if self.hostileRejected.get(stanzaID, False) == arrival[1]:
                return
            rejected = self.rejectedAtB.get(stanzaID)
            if (
                arrival[0] != "a" or element.getAttribute("type") != "error"
                or rejected is None or rejected[0] != arrival[1]
            ):
                self.violations.append(
                    f"A delivered incoming {element.toXml()} on {arrival}"
                )
                return
            self.refusedByB[stanzaID] = self.rejectedAtB.pop(stanzaID)
            return
        if element.getAttribute("type") != "error" or stanzaID not in self.sent:
            self.violations.append(f"A bounced something unexpected: {element.toXml()}")
            return
        if self.outcomes(stanzaID) and not (
            self.acks and set(self.outcomes(stanzaID)) <= _RESENDABLE
        ):
            self.violations.append(
                f"{stanzaID} bounced, but was {self.outcomes(stanzaID)}"
            )
        condition, _ = stanzaErrorOf(element)
        (sender, target), _ = self.sent[stanzaID]
        allowed = ALLOWED_BOUNCES.get(self.step, set())
        if self.acks and self.step == "close":
            # Sent on MAX_ATTEMPTS streams that all ended unacknowledged.
            allowed = allowed | {"remote-server-timeout"}
        if condition not in allowed:
            self.violations.append(
                f"{stanzaID} ({sender} -> {target}) bounced with {condition} "
                f"in a {self.step} step"
            )
        elif condition == "not-authorized" and sender in DELEGATED:
            self.violations.append(
                f"{stanzaID} from delegated {sender} bounced with not-authorized"
            )
        elif self.step == "send" and any(link.aOpen for link in self.links):
            self.violations.append(
                f"{stanzaID} bounced with {condition} although a connection is open"
            )
        self.bounced[stanzaID] = (condition, self.step)

    # What goes over the wire

    def _aSent(self, link, element):
        if element.name != "message":
            return
        stanzaID = element.getAttribute("id")
        sender = domainOf(element["from"])
        target = domainOf(element["to"])
        if not link.aOpen:
            self.violations.append(f"A sent {stanzaID} on closed {link.sid}")
        if link.sid not in self.a.tables.outgoing.streams(sender, target):
            self.violations.append(
                f"A sent {stanzaID} ({sender} -> {target}) on {link.sid}, "
                f"which is not bound there"
            )
        if link.bOpen:
            link.aToB.append(stanzaID)
        else:
            self.lostInTransit.add(stanzaID)

    def _bSent(self, link, element):
        if element.name == "result" and element.uri == NS_DIALBACK:
            binding = (link.sid, (element["from"], element["to"]))
            if element.getAttribute("type") == "valid":
                self.bBound.add(binding)
            else:
                self.bBound.discard(binding)
        elif element.name == "message" and element.getAttribute("type") == "error":
            stanzaID = element.getAttribute("id")
            if stanzaID in self.sent:
                self.rejectedAtB[stanzaID] = (link.sid, stanzaErrorOf(element)[0])
            else:
                self.hostileRejected[stanzaID] = link.sid

    # Steps

    def connect(self):
        """
        Open a connection from A to B.

        @rtype: L{_Link}
        """
        self._sids += 1
        link = _Link(self, f"s{self._sids}")
        self.links.append(link)
        return link

    def send(self, sender, target):
        """
        Hand a fresh message from C{sender} to C{target} to A.

        @return: Its id.
        """
        self._ids += 1
        stanzaID = f"m{self._ids}"
        self.sent[stanzaID] = ((sender, target), self._ids)
        self.step = "send"
        self.a.send(
            stanza(sender=f"romeo@{sender}/r", to=f"juliet@{target}", stanzaID=stanzaID)
        )
        return stanzaID

    def moveBytes(self, link, direction):
        """
        Move what one side of C{link} wrote to the other side.

        @param direction: C{'ab'} or C{'ba'}.
        @return: Whether anything was moved or dropped.
        """
        self.step = "pump"
        if direction == "ab":
            source, sink, sinkOpen = link.a, link.b, link.bOpen
            ids, link.aToB = link.aToB, []
        else:
            source, sink, sinkOpen = link.b, link.a, link.aOpen
        data = source.transport.value()
        source.transport.clear()
        if not data:
            return False
        # A transport told to lose its connection reads no more.
        if not sinkOpen or sink.transport.disconnecting:
            if direction == "ab":
                self.lostInTransit.update(ids)
            return True
        self.receiving = link.sid
        try:
            sink.dataReceived(data)
        finally:
            self.receiving = None
        return True

    def pump(self):
        """
        Move bytes both ways on every connection until nothing moves. A side
        that drops its connection (after a stream error) closes it for both.
        """
        moved = True
        while moved:
            moved = False
            for link in list(self.links):
                for direction in ("ab", "ba"):
                    moved = self.moveBytes(link, direction) or moved
                for side, direction in (("a", "ab"), ("b", "ba")):
                    xs = getattr(link, side)
                    if getattr(link, side + "Open") and xs.transport.disconnecting:
                        self.moveBytes(link, direction)
                        self.close(link, first=side)
                        moved = True
                        break

    def quiescent(self):
        """
        @return: Whether no bytes are in flight.
        """
        return not any(
            link.a.transport.value() or link.b.transport.value() for link in self.links
        )

    def closeSide(self, link, side):
        """
        One side of C{link} sees the connection close. Bytes in flight
        either way are dropped.
        """
        if not getattr(link, side + "Open"):
            return
        self.step = "close"
        self.lostInTransit.update(link.aToB)
        link.aToB = []
        link.a.transport.clear()
        link.b.transport.clear()
        setattr(link, side + "Open", False)
        getattr(link, side).connectionLost(Failure(ierror.ConnectionDone()))
        if side == "b":
            self.bBound = {(sid, pair) for sid, pair in self.bBound if sid != link.sid}
        if not (link.aOpen or link.bOpen):
            self.links.remove(link)

    def close(self, link, first="a"):
        """
        Close C{link} on both sides, C{first} first.
        """
        self.closeSide(link, first)
        self.closeSide(link, "b" if first == "a" else "a")

    def revoke(self, sid, local, remote):
        """
        B revokes C{remote} -> C{local} on C{sid}.

        @return: What L{StreamAuthorization.revoke} returned.
        """
        self.step = "revoke"
        self.revoked.add((sid, (local, remote)))
        return self.b.streams[sid].revoke(local, remote)

    def inject(self, link, sender, target):
        """
        A hostile peer writes a message straight into B's side of C{link}.

        @return: Whether B delivered it.
        """
        self._hostile += 1
        # The addresses A uses, so that the filter may have seen them.
        raw = stanza(
            sender=f"romeo@{sender}/r", to=f"juliet@{target}",
            stanzaID=f"h{self._hostile}",
        ).toXml()
        before = len(self.hostileDelivered)
        self.injectRaw(link, raw)
        return len(self.hostileDelivered) > before

    def injectRequest(self, link, sender, target):
        """
        A hostile peer asks B for a pair on C{link}, behind A's back.
        """
        self.injectRaw(link, resultElement(sender, target).toXml())

    def injectRaw(self, link, raw):
        """
        Feed C{raw} XML to B's side of C{link}, bypassing A.
        """
        self.step = "inject"
        link.b.dataReceived(raw.encode("utf-8"))

    def advance(self, seconds):
        """
        Let time pass.
        """
        self.step = "clock"
        self.clock.advance(seconds)

    def releaseChecks(self):
        """
        Answer B's held delegation checks.
        """
        self.step = "release"
        self.checker.release()

    # Checks

    def checkAlways(self):
        """
        What holds after every step, bytes in flight or not.
        """
        assert not self.violations, "\n".join(self.violations)
        for server in (self.a, self.b):
            server.tables.checkInvariants()
        actual = _bindings(self.b.tables.incoming)
        assert actual == self.bBound, (
            f"B's incoming bindings are {sorted(actual)}, its answers say "
            f"{sorted(self.bBound)}"
        )
        for link in self.links:
            for side, server in (("a", self.a), ("b", self.b)):
                if not getattr(link, side + "Open"):
                    self.assertGone(server, link.sid)
        for local, remote in _pairs(self.b.tables.incoming):
            assert remote in DELEGATED, f"{remote} -> {local} is bound at B"
            assert local in TARGETS, f"{remote} -> {local} is bound at B"
        for sender, target in _pairs(self.a.tables.outgoing):
            assert sender in DELEGATED, f"{sender} -> {target} is bound at A"
        assert not len(self.a.tables.incoming), "A accepts stanzas on one-way streams"
        assert not len(self.b.tables.outgoing), "B sends on one-way streams"

    def assertGone(self, server, sid):
        """
        Nothing of stream C{sid} remains on C{server}.
        """
        tables = server.tables
        assert sid not in tables.connections, f"{sid} still in the connections"
        assert sid not in tables.outgoing.boundStreams(), f"{sid} still bound out"
        assert sid not in tables.incoming.boundStreams(), f"{sid} still bound in"
        assert sid not in server.streams, f"{sid} still in Federation.streams"

    def checkQuiescent(self):
        """
        What holds when no bytes are in flight: every message is accounted
        for exactly once, or waits on a request that can still be answered or
        time out; A sends only what B accepts on fully open connections.
        """
        pending = {}
        for link in self.links:
            if link.aOpen:
                for pair in link.aAuth._asked:
                    pending.setdefault(pair, []).append(link)
        waiting = set()
        for (sender, target), queue in self.a._waiting.items():
            assert queue, f"empty queue for {sender} -> {target}"
            waiting.update(element["id"] for element in queue)
            links = pending.get((sender, target))
            assert links, f"{len(queue)} stanzas wait for {sender} -> {target}, unasked"
            for link in links:
                # Unanswered only if B has gone or is still checking.
                assert not link.bOpen or (target, sender) in link.bAuth._checking, (
                    f"{sender} -> {target} unanswered on {link!r}"
                )
                assert link.aAuth._timers[(sender, target)].active()
        for link in self.links:
            if link.aOpen and link.aAuth.acks is not None:
                waiting.update(element["id"] for element in link.aAuth.acks.unacked)
        for stanzaID in self.sent:
            outcomes = self.outcomes(stanzaID)
            if stanzaID in waiting:
                outcomes.append("waiting")
            self.checkOutcome(stanzaID, outcomes)
        for link in self.links:
            if link.aOpen and link.bOpen:
                for sender, target in self.a.tables.outgoing.pairs(link.sid):
                    assert (link.sid, (target, sender)) in self.bBound, (
                        f"A sends {sender} -> {target} on {link.sid}, B does "
                        f"not accept it"
                    )

    def outcomes(self, stanzaID):
        """
        @return: What became of a message so far, as a list of names.
        """
        outcomes = []
        if stanzaID in self.delivered:
            outcomes.append("delivered")
        if stanzaID in self.bounced:
            outcomes.append("bounced")
        if stanzaID in self.lostInTransit:
            outcomes.append("lost in transit")
        if stanzaID in self.rejectedAtB:
            outcomes.append("rejected at B")
        if stanzaID in self.refusedByB:
            outcomes.append("refused by B")
        return outcomes

    def checkOutcome(self, stanzaID, outcomes):
        """
        One message has exactly one allowed outcome; with acknowledgements,
        at least one that settles it, or it waits to be sent (again). B
        refuses A's messages only on a pair it revoked, and the sender hears
        of it.
        """
        (sender, target), _ = self.sent[stanzaID]
        for refusals in (self.rejectedAtB, self.refusedByB):
            if stanzaID in refusals:
                sid, condition = refusals[stanzaID]
                assert (sid, (target, sender)) in self.revoked, (
                    f"{stanzaID} rejected at B on {sid} ({condition}) without a "
                    f"revocation"
                )
        if self.acks:
            if set(outcomes) & {"delivered", "bounced", "refused by B", "waiting"}:
                return
            assert "rejected at B" in outcomes, (
                f"{stanzaID}: {outcomes}, though acknowledgements are on"
            )
        else:
            assert len(outcomes) == 1, f"{stanzaID}: {outcomes}"
        if "rejected at B" in outcomes:
            sid, condition = self.rejectedAtB[stanzaID]
            raise AssertionError(
                f"{stanzaID} ({sender} -> {target}) sent on {sid} just as B "
                f"revoked it: rejected at B ({condition}), the sender never told"
            )

    def finish(self):
        """
        Close everything, let every timer run, and check that the accounting
        is exact.
        """
        self.pump()
        for link in list(self.links):
            self.close(link)
        self.releaseChecks()
        self.advance(2 * TIMEOUT)
        self.checkAlways()
        assert not self.a._waiting, f"still waiting: {self.a._waiting}"
        assert not self.clock.getDelayedCalls(), self.clock.getDelayedCalls()
        for server in (self.a, self.b):
            assert not server.streams, server.streams
            assert not len(server.tables.connections)
            assert not len(server.tables.outgoing)
            assert not len(server.tables.incoming)
        for stanzaID in self.sent:
            self.checkOutcome(stanzaID, self.outcomes(stanzaID))


def _bindings(table):
    """
    Every (stream id, (local, remote)) binding of a binding table.
    """
    return {(sid, pair) for sid in table.boundStreams() for pair in table.pairs(sid)}


def _pairs(table):
    """
    Every (local, remote) pair bound in a binding table.
    """
    return {pair for sid, pair in _bindings(table)}


#: Hostile elements that are no plain message: what B should make of them.
_BAD = {
    "no from": (
        "<message xmlns='jabber:server' to='juliet@b1.tld' id='hbad'/>",
        "closed",
    ),
    "bad jid": (
        "<message xmlns='jabber:server' from='romeo@@a1.tld' to='juliet@b1.tld' "
        "id='hbad'/>",
        "open",
    ),
    # The addresses A uses for a1 -> b1, which the filter may have accepted.
    "client namespace": (
        "<message xmlns='jabber:client' from='romeo@a1.tld/r' to='juliet@b1.tld' "
        "id='hbad'/>",
        "closed",
    ),
}


class FederationModel(RuleBasedStateMachine):
    """
    Random sequences of what can happen between A and B; see the module
    docstring.
    """

    #: Whether B offers acknowledgements; see L{TwoServers.acks}.
    acks = False

    def __init__(self):
        super().__init__()
        self.servers = TwoServers(acks=self.acks)

    def _openLinks(self):
        """
        The links whose B side is open and reading.
        """
        return [
            link for link in self.servers.links
            if link.bOpen and not link.b.transport.disconnecting
        ]

    def _open(self, index):
        """
        One of L{_openLinks}.
        """
        links = self._openLinks()
        return links[index % len(links)]

    def _anyOpen(self):
        return bool(self._openLinks())

    @initialize(count=st.integers(0, 2))
    def connectSome(self, count):
        for _ in range(count):
            self.servers.connect()

    @precondition(lambda self: len(self.servers.links) < 3)
    @rule()
    def connect(self):
        self.servers.connect()

    @precondition(lambda self: self.servers.links)
    @rule(index=st.integers(0, 2), first=st.sampled_from("ab"),
          both=st.booleans(), graceful=st.booleans())
    def close(self, index, first, both, graceful):
        if graceful:
            self.servers.pump()
            if not self.servers.links:
                return
        link = self.servers.links[index % len(self.servers.links)]
        if both:
            self.servers.close(link, first)
        else:
            self.servers.closeSide(link, first)

    @rule(sender=st.sampled_from(SENDERS), to=st.sampled_from(TARGETS),
          settle=st.booleans())
    def send(self, sender, to, settle):
        self.servers.send(sender, to)
        if settle:
            self.servers.pump()

    @precondition(lambda self: len(self.servers.b.tables.incoming))
    @rule(index=st.integers(0, 11), settle=st.booleans())
    def revoke(self, index, settle):
        incoming = self.servers.b.tables.incoming
        bindings = sorted(_bindings(incoming))
        sid, (local, remote) = bindings[index % len(bindings)]
        assert self.servers.revoke(sid, local, remote)
        assert not incoming.accepts(sid, local, remote)
        if settle:
            self.servers.pump()

    @precondition(_anyOpen)
    @rule(index=st.integers(0, 11), sender=st.sampled_from(SENDERS + ("evil.tld",)),
          to=st.sampled_from(TARGETS),
          aim=st.sampled_from(["anything", "bound", "revoked"]))
    def inject(self, index, sender, to, aim):
        """
        Inject for a random pair on a random stream, or aim at what B has
        bound or revoked: the filter may have seen those addresses.
        """
        link = self._open(index)
        byID = {link.sid: link for link in self._openLinks()}
        aims = sorted(
            (sid, pair)
            for sid, pair in {
                "anything": (), "bound": self.servers.bBound,
                "revoked": self.servers.revoked,
            }[aim]
            if sid in byID
        )
        if aims:
            sid, (to, sender) = aims[index % len(aims)]
            link = byID[sid]
        bound = (link.sid, (to, sender)) in self.servers.bBound
        rejected = link.bAuth.filter.rejected
        delivered = self.servers.inject(link, sender, to)
        assert delivered == bound, (link.sid, sender, to, bound)
        assert link.bAuth.filter.rejected == rejected + (not bound)

    @precondition(_anyOpen)
    @rule(index=st.integers(0, 2), sender=st.sampled_from(SENDERS),
          to=st.sampled_from(TARGETS))
    def injectRequest(self, index, sender, to):
        self.servers.injectRequest(self._open(index), sender, to)

    @precondition(_anyOpen)
    @rule(index=st.integers(0, 2), kind=st.sampled_from(sorted(_BAD)))
    def injectBad(self, index, kind):
        link = self._open(index)
        raw, expected = _BAD[kind]
        self.servers.injectRaw(link, raw)
        assert link.b.transport.disconnecting == (expected == "closed")
        self.servers.pump()
        stillOpen = link in self.servers.links and link.bOpen
        # With acknowledgements, B counts the injected stanza as handled: A
        # then finds more acknowledged than it sent, and closes the stream.
        assert stillOpen == (expected == "open") or (self.acks and not stillOpen)

    @precondition(lambda self: not self.servers.checker.paused)
    @rule()
    def holdChecks(self):
        self.servers.checker.paused = True

    @precondition(lambda self: self.servers.checker.paused)
    @rule()
    def releaseChecks(self):
        self.servers.releaseChecks()

    @rule(seconds=st.sampled_from([1.0, TIMEOUT / 2, TIMEOUT + 1]))
    def advance(self, seconds):
        self.servers.advance(seconds)

    @precondition(lambda self: self.servers.links)
    @rule(index=st.integers(0, 2), direction=st.sampled_from(["ab", "ba"]))
    def moveBytes(self, index, direction):
        self.servers.moveBytes(
            self.servers.links[index % len(self.servers.links)], direction
        )

    @rule()
    def pump(self):
        self.servers.pump()

    @invariant()
    def always(self):
        self.servers.checkAlways()

    @invariant()
    def whenQuiescent(self):
        if self.servers.quiescent():
            self.servers.checkQuiescent()

    def teardown(self):
        try:
            self.servers.finish()
        finally:
            self.servers.stop()


class AcksFederationModel(FederationModel):
    """
    L{FederationModel} with acknowledgements on every connection.
    """

    acks = True


def _settings(examples):
    return settings(
        max_examples=examples,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow],
    )


class FederationModelTests(SynchronousTestCase):
    """
    L{FederationModel} run as a property test.
    """

    def test_model(self):
        """
        Whatever the order of connections, sends, revocations, hostile
        injections, closes, held checks and timeouts: B delivers only bound
        pairs and never a3's, and every message A accepted is delivered once
        and in order, bounced once with the condition of its cause, or lost
        with its connection.
        """
        run_state_machine_as_test(FederationModel, settings=_settings(examples(200)))

    def test_modelWithAcks(self):
        """
        With acknowledgements, no message is lost with a connection: each is
        delivered at least once (at most once per stream) or bounced.
        """
        run_state_machine_as_test(AcksFederationModel, settings=_settings(examples(100)))


class _TwoServersMixin:
    """
    A L{TwoServers} for each test, whose bookkeeping must be clean at the end.
    """

    def setUp(self):
        self.servers = TwoServers()
        self.addCleanup(self.servers.stop)

    def assertClean(self):
        """
        Nothing broke a safety property and, with no bytes in flight, every
        message is accounted for.
        """
        self.servers.checkAlways()
        self.assertTrue(self.servers.quiescent())
        self.servers.checkQuiescent()

    def bounceOf(self, stanzaID):
        """
        @return: The condition A bounced C{stanzaID} with, or L{None}.
        """
        return self.servers.bounced.get(stanzaID, (None, None))[0]


class TwoServerTests(_TwoServersMixin, SynchronousTestCase):
    """
    The end-to-end flow of section 6 between two real L{Federation}s.
    """

    def test_grant(self):
        """
        A message for a delegated pair waits for one C{<db:result/>} exchange,
        then goes out; both sides bind the pair to the stream in their own
        direction, B records the Delegated Domain Name, and later messages
        need no new request.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        self.assertEqual(
            b"<result xmlns='jabber:server:dialback' from='a1.tld' to='b1.tld'/>",
            link.a.transport.value(),
        )
        self.assertEqual({}, servers.delivered)
        servers.pump()
        self.assertEqual({"m1": link.sid}, servers.delivered)
        self.assertEqual(link.sid, servers.a.tables.route("a1.tld", "b1.tld"))
        self.assertTrue(servers.b.tables.accepts(link.sid, "b1.tld", "a1.tld"))
        self.assertEqual(
            frozenset(["a1.tld"]),
            servers.b.tables.connections.get(link.sid).delegatedNames,
        )
        servers.send("a1.tld", "b1.tld")
        self.assertIn(b"id='m2'", link.a.transport.value())
        servers.pump()
        self.assertEqual(["a1.tld"], servers.checker.checked)
        self.assertEqual({"m1": link.sid, "m2": link.sid}, servers.delivered)
        self.assertClean()

    def test_queuedInOrder(self):
        """
        Messages sent while their pair is being authorized go out together
        and in order once it is granted; another pair is asked for apart.
        """
        servers = self.servers
        link = servers.connect()
        for target in ("b1.tld", "b2.tld", "b1.tld", "b2.tld"):
            servers.send("a1.tld", target)
        servers.pump()
        self.assertEqual(
            ["m1", "m3", "m2", "m4"],
            sorted(servers.delivered, key=lambda i: (servers.sent[i][0], i)),
        )
        self.assertEqual(
            {("a1.tld", "b1.tld"), ("a1.tld", "b2.tld")},
            servers.a.tables.outgoing.pairs(link.sid),
        )
        self.assertClean()

    def test_refusalBounces(self):
        """
        B refuses a3, which is not delegated to A's server name: A bounces
        every waiting message with C{<not-authorized/>}, neither side binds
        the pair, and the connection stays usable for other pairs.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a3.tld", "b1.tld")
        servers.send("a3.tld", "b1.tld")
        servers.pump()
        self.assertEqual("not-authorized", self.bounceOf("m1"))
        self.assertEqual("not-authorized", self.bounceOf("m2"))
        self.assertEqual({}, servers.delivered)
        self.assertFalse(servers.b.tables.incoming.isBound("b1.tld", "a3.tld"))
        self.assertIsNone(servers.a.tables.route("a3.tld", "b1.tld"))
        self.assertEqual({}, servers.a._waiting)
        servers.send("a2.tld", "b1.tld")
        servers.pump()
        self.assertEqual({"m3": link.sid}, servers.delivered)
        self.assertClean()

    def test_targetNotHosted(self):
        """
        A request for a target B does not host is refused with
        C{<item-not-found/>}, and A bounces with C{<not-authorized/>}.
        """
        servers = self.servers
        link = servers.connect()
        d = link.aAuth.request("a1.tld", "elsewhere.tld")
        servers.pump()
        failure = self.failureResultOf(d)
        self.assertEqual("item-not-found", failure.value.condition)
        self.assertFalse(len(servers.b.tables.incoming))

    def test_revocationThenRerequest(self):
        """
        After B revokes a pair and A has read the revocation, A no longer
        routes it; the next message asks again, is granted, and goes out.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertTrue(servers.revoke(link.sid, "b1.tld", "a1.tld"))
        self.assertFalse(servers.b.tables.accepts(link.sid, "b1.tld", "a1.tld"))
        servers.pump()
        self.assertIsNone(servers.a.tables.route("a1.tld", "b1.tld"))
        servers.send("a1.tld", "b1.tld")
        self.assertIn(b"<result", link.a.transport.value())
        servers.pump()
        self.assertEqual({"m1": link.sid, "m2": link.sid}, servers.delivered)
        self.assertEqual(["a1.tld", "a1.tld"], servers.checker.checked)
        self.assertClean()

    def test_closeMidRequestRetries(self):
        """
        When the connection carrying a request closes before the answer, A
        asks again on another connection and the waiting message goes there.
        """
        servers = self.servers
        first = servers.connect()
        second = servers.connect()
        servers.send("a1.tld", "b1.tld")
        self.assertIn(b"<result", first.a.transport.value())
        servers.close(first, "b")
        self.assertIn(b"<result", second.a.transport.value())
        servers.pump()
        self.assertEqual({"m1": second.sid}, servers.delivered)
        servers.assertGone(servers.a, first.sid)
        servers.assertGone(servers.b, first.sid)
        self.assertClean()

    def test_closeMidRequestNoOtherConnection(self):
        """
        When the connection carrying a request closes and no other is open,
        the waiting messages bounce with C{<remote-server-not-found/>}.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.close(link, "a")
        self.assertEqual("remote-server-not-found", self.bounceOf("m1"))
        self.assertEqual({}, servers.a._waiting)
        self.assertClean()

    def test_noConnection(self):
        """
        With no connection to B, a message bounces at once with
        C{<remote-server-not-found/>}.
        """
        self.servers.send("a1.tld", "b1.tld")
        self.assertEqual("remote-server-not-found", self.bounceOf("m1"))
        self.assertClean()

    def test_unansweredRequestTimesOut(self):
        """
        When B is gone but A has not noticed, the request goes unanswered and
        the waiting messages bounce with C{<remote-server-timeout/>} once the
        request times out.
        """
        servers = self.servers
        link = servers.connect()
        servers.closeSide(link, "b")
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.advance(TIMEOUT - 1)
        self.assertEqual({}, servers.bounced)
        self.assertClean()
        servers.advance(1)
        self.assertEqual("remote-server-timeout", self.bounceOf("m1"))
        self.assertEqual({}, servers.a._waiting)
        self.assertEqual([], servers.clock.getDelayedCalls())

    def test_closeRemovesEverything(self):
        """
        Closing a connection removes every trace of it on both sides.
        """
        servers = self.servers
        link = servers.connect()
        for sender in ("a1.tld", "a2.tld"):
            servers.send(sender, "b1.tld")
        servers.pump()
        self.assertEqual(2, len(servers.b.tables.incoming))
        servers.close(link)
        for server in (servers.a, servers.b):
            servers.assertGone(server, link.sid)
            self.assertEqual({}, server.streams)
        self.assertClean()

    def test_hostileUnboundNotDelivered(self):
        """
        Stanzas a hostile peer writes into a stream are delivered only for
        pairs bound to that stream: otherwise B answers C{<not-authorized/>},
        with C{<invalid-connection/>} when the pair is bound elsewhere.
        """
        servers = self.servers
        first = servers.connect()
        second = servers.connect()
        self.assertFalse(servers.inject(first, "a1.tld", "b1.tld"))
        reply = first.b.transport.value()
        self.assertIn(b"<not-authorized", reply)
        self.assertNotIn(NS_DNA_ERRORS.encode("ascii"), reply)
        first.b.transport.clear()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertFalse(servers.inject(second, "a1.tld", "b1.tld"))
        self.assertIn(NS_DNA_ERRORS.encode("ascii"), second.b.transport.value())
        self.assertTrue(servers.inject(first, "a1.tld", "b1.tld"))
        self.assertFalse(servers.inject(first, "a3.tld", "b1.tld"))
        self.assertEqual(["h3"], servers.hostileDelivered)

    def test_hostileAfterRevocation(self):
        """
        Once B has revoked a pair on a stream, stanzas for it written there
        are rejected, although the same addresses were accepted before.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertTrue(servers.inject(link, "a1.tld", "b1.tld"))
        servers.revoke(link.sid, "b1.tld", "a1.tld")
        self.assertFalse(servers.inject(link, "a1.tld", "b1.tld"))

    def test_streamErrorClosesBothSides(self):
        """
        A stanza without 'from' makes B close the stream with a stream error;
        both sides then forget it, and waiting requests move on.
        """
        servers = self.servers
        link = servers.connect()
        other = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.injectRaw(link, _BAD["no from"][0])
        servers.pump()
        self.assertNotIn(link, servers.links)
        for server in (servers.a, servers.b):
            servers.assertGone(server, link.sid)
        self.assertEqual({"m1": other.sid}, servers.delivered)
        self.assertClean()

    def test_heldCheckThenClose(self):
        """
        A stream that closes while B checks a delegation leaves nothing
        behind when the check completes, and A asks again elsewhere.
        """
        servers = self.servers
        link = servers.connect()
        other = servers.connect()
        servers.checker.paused = True
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual({("b1.tld", "a1.tld")}, link.bAuth._checking)
        self.assertClean()
        servers.close(link)
        servers.pump()
        servers.releaseChecks()
        servers.pump()
        servers.assertGone(servers.b, link.sid)
        self.assertEqual({"m1": other.sid}, servers.delivered)
        self.assertClean()

    def test_acksResendAfterLoss(self):
        """
        With acknowledgements, a message written to a connection B has left
        is sent again on another connection once A sees the loss.
        """
        servers = TwoServers(acks=True)
        self.addCleanup(servers.stop)
        first = servers.connect()
        second = servers.connect()
        servers.pump()
        servers.closeSide(first, "b")
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual({}, servers.delivered)
        servers.closeSide(first, "a")
        servers.pump()
        self.assertEqual({"m1": second.sid}, servers.delivered)
        servers.advance(1)
        servers.pump()
        self.assertEqual([], list(second.aAuth.acks.unacked))
        servers.checkAlways()
        servers.checkQuiescent()

    def test_revocationRaceBounces(self):
        """
        A message A sends on a pair B has just revoked, before A has read the
        revocation, is dropped by B, and B's error reply reaches A's router:
        the sender hears of it.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.revoke(link.sid, "b1.tld", "a1.tld")
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual(["refused by B"], servers.outcomes("m2"))
        self.assertEqual((link.sid, "not-authorized"), servers.refusedByB["m2"])
        self.assertClean()

    def test_revocationRaceWithAcks(self):
        """
        With acknowledgements, B counts the message it dropped in the
        revocation race as handled, so A lets go of it: the error reply is
        still what tells the sender.
        """
        servers = TwoServers(acks=True)
        self.addCleanup(servers.stop)
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.revoke(link.sid, "b1.tld", "a1.tld")
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.advance(1)
        servers.pump()
        self.assertEqual([], list(link.aAuth.acks.unacked))
        self.assertEqual(["refused by B"], servers.outcomes("m2"))

    def test_lateGrantBinds(self):
        """
        B's grant of a request that timed out at A still binds the pair at A:
        the next message goes out without a new request.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.advance(TIMEOUT)
        self.assertEqual("remote-server-timeout", self.bounceOf("m1"))
        servers.pump()
        self.assertEqual(link.sid, servers.a.tables.route("a1.tld", "b1.tld"))
        servers.send("a1.tld", "b1.tld")
        self.assertNotIn(b"<result", link.a.transport.value())
        servers.pump()
        self.assertEqual({"m2": link.sid}, servers.delivered)
        self.assertClean()

    def test_seenAddressesDoNotSkipNamespaceCheck(self):
        """
        A stanza in the client namespace closes the stream with
        C{<invalid-namespace/>} and is not delivered, even when the filter
        has accepted stanzas with the same addresses before.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.injectRaw(link, _BAD["client namespace"][0])
        self.assertEqual([], servers.hostileDelivered)
        self.assertTrue(link.b.transport.disconnecting)

    def test_finishAccounting(self):
        """
        L{TwoServers.finish} closes everything, runs every timer and accepts
        an exact accounting.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        servers.closeSide(link, "b")
        servers.send("a1.tld", "b1.tld")
        servers.send("a1.tld", "b2.tld")
        servers.finish()
        self.assertEqual(
            [["delivered"], ["lost in transit"], ["bounced"]],
            [servers.outcomes(i) for i in ("m1", "m2", "m3")],
        )
        self.assertEqual("remote-server-not-found", self.bounceOf("m3"))

    def test_revocationCrossingRequest(self):
        """
        A revocation of a pair A does not know is bound, crossing A's own
        request for it, is not taken for a refusal: B's refusals carry an
        C{<error/>}, revocations do not, and B grants the request right after.

        Here B bound the pair on a request A did not make (written on A's
        side of the stream), so A ignored the grant as unsolicited.
        """
        servers = self.servers
        link = servers.connect()
        servers.injectRequest(link, "a1.tld", "b1.tld")
        servers.pump()
        self.assertIsNone(servers.a.tables.route("a1.tld", "b1.tld"))
        servers.revoke(link.sid, "b1.tld", "a1.tld")
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertIsNone(self.bounceOf("m1"))
        self.assertEqual({"m1": link.sid}, servers.delivered)
        self.assertClean()

    def test_unrelatedErrorNotDelivered(self):
        """
        On a stream A opened (one-way, no bidi), an error stanza for a pair A
        neither sends on nor asks for is discarded (section 4: a stanza whose
        pair is not bound on the connection MUST be discarded), although its
        sender is a domain the peer represents.
        """
        servers = self.servers
        link = servers.connect()
        servers.send("a1.tld", "b1.tld")
        servers.pump()
        link.a.dataReceived(
            b"<message xmlns='jabber:server' type='error' from='juliet@b1.tld' "
            b"to='nurse@a2.tld' id='never-sent'><body>click here</body>"
            b"<error type='cancel'><undefined-condition "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        # A's deliver records what it is handed that is no bounce of A's own.
        self.assertEqual([], servers.violations)
