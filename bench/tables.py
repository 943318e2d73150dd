"""
Benchmark of L{dna.core.tables}: memory per binding, lookup rate, and the cost of
closing a small stream among many others.

Run from the checkout: C{python bench/tables.py}. Prints C{name: value} lines:

  - C{bytes_per_binding}: growth of traced memory when binding 100,000
    distinct (local, remote) pairs over one stream in the outgoing direction,
    every index included; the domain name strings exist beforehand, as they
    would in a server (they come from parsed stanzas and configuration).
  - C{lookups_per_s}: C{route} and C{accepts} over such a table, half hits and
    half misses; the median of several rounds (C{lookups_per_s_best}: the
    best).
  - C{close_small_alone_s} and C{close_small_with_1m_others_s}: median time to
    close a stream with 10 bindings (5 pairs, both directions), alone, and
    beside 1,000,000 bindings of 1,000 other streams.
    C{close_small_sharing_rows_with_1m_others_s}: the same when 3 of its 5
    rows per direction also list another stream, so that closing rewrites
    rows instead of deleting them.
"""

import gc
import os
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dna.core.tables import INCOMING, OUTGOING, Tables  # noqa: E402

BINDINGS = 100_000
LOOKUP_ROUNDS = 7
OTHER_STREAMS = 1_000
PAIRS_PER_OTHER_STREAM = 500  # bound in both directions: 1,000 bindings each
CLOSE_ROUNDS = 1_001


def domainPairs(count, localCount=1_000, prefix=""):
    """
    Make C{count} distinct (local, remote) pairs over C{localCount} local
    domains, sharing the strings as a server would.

    @return: A C{list} of C{(str, str)}.
    """
    locals_ = [f"{prefix}sender{i}.example" for i in range(localCount)]
    remotes = [
        f"{prefix}target{i}.example" for i in range(-(-count // localCount))
    ]
    return [
        (locals_[i % localCount], remotes[i // localCount]) for i in range(count)
    ]


def bytesPerBinding():
    """
    Measure the memory growth of binding L{BINDINGS} pairs over one stream.

    @return: A C{tuple} of the bytes per binding, the filled L{Tables} and the
        pairs bound.
    """
    pairs = domainPairs(BINDINGS)
    tables = Tables()
    tables.openConnection("stream-1", ["xmpp.provider.example"])
    bind = tables.bind
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for local, remote in pairs:
        bind(OUTGOING, local, remote, "stream-1")
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tables.checkInvariants()
    return (after - before) / BINDINGS, tables, pairs


def lookupsPerSecond(tables, pairs):
    """
    Time C{route} and C{accepts} over C{tables}, half hits and half misses.

    @return: A C{tuple} of the median and best lookups per second, and of the
        median route and accepts rates.
    """
    for local, remote in pairs:
        tables.bind(INCOMING, local, remote, "stream-1")
    tables.openConnection("stream-2")
    half = len(pairs) // 2
    misses = domainPairs(half, prefix="unknown-")
    routeQueries = pairs[:half] + misses
    acceptQueries = (
        [("stream-1", local, remote) for local, remote in pairs[:half]]
        + [("stream-2", local, remote) for local, remote in pairs[half:]]
    )
    route = tables.route
    accepts = tables.accepts
    perf_counter = time.perf_counter
    routeRates, acceptRates, rates = [], [], []
    for _ in range(LOOKUP_ROUNDS):
        start = perf_counter()
        for local, remote in routeQueries:
            route(local, remote)
        middle = perf_counter()
        for streamID, local, remote in acceptQueries:
            accepts(streamID, local, remote)
        end = perf_counter()
        routeRates.append(len(routeQueries) / (middle - start))
        acceptRates.append(len(acceptQueries) / (end - middle))
        rates.append((len(routeQueries) + len(acceptQueries)) / (end - start))
    assert sum(route(*pair) is not None for pair in routeQueries) == half
    assert sum(accepts(*query) for query in acceptQueries) == half
    return (
        statistics.median(rates),
        max(rates),
        statistics.median(routeRates),
        statistics.median(acceptRates),
    )


def closeSmall(tables, sharedPairs, ownPairs):
    """
    Time closing a stream with 10 bindings, 5 per direction, over and over.

    @param sharedPairs: 3 pairs, which may be bound on other streams.
    @param ownPairs: 2 pairs bound on no other stream.
    @return: The median time of one close, in seconds.
    """
    pairs = sharedPairs + ownPairs
    perf_counter = time.perf_counter
    times = []
    for n in range(CLOSE_ROUNDS):
        streamID = f"small-{n}"
        tables.openConnection(streamID, ["xmpp.small.example"])
        for local, remote in pairs:
            tables.bind(OUTGOING, local, remote, streamID)
            tables.bind(INCOMING, local, remote, streamID)
        start = perf_counter()
        closed = tables.closeConnection(streamID)
        times.append(perf_counter() - start)
        assert len(closed.outgoing) + len(closed.incoming) == 10
    return statistics.median(times)


def withOthers():
    """
    Build tables with 1,000,000 bindings over L{OTHER_STREAMS} streams.

    @return: A C{tuple} of the L{Tables} and the pairs bound.
    """
    pairs = domainPairs(OTHER_STREAMS * PAIRS_PER_OTHER_STREAM, prefix="other-")
    tables = Tables()
    gc.disable()
    try:
        for n in range(OTHER_STREAMS):
            streamID = f"other-{n}"
            tables.openConnection(streamID, [f"xmpp{n}.other.example"])
            bindOut = tables.outgoing.bind
            bindIn = tables.incoming.bind
            offset = n * PAIRS_PER_OTHER_STREAM
            for local, remote in pairs[offset : offset + PAIRS_PER_OTHER_STREAM]:
                bindOut(local, remote, streamID)
                bindIn(local, remote, streamID)
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()
    return tables, pairs


def main():
    """
    Run every measurement and print the figures.
    """
    started = time.perf_counter()
    print(f"python: {sys.version.split()[0]}")

    perBinding, tables, pairs = bytesPerBinding()
    print(f"bytes_per_binding: {perBinding:.1f}")

    median, best, routeRate, acceptRate = lookupsPerSecond(tables, pairs)
    print(f"lookups_per_s: {median:.0f}")
    print(f"lookups_per_s_best: {best:.0f}")
    print(f"route_per_s: {routeRate:.0f}")
    print(f"accepts_per_s: {acceptRate:.0f}")
    del tables, pairs

    small = domainPairs(5, prefix="small-")
    alone = closeSmall(Tables(), small[:3], small[3:])
    print(f"close_small_alone_s: {alone:.3g}")

    others, otherPairs = withOthers()
    bindings = len(others.outgoing) + len(others.incoming)
    print(f"other_bindings: {bindings}")
    crowded = closeSmall(others, small[:3], small[3:])
    print(f"close_small_with_1m_others_s: {crowded:.3g}")
    shared = [otherPairs[0], otherPairs[len(otherPairs) // 2], otherPairs[-1]]
    sharing = closeSmall(others, shared, small[3:])
    print(f"close_small_sharing_rows_with_1m_others_s: {sharing:.3g}")
    assert len(others.outgoing) + len(others.incoming) == bindings
    others.checkInvariants()
    gc.unfreeze()

    print(f"total_s: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
