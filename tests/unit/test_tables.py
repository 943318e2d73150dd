"""
Tests for L{dna.core.tables}.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from twisted.trial.unittest import SynchronousTestCase

from dna.core.tables import (
    INCOMING,
    OUTGOING,
    BindingTable,
    ClosedConnection,
    Connection,
    ConnectionTable,
    Tables,
)
from dna.error import UnknownConnection
from tests.unit import examples


class ConnectionTableTests(SynchronousTestCase):
    """
    Tests for L{ConnectionTable}.
    """

    def setUp(self):
        self.table = ConnectionTable()

    def test_open(self):
        """
        L{ConnectionTable.open} returns a new L{Connection} with the given
        server names and no delegated names, retrievable with
        L{ConnectionTable.get}.
        """
        connection = self.table.open("s1", ["xmpp1.provider.example"])
        self.assertIsInstance(connection, Connection)
        self.assertEqual(connection.streamID, "s1")
        self.assertEqual(connection.serverNames, {"xmpp1.provider.example"})
        self.assertEqual(connection.delegatedNames, set())
        self.assertIs(self.table.get("s1"), connection)
        self.table.checkInvariants()

    def test_openWithoutServerNames(self):
        """
        A connection may be opened before any name is authenticated.
        """
        connection = self.table.open("s1")
        self.assertEqual(connection.serverNames, frozenset())

    def test_openTwice(self):
        """
        Opening a stream id that is already open raises L{ValueError} and
        leaves the existing row alone.
        """
        connection = self.table.open("s1", ["a.example"])
        self.assertRaises(ValueError, self.table.open, "s1", ["b.example"])
        self.assertIs(self.table.get("s1"), connection)
        self.assertEqual(connection.serverNames, {"a.example"})
        self.assertEqual(self.table.streamsForServerName("b.example"), ())
        self.table.checkInvariants()

    def test_openNone(self):
        """
        L{None} is not a stream id.
        """
        self.assertRaises(ValueError, self.table.open, None)

    def test_openBareString(self):
        """
        A bare string for the server names is refused rather than taken as a
        set of one-letter names.
        """
        self.assertRaises(TypeError, self.table.open, "s1", "a.example")
        self.assertNotIn("s1", self.table)

    def test_containerProtocol(self):
        """
        The table contains, counts and iterates over the stream ids of open
        connections, in opening order.
        """
        self.table.open("s2")
        self.table.open("s1")
        self.assertIn("s1", self.table)
        self.assertNotIn("s3", self.table)
        self.assertEqual(len(self.table), 2)
        self.assertEqual(list(self.table), ["s2", "s1"])

    def test_getUnknown(self):
        """
        L{ConnectionTable.get} returns L{None} for a stream that is not open.
        """
        self.assertIsNone(self.table.get("s1"))

    def test_close(self):
        """
        L{ConnectionTable.close} removes the row and returns it.
        """
        connection = self.table.open("s1", ["a.example"])
        self.assertIs(self.table.close("s1"), connection)
        self.assertNotIn("s1", self.table)
        self.assertEqual(len(self.table), 0)
        self.table.checkInvariants()

    def test_closeUnknown(self):
        """
        Closing a stream that is not open returns L{None}.
        """
        self.assertIsNone(self.table.close("s1"))

    def test_addServerNames(self):
        """
        L{ConnectionTable.addServerNames} adds to the names of the row and to
        the server name index.
        """
        connection = self.table.open("s1", ["a.example"])
        self.table.addServerNames("s1", ["b.example", "a.example"])
        self.assertEqual(connection.serverNames, {"a.example", "b.example"})
        self.assertEqual(self.table.streamsForServerName("b.example"), ("s1",))
        self.table.checkInvariants()

    def test_addDelegatedNames(self):
        """
        L{ConnectionTable.addDelegatedNames} adds to the delegated names of
        the row and leaves the server names alone.
        """
        connection = self.table.open("s1", ["a.example"])
        self.table.addDelegatedNames("s1", ["capulet.example"])
        self.table.addDelegatedNames("s1", {"montague.example"})
        self.assertEqual(
            connection.delegatedNames, {"capulet.example", "montague.example"}
        )
        self.assertEqual(connection.serverNames, {"a.example"})
        self.assertEqual(self.table.streamsForServerName("capulet.example"), ())
        self.table.checkInvariants()

    def test_addNamesUnknown(self):
        """
        Adding names to a stream that is not open raises L{UnknownConnection}
        carrying the stream id.
        """
        for add in (self.table.addServerNames, self.table.addDelegatedNames):
            error = self.assertRaises(UnknownConnection, add, "s1", ["a.example"])
            self.assertEqual(error.streamID, "s1")

    def test_namesAreImmutable(self):
        """
        The name sets of a row cannot be changed behind the index's back.
        """
        connection = self.table.open("s1", ["a.example"])
        self.assertRaises(AttributeError, getattr, connection.serverNames, "add")
        self.assertRaises(
            AttributeError, getattr, connection.delegatedNames, "add"
        )

    def test_streamsForServerName(self):
        """
        L{ConnectionTable.streamsForServerName} lists the streams that
        authenticated a name, in opening order, and forgets closed ones.
        """
        self.table.open("XXX", ["xmpp1.provider.example"])
        self.table.open("YYY", ["xmpp1.provider.example", "paris.example"])
        self.table.open("AAA", ["paris.example"])
        self.assertEqual(
            self.table.streamsForServerName("xmpp1.provider.example"),
            ("XXX", "YYY"),
        )
        self.assertEqual(
            self.table.streamsForServerName("paris.example"), ("YYY", "AAA")
        )
        self.table.close("YYY")
        self.assertEqual(
            self.table.streamsForServerName("xmpp1.provider.example"), ("XXX",)
        )
        self.assertEqual(
            self.table.streamsForServerName("paris.example"), ("AAA",)
        )
        self.table.close("AAA")
        self.assertEqual(self.table.streamsForServerName("paris.example"), ())
        self.assertNotIn("paris.example", self.table._byServerName)
        self.table.checkInvariants()

    def test_checkInvariantsStaleIndex(self):
        """
        L{ConnectionTable.checkInvariants} catches an index entry for a name
        no open connection has.
        """
        self.table.open("s1", ["a.example"])
        self.table._byServerName["b.example"] = {"s1": None}
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("b.example", str(error))

    def test_checkInvariantsMissingIndex(self):
        """
        L{ConnectionTable.checkInvariants} catches a name set changed without
        updating the index.
        """
        connection = self.table.open("s1", ["a.example"])
        connection.serverNames = frozenset(["a.example", "b.example"])
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("b.example", str(error))


class BindingTableTests(SynchronousTestCase):
    """
    Tests for L{BindingTable}, using the example tables of section 4.
    """

    def setUp(self):
        self.table = BindingTable()

    def bindExample(self):
        """
        Bind the rows of the section 4 example.
        """
        for local, remote, streams in [
            ("montague.example", "capulet.example", ["XXX", "YYY"]),
            ("laurence.example", "capulet.example", ["AAA"]),
            ("laurence.example", "paris.example", ["YYY", "AAA"]),
        ]:
            for streamID in streams:
                self.assertTrue(self.table.bind(local, remote, streamID))

    def test_empty(self):
        """
        An empty table routes nothing, accepts nothing and has no bindings.
        """
        self.assertIsNone(self.table.route("a.example", "b.example"))
        self.assertFalse(self.table.accepts("s1", "a.example", "b.example"))
        self.assertFalse(self.table.isBound("a.example", "b.example"))
        self.assertEqual(self.table.streams("a.example", "b.example"), ())
        self.assertEqual(self.table.pairs("s1"), frozenset())
        self.assertEqual(len(self.table), 0)
        self.table.checkInvariants()

    def test_route(self):
        """
        L{BindingTable.route} returns the first stream of the row: a stanza
        from montague.example to capulet.example goes on XXX.
        """
        self.bindExample()
        self.assertEqual(
            self.table.route("montague.example", "capulet.example"), "XXX"
        )
        self.assertEqual(
            self.table.route("laurence.example", "capulet.example"), "AAA"
        )
        self.assertEqual(
            self.table.route("laurence.example", "paris.example"), "YYY"
        )
        self.assertIsNone(self.table.route("capulet.example", "montague.example"))

    def test_accepts(self):
        """
        L{BindingTable.accepts} is true only for a stream listed in the row.
        """
        self.bindExample()
        accepts = self.table.accepts
        montague, capulet = "montague.example", "capulet.example"
        laurence = "laurence.example"
        self.assertTrue(accepts("XXX", montague, capulet))
        self.assertTrue(accepts("YYY", montague, capulet))
        self.assertFalse(accepts("AAA", montague, capulet))
        self.assertTrue(accepts("AAA", laurence, capulet))
        self.assertFalse(accepts("XXX", laurence, capulet))
        self.assertFalse(accepts("XXX", capulet, montague))

    def test_acceptsNone(self):
        """
        A missing row does not accept a stream id of L{None}.
        """
        self.assertFalse(self.table.accepts(None, "a.example", "b.example"))

    def test_streamsOrder(self):
        """
        Streams are listed in the order they were bound; binding again does
        not move a stream.
        """
        for streamID in ["s3", "s1", "s2"]:
            self.table.bind("a.example", "b.example", streamID)
        self.assertFalse(self.table.bind("a.example", "b.example", "s3"))
        self.assertFalse(self.table.bind("a.example", "b.example", "s1"))
        self.assertEqual(
            self.table.streams("a.example", "b.example"), ("s3", "s1", "s2")
        )
        self.assertEqual(self.table.route("a.example", "b.example"), "s3")
        self.assertEqual(len(self.table), 3)
        self.table.checkInvariants()

    def test_bindTwice(self):
        """
        Binding a pair already bound on the stream returns C{False} and
        changes nothing.
        """
        self.assertTrue(self.table.bind("a.example", "b.example", "s1"))
        self.assertFalse(self.table.bind("a.example", "b.example", "s1"))
        self.assertEqual(self.table.streams("a.example", "b.example"), ("s1",))
        self.assertEqual(len(self.table), 1)
        self.table.checkInvariants()

    def test_bindNone(self):
        """
        L{None} cannot be bound: it would be indistinguishable from no route.
        """
        self.assertRaises(ValueError, self.table.bind, "a.example", "b.example", None)

    def test_pairsAreOrdered(self):
        """
        The pair is (local, remote): swapping them is another row.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.assertFalse(self.table.isBound("b.example", "a.example"))
        self.assertFalse(self.table.accepts("s1", "b.example", "a.example"))

    def test_tupleStreamIDs(self):
        """
        Stream ids that are tuples are not mistaken for rows of several
        streams.
        """
        first, second = ("s", 1), ("s", 2)
        self.table.bind("a.example", "b.example", first)
        self.assertEqual(self.table.route("a.example", "b.example"), first)
        self.assertTrue(self.table.accepts(first, "a.example", "b.example"))
        self.assertFalse(self.table.accepts("s", "a.example", "b.example"))
        self.table.bind("a.example", "b.example", second)
        self.assertEqual(self.table.route("a.example", "b.example"), first)
        self.assertEqual(
            self.table.streams("a.example", "b.example"), (first, second)
        )
        self.table.checkInvariants()

    def test_unbind(self):
        """
        L{BindingTable.unbind} removes the stream from the row, keeping the
        order of the others.
        """
        for streamID in ["s1", "s2", "s3"]:
            self.table.bind("a.example", "b.example", streamID)
        self.assertTrue(self.table.unbind("a.example", "b.example", "s1"))
        self.assertEqual(self.table.streams("a.example", "b.example"), ("s2", "s3"))
        self.assertEqual(self.table.route("a.example", "b.example"), "s2")
        self.assertFalse(self.table.accepts("s1", "a.example", "b.example"))
        self.assertEqual(self.table.pairs("s1"), frozenset())
        self.assertEqual(len(self.table), 2)
        self.table.checkInvariants()

    def test_unbindLast(self):
        """
        The row disappears when its last stream is unbound.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table.bind("a.example", "b.example", "s2")
        self.assertTrue(self.table.unbind("a.example", "b.example", "s2"))
        self.assertTrue(self.table.unbind("a.example", "b.example", "s1"))
        self.assertFalse(self.table.isBound("a.example", "b.example"))
        self.assertIsNone(self.table.route("a.example", "b.example"))
        self.assertEqual(self.table._rows, {})
        self.assertEqual(self.table._pairs, {})
        self.assertEqual(len(self.table), 0)
        self.table.checkInvariants()

    def test_unbindNotBound(self):
        """
        Unbinding a pair not bound on the stream returns C{False} and leaves
        other streams' bindings alone.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.assertFalse(self.table.unbind("a.example", "b.example", "s2"))
        self.assertFalse(self.table.unbind("a.example", "c.example", "s1"))
        self.assertFalse(self.table.unbind("b.example", "a.example", "s1"))
        self.assertEqual(self.table.streams("a.example", "b.example"), ("s1",))
        self.assertEqual(len(self.table), 1)
        self.table.checkInvariants()

    def test_pairs(self):
        """
        L{BindingTable.pairs} returns the pairs bound on a stream.
        """
        self.bindExample()
        self.assertEqual(
            self.table.pairs("YYY"),
            {
                ("montague.example", "capulet.example"),
                ("laurence.example", "paris.example"),
            },
        )
        self.assertIsInstance(self.table.pairs("YYY"), frozenset)

    def test_removeStream(self):
        """
        L{BindingTable.removeStream} removes the stream from exactly its own
        rows, in binding order, and leaves the other streams in place.
        """
        self.bindExample()
        removed = self.table.removeStream("YYY")
        self.assertEqual(
            removed,
            [
                ("montague.example", "capulet.example"),
                ("laurence.example", "paris.example"),
            ],
        )
        self.assertEqual(
            self.table.streams("montague.example", "capulet.example"), ("XXX",)
        )
        self.assertEqual(
            self.table.streams("laurence.example", "paris.example"), ("AAA",)
        )
        self.assertEqual(
            self.table.streams("laurence.example", "capulet.example"), ("AAA",)
        )
        self.assertEqual(self.table.pairs("YYY"), frozenset())
        self.assertEqual(len(self.table), 3)
        self.table.checkInvariants()

    def test_removeStreamLastInRow(self):
        """
        Rows left empty by L{BindingTable.removeStream} disappear.
        """
        self.bindExample()
        self.table.removeStream("AAA")
        self.assertFalse(self.table.isBound("laurence.example", "capulet.example"))
        self.assertEqual(
            self.table.route("laurence.example", "paris.example"), "YYY"
        )
        self.table.checkInvariants()

    def test_removeStreamUnknown(self):
        """
        Removing a stream without bindings returns an empty list.
        """
        self.bindExample()
        self.assertEqual(self.table.removeStream("BBB"), [])
        self.assertEqual(len(self.table), 5)

    def test_checkInvariantsRowWithoutReverse(self):
        """
        L{BindingTable.checkInvariants} catches a row listing a stream the
        reverse index does not know.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table._rows[("a.example", "c.example")] = "s2"
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("c.example", str(error))

    def test_checkInvariantsReverseWithoutRow(self):
        """
        L{BindingTable.checkInvariants} catches a reverse index entry without
        its row.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table.bind("a.example", "b.example", "s2")
        del self.table._rows[("a.example", "b.example")]
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("b.example", str(error))

    def test_checkInvariantsDuplicate(self):
        """
        L{BindingTable.checkInvariants} catches a stream listed twice in a row.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table.bind("a.example", "b.example", "s2")
        row = self.table._rows[("a.example", "b.example")]
        self.table._rows[("a.example", "b.example")] = row.__class__(row + ("s1",))
        self.table._count += 1
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("twice", str(error))

    def test_checkInvariantsEmptyRow(self):
        """
        L{BindingTable.checkInvariants} catches an empty row.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table.bind("a.example", "b.example", "s2")
        row = self.table._rows[("a.example", "b.example")]
        self.table._rows[("a.example", "c.example")] = row.__class__()
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("c.example", str(error))

    def test_checkInvariantsEmptyReverse(self):
        """
        L{BindingTable.checkInvariants} catches an empty reverse index entry.
        """
        self.table._pairs["s1"] = {}
        error = self.assertRaises(AssertionError, self.table.checkInvariants)
        self.assertIn("s1", str(error))

    def test_checkInvariantsCount(self):
        """
        L{BindingTable.checkInvariants} catches a wrong binding count.
        """
        self.table.bind("a.example", "b.example", "s1")
        self.table._count = 2
        self.assertRaises(AssertionError, self.table.checkInvariants)


class TablesTests(SynchronousTestCase):
    """
    Tests for L{Tables}.
    """

    def setUp(self):
        self.tables = Tables()

    def tearDown(self):
        self.tables.checkInvariants()

    def test_openConnection(self):
        """
        L{Tables.openConnection} adds a row to the connection table.
        """
        connection = self.tables.openConnection("s1", ["xmpp1.provider.example"])
        self.assertIs(self.tables.connections.get("s1"), connection)
        self.assertEqual(connection.serverNames, {"xmpp1.provider.example"})

    def test_openConnectionTwice(self):
        """
        Opening a stream twice raises L{ValueError}.
        """
        self.tables.openConnection("s1")
        self.assertRaises(ValueError, self.tables.openConnection, "s1")

    def test_bindUnknown(self):
        """
        Binding on a stream that is not open raises L{UnknownConnection} and
        binds nothing.
        """
        for direction in (OUTGOING, INCOMING):
            error = self.assertRaises(
                UnknownConnection,
                self.tables.bind,
                direction,
                "a.example",
                "b.example",
                "s1",
            )
            self.assertEqual(error.streamID, "s1")
            self.assertFalse(self.tables.isBound(direction, "a.example", "b.example"))

    def test_bindUnknownDirection(self):
        """
        A direction other than L{OUTGOING} and L{INCOMING} is refused.
        """
        self.tables.openConnection("s1")
        for method in (self.tables.bind, self.tables.unbind):
            self.assertRaises(
                ValueError, method, "sideways", "a.example", "b.example", "s1"
            )
        self.assertRaises(
            ValueError, self.tables.isBound, "sideways", "a.example", "b.example"
        )
        self.assertRaises(
            ValueError, self.tables.isBound, [], "a.example", "b.example"
        )

    def test_bindReturnsNew(self):
        """
        L{Tables.bind} returns whether the binding is new.
        """
        self.tables.openConnection("s1")
        self.assertTrue(self.tables.bind(OUTGOING, "a.example", "b.example", "s1"))
        self.assertFalse(self.tables.bind(OUTGOING, "a.example", "b.example", "s1"))

    def test_bindDoesNotDelegate(self):
        """
        Binding in either direction leaves the connection's delegated names
        alone; callers record them explicitly.
        """
        connection = self.tables.openConnection("s1", ["xmpp.provider.example"])
        self.tables.bind(INCOMING, "target.example", "sender.example", "s1")
        self.tables.bind(OUTGOING, "sender.example", "target.example", "s1")
        self.assertEqual(connection.delegatedNames, frozenset())

    def test_outgoing(self):
        """
        An L{OUTGOING} binding routes stanzas but does not authorize
        receiving them.
        """
        self.tables.openConnection("s1")
        sender, target = "sender.example", "target.example"
        self.tables.bind(OUTGOING, sender, target, "s1")
        self.assertEqual(self.tables.route(sender, target), "s1")
        self.assertTrue(self.tables.isBound(OUTGOING, sender, target))
        self.assertFalse(self.tables.accepts("s1", sender, target))
        self.assertFalse(self.tables.accepts("s1", target, sender))
        self.assertFalse(self.tables.isBound(INCOMING, sender, target))
        self.assertFalse(self.tables.isBound(INCOMING, target, sender))

    def test_incoming(self):
        """
        An L{INCOMING} binding accepts stanzas but does not route any.
        """
        self.tables.openConnection("s1")
        target, sender = "target.example", "sender.example"
        self.tables.bind(INCOMING, target, sender, "s1")
        self.assertTrue(self.tables.accepts("s1", target, sender))
        self.assertFalse(self.tables.accepts("s2", target, sender))
        self.assertIsNone(self.tables.route(target, sender))
        self.assertIsNone(self.tables.route(sender, target))
        self.assertFalse(self.tables.isBound(OUTGOING, target, sender))
        self.assertFalse(self.tables.isBound(OUTGOING, sender, target))

    def test_routeAndAcceptsAreTheTables(self):
        """
        L{Tables.route} and L{Tables.accepts} are the binding tables' own
        methods, bound once.
        """
        self.assertEqual(self.tables.route, self.tables.outgoing.route)
        self.assertEqual(self.tables.accepts, self.tables.incoming.accepts)

    def test_unbind(self):
        """
        L{Tables.unbind} revokes a binding in one direction only.
        """
        self.tables.openConnection("s1")
        self.tables.bind(OUTGOING, "a.example", "b.example", "s1")
        self.tables.bind(INCOMING, "a.example", "b.example", "s1")
        self.assertTrue(self.tables.unbind(INCOMING, "a.example", "b.example", "s1"))
        self.assertFalse(self.tables.unbind(INCOMING, "a.example", "b.example", "s1"))
        self.assertFalse(self.tables.accepts("s1", "a.example", "b.example"))
        self.assertEqual(self.tables.route("a.example", "b.example"), "s1")

    def test_unbindUnknown(self):
        """
        Unbinding on a stream that is not open returns C{False}.
        """
        self.assertFalse(self.tables.unbind(OUTGOING, "a.example", "b.example", "s1"))

    def test_closeConnection(self):
        """
        L{Tables.closeConnection} removes the stream's row and exactly its own
        bindings, in both directions, and returns them.
        """
        mine = self.tables.openConnection("s1", ["xmpp1.provider.example"])
        self.tables.openConnection("s2", ["xmpp1.provider.example"])
        self.tables.bind(OUTGOING, "a.example", "b.example", "s1")
        self.tables.bind(OUTGOING, "a.example", "b.example", "s2")
        self.tables.bind(OUTGOING, "a.example", "c.example", "s1")
        self.tables.bind(OUTGOING, "a.example", "d.example", "s2")
        self.tables.bind(INCOMING, "a.example", "c.example", "s2")
        self.tables.bind(INCOMING, "a.example", "b.example", "s1")

        closed = self.tables.closeConnection("s1")

        self.assertIsInstance(closed, ClosedConnection)
        self.assertEqual(
            closed,
            (
                mine,
                [("a.example", "b.example"), ("a.example", "c.example")],
                [("a.example", "b.example")],
            ),
        )
        self.assertIs(closed.connection, mine)
        self.assertEqual(
            closed.outgoing, [("a.example", "b.example"), ("a.example", "c.example")]
        )
        self.assertEqual(closed.incoming, [("a.example", "b.example")])
        self.assertNotIn("s1", self.tables.connections)
        self.assertEqual(
            self.tables.connections.streamsForServerName("xmpp1.provider.example"),
            ("s2",),
        )
        self.assertEqual(self.tables.route("a.example", "b.example"), "s2")
        self.assertIsNone(self.tables.route("a.example", "c.example"))
        self.assertEqual(self.tables.route("a.example", "d.example"), "s2")
        self.assertFalse(self.tables.accepts("s1", "a.example", "b.example"))
        self.assertFalse(self.tables.isBound(INCOMING, "a.example", "b.example"))
        self.assertTrue(self.tables.accepts("s2", "a.example", "c.example"))
        self.assertEqual(self.tables.outgoing.pairs("s1"), frozenset())
        self.assertEqual(self.tables.incoming.pairs("s1"), frozenset())
        self.assertEqual(len(self.tables.outgoing), 2)
        self.assertEqual(len(self.tables.incoming), 1)

    def test_closeConnectionUnknown(self):
        """
        Closing a stream that is not open returns L{None}.
        """
        self.assertIsNone(self.tables.closeConnection("s1"))

    def test_reopenAfterClose(self):
        """
        A closed stream id can be opened again, with none of its old names or
        bindings.
        """
        self.tables.openConnection("s1", ["a.example"])
        self.tables.bind(OUTGOING, "a.example", "b.example", "s1")
        self.tables.closeConnection("s1")
        connection = self.tables.openConnection("s1")
        self.assertEqual(connection.serverNames, frozenset())
        self.assertIsNone(self.tables.route("a.example", "b.example"))

    def test_checkInvariantsBindingOnClosedStream(self):
        """
        L{Tables.checkInvariants} catches a binding left on a stream that is
        not open.
        """
        self.tables.openConnection("s1")
        self.tables.bind(INCOMING, "a.example", "b.example", "s1")
        self.tables.connections.close("s1")
        error = self.assertRaises(AssertionError, self.tables.checkInvariants)
        self.assertIn("s1", str(error))
        self.assertIn("incoming", str(error))
        self.tables.incoming.removeStream("s1")

    def test_checkInvariantsCorruptedTable(self):
        """
        L{Tables.checkInvariants} checks the binding tables and the connection
        table themselves too.
        """
        self.tables.openConnection("s1", ["a.example"])
        self.tables.outgoing._rows[("a.example", "b.example")] = "s1"
        self.assertRaises(AssertionError, self.tables.checkInvariants)
        del self.tables.outgoing._rows[("a.example", "b.example")]
        self.tables.connections._byServerName["a.example"]["s2"] = None
        self.assertRaises(AssertionError, self.tables.checkInvariants)
        del self.tables.connections._byServerName["a.example"]["s2"]


_STREAM_IDS = ["s1", "s2", "s3"]
_DOMAINS = ["a.example", "b.example"]
_PAIRS = [(local, remote) for local in _DOMAINS for remote in _DOMAINS]

_streamIDs = st.sampled_from(_STREAM_IDS)
_domains = st.sampled_from(_DOMAINS)
_names = st.frozensets(_domains, max_size=2)
_directions = st.sampled_from([OUTGOING, INCOMING])


class TablesMachine(RuleBasedStateMachine):
    """
    L{Tables} against a reference model: a dict of open streams to server
    names, and per direction a dict of pairs to lists of streams.

    Few stream ids and domains, so that rows with several streams, closing
    bound streams and reopening ids happen often; every lookup of every pair
    is compared after each step.
    """

    def __init__(self):
        super().__init__()
        self.tables = Tables()
        self.connections = {}
        self.bindings = {OUTGOING: {}, INCOMING: {}}

    def modelStreams(self, direction, local, remote):
        """
        @return: The model's list of streams for the pair (not a copy).
        """
        return self.bindings[direction].get((local, remote), [])

    @initialize(
        names=st.lists(_names, min_size=2, max_size=2),
        bindings=st.lists(
            st.tuples(_directions, _domains, _domains, st.sampled_from(["s1", "s2"])),
            max_size=12,
        ),
    )
    def start(self, names, bindings):
        """
        Start with two open streams and some bindings on them, so that rows of
        several streams are common from the first step.
        """
        for streamID, serverNames in zip(["s1", "s2"], names):
            self.tables.openConnection(streamID, serverNames)
            self.connections[streamID] = set(serverNames)
        for direction, local, remote, streamID in bindings:
            self.tables.bind(direction, local, remote, streamID)
            streams = self.bindings[direction].setdefault((local, remote), [])
            if streamID not in streams:
                streams.append(streamID)

    def drawStream(self, data, wanted):
        """
        Draw a stream id, usually one for which C{wanted(streamID)} holds
        (when there is one) so that most steps do something.

        @return: A stream id from C{_STREAM_IDS}.
        """
        likely = [streamID for streamID in _STREAM_IDS if wanted(streamID)]
        if likely and data.draw(st.integers(0, 3)) != 3:
            return data.draw(st.sampled_from(likely))
        return data.draw(_streamIDs)

    @rule(data=st.data(), names=_names)
    def openConnection(self, data, names):
        """
        Open a stream, or fail to open one already open.
        """
        streamID = self.drawStream(data, lambda s: s not in self.connections)
        if streamID in self.connections:
            try:
                self.tables.openConnection(streamID, names)
            except ValueError:
                return
            raise AssertionError("opened twice")
        connection = self.tables.openConnection(streamID, names)
        assert connection.serverNames == names
        self.connections[streamID] = set(names)

    @rule(data=st.data())
    def closeConnection(self, data):
        """
        Close a stream, open or not, removing it from every row of the model.
        """
        streamID = self.drawStream(data, lambda s: s in self.connections)
        closed = self.tables.closeConnection(streamID)
        if streamID not in self.connections:
            assert closed is None
            return
        assert closed.connection.serverNames == self.connections.pop(streamID)
        for direction, removed in [
            (OUTGOING, closed.outgoing),
            (INCOMING, closed.incoming),
        ]:
            expected = []
            rows = self.bindings[direction]
            for pair, streams in list(rows.items()):
                if streamID in streams:
                    expected.append(pair)
                    streams.remove(streamID)
                    if not streams:
                        del rows[pair]
            assert sorted(removed) == sorted(expected), (removed, expected)

    @rule(data=st.data(), names=_names)
    def addServerNames(self, data, names):
        """
        Add server names to a stream, failing if it is not open.
        """
        streamID = self.drawStream(data, lambda s: s in self.connections)
        if streamID not in self.connections:
            try:
                self.tables.connections.addServerNames(streamID, names)
            except UnknownConnection:
                return
            raise AssertionError("added names to a stream that is not open")
        self.tables.connections.addServerNames(streamID, names)
        self.connections[streamID] |= names

    @rule(data=st.data(), direction=_directions, local=_domains, remote=_domains)
    def bind(self, data, direction, local, remote):
        """
        Bind a pair on a stream, appending it to the model's row, or fail if
        the stream is not open.
        """
        streamID = self.drawStream(data, lambda s: s in self.connections)
        if streamID not in self.connections:
            try:
                self.tables.bind(direction, local, remote, streamID)
            except UnknownConnection:
                return
            raise AssertionError("bound a stream that is not open")
        new = self.tables.bind(direction, local, remote, streamID)
        streams = self.bindings[direction].setdefault((local, remote), [])
        assert new == (streamID not in streams)
        if new:
            streams.append(streamID)

    @rule(direction=_directions, local=_domains, remote=_domains, streamID=_streamIDs)
    def unbind(self, direction, local, remote, streamID):
        """
        Unbind a pair from a stream, bound or not.
        """
        removed = self.tables.unbind(direction, local, remote, streamID)
        streams = self.modelStreams(direction, local, remote)
        assert removed == (streamID in streams)
        if removed:
            streams.remove(streamID)
            if not streams:
                del self.bindings[direction][(local, remote)]

    @invariant()
    def lookups(self):
        """
        C{route}, C{accepts}, C{isBound} and C{streams} agree with the model
        for every pair and stream.
        """
        for local, remote in _PAIRS:
            outgoing = self.modelStreams(OUTGOING, local, remote)
            incoming = self.modelStreams(INCOMING, local, remote)
            assert self.tables.route(local, remote) == (
                outgoing[0] if outgoing else None
            )
            for streamID in _STREAM_IDS:
                assert self.tables.accepts(streamID, local, remote) == (
                    streamID in incoming
                )
            for direction, table, streams in [
                (OUTGOING, self.tables.outgoing, outgoing),
                (INCOMING, self.tables.incoming, incoming),
            ]:
                assert table.streams(local, remote) == tuple(streams)
                assert self.tables.isBound(direction, local, remote) == bool(
                    streams
                )

    @invariant()
    def consistent(self):
        """
        The tables keep their own invariants, and their contents, counts and
        reverse indexes agree with the model.
        """
        self.tables.checkInvariants()
        assert set(self.tables.connections) == set(self.connections)
        for streamID, names in self.connections.items():
            assert self.tables.connections.get(streamID).serverNames == names
        for name in _DOMAINS:
            assert set(self.tables.connections.streamsForServerName(name)) == {
                streamID
                for streamID, names in self.connections.items()
                if name in names
            }
        for direction, table in [
            (OUTGOING, self.tables.outgoing),
            (INCOMING, self.tables.incoming),
        ]:
            rows = self.bindings[direction]
            assert len(table) == sum(len(streams) for streams in rows.values())
            for streamID in _STREAM_IDS:
                assert table.pairs(streamID) == {
                    pair for pair, streams in rows.items() if streamID in streams
                }


class TablesStateMachineTests(SynchronousTestCase):
    """
    L{Tables} behaves like a plain reference model over random sequences of
    operations, and keeps its invariants after every step.
    """

    def test_stateMachine(self):
        """
        Random open, close, bind, unbind, route and accepts calls agree with
        the model.
        """
        run_state_machine_as_test(
            TablesMachine,
            settings=settings(max_examples=examples(100), stateful_step_count=40, deadline=None),
        )
