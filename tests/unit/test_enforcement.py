"""
Tests for L{dna.core.enforcement}.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream

from dna.core.enforcement import StanzaFilter
from dna.core.tables import INCOMING, Tables
from dna.namespaces import NS_DNA_ERRORS
from tests.unit.streams import makeStream, receive, stanza, stanzaErrorOf


class StanzaFilterTests(SynchronousTestCase):
    """
    Tests for L{StanzaFilter}: only stanzas whose pair is bound to the stream
    reach the stream's observers.
    """

    def setUp(self):
        self.tables = Tables()
        self.tables.openConnection("s1", ["xmpp1.originating.tld"])
        self.tables.openConnection("s2", ["xmpp2.originating.tld"])
        self.xs = makeStream("s1")
        self.delivered = []
        self.xs.addObserver("/*", self.delivered.append)
        self.filter = StanzaFilter(self.xs, "s1", self.tables.incoming)
        self.filter.install()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def bind(self, local="target.tld", remote="sender.tld", streamID="s1"):
        self.tables.bind(INCOMING, local, remote, streamID)

    def test_boundPairDelivered(self):
        """
        A stanza whose (to, from) domains are bound to this stream reaches the
        observers, every time, and nothing is sent back.
        """
        self.bind()
        receive(self.xs, stanza(stanzaID="1"))
        receive(self.xs, stanza(stanzaID="2"))
        receive(self.xs, stanza(sender="other@sender.tld", stanzaID="3"))
        self.assertEqual(["1", "2", "3"], [s["id"] for s in self.delivered])
        self.assertEqual([], self.xs.output)
        self.assertEqual(0, self.filter.rejected)

    def test_unboundPairNotAuthorized(self):
        """
        A stanza for a pair bound nowhere is dropped and answered with
        C{<not-authorized/>}, addresses swapped and id kept.
        """
        receive(self.xs, stanza(stanzaID="x1"))
        self.assertEqual([], self.delivered)
        [reply] = self.xs.output
        self.assertEqual("error", reply["type"])
        self.assertEqual("juliet@target.tld", reply["from"])
        self.assertEqual("romeo@sender.tld/orchard", reply["to"])
        self.assertEqual("x1", reply["id"])
        self.assertEqual(("not-authorized", None), stanzaErrorOf(reply))
        self.assertEqual(1, self.filter.rejected)
        self.assertEqual(1, len(self.log))

    def test_replyDoesNotEchoPayload(self):
        """
        The error reply does not carry the rejected stanza's payload back.
        """
        receive(self.xs, stanza(body="x" * 1000))
        [reply] = self.xs.output
        self.assertEqual([], list(reply.elements(None, "body")))

    def test_boundElsewhereInvalidConnection(self):
        """
        A stanza for a pair bound only to another stream is answered with
        C{<invalid-connection/>} in L{NS_DNA_ERRORS}.
        """
        self.bind(streamID="s2")
        receive(self.xs, stanza())
        self.assertEqual([], self.delivered)
        [reply] = self.xs.output
        self.assertEqual(
            ("not-authorized", (NS_DNA_ERRORS, "invalid-connection")),
            stanzaErrorOf(reply),
        )

    def test_otherDirectionDoesNotAuthorize(self):
        """
        A binding in the sending direction does not let stanzas in.
        """
        from dna.core.tables import OUTGOING

        self.tables.bind(OUTGOING, "target.tld", "sender.tld", "s1")
        receive(self.xs, stanza())
        self.assertEqual([], self.delivered)

    def test_reversedPairNotAuthorized(self):
        """
        A binding of sender.tld -> target.tld does not authorize
        target.tld -> sender.tld.
        """
        self.bind()
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld"))
        self.assertEqual([], self.delivered)

    def test_everyStanzaKindChecked(self):
        """
        Messages, presences and iqs are all filtered.
        """
        for name in ("message", "presence", "iq"):
            receive(self.xs, stanza(name, stanzaType="get" if name == "iq" else None))
        self.assertEqual([], self.delivered)
        self.assertEqual(3, self.filter.rejected)

    def test_errorNotAnswered(self):
        """
        An unauthorized error stanza is dropped without an answer.
        """
        receive(self.xs, stanza(stanzaType="error"))
        self.assertEqual([], self.delivered)
        self.assertEqual([], self.xs.output)
        self.assertEqual(1, self.filter.rejected)

    def test_missingAddressImproperAddressing(self):
        """
        A stanza without 'from' or 'to' closes the stream with the
        C{<improper-addressing/>} stream error (RFC 6120 section 4.9.3.7).
        """
        self.bind()
        receive(self.xs, stanza(sender=None))
        self.assertEqual([], self.delivered)
        self.assertEqual(
            ["improper-addressing"], [e.condition for e in self.xs.streamErrors]
        )
        self.assertTrue(self.xs.transport.disconnecting)

    def test_malformedAddressJidMalformed(self):
        """
        A stanza with a malformed address is answered with C{<jid-malformed/>}.
        """
        for bad in ("romeo@@sender.tld", "@sender.tld", "romeo@sender..tld", "x/"):
            receive(self.xs, stanza(sender=bad))
        self.assertEqual([], self.delivered)
        self.assertEqual(
            [("jid-malformed", None)] * 4,
            [stanzaErrorOf(reply) for reply in self.xs.output],
        )

    def test_wrongNamespaceClosesStream(self):
        """
        A stanza in the client namespace on a server stream is an
        C{<invalid-namespace/>} stream error, never delivered.
        """
        self.bind()
        receive(
            self.xs,
            "<message xmlns='jabber:client' from='r@sender.tld' to='j@target.tld'/>",
        )
        self.assertEqual([], self.delivered)
        self.assertEqual(
            ["invalid-namespace"], [e.condition for e in self.xs.streamErrors]
        )

    def test_wrongNamespaceAfterSameAddresses(self):
        """
        The memory of accepted addresses does not let a stanza in another
        namespace through.
        """
        self.bind()
        receive(self.xs, stanza(sender="r@sender.tld", to="j@target.tld"))
        receive(self.xs, "<message xmlns='jabber:client' from='r@sender.tld' to='j@target.tld'/>")
        self.assertEqual(1, len(self.delivered))
        self.assertEqual(["invalid-namespace"], [e.condition for e in self.xs.streamErrors])

    def test_errorReplyWithoutBinding(self):
        """
        An error stanza answering a stanza we sent (as told by C{isReply})
        passes without a binding. Other stanzas for that pair, errors with
        other ids, and errors for other pairs, do not.
        """
        xs = makeStream("s1")
        delivered = []
        xs.addObserver("/*", delivered.append)
        replies = {("target.tld", "sender.tld", "e")}
        StanzaFilter(
            xs, "s1", self.tables.incoming,
            isReply=lambda local, remote, stanzaID: (local, remote, stanzaID) in replies,
        ).install()
        receive(xs, stanza(stanzaType="error", stanzaID="e"))
        receive(xs, stanza(stanzaType="error", stanzaID="never-sent"))
        receive(xs, stanza(stanzaID="m"))
        receive(xs, stanza(sender="x@elsewhere.tld", stanzaType="error", stanzaID="f"))
        self.assertEqual(["e"], [e["id"] for e in delivered])

    def test_nonStanzaPasses(self):
        """
        Elements that are not stanzas, such as C{<db:result/>}, pass the
        filter untouched.
        """
        receive(
            self.xs,
            "<db:result from='sender.tld' to='target.tld'/>",
        )
        self.assertEqual(["result"], [e.name for e in self.delivered])

    def test_normalizedDomains(self):
        """
        Addresses are compared by their normalised domain parts.
        """
        self.bind()
        receive(self.xs, stanza(sender="Romeo@SENDER.tld/x", to="juliet@Target.TLD"))
        self.assertEqual(1, len(self.delivered))

    def test_forgetAfterUnbind(self):
        """
        After a binding is removed and the filter told to forget, the pair's
        stanzas are rejected again although they were accepted before.
        """
        self.bind()
        receive(self.xs, stanza())
        self.tables.unbind(INCOMING, "target.tld", "sender.tld", "s1")
        self.filter.forget()
        receive(self.xs, stanza())
        self.assertEqual(1, len(self.delivered))
        self.assertEqual(1, self.filter.rejected)

    def test_cacheBounded(self):
        """
        The memory of accepted address pairs never grows past its bound.
        """
        xs = makeStream("s1")
        small = StanzaFilter(xs, "s1", self.tables.incoming, cacheSize=3)
        small.install()
        self.bind()
        for i in range(10):
            receive(xs, stanza(sender="user%d@sender.tld" % (i,)))
            self.assertLessEqual(len(small._accepted), 3)

    def test_survivesStreamRestart(self):
        """
        The filter stays in front of the observers after the stream is reset
        (as after STARTTLS).
        """
        self.xs.reset()
        self.xs.dataReceived(
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        )
        receive(self.xs, stanza())
        self.assertEqual([], self.delivered)
        self.assertEqual(1, self.filter.rejected)

    def test_installNeedsFilteringStream(self):
        """
        A stream that does not consult a stanza filter cannot get one: the
        filter would silently let everything through.
        """
        xs = xmlstream.XmlStream(xmlstream.Authenticator())
        self.assertRaises(TypeError, StanzaFilter(xs, "s1", self.tables.incoming).install)

    def test_uninstall(self):
        """
        After L{StanzaFilter.uninstall} the stream dispatches everything again.
        """
        self.filter.uninstall()
        receive(self.xs, stanza())
        self.assertEqual(1, len(self.delivered))
