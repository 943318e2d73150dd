"""
Running DNA's console scripts (C{dna-check}, C{dna-demo}).
"""

import sys

from twisted.internet import defer
from twisted.internet.task import react
from twisted.python import usage


def runCommand(name, options, run, argv=None, _reactor=None):
    """
    Parse C{argv} into C{options}, run C{run(reactor, options)} under
    L{react} and exit with the status its L{Deferred} fires with.

    A usage error exits with status 2 and one line saying what is wrong.

    @param name: The command's name, for messages.
    @param options: A fresh L{usage.Options}.
    @param run: Called with (reactor, options); returns a L{Deferred} of the
        exit status.
    @param argv: The arguments, C{sys.argv[1:]} by default.
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"{options.synopsis}\n{name}: {e}\n"
                         f"Try '{name} --help' for more.\n")
        raise SystemExit(2)

    @defer.inlineCallbacks
    def runAndExit(reactor):
        status = yield run(reactor, options)
        if status:
            raise SystemExit(status)

    react(runAndExit, (), _reactor=_reactor)
