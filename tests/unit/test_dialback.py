"""
Tests for L{dna.core.authorization}: the C{<db:result/>} exchange of section 6.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.core.authorization import StreamAuthorization, errorFromResult, resultElement
from dna.core.tables import INCOMING, OUTGOING, Tables
from dna.error import AuthorizationRefused, ConnectionLost, DNAError, RequestTimedOut
from dna.namespaces import NS_DIALBACK
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import close, makeStream, receive, stanza


def result(sender, target, resultType=None, condition=None):
    """
    A C{<db:result/>} as the peer would send it.
    """
    from twisted.words.protocols.jabber.error import StanzaError

    stanzaError = StanzaError(condition) if condition else None
    return resultElement(sender, target, resultType, stanzaError)


def results(xs):
    """
    The C{<db:result/>} elements a stream sent, as (from, to, type, condition).
    """
    return [
        (e["from"], e["to"], e.getAttribute("type"), errorFromResult(e)[0])
        for e in xs.output
        if isinstance(e, domish.Element) and (e.uri, e.name) == (NS_DIALBACK, "result")
    ]


class AuthorizationTestMixin:
    """
    A stream between xmpp1.originating.tld and xmpp1.receiving.tld.
    """

    initiating = False
    bidi = False

    def setUp(self):
        self.clock = Clock()
        self.tables = Tables()
        self.checker = FakeDelegationChecker(
            {"sender.tld": {"xmpp1.originating.tld"}, "other.tld": {"elsewhere.tld"}}
        )
        self.xs = makeStream("s1")
        self.delivered = []
        self.xs.addObserver("/message", self.delivered.append)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.authorization = self.attach(self.xs)

    def attach(self, xs, **kw):
        options = dict(
            initiating=self.initiating,
            serverNames=["xmpp1.originating.tld"],
            bidi=self.bidi,
            clock=self.clock,
        )
        options.update(kw)
        return StreamAuthorization(
            xs, self.tables, frozenset(["target.tld", "target2.tld"]), self.checker, **options
        )


class ReceivingTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    The Receiving Server's steps 1-5 on a stream the peer opened.
    """

    def test_connectionRecorded(self):
        """
        The stream's row holds the peer's server names and no delegated name.
        """
        row = self.tables.connections.get("s1")
        self.assertEqual({"xmpp1.originating.tld"}, set(row.serverNames))
        self.assertEqual(set(), set(row.delegatedNames))

    def test_grant(self):
        """
        A request for a hosted target from a sender delegated to the peer's
        server name is bound, recorded and answered C{valid}; its stanzas then
        pass the filter.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual([("target.tld", "sender.tld", "valid", None)], results(self.xs))
        self.assertTrue(self.tables.incoming.accepts("s1", "target.tld", "sender.tld"))
        self.assertIn("sender.tld", self.tables.connections.get("s1").delegatedNames)
        receive(self.xs, stanza())
        self.assertEqual(1, len(self.delivered))
        self.tables.checkInvariants()

    def test_grantIsOneWay(self):
        """
        A granted pair does not let us send on the stream, nor authorize the
        reverse pair.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertFalse(self.tables.isBound(OUTGOING, "target.tld", "sender.tld"))
        self.assertFalse(self.tables.incoming.accepts("s1", "sender.tld", "target.tld"))

    def test_notHosted(self):
        """
        Step 2: a target we do not host is answered C{invalid} with
        C{<item-not-found/>}, without a delegation check.
        """
        receive(self.xs, result("sender.tld", "elsewhere.tld"))
        self.assertEqual(
            [("elsewhere.tld", "sender.tld", "invalid", "item-not-found")],
            results(self.xs),
        )
        self.assertEqual([], self.checker.checked)
        self.assertEqual(0, len(self.tables.incoming))

    def test_notDelegated(self):
        """
        Step 3: a sender not delegated to the peer's server names is answered
        C{invalid} with C{<not-authorized/>}.
        """
        receive(self.xs, result("other.tld", "target.tld"))
        self.assertEqual(
            [("target.tld", "other.tld", "invalid", "not-authorized")], results(self.xs)
        )
        self.assertEqual(0, len(self.tables.incoming))

    def test_insecureRefusedByDefault(self):
        """
        An insecure delegation is refused under the checker's policy.
        """
        self.checker.insecure.add("sender.tld")
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual("invalid", results(self.xs)[0][2])

    def test_checkerFailure(self):
        """
        A checker that fails answers C{invalid} with
        C{<remote-server-timeout/>}; the failure is logged, nothing is bound.
        """
        self.checker.isDelegated = lambda domain, names: 1 / 0
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual(
            [("target.tld", "sender.tld", "invalid", "remote-server-timeout")],
            results(self.xs),
        )
        self.assertEqual(1, len(self.flushLoggedErrors(ZeroDivisionError)))
        self.assertEqual(0, len(self.tables.incoming))

    def test_duplicateCoalesced(self):
        """
        Requests for a pair whose check is pending cause one check and one
        answer.
        """
        self.checker.paused = True
        for _ in range(5):
            receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual(["sender.tld"], self.checker.checked)
        self.checker.release()
        self.assertEqual(1, len(results(self.xs)))

    def test_alreadyBound(self):
        """
        A request for a pair already bound here is answered C{valid} at once.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual(["valid", "valid"], [r[2] for r in results(self.xs)])
        self.assertEqual(1, len(self.checker.checked))

    def test_pendingLimit(self):
        """
        More pending requests than the limit is a C{<policy-violation/>}
        stream error.
        """
        self.xs = makeStream("s2")
        self.attach(self.xs, maxPending=3)
        self.checker.paused = True
        self.checker.delegations.update(
            {"s%d.tld" % i: {"xmpp1.originating.tld"} for i in range(4)}
        )
        for i in range(3):
            receive(self.xs, result("s%d.tld" % i, "target.tld"))
        self.assertEqual([], self.xs.streamErrors)
        receive(self.xs, result("s3.tld", "target.tld"))
        self.assertEqual(["policy-violation"], [e.condition for e in self.xs.streamErrors])

    def test_streamClosedDuringCheck(self):
        """
        A check that completes after the stream closed binds nothing and
        answers nothing.
        """
        self.checker.paused = True
        receive(self.xs, result("sender.tld", "target.tld"))
        close(self.xs)
        self.checker.release()
        self.assertEqual([], results(self.xs))
        self.assertNotIn("s1", self.tables.connections)
        self.assertEqual(0, len(self.tables.incoming))
        self.tables.checkInvariants()

    def test_revoke(self):
        """
        Revoking a granted pair unbinds it, tells the peer with C{invalid},
        and rejects the pair's stanzas that follow.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        receive(self.xs, stanza())
        self.assertTrue(self.authorization.revoke("target.tld", "sender.tld"))
        self.assertEqual(("target.tld", "sender.tld", "invalid", None), results(self.xs)[-1])
        receive(self.xs, stanza())
        self.assertEqual(1, len(self.delivered))
        self.assertFalse(self.authorization.revoke("target.tld", "sender.tld"))

    def test_badAddress(self):
        """
        A C{<db:result/>} with a malformed address is an
        C{<improper-addressing/>} stream error.
        """
        receive(self.xs, "<db:result from='a..b' to='target.tld'/>")
        self.assertEqual(["improper-addressing"], [e.condition for e in self.xs.streamErrors])

    def test_unknownType(self):
        """
        A C{<db:result/>} of an unknown type is a C{<bad-format/>} stream
        error.
        """
        receive(self.xs, "<db:result from='sender.tld' to='target.tld' type='maybe'/>")
        self.assertEqual(["bad-format"], [e.condition for e in self.xs.streamErrors])

    def test_cannotRequestOnOneWayStream(self):
        """
        Without bidi we cannot ask on a stream the peer opened.
        """
        self.failureResultOf(
            self.authorization.request("target.tld", "sender.tld"), DNAError
        )

    def test_closeRemovesEverything(self):
        """
        Closing the stream removes its row and all its bindings.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        close(self.xs)
        self.assertEqual(0, len(self.tables.connections))
        self.assertEqual(0, len(self.tables.incoming))
        self.tables.checkInvariants()


class OneWayTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    Step 1 on a stream we opened without bidi.
    """

    initiating = True

    def test_requestOnOneWayStream(self):
        """
        A request on a stream we opened, without bidi, closes the stream.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        self.assertEqual(
            ["unsupported-stanza-type"], [e.condition for e in self.xs.streamErrors]
        )
        self.assertEqual([], self.checker.checked)


class BidiTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    With bidi, one stream carries requests both ways.
    """

    initiating = True
    bidi = True

    def test_bothDirections(self):
        """
        On a bidi stream we opened, the peer may ask and we may ask.
        """
        receive(self.xs, result("sender.tld", "target.tld"))
        d = self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.successResultOf(d)
        self.assertTrue(self.tables.incoming.accepts("s1", "target.tld", "sender.tld"))
        self.assertEqual("s1", self.tables.route("target.tld", "sender.tld"))


class OriginatingTests(AuthorizationTestMixin, SynchronousTestCase):
    """
    The Originating Server's steps 1-3 on a stream we opened.
    """

    initiating = True

    def test_requestSent(self):
        """
        L{StreamAuthorization.request} sends C{<db:result/>} with the sender
        as 'from' and the target as 'to', and nothing is bound yet.
        """
        d = self.authorization.request("target.tld", "sender.tld")
        self.assertEqual([("target.tld", "sender.tld", None, None)], results(self.xs))
        self.assertNoResult(d)
        self.assertIsNone(self.tables.route("target.tld", "sender.tld"))

    def test_valid(self):
        """
        A C{valid} answer binds the pair for sending and fires the request.
        """
        d = self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual("s1", self.tables.route("target.tld", "sender.tld"))
        self.assertFalse(self.tables.isBound(INCOMING, "target.tld", "sender.tld"))
        self.tables.checkInvariants()

    def test_invalid(self):
        """
        An C{invalid} answer fails the request with L{AuthorizationRefused}
        carrying the condition; nothing is bound.
        """
        d = self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "invalid", "not-authorized"))
        failure = self.failureResultOf(d, AuthorizationRefused)
        self.assertEqual(
            ("target.tld", "sender.tld", "not-authorized"),
            (failure.value.sender, failure.value.target, failure.value.condition),
        )
        self.assertIsNone(self.tables.route("target.tld", "sender.tld"))

    def test_coalesced(self):
        """
        Requests for a pair already asked for share one C{<db:result/>}, and
        each caller gets its own result.
        """
        d1 = self.authorization.request("target.tld", "sender.tld")
        d2 = self.authorization.request("target.tld", "sender.tld")
        self.assertIsNot(d1, d2)
        self.assertEqual(1, len(results(self.xs)))
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.successResultOf(d1)
        self.successResultOf(d2)

    def test_alreadyBound(self):
        """
        A request for a bound pair succeeds at once without asking.
        """
        self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.successResultOf(self.authorization.request("target.tld", "sender.tld"))
        self.assertEqual(1, len(results(self.xs)))

    def test_timeout(self):
        """
        A request the peer never answers fails with L{RequestTimedOut}.
        """
        d = self.authorization.request("target.tld", "sender.tld")
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.failureResultOf(d, RequestTimedOut)
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_lateGrantTaken(self):
        """
        A grant that arrives after the request timed out binds the pair: the
        peer bound it, and the next stanzas need not ask again.
        """
        d = self.authorization.request("target.tld", "sender.tld")
        self.clock.advance(30)
        self.failureResultOf(d, RequestTimedOut)
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.assertEqual("s1", self.tables.route("target.tld", "sender.tld"))
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.tables.checkInvariants()

    def test_answerCancelsTimer(self):
        """
        An answer cancels the request's timer.
        """
        self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.assertEqual([], self.clock.getDelayedCalls())

    def test_connectionLost(self):
        """
        Losing the stream fails pending requests with L{ConnectionLost},
        removes the stream's row and bindings, and cancels timers.
        """
        self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        d = self.authorization.request("target2.tld", "sender.tld")
        close(self.xs)
        self.failureResultOf(d, ConnectionLost)
        self.assertEqual(0, len(self.tables.outgoing))
        self.assertNotIn("s1", self.tables.connections)
        self.assertEqual([], self.clock.getDelayedCalls())
        self.failureResultOf(
            self.authorization.request("target.tld", "sender.tld"), ConnectionLost
        )

    def test_unsolicitedValidIgnored(self):
        """
        A C{valid} result nobody asked for binds nothing.
        """
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        self.assertIsNone(self.tables.route("target.tld", "sender.tld"))
        self.assertEqual(0, len(self.tables.outgoing))

    def test_revokedByPeer(self):
        """
        An C{invalid} result for a bound pair unbinds it: we must ask again.
        """
        self.authorization.request("target.tld", "sender.tld")
        receive(self.xs, result("sender.tld", "target.tld", "valid"))
        receive(self.xs, result("sender.tld", "target.tld", "invalid"))
        self.assertIsNone(self.tables.route("target.tld", "sender.tld"))
        self.authorization.request("target.tld", "sender.tld")
        self.assertEqual(2, len(results(self.xs)))


class ErrorFromResultTests(SynchronousTestCase):
    """
    Tests for L{errorFromResult}.
    """

    def test_conditionAndText(self):
        """
        The condition and text of the C{<error/>} child are returned.
        """
        from twisted.words.protocols.jabber.error import StanzaError

        element = resultElement(
            "a.tld", "b.tld", "invalid", StanzaError("item-not-found", text="nope")
        )
        self.assertEqual(("item-not-found", "nope"), errorFromResult(element))

    def test_none(self):
        """
        Without an C{<error/>} child, both are L{None}.
        """
        self.assertEqual((None, None), errorFromResult(resultElement("a", "b", "invalid")))
