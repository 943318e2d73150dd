"""
The connection table and the binding tables of draft-ietf-xmpp-dna-01
section 4 (Connection Model).

The connection table has one row per open stream, keyed by its stream id: the
Server Domain Names the remote side authenticated (section 5) and the Delegated
Domain Names it was since authorized for (section 6).

A binding table maps a (local, remote) domain pair to an ordered list of
stream ids. There is one per direction:

  - L{OUTGOING} routes what we send: local is the Sender Domain, remote the
    Target Domain. A stanza goes out on the I{first} stream of its row
    (L{BindingTable.route}).
  - L{INCOMING} filters what we receive: local is our hosted Target Domain,
    remote the peer's Sender Domain. A stanza is accepted only if the stream
    it came on is listed in its row (L{BindingTable.accepts}).

The directions never authorize each other: a pair bound for sending says
nothing about receiving.

Invariants, checked by L{Tables.checkInvariants}:

  1. Every stream listed in a binding table is open in the connection table,
     so closing a stream (L{Tables.closeConnection}) removes every trace of it.
  2. No row is empty and no stream appears twice in a row.
  3. Each reverse index (stream id to pairs, server name to stream ids) holds
     exactly the entries of its forward index, no more, no less.

This module is pure data: no I/O, no reactor, no Twisted. Domain names are
stored and compared as given; callers normalise them first.
"""

from typing import NamedTuple

from dna.error import UnknownConnection

OUTGOING = "outgoing"
INCOMING = "incoming"


class Connection:
    """
    One row of the connection table.

    The name sets are immutable so that they cannot be changed behind the
    table's back (which would leave its server name index stale): use
    L{ConnectionTable.addServerNames} and L{ConnectionTable.addDelegatedNames}.

    @ivar streamID: The id of the stream this row describes.
    @ivar serverNames: The Server Domain Names the remote side authenticated
        (a C{frozenset} of C{str}).
    @ivar delegatedNames: The Delegated Domain Names authorized on this stream
        (a C{frozenset} of C{str}).
    """

    __slots__ = ("streamID", "serverNames", "delegatedNames")

    def __init__(self, streamID, serverNames=frozenset(), delegatedNames=frozenset()):
        self.streamID = streamID
        self.serverNames = serverNames
        self.delegatedNames = delegatedNames

    def __repr__(self) -> str:
        return "<Connection {!r} serverNames={!r} delegatedNames={!r}>".format(
            self.streamID, sorted(self.serverNames), sorted(self.delegatedNames)
        )


def _names(names):
    """
    Domain names as a C{frozenset}, refusing a bare string (which would
    otherwise be taken as a set of one-letter names).

    @param names: An iterable of C{str}.
    @rtype: C{frozenset}
    @raise TypeError: If C{names} is a C{str} or C{bytes}.
    """
    if isinstance(names, (str, bytes)):
        raise TypeError(f"expected an iterable of domain names, not {names!r}")
    return frozenset(names)


class ConnectionTable:
    """
    The connection table: stream id to L{Connection}, with a reverse index
    from server name to the streams that authenticated it.

    Iterating yields the stream ids of open connections in the order they were
    opened.
    """

    def __init__(self):
        # streamID -> Connection
        self._connections = {}
        # server name -> {streamID: None}; a dict to keep opening order.
        self._byServerName = {}

    def __contains__(self, streamID) -> bool:
        return streamID in self._connections

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self):
        return iter(self._connections)

    def get(self, streamID):
        """
        @return: The L{Connection} of C{streamID}, or L{None} if it is not open.
        """
        return self._connections.get(streamID)

    def _require(self, streamID):
        """
        @return: The L{Connection} of C{streamID}.
        @raise UnknownConnection: If C{streamID} is not open.
        """
        connection = self._connections.get(streamID)
        if connection is None:
            raise UnknownConnection(streamID)
        return connection

    def _index(self, streamID, names):
        """
        Add C{streamID} to the server name index under each of C{names}.
        """
        byServerName = self._byServerName
        for name in names:
            streams = byServerName.get(name)
            if streams is None:
                byServerName[name] = {streamID: None}
            else:
                streams[streamID] = None

    def open(self, streamID, serverNames=()):
        """
        Add a row for a newly established stream.

        @param streamID: The stream id; any hashable other than L{None}.
        @param serverNames: The Server Domain Names authenticated so far.
        @return: The new L{Connection}.
        @raise ValueError: If C{streamID} is already open, or is L{None}.
        """
        if streamID is None:
            raise ValueError("a stream id cannot be None")
        if streamID in self._connections:
            raise ValueError(f"stream {streamID!r} is already open")
        names = _names(serverNames)
        connection = Connection(streamID, names)
        self._connections[streamID] = connection
        self._index(streamID, names)
        return connection

    def close(self, streamID):
        """
        Remove the row of C{streamID}, and its entries in the server name index.

        @return: The removed L{Connection}, or L{None} if it was not open.
        """
        connection = self._connections.pop(streamID, None)
        if connection is None:
            return None
        byServerName = self._byServerName
        for name in connection.serverNames:
            streams = byServerName[name]
            del streams[streamID]
            if not streams:
                del byServerName[name]
        return connection

    def addServerNames(self, streamID, names):
        """
        Record more Server Domain Names authenticated on C{streamID}.

        @param names: An iterable of C{str}.
        @raise UnknownConnection: If C{streamID} is not open.
        """
        connection = self._require(streamID)
        new = _names(names) - connection.serverNames
        if new:
            connection.serverNames = connection.serverNames | new
            self._index(streamID, new)

    def addDelegatedNames(self, streamID, names):
        """
        Record more Delegated Domain Names authorized on C{streamID}.

        @param names: An iterable of C{str}.
        @raise UnknownConnection: If C{streamID} is not open.
        """
        connection = self._require(streamID)
        connection.delegatedNames = connection.delegatedNames | _names(names)

    def streamsForServerName(self, name):
        """
        @return: The ids of the open streams whose remote side authenticated
            C{name}, in the order they were opened (a C{tuple}).
        """
        return tuple(self._byServerName.get(name, ()))

    def checkInvariants(self):
        """
        Check that the server name index matches the rows exactly.

        @raise AssertionError: Describing the first violation found.
        """
        expected = {}
        for streamID, connection in self._connections.items():
            if connection.streamID != streamID:
                _fail(f"connection {connection!r} is filed under {streamID!r}")
            for attribute in ("serverNames", "delegatedNames"):
                if not isinstance(getattr(connection, attribute), frozenset):
                    _fail(f"{attribute} of {streamID!r} is not a frozenset")
            for name in connection.serverNames:
                expected.setdefault(name, set()).add(streamID)
        for name, streams in self._byServerName.items():
            if not streams:
                _fail(f"server name index has an empty entry for {name!r}")
            if set(streams) != expected.get(name, set()):
                _fail(
                    f"server name index lists {sorted(map(repr, streams))} for "
                    f"{name!r}, connections say "
                    f"{sorted(map(repr, expected.get(name, ())))}"
                )
        missing = expected.keys() - self._byServerName.keys()
        if missing:
            _fail(f"server name index lacks {sorted(missing)!r}")


class _Streams(tuple):
    """
    A binding table row listing two or more streams, in binding order.

    A row with one stream stores the bare stream id instead: most rows have one
    stream, and a one-element tuple would cost 48 bytes more each. This class
    tells the two apart even when stream ids are themselves tuples.
    """

    __slots__ = ()


class BindingTable:
    """
    One direction's binding table: (local, remote) to an ordered list of
    stream ids, with a reverse index from stream id to its pairs so that
    removing a stream costs in proportion to its own bindings (times the
    length of their rows, which is small).

    A row with a single stream is the bare stream id, and the reverse index
    shares the pair tuple of the row's first binding: about 160 bytes per
    binding, every index included, on CPython 3.11 (see C{bench/tables.py}).
    """

    def __init__(self):
        # (local, remote) -> streamID, or _Streams of two or more.
        self._rows = {}
        # streamID -> {(local, remote): None}; a dict to keep binding order.
        self._pairs = {}
        self._count = 0

    def __len__(self) -> int:
        """
        @return: The number of (pair, stream) bindings.
        """
        return self._count

    def bind(self, local, remote, streamID):
        """
        Authorize the pair on C{streamID}, after the streams already listed.

        @return: C{True} if this is a new binding, C{False} if it was there.
        @raise ValueError: If C{streamID} is L{None}.
        """
        if streamID is None:
            raise ValueError("a stream id cannot be None")
        pair = (local, remote)
        rows = self._rows
        row = rows.get(pair)
        if row is None:
            rows[pair] = streamID
        elif row.__class__ is _Streams:
            if streamID in row:
                return False
            rows[pair] = _Streams(row + (streamID,))
        elif row == streamID:
            return False
        else:
            rows[pair] = _Streams((row, streamID))
        pairs = self._pairs.get(streamID)
        if pairs is None:
            self._pairs[streamID] = {pair: None}
        else:
            pairs[pair] = None
        self._count += 1
        return True

    def _removeFromRow(self, pair, streamID):
        """
        Take C{streamID} out of the row of C{pair}, dropping the row if that
        empties it. The caller has checked that it is listed there.
        """
        rows = self._rows
        row = rows[pair]
        if row.__class__ is not _Streams:
            del rows[pair]
        elif len(row) == 2:
            rows[pair] = row[1] if row[0] == streamID else row[0]
        else:
            i = row.index(streamID)
            rows[pair] = _Streams(row[:i] + row[i + 1 :])

    def unbind(self, local, remote, streamID):
        """
        Revoke the pair on C{streamID}.

        @return: C{True} if it was bound, C{False} otherwise.
        """
        pair = (local, remote)
        pairs = self._pairs.get(streamID)
        if pairs is None or pair not in pairs:
            return False
        del pairs[pair]
        if not pairs:
            del self._pairs[streamID]
        self._removeFromRow(pair, streamID)
        self._count -= 1
        return True

    def route(self, local, remote):
        """
        @return: The stream to send on from C{local} to C{remote}: the first
            of the row, or L{None} if the pair is not bound.
        """
        row = self._rows.get((local, remote))
        if row.__class__ is _Streams:
            return row[0]
        return row

    def accepts(self, streamID, local, remote):
        """
        @return: Whether the pair is bound on C{streamID}.
        """
        row = self._rows.get((local, remote))
        if row.__class__ is _Streams:
            return streamID in row
        return row is not None and row == streamID

    def isBound(self, local, remote):
        """
        @return: Whether the pair is bound on any stream.
        """
        return (local, remote) in self._rows

    def streams(self, local, remote):
        """
        @return: The streams the pair is bound on, in binding order (a
            C{tuple}, empty if none).
        """
        row = self._rows.get((local, remote))
        if row is None:
            return ()
        if row.__class__ is _Streams:
            return tuple(row)
        return (row,)

    def pairs(self, streamID):
        """
        @return: The (local, remote) pairs bound on C{streamID} (a
            C{frozenset}).
        """
        return frozenset(self._pairs.get(streamID, ()))

    def removeStream(self, streamID):
        """
        Remove C{streamID} from every row it is listed in.

        @return: The (local, remote) pairs it was removed from, in the order
            they were bound (a C{list}, empty if none).
        """
        pairs = self._pairs.pop(streamID, None)
        if pairs is None:
            return []
        for pair in pairs:
            self._removeFromRow(pair, streamID)
        self._count -= len(pairs)
        return list(pairs)

    def boundStreams(self):
        """
        @return: The ids of the streams with at least one binding (a
            C{frozenset}).
        """
        return frozenset(self._pairs)

    def checkInvariants(self):
        """
        Check that rows are well formed and the reverse index matches them.

        @raise AssertionError: Describing the first violation found.
        """
        count = 0
        for pair, row in self._rows.items():
            if row.__class__ is _Streams:
                if len(row) < 2:
                    _fail(f"row {pair!r} is a list of {len(row)} streams")
                if len(set(row)) != len(row):
                    _fail(f"row {pair!r} lists a stream twice: {row!r}")
                streams = row
            elif row is None:
                _fail(f"row {pair!r} is empty")
            else:
                streams = (row,)
            for streamID in streams:
                if pair not in self._pairs.get(streamID, ()):
                    _fail(
                        f"row {pair!r} lists {streamID!r} but the reverse "
                        f"index does not"
                    )
            count += len(streams)
        reverse = 0
        for streamID, pairs in self._pairs.items():
            if not pairs:
                _fail(f"reverse index has an empty entry for {streamID!r}")
            for pair in pairs:
                if streamID not in self.streams(*pair):
                    _fail(
                        f"reverse index binds {pair!r} to {streamID!r} but "
                        f"the row does not"
                    )
            reverse += len(pairs)
        if count != reverse:
            _fail(f"{count} bindings in rows but {reverse} in the reverse index")
        if count != self._count:
            _fail(f"{count} bindings but the count says {self._count}")


#: How many (local, remote, epoch) delivery counts are kept at most.
DEFAULT_DELIVERY_ENTRIES = 100000
#: Seconds the count of a pair whose stream ended is kept for its return.
DEFAULT_DELIVERY_EXPIRY = 600.0


class DeliveryCount:
    """
    How many stanzas of one (local, remote) pair and one epoch of the
    Originating Server the Receiving Server has handled, and the one stream
    they are counted on (L{dna.channel.acks}, "Exactly once, in order").

    @ivar count: Stanzas handled so far.
    @ivar owner: The stream id the pair is counted on: stanzas of the pair
        arriving on any other stream are not counted.
    @ivar retired: When the owner stream ended (seconds), or L{None} while
        it is open.
    """

    __slots__ = ("count", "owner", "retired")

    def __init__(self, owner):
        self.count = 0
        self.owner = owner
        self.retired = None


class DeliveryLedger:
    """
    The Receiving Server's delivery counts, by (local, remote, epoch), kept
    after their stream ends so that a new stream can resume the pair where
    the old one stopped. Bounded: at most C{maxEntries} counts, and a count
    whose stream ended is dropped C{expiry} seconds later. A dropped count
    is a count of 0 for the next stream: the Originating Server then sends
    again what it kept (at least once, as without this ledger).

    @ivar evicted: How many counts were dropped for room before they expired.
    """

    def __init__(self, maxEntries=DEFAULT_DELIVERY_ENTRIES, expiry=DEFAULT_DELIVERY_EXPIRY):
        self._maxEntries = maxEntries
        self._expiry = expiry
        # (local, remote, epoch) -> DeliveryCount, least recently claimed
        # or retired first
        self._entries = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, local, remote, epoch):
        """
        @return: The L{DeliveryCount} of the pair and epoch, or L{None}.
        """
        return self._entries.get((local, remote, epoch))

    def claim(self, local, remote, epoch, streamID, now):
        """
        Count the pair on C{streamID} from now on, keeping what was counted
        on the streams before it.

        @param now: The time in seconds, for the expiry of old counts.
        @return: The L{DeliveryCount}.
        """
        key = (local, remote, epoch)
        entries = self._entries
        entry = entries.pop(key, None)
        if entry is None:
            entry = DeliveryCount(streamID)
        entry.owner = streamID
        entry.retired = None
        entries[key] = entry
        self._prune(now)
        return entry

    def retire(self, entries, now):
        """
        The stream that counted C{entries} ended: keep them C{expiry} more
        seconds for a stream that resumes their pairs.
        """
        for entry in entries:
            if entry.retired is None:
                entry.retired = now
        self._prune(now)

    def _prune(self, now):
        entries = self._entries
        while entries:
            key = next(iter(entries))
            entry = entries[key]
            if len(entries) > self._maxEntries:
                self.evicted += 1
            elif entry.retired is None or now - entry.retired < self._expiry:
                return
            del entries[key]


class ClosedConnection(NamedTuple):
    """
    Everything L{Tables.closeConnection} removed.

    @ivar connection: The L{Connection} row.
    @ivar outgoing: The (local, remote) pairs removed from the L{OUTGOING}
        table, in binding order.
    @ivar incoming: The same for the L{INCOMING} table.
    """

    connection: Connection
    outgoing: list
    incoming: list


class Tables:
    """
    The connection table and one binding table per direction, kept consistent:
    only open streams can be bound, and closing a stream removes it everywhere
    (section 4: "both servers MUST delete its entry in the name table and
    remove it from all entries in the binding table").

    Binding does not touch the connection's Delegated Domain Names: callers
    record those with L{ConnectionTable.addDelegatedNames}.

    @ivar connections: The L{ConnectionTable}.
    @ivar outgoing: The L{OUTGOING} L{BindingTable}.
    @ivar incoming: The L{INCOMING} L{BindingTable}.
    @ivar route: C{route(local, remote)}: the stream to send a stanza from
        C{local} to C{remote} on, or L{None}. This is L{BindingTable.route}
        of L{outgoing}, bound here to save a call on every stanza sent.
    @ivar accepts: C{accepts(streamID, local, remote)}: whether a stanza to
        C{local} from C{remote} may be accepted on C{streamID}. This is
        L{BindingTable.accepts} of L{incoming}, bound here to save a call on
        every stanza received.
    @ivar delivery: The L{DeliveryLedger} of the pairs we receive with
        delivery counts.
    @ivar bindObservers: Callables called with C{(direction, local, remote,
        streamID)} after each new binding, such as the re-validation of its
        proof (L{dna.core.proofs}); a C{list}, empty by default.
    """

    def __init__(self):
        self.connections = ConnectionTable()
        self.outgoing = BindingTable()
        self.incoming = BindingTable()
        self._directions = {OUTGOING: self.outgoing, INCOMING: self.incoming}
        self.route = self.outgoing.route
        self.accepts = self.incoming.accepts
        self.bindObservers = []
        self.delivery = DeliveryLedger()

    def _table(self, direction):
        """
        @return: The L{BindingTable} of C{direction}.
        @raise ValueError: If C{direction} is neither L{OUTGOING} nor
            L{INCOMING}.
        """
        try:
            return self._directions[direction]
        except (KeyError, TypeError):
            raise ValueError(f"unknown direction {direction!r}") from None

    def openConnection(self, streamID, serverNames=()):
        """
        Add a row for a newly established stream.

        @see: L{ConnectionTable.open}
        """
        return self.connections.open(streamID, serverNames)

    def closeConnection(self, streamID):
        """
        Remove C{streamID} from the connection table and from every binding.

        @return: A L{ClosedConnection}, or L{None} if C{streamID} was not open.
        """
        connection = self.connections.close(streamID)
        if connection is None:
            return None
        return ClosedConnection(
            connection,
            self.outgoing.removeStream(streamID),
            self.incoming.removeStream(streamID),
        )

    def bind(self, direction, local, remote, streamID):
        """
        Authorize the pair in C{direction} on C{streamID}.

        @param direction: L{OUTGOING} or L{INCOMING}.
        @return: C{True} if this is a new binding, C{False} if it was there.
        @raise UnknownConnection: If C{streamID} is not open.
        @raise ValueError: If C{direction} is unknown.
        """
        table = self._table(direction)
        if streamID not in self.connections:
            raise UnknownConnection(streamID)
        new = table.bind(local, remote, streamID)
        if new:
            for observer in self.bindObservers:
                observer(direction, local, remote, streamID)
        return new

    def unbind(self, direction, local, remote, streamID):
        """
        Revoke the pair in C{direction} on C{streamID}.

        @return: C{True} if it was bound, C{False} otherwise.
        @raise ValueError: If C{direction} is unknown.
        """
        return self._table(direction).unbind(local, remote, streamID)

    def isBound(self, direction, local, remote):
        """
        @return: Whether the pair is bound in C{direction} on any stream.
        @raise ValueError: If C{direction} is unknown.
        """
        return self._table(direction).isBound(local, remote)

    def checkInvariants(self):
        """
        Check every invariant listed in this module's docstring.

        @raise AssertionError: Describing the first violation found.
        """
        self.connections.checkInvariants()
        for direction, table in self._directions.items():
            table.checkInvariants()
            for streamID in table.boundStreams():
                if streamID not in self.connections:
                    _fail(
                        f"{direction} bindings {sorted(table.pairs(streamID))!r}"
                        f" are on {streamID!r}, which is not open"
                    )


def _fail(message):
    """
    Report a broken invariant. An explicit raise rather than C{assert}, which
    C{python -O} would remove.

    @raise AssertionError: Always, with C{message}.
    """
    raise AssertionError(message)
