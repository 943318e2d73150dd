"""
Refusals counted by name and logged without flooding the log.

A hostile peer can make the same refusal happen thousands of times a second
(a flood of C{<db:result/>} requests, of stanzas for pairs that are not
bound, of connections that never finish TLS). Logging each one would cost
more than refusing it and would bury everything else, so L{ThrottledLog}
logs the first event of a burst in full and the rest as one line,
C{"N more like this in T s"}, and counts every one in L{ThrottledLog.counters}
(issue 9, "Connections and buffers"), where an operator's metrics can read
them.

Time comes from an injected clock, and no timer is ever set: a summary is
written by the next report after its window ends (any report, of any name),
or by L{ThrottledLog.flush}.
"""

import collections

from twisted.logger import LogLevel

#: Seconds during which repeats of an event are only counted.
DEFAULT_WINDOW = 60.0

#: Most names with a window open at once; past it, the oldest is summarised
#: and closed early (names are kinds of event, a handful, never addresses).
MAX_OPEN = 256


class _Burst:
    """
    One open window: the logger of its first event and how many came after.
    """

    __slots__ = ("logger", "level", "started", "more")

    def __init__(self, logger, level, started):
        self.logger = logger
        self.level = level
        self.started = started
        self.more = 0


class ThrottledLog:
    """
    Count events by name; log the first of each burst, then a summary.

    @ivar counters: Event name -> how many times it was reported, ever.
    @type counters: L{collections.Counter}
    """

    def __init__(self, clock, window=DEFAULT_WINDOW, counters=None):
        """
        @param clock: An L{IReactorTime}; only its C{seconds} is used.
        @param window: Seconds after a logged event during which events of
            the same name are counted, not logged.
        @param counters: The mapping to count in; a new
            L{collections.Counter} by default.
        """
        self._clock = clock
        self._window = window
        self.counters = collections.Counter() if counters is None else counters
        # name -> _Burst, oldest first
        self._open = collections.OrderedDict()

    def report(self, name, logger, format, /, level=LogLevel.info, **fields):
        """
        Count one event C{name}; log it with C{logger} unless an event of the
        same name was logged less than the window ago.

        @param name: The event's kind, such as C{"pending-limit"}: the
            counter's name and the key of its burst.
        @param logger: The L{twisted.logger.Logger} of the module reporting.
        @param format: The message, with C{{field}} keywords.
        @param level: The L{LogLevel} of the message and its summary.
        @param fields: The message's fields; C{event} defaults to
            C{"limit-refused"} and C{reason} to C{name}.
        """
        self.counters[name] += 1
        now = self._clock.seconds()
        self._summarise(now)
        burst = self._open.get(name)
        if burst is not None:
            burst.more += 1
            return
        if len(self._open) >= MAX_OPEN:
            self._close(next(iter(self._open)), now)
        self._open[name] = _Burst(logger, level, now)
        fields.setdefault("event", "limit-refused")
        fields.setdefault("reason", name)
        logger.emit(level, format, incident=name, **fields)

    def flush(self):
        """
        Write the summaries of every open window now, and close them.
        """
        now = self._clock.seconds()
        for name in list(self._open):
            self._close(name, now)

    def _summarise(self, now):
        """
        Close the windows that have ended.
        """
        while self._open:
            name, burst = next(iter(self._open.items()))
            if now - burst.started < self._window:
                return
            self._close(name, now)

    def _close(self, name, now):
        burst = self._open.pop(name)
        if burst.more:
            burst.logger.emit(
                burst.level,
                "{more} more like this in {seconds:.0f} s: {incident}",
                more=burst.more,
                seconds=now - burst.started,
                incident=name,
            )


def report(incidents, name, logger, format, /, level=LogLevel.info, **fields):
    """
    Report event C{name} through C{incidents}, a L{ThrottledLog}, or, when
    there is none, log it with C{logger} as it is (uncounted, unthrottled,
    with no default fields).

    @see: L{ThrottledLog.report}
    """
    if incidents is None:
        logger.emit(level, format, **fields)
    else:
        incidents.report(name, logger, format, level=level, **fields)
