"""
C{dna-demo}: the scenario of draft-ietf-xmpp-dna-01 sections 3 to 6, played
in one process on loopback, with nothing from outside.

C{sender.tld} has outsourced its XMPP service to the provider running
C{xmpp1.originating.tld}, C{target.tld} to C{xmpp1.receiving.tld}, and so
have more tenant domains on each side. In the L{dna.demo.world} (a signed
DNS tree served on loopback, a test CA, two providers validating DNSSEC
themselves and authenticating each other over mutual TLS) the demo

  1. sends C{romeo@sender.tld} -> C{juliet@target.tld} and more pairs, with
     replies over the same bidirectional stream, and one message to the
     insecurely delegated domain, which must be refused;
  2. prints, with L{dna.demo.report}, what happened step by step, both
     providers' connection and binding tables as in section 4, and the
     proof that every pair used one TCP connection.

It exits with status 0 when all of that happened as the draft says, 1 with a
message saying what did not, 2 on a usage error.
"""

import sys
import time
import traceback

from twisted.internet import defer
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from twisted.python import usage
from twisted.words.protocols.jabber import error as jabberError

from dna.app.script import runCommand
from dna.core.tables import INCOMING, OUTGOING
from dna.demo import report
from dna.demo.world import (
    INSECURE_DOMAIN,
    Accepted,
    DemoFailed,
    Lookup,
    Trace,
    Verdict,
    World,
    tenants,
)
from dna.dns.verdict import SECURE
from dna.testing.fakes import chatMessage as message

DEFAULT_PAIRS = 6
MAX_PAIRS = 100
#: Seconds to wait for one stanza.
STANZA_TIMEOUT = 10.0

_FIRST_LINES = ("But soft, what light through yonder window breaks?",
                "Wherefore art thou Romeo?")


def domainPairs(senders, targets, count):
    """
    C{count} distinct (sender, target) pairs of JIDs, the draft's
    C{romeo@sender.tld} -> C{juliet@target.tld} first, then every sender
    with a different target before any repeats.
    """
    pairs = []
    size = len(senders)
    for offset in range(size):
        for i in range(size):
            user, domain = senders[i]
            peer, peerDomain = targets[(i + offset) % size]
            pairs.append((f"{user}@{domain}", f"{peer}@{peerDomain}"))
    return pairs[:count]


class Demo:
    """
    The scenario, step by step.
    """

    def __init__(self, reactor, pairs, out, quiet=False):
        """
        @param reactor: The reactor: TCP, UDP, time.
        @param pairs: How many domain pairs to send over.
        @param out: Where to tell the story.
        @param quiet: Whether to keep it to the outcome.
        """
        self._reactor = reactor
        self._out = out
        self._quiet = quiet
        self.trace = Trace()
        senders, targets = tenants(pairs)
        self.pairs = domainPairs(senders, targets, pairs)
        self.world = World(reactor, senders, targets, self.trace, self._arrived)
        # stanza id -> (provider expected, description, Deferred)
        self._expected = {}

    def say(self, text=""):
        if not self._quiet:
            self._out.write(text + "\n")

    def sayLines(self, lines):
        for line in lines:
            self.say(line)

    def heading(self, text):
        self.sayLines(report.heading(text))

    @defer.inlineCallbacks
    def setUp(self):
        yield self.world.setUp()
        self.providers = self.world.providers
        self.inboxes = self.world.inboxes
        self.sayLines(report.setUpLines(self.world))

    # Stanzas

    def _arrived(self, provider, stanza):
        expected = self._expected.pop(stanza.getAttribute("id"), None)
        if expected is not None:
            expected[2].callback((provider, stanza))

    def expect(self, stanzaID, provider, what, bounce=False):
        """
        Wait for a stanza we sent to reach C{provider}'s router: delivered,
        or with C{bounce} bounced back to its sender.

        @return: A L{Deferred} firing with the stanza, or failing with
            L{DemoFailed} when it bounced or went elsewhere unexpectedly, or
            did not arrive within L{STANZA_TIMEOUT} seconds.
        """
        d = defer.Deferred()
        self._expected[stanzaID] = (provider, what, d)

        def arrived(result):
            where, stanza = result
            bounced = stanza.getAttribute("type") == "error"
            if bounced and not bounce:
                raise DemoFailed(f"{what} bounced back to its sender with "
                                 f"{report.errorText(stanza)}"
                                 f"{report.whyNot(self.trace.events, stanza)}")
            if where != provider or bounced != bounce:
                raise DemoFailed(f"{what} reached provider {where} as {stanza.toXml()}")
            return stanza

        def timedOut(failure):
            failure.trap(defer.TimeoutError)
            self._expected.pop(stanzaID, None)
            raise DemoFailed(f"{what} did not arrive within {STANZA_TIMEOUT:g} s")

        d.addTimeout(STANZA_TIMEOUT, self._reactor)
        return d.addCallbacks(arrived, timedOut)

    @defer.inlineCallbacks
    def expectAll(self, waits):
        """
        L{expect} for several stanzas at once.

        @param waits: C{(stanza id, provider, what)} tuples.
        """
        results = yield defer.DeferredList(
            [self.expect(*wait) for wait in waits], consumeErrors=True)
        for success, value in results:
            if not success:
                value.raiseException()

    # The scenario

    @defer.inlineCallbacks
    def play(self):
        a, b = self.providers["A"], self.providers["B"]
        sender, target = self.pairs[0]
        self.heading(f"4. {sender} -> {target} (section 3), step by step")
        mark = self.trace.mark()
        arrival = self.expect("m1", "B", f"{sender} -> {target}")
        a.send(message(sender, target, "m1", _FIRST_LINES[0]))
        yield arrival
        self._narrate(self.trace.since(mark), sender, target)
        self.say()
        self.say(f"   The reply, {target} -> {sender}:")
        mark = self.trace.mark()
        arrival = self.expect("m1-reply", "A", f"the reply {target} -> {sender}")
        b.send(message(target, sender, "m1-reply", _FIRST_LINES[1]))
        yield arrival
        self._narrate(self.trace.since(mark), target, sender)

        if len(self.pairs) > 1:
            yield self._morePairs()
        yield self._insecure()

    def _narrate(self, events, sender, target):
        self.sayLines(report.narrate(events, sender, target, self._describeStream,
                                     self._onlyStream()))

    def _describeStream(self, accepted):
        """
        TLS and stream, as both ends saw them.
        """
        [authorizationA] = self.providers["A"].federation.streams.values()
        return report.streamLines(authorizationA.xs, accepted)

    def _onlyStream(self):
        streams = list(self.providers["A"].federation.tables.connections)
        return streams[0] if len(streams) == 1 else ", ".join(streams)

    @defer.inlineCallbacks
    def _morePairs(self):
        a, b = self.providers["A"], self.providers["B"]
        rest = list(enumerate(self.pairs))[1:]
        count = len(rest)
        self.heading(f"5. {count} more domain pair{'s' if count > 1 else ''}, all at "
                     f"once, and the replies")
        mark = self.trace.mark()
        arrivals = self.expectAll([(f"m{i + 1}", "B", f"{sender} -> {target}")
                                   for i, (sender, target) in rest])
        for i, (sender, target) in rest:
            a.send(message(sender, target, f"m{i + 1}", f"pair {i + 1}: hello from {sender}"))
        yield arrivals
        arrivals = self.expectAll([(f"m{i + 1}-reply", "A", f"the reply {target} -> {sender}")
                                   for i, (sender, target) in rest])
        for i, (sender, target) in rest:
            b.send(message(target, sender, f"m{i + 1}-reply", f"pair {i + 1}: hello back"))
        yield arrivals
        self.sayLines(report.pairsLines(rest, self.trace.since(mark), self._onlyStream()))

    @defer.inlineCallbacks
    def _insecure(self):
        a = self.providers["A"]
        sender = self.pairs[0][0]
        target = f"paris@{INSECURE_DOMAIN}"
        step = 6 if len(self.pairs) > 1 else 5
        self.heading(f"{step}. What DNA refuses: {sender} -> {target} "
                     f"({INSECURE_DOMAIN} is delegated without DNSSEC)")
        mark = self.trace.mark()
        received = len(self.inboxes["B"].stanzas)
        arrival = self.expect("insecure", "A", f"the bounce of {sender} -> {target}",
                              bounce=True)
        a.send(message(sender, target, "insecure", "Will you marry me?"))
        bounce = yield arrival
        lookups = [e for e in self.trace.since(mark)
                   if isinstance(e, Lookup) and e.result.domain == INSECURE_DOMAIN]
        if not lookups:
            raise DemoFailed(f"A did not look up {INSECURE_DOMAIN}")
        result = lookups[0].result
        condition = jabberError.exceptionFromStanza(bounce).condition
        self.sayLines(report.refusalLines(result, sender, condition))
        if result.status != "insecure":
            raise DemoFailed(f"{INSECURE_DOMAIN} should be insecure, not {result.status}")
        if condition != "remote-server-not-found":
            raise DemoFailed(f"expected a <remote-server-not-found/> bounce, got "
                             f"{bounce.toXml()}")
        if len(self.inboxes["B"].stanzas) != received:
            raise DemoFailed("B received a stanza for the insecure domain")
        self.say("   Nothing reached B.")

    # Checking and reporting

    def check(self):
        """
        Verify the outcome against the draft.

        @return: The summary line.
        @raise DemoFailed: When anything is not as it should be.
        """
        a, b = self.providers["A"], self.providers["B"]
        expected = {f"m{i + 1}": pair for i, pair in enumerate(self.pairs)}
        got = {s["id"]: (s["from"], s["to"]) for s in self.inboxes["B"].stanzas}
        if got != expected:
            raise DemoFailed(f"B received {sorted(got)} instead of {sorted(expected)}")
        replies = {f"m{i + 1}-reply": (t, s) for i, (s, t) in enumerate(self.pairs)}
        got = {s["id"]: (s["from"], s["to"]) for s in self.inboxes["A"].stanzas
               if s.getAttribute("type") != "error"}
        if got != replies:
            raise DemoFailed(f"A received {sorted(got)} instead of {sorted(replies)}")
        for event in self.trace.events:
            if (isinstance(event, (Lookup, Verdict)) and event.result.domain != INSECURE_DOMAIN
                    and event.result.status != SECURE):
                raise DemoFailed(f"{event.provider} found {event.result.domain} "
                                 f"{event.result.status}: {event.result.reason}")
        accepted = [e for e in self.trace.events if isinstance(e, Accepted)]
        streamsA = list(a.federation.tables.connections)
        streamsB = list(b.federation.tables.connections)
        if len(accepted) != 1 or len(streamsA) != 1 or streamsA != streamsB:
            raise DemoFailed(f"expected ONE connection: B accepted {len(accepted)}; A's "
                             f"connection table lists {streamsA}, B's {streamsB}")
        [streamID] = streamsA
        pairs = {(s.split("@")[1], t.split("@")[1]) for s, t in self.pairs}
        for name, service, sending, receiving in [
                ("A", a, pairs, pairs), ("B", b, {(t, s) for s, t in pairs},
                                          {(t, s) for s, t in pairs})]:
            tables = service.federation.tables
            tables.checkInvariants()
            for direction, table, wanted in [(OUTGOING, tables.outgoing, sending),
                                             (INCOMING, tables.incoming, receiving)]:
                bound = {pair: table.streams(*pair) for pair in table.pairs(streamID)}
                if set(bound) != wanted or any(s != (streamID,) for s in bound.values()):
                    raise DemoFailed(f"{name}'s {direction} bindings are {bound}, expected "
                                     f"{sorted(wanted)} on {streamID}")
        return report.summary(accepted[0].peer, accepted[0].xs.transport.getHost(),
                              streamID, len(self.pairs))

    def showTables(self):
        step = 7 if len(self.pairs) > 1 else 6
        self.heading(f"{step}. Every SRV lookup, and the tables of section 4 as both "
                     f"providers hold them now")
        tables = {provider: service.federation.tables
                  for provider, service in self.providers.items()}
        queries = {provider: len(client.queries)
                   for provider, client in self.world.clients.items()}
        self.sayLines(report.tablesLines(self.trace.events, tables, queries))

    def tearDown(self):
        return self.world.tearDown()


class Options(usage.Options):
    """
    Command line options of C{dna-demo}.
    """

    synopsis = "Usage: dna-demo [--pairs N] [--quiet | --verbose]"
    longdesc = ("Play draft-ietf-xmpp-dna-01 sections 3-6 in one process on loopback: a "
                "DNSSEC-signed test TLD served here, two providers with mutual TLS, "
                "romeo@sender.tld -> juliet@target.tld and more pairs over ONE "
                "connection. Exit status 0 when all went as the draft says.")
    optParameters = [
        ["pairs", "n", DEFAULT_PAIRS, f"How many domain pairs (1-{MAX_PAIRS}).", int],
    ]
    optFlags = [
        ["quiet", "q", "Print only the outcome."],
        ["verbose", "v", "Also print the log events of DNA as they happen."],
    ]

    def postOptions(self):
        if not 1 <= self["pairs"] <= MAX_PAIRS:
            raise usage.UsageError(f"--pairs must be between 1 and {MAX_PAIRS}")
        if self["quiet"] and self["verbose"]:
            raise usage.UsageError("--quiet and --verbose exclude each other")


def _logObservers(out, verbose, errors):
    """
    Observers to add for the run: one collecting errors DNA logs, and with
    C{verbose} one printing DNA's events.
    """

    def collectErrors(event):
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or \
                event.get("log_failure") is not None:
            errors.append(formatEvent(event) or repr(event.get("log_failure")))

    observers = [collectErrors]
    if verbose:
        def show(event):
            namespace = str(event.get("log_namespace", ""))
            # Modules only: not the factories' start and stop chatter.
            if namespace.startswith("dna.") and namespace in sys.modules:
                level = event["log_level"].name
                out.write(f"   [{level} {event['log_namespace']}] {formatEvent(event)}\n")

        observers.append(FilteringLogObserver(
            show, [LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)]))
    return observers


@defer.inlineCallbacks
def run(reactor, options, out=None, err=None):
    """
    Play the demo.

    @param options: Parsed L{Options}.
    @param out: Where to print; C{sys.stdout} by default.
    @param err: Where failures are told; C{sys.stderr} by default.
    @return: A L{Deferred} firing with the exit status: 0 when everything
        happened as the draft says, 1 otherwise.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    errors = []
    observers = _logObservers(out, options["verbose"], errors)
    for observer in observers:
        globalLogPublisher.addObserver(observer)
    started = time.monotonic()
    demo = Demo(reactor, options["pairs"], out, quiet=options["quiet"])
    status = 1
    try:
        yield demo.setUp()
        yield demo.play()
        summary = demo.check()
        if errors:
            raise DemoFailed(f"errors were logged: {errors[0]}")
        demo.showTables()
        demo.heading("Result")
        out.write(f"OK: {summary}\n")
        out.write(f"dna-demo finished in {time.monotonic() - started:.2f} s\n")
        status = 0
    except DemoFailed as e:
        err.write(f"dna-demo: FAILED: {e}\n")
    except Exception as e:
        err.write(f"dna-demo: FAILED with an unexpected error: "
                  f"{type(e).__name__}: {e}\n")
        traceback.print_exc(file=err)
    finally:
        yield demo.tearDown()
        for observer in observers:
            globalLogPublisher.removeObserver(observer)
    return status


def main(argv=None, _reactor=None):
    """
    The C{dna-demo} console script (also C{python -m dna.demo}).

    @param argv: The arguments, C{sys.argv[1:]} by default.
    """
    runCommand("dna-demo", Options(), run, argv, _reactor)

