"""
The least level of event the server's log writes, known where events are
made.

C{twistd dna} writes the events of C{[log] level} and above
(L{dna.app.tap.logObserver}), but its observer drops the others only once
they are made: a dictionary of fields, a timestamp, a call through Twisted's
log publisher each. The routine events at debug, one or two per pair set up
on each side, cost about 5% of a set-up that way. Where one is made per
pair, L{wanted} is asked first.

The level is the process's, as Twisted's global log publisher is: set by
L{dna.app.tap.twistdLogObserver}. Anywhere else (a server embedding DNA,
the tests, twistd's C{--logger} or C{--syslog}), whatever observes decides,
and every event is made: the least level stays debug unless
L{setLeastLevel} is called.
"""

from twisted.logger import LogLevel

_least = LogLevel.debug


def setLeastLevel(level):
    """
    Make only the events of C{level} and above from now on, where
    L{wanted} is asked.

    @param level: A L{LogLevel}.
    """
    global _least
    _least = level


def wanted(level):
    """
    Whether an event of C{level} would be written.

    @param level: A L{LogLevel}.
    """
    return level is _least or level > _least
