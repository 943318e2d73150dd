"""
Coalescing of concurrent requests: callers asking for the same key while an
attempt is in flight share that attempt instead of starting another.

The connector shares one connection attempt per server name, the delegation
checker one lookup per domain, the DNSSEC walker one fetch per RRset, the
legacy connector one stream per target domain. Each caller gets a Deferred of
its own (Twisted's rule: one fresh Deferred per waiter, fired once), so a
callback chain added by one caller never changes the result another sees.
"""

from twisted.internet import defer
from twisted.python.failure import Failure


class Coalescer:
    """
    At most one attempt in flight per key; every caller waiting on it gets
    its outcome.

    Cancelling a caller's Deferred withdraws that caller only; when the last
    caller of an attempt withdraws, the attempt itself is cancelled.
    """

    def __init__(self):
        # key -> (attempt Deferred, [waiter Deferred])
        self._inFlight = {}

    def __contains__(self, key):
        """
        Whether an attempt for C{key} is in flight.
        """
        return key in self._inFlight

    def __len__(self):
        return len(self._inFlight)

    def keys(self):
        """
        The keys with an attempt in flight.
        """
        return list(self._inFlight)

    def wait(self, key, start, *args, **kwargs):
        """
        Wait for the outcome of the attempt for C{key}, starting it with
        C{start(*args, **kwargs)} when none is in flight.

        @param start: A callable returning a L{Deferred} (or a plain value,
            taken as a result) for the attempt.
        @return: A fresh L{Deferred} firing with the attempt's result, or
            failing with its failure.
        """
        entry = self._inFlight.get(key)
        if entry is None:
            waiters = []
            attempt = defer.maybeDeferred(start, *args, **kwargs)
            entry = self._inFlight[key] = (attempt, waiters)
            waiter = self._waiter(key, entry)
            attempt.addBoth(self._done, key, entry)
            return waiter
        return self._waiter(key, entry)

    def _waiter(self, key, entry):
        attempt, waiters = entry

        def cancel(waiter):
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._inFlight.get(key) is entry:
                del self._inFlight[key]
                attempt.cancel()

        waiter = defer.Deferred(cancel)
        waiters.append(waiter)
        return waiter

    def _done(self, outcome, key, entry):
        if self._inFlight.get(key) is entry:
            del self._inFlight[key]
        attempt, waiters = entry
        pending, waiters[:] = list(waiters), []
        for waiter in pending:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)
        # Every waiter has the outcome; the attempt's own chain ends here.
        return None
