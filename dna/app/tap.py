"""
The C{twistd dna} command: options and service.

The configuration file (L{dna.app.config}, docs/configuration.rst) says
everything; a few options override it for one run.
"""

import gc
import sys

from twisted.application import service
from twisted.python import usage

from dna.app import config, schema
from dna.app.delegation import DNS_MODES


def _positive(kind):
    def parse(value):
        number = kind(value)
        if number <= 0:
            raise ValueError(value)
        return number

    parse.coerceDoc = "Must be a positive number."
    return parse


class Options(usage.Options):
    """
    Options of C{twistd dna}.

    After parsing, C{self["configuration"]} is the checked
    L{dna.app.config.Configuration}: the file with the overrides applied.
    """

    synopsis = "--config FILE [options]"
    longdesc = (
        "Secure, multiplexed XMPP server-to-server federation for hosted "
        "domains (Domain Name Associations, draft-ietf-xmpp-dna). The "
        "configuration file says everything; the other options override it."
    )

    optParameters = [
        ["config", None, None, "The configuration file (TOML). Required."],
        ["idle-timeout", None, None, "Seconds after which an idle S2S connection closes ([server] idle-timeout)", _positive(float)],
        ["max-pending", None, None, "Most <db:result/> requests a peer may have pending on one stream ([server] max-pending)", _positive(int)],
        ["request-timeout", None, None, "Seconds to wait for a peer's answer to a <db:result/> request ([server] request-timeout)", _positive(float)],
        ["queue-limit", None, None, "Most stanzas that may wait for one domain pair ([server] queue-limit)", _positive(int)],
        ["log-format", None, None, "text or json: one JSON object a line, for log shippers ([log] format)"],
        ["log-level", None, None, "debug, info, warn, error or critical: the least level written ([log] level)"],
    ]

    #: Options and the L{config.Configuration} attributes they override.
    _overrides = {
        "listen": "listen",
        "domains": "domains",
        "resolvers": "resolvers",
        "mode": "dnsMode",
        "policy": "delegationPolicy",
        "idle-timeout": "idleTimeout",
        "max-pending": "maxPending",
        "request-timeout": "requestTimeout",
        "queue-limit": "queueLimit",
        "log-format": "logFormat",
        "log-level": "logLevel",
    }

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = None
        self["domains"] = set()
        self["resolvers"] = []
        self["mode"] = None
        self["policy"] = None

    def opt_listen(self, description):
        """
        Where to listen for S2S, such as tcp:5269:interface=127.0.0.1 ([server] listen).
        """
        try:
            self["listen"] = config.checkListen(description)
        except ValueError as e:
            raise usage.UsageError(f"--listen: {e}")

    def opt_domain(self, domain):
        """
        A domain hosted here (repeatable; replaces [server] domains).
        """
        try:
            self["domains"].add(schema.domain(domain))
        except ValueError as e:
            raise usage.UsageError(f"--domain: {e}")

    def opt_resolver(self, resolver):
        """
        A DNS resolver, IP[:port] (repeatable; replaces [dns] resolvers).
        """
        try:
            config.parseAddress(resolver, config.DNS_PORT)
        except ValueError as e:
            raise usage.UsageError(f"--resolver: {e}")
        self["resolvers"].append(resolver)

    def opt_mode(self, mode):
        """
        How to learn whether a delegation is signed: ad or validate ([dns] mode).
        """
        self["mode"] = self._word("--mode", mode, DNS_MODES)

    def opt_policy(self, policy):
        """
        require-secure or allow-insecure delegations ([policy] delegation).
        """
        self["policy"] = self._word("--policy", policy, config.DELEGATION_POLICIES)

    @staticmethod
    def _word(option, word, words):
        if word not in words:
            raise usage.UsageError(
                f"{option}: unknown word {word!r} (expected {' or '.join(words)})"
            )
        return word

    def postOptions(self):
        """
        Read the configuration file and apply the overrides.

        @raise usage.UsageError: Without C{--config}, or with the one line of
            the L{config.ConfigurationError} saying what is wrong.
        """
        if self["config"] is None:
            raise usage.UsageError(
                "Name the configuration file with --config "
                "(see docs/configuration.rst and examples/dna.toml)."
            )
        changes = {}
        for option, attribute in self._overrides.items():
            value = self[option]
            if isinstance(value, set):
                value = sorted(value) or None
            elif isinstance(value, list):
                value = value or None
            if value is not None:
                changes[attribute] = value
        try:
            self["configuration"] = config.loadConfiguration(
                self["config"]).override(**changes)
        except config.ConfigurationError as e:
            raise usage.UsageError(str(e))
        self._chooseLogObserver(self["configuration"])

    def _chooseLogObserver(self, configuration):
        """
        Have twistd (our C{parent} options) log through
        L{twistdLogObserver}: in the format of C{[log] format}, the events
        of C{[log] level} and above; unless its C{--logger} or C{--syslog}
        chose where to log (then twistd writes every event as it does).
        twistd parses its options, ours among them, and only then builds its
        logger from them; its C{--logger} takes the name of a factory called
        without arguments, so where twistd would write, and what, is kept in
        L{_twistdLog}.
        """
        global _twistdLog
        parent = getattr(self, "parent", None)
        if parent is None or parent.get("logger") or parent.get("syslog"):
            return
        _twistdLog = (parent.get("logfile"), bool(parent.get("nodaemon")),
                      configuration.logFormat, configuration.logLevel)
        parent["logger"] = f"{__name__}.twistdLogObserver"


#: twistd's C{--logfile} and C{--nodaemon}, and the configuration's C{[log]
#: format} and C{level}, kept for L{twistdLogObserver}.
_twistdLog = (None, False, config.LOG_TEXT, config.DEFAULT_LOG_LEVEL)


def twistdLogObserver():
    """
    The observer twistd's C{--logger} makes for C{twistd dna}
    (L{logObserver} with what L{Options} kept). Writing to a file, it
    reopens a new one on C{SIGUSR1}, as twistd does, unless that signal is
    handled already. The level becomes the process's
    (L{dna.core.loglevel.setLeastLevel}).
    """
    from twisted.logger import LogLevel

    from dna.core.loglevel import setLeastLevel

    logfile, nodaemon, logFormat, level = _twistdLog
    observer = logObserver(logfile, nodaemon, logFormat, level)
    # Events below the level are not even made where that costs (per pair).
    setLeastLevel(LogLevel.levelWithName(level))
    output = observer.output
    if output is not sys.stdout:
        import signal

        if not signal.getsignal(signal.SIGUSR1):
            def rotateLog(signum, frame):
                from twisted.internet import reactor

                reactor.callFromThread(output.rotate)

            signal.signal(signal.SIGUSR1, rotateLog)
    return observer


def logObserver(logfile, nodaemon, logFormat=config.LOG_TEXT, level=config.DEFAULT_LOG_LEVEL):
    """
    A log observer writing the events of C{level} and above where twistd
    writes: the C{--logfile} given, standard output for C{-} or, run with
    C{-n}, none; C{twistd.log} otherwise. Text is twistd's own; C{json} is
    one JSON object a line (L{eventAsJSON}, as
    L{twisted.logger.jsonFileLogObserver} does, without its record
    separator, for line-oriented shippers). The events below C{level} are
    dropped before they are formatted: the routine events at debug (one per
    pair granted, on each side) would cost more than anything else the
    server does to set up a pair. The two lines Twisted writes at info for
    the UDP port of each DNS query count as debug
    (L{dna.dns.client.isQueryPortEvent}).

    @param logfile: twistd's C{--logfile} value, or L{None}.
    @param nodaemon: Whether twistd runs in the foreground (C{-n}).
    @param logFormat: L{config.LOG_TEXT} or L{config.LOG_JSON}.
    @param level: One of L{config.LOG_LEVELS}.
    @return: A L{twisted.logger.FilteringLogObserver}; its C{output} is the
        file written.
    @rtype: L{twisted.logger.ILogObserver}
    """
    from twisted.logger import (
        FileLogObserver,
        FilteringLogObserver,
        LogLevel,
        PredicateResult,
        eventAsJSON,
        textFileLogObserver,
    )
    from twisted.python import logfile as logfiles

    if logfile == "-" or (not logfile and nodaemon):
        output = sys.stdout
    else:
        output = logfiles.LogFile.fromFullPath(logfile or "twistd.log")
    if logFormat == config.LOG_JSON:
        observer = FileLogObserver(output, lambda event: eventAsJSON(event) + "\n")
    else:
        observer = textFileLogObserver(output)
    from dna.dns.client import isQueryPortEvent

    least = LogLevel.levelWithName(level)
    quiet = least > LogLevel.debug

    def atLeast(event):
        # Events without a level (none of ours) pass, unlike with
        # LogLevelFilterPredicate.
        eventLevel = event.get("log_level")
        if eventLevel is not None and eventLevel < least:
            return PredicateResult.no
        if quiet and isQueryPortEvent(event):
            # Twisted's, at info, two per DNS query: at debug for us.
            return PredicateResult.no
        return PredicateResult.maybe

    filtering = FilteringLogObserver(observer, [atLeast])
    filtering.output = output
    return filtering


class HeapFreeze(service.Service):
    """
    Once the server has started, move every object it holds to the
    permanent generation of the garbage collector (L{gc.freeze}): modules,
    classes, certificates, configuration, tables. They live as long as the
    process, yet each full collection walked them all, tens of
    milliseconds in which no stream is read (twice or more while the first
    thousand pairs are set up). Objects made afterwards, per stream and per
    stanza, are collected as before.
    """

    name = "heap-freeze"

    def __init__(self, freeze=gc.freeze):
        """
        @param freeze: Called once the service starts; L{gc.freeze}.
        """
        self._freeze = freeze

    def startService(self):
        service.Service.startService(self)
        self._freeze()


def makeService(options):
    """
    Build the service from parsed L{Options}: the DNA S2S service, default
    route of a L{dna.app.router.QuietRouter} (a wokkel router that logs no
    stanza), and, when C{[components] listen} is set, a listener for local
    XMPP services connecting as XEP-0114 components for the hosted domains.
    Both listen with the backlog of C{[limits] listen-backlog} unless their
    description sets one.

    The last child is a L{HeapFreeze}: once the others have started, what
    they hold is out of the garbage collector's way.

    @return: A L{service.MultiService} named C{dna}; its C{configuration} is
        the checked configuration and its C{s2s} the L{DNAService}; with
        C{[metrics] listen}, a metrics listener too (L{dna.app.metrics}).
    """
    from twisted.application import strports
    from twisted.words.protocols.jabber.xmlstream import STREAM_CONNECTED_EVENT

    from dna.app.router import ComponentServerFactory, QuietRouter
    from dna.app.service import DNAService
    from dna.channel.receiving import withBacklog

    configuration = options["configuration"]
    root = service.MultiService()
    root.setName("dna")
    root.configuration = configuration
    root.router = QuietRouter()
    root.s2s = DNAService.fromConfiguration(configuration, router=root.router)
    root.s2s.setServiceParent(root)
    if configuration.componentListen is not None:
        factory = ComponentServerFactory(root.router, configuration.componentSecret)
        # Back-pressure both ways between the components and the S2S streams.
        factory.addBootstrap(STREAM_CONNECTED_EVENT, root.s2s.componentConnected)
        strports.service(
            withBacklog(configuration.componentListen, configuration.limits.backlog), factory
        ).setServiceParent(root)
    if configuration.control is not None:
        _addControl(root, configuration)
    if configuration.metricsListen is not None:
        _addMetrics(root, configuration)
    # Last: it starts once the others have, with what they built.
    HeapFreeze().setServiceParent(root)
    return root


def _addMetrics(root, configuration):
    """
    Serve Prometheus metrics (L{dna.app.metrics}) where C{[metrics] listen}
    says; the registry is C{root.metrics}.
    """
    from twisted.internet import reactor

    from dna.app.metrics import metricsService

    listener = metricsService(root.s2s, configuration.metricsListen, reactor)
    root.metrics = listener.registry
    listener.setServiceParent(root)


def _addControl(root, configuration):
    """
    Serve the control API (L{dna.app.control}) where C{[control]} says;
    its C{Control} is C{root.control}.
    """
    from twisted.internet import reactor

    from dna.app.control import Control, controlServices

    root.control = Control(root.s2s, configuration, reactor)
    for listener in controlServices(root.control, configuration.control, reactor):
        listener.setServiceParent(root)
