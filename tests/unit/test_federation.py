"""
Tests for L{dna.app.federation}: routing by the binding table, stanzas waiting
for their pair, bounces.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.app.federation import Federation
from dna.namespaces import NS_DIALBACK
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import close, makeStream, receive, stanza, stanzaErrorOf

REFUSAL = (
    "<db:result from='target.tld' to='sender.tld' type='invalid'>"
    "<error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    "</error></db:result>"
)


def results(xs):
    return [
        (e["from"], e["to"], e.getAttribute("type"))
        for e in xs.output
        if isinstance(e, domish.Element) and (e.uri, e.name) == (NS_DIALBACK, "result")
    ]


def messages(xs):
    return [e["id"] for e in xs.output if isinstance(e, domish.Element) and e.name == "message"]


class FederationTests(SynchronousTestCase):
    """
    The Originating side of L{Federation} over one in-memory stream we
    opened to the Receiving Server of target.tld.
    """

    def setUp(self):
        self.clock = Clock()
        self.delivered = []
        self.federation = Federation(
            ["sender.tld"], FakeDelegationChecker(), self.delivered.append, clock=self.clock
        )
        self.xs = self.open("s1")

    def open(self, streamID):
        xs = makeStream(streamID, us="xmpp1.originating.tld", peer="xmpp1.receiving.tld")
        self.federation.streamAuthenticated(xs, initiating=True, serverNames=["xmpp1.receiving.tld"])
        self.federation.tables.connections.addDelegatedNames(streamID, ["target.tld"])
        return xs

    def grant(self, xs=None):
        receive(xs or self.xs, "<db:result from='target.tld' to='sender.tld' type='valid'/>")

    def send(self, stanzaID, sender="romeo@sender.tld", to="juliet@target.tld", **kw):
        self.federation.send(stanza(sender=sender, to=to, stanzaID=stanzaID, **kw))

    def test_waitThenFlushInOrder(self):
        """
        Stanzas for an unbound pair wait while one C{<db:result/>} is out, and
        go out in order once it is granted; later ones go straight out.
        """
        for i in range(3):
            self.send(str(i))
        self.assertEqual([("sender.tld", "target.tld", None)], results(self.xs))
        self.assertEqual([], messages(self.xs))
        self.grant()
        self.send("3")
        self.assertEqual(["0", "1", "2", "3"], messages(self.xs))
        self.assertEqual([], self.delivered)

    def test_refusedBounces(self):
        """
        A refusal bounces every waiting stanza to its sender with
        C{<not-authorized/>}; the pair is asked again next time.
        """
        self.send("0")
        self.send("1")
        receive(self.xs, REFUSAL)
        self.assertEqual(["0", "1"], [b["id"] for b in self.delivered])
        self.assertEqual({("not-authorized", None)}, {stanzaErrorOf(b) for b in self.delivered})
        self.assertEqual("romeo@sender.tld", self.delivered[0]["to"])
        self.send("2")
        self.assertEqual(2, len(results(self.xs)))

    def test_bareInvalidWhileAskingIsRevocation(self):
        """
        A C{type='invalid'} without C{<error/>} is a revocation, even while we
        ask for the pair: the stanzas keep waiting for the answer.
        """
        self.send("0")
        receive(self.xs, "<db:result from='target.tld' to='sender.tld' type='invalid'/>")
        self.assertEqual([], self.delivered)
        self.grant()
        self.assertEqual(["0"], messages(self.xs))

    def test_notHostedBounce(self):
        """
        A refusal with C{<item-not-found/>} bounces with
        C{<remote-server-not-found/>}.
        """
        self.send("0")
        receive(
            self.xs,
            "<db:result from='target.tld' to='sender.tld' type='invalid'>"
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error></db:result>",
        )
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(self.delivered[0]))

    def test_timeoutBounce(self):
        """
        A request never answered bounces its stanzas with
        C{<remote-server-timeout/>}.
        """
        self.send("0")
        self.clock.advance(30)
        self.assertEqual(("remote-server-timeout", None), stanzaErrorOf(self.delivered[0]))

    def test_errorsNotBounced(self):
        """
        An error stanza that cannot be sent is dropped, not bounced.
        """
        self.send("0", stanzaType="error")
        receive(self.xs, REFUSAL)
        self.assertEqual([], self.delivered)

    def test_queueLimit(self):
        """
        Past the queue limit, new stanzas bounce with
        C{<resource-constraint/>}; those already waiting still go.
        """
        self.federation._queueLimit = 2
        for i in range(3):
            self.send(str(i))
        self.assertEqual(["2"], [b["id"] for b in self.delivered])
        self.assertEqual(("resource-constraint", None), stanzaErrorOf(self.delivered[0]))
        self.grant()
        self.assertEqual(["0", "1"], messages(self.xs))

    def test_noRoute(self):
        """
        A target no stream serves bounces with C{<remote-server-not-found/>}.
        """
        self.send("0", to="x@elsewhere.tld")
        self.assertEqual(("remote-server-not-found", None), stanzaErrorOf(self.delivered[0]))

    def test_badAddress(self):
        """
        A stanza with a malformed address bounces with C{<jid-malformed/>}.
        """
        self.send("0", to="a@@b")
        self.assertEqual(("jid-malformed", None), stanzaErrorOf(self.delivered[0]))

    def test_lostStreamRetriesOnAnother(self):
        """
        When the stream carrying a request dies, the pair is asked for on
        another stream that serves the target, and the stanzas go there.
        """
        self.send("0")
        other = self.open("s2")
        close(self.xs)
        self.assertEqual([("sender.tld", "target.tld", None)], results(other))
        self.grant(other)
        self.assertEqual(["0"], messages(other))
        self.assertEqual([], self.delivered)
        self.assertNotIn("s1", self.federation.streams)
        self.federation.tables.checkInvariants()

    def test_incomingDelivered(self):
        """
        An incoming stanza that passes the filter is handed to C{deliver}
        exactly once.
        """
        self.federation.tables.bind("incoming", "sender.tld", "target.tld", "s1")
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld", stanzaID="in"))
        self.assertEqual(["in"], [s["id"] for s in self.delivered])
