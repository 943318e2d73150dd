"""
Setting up many domain pairs between two providers, DNA against server
dialback, and stanza throughput over one DNA TLS link with and without
enforcement of the binding table.

    python bench/multiplex.py [--senders 40] [--targets 25] [--setup-rounds 3]
                              [--stanzas 50000] [--pairs 20] [--rounds 5]
                              [--budget 60]

1. Setup: provider A (hosting C{senders} domains) sends one message to each
   of C{senders x targets} domain pairs at provider B, and the clock stops
   when B has delivered all of them. DNA (L{dna.app.service.DNAService}: one
   mutual-TLS connection, one C{<db:result/>} per pair) against wokkel's
   L{wokkel.server.ServerService} (server dialback: an outgoing stream per
   pair, and a verify connection back to the Authoritative Server per pair),
   fresh providers per round, rounds alternating, medians. Connections are
   counted at the listening factories. Delegations come from
   L{dna.testing.fakes.FakeDelegationChecker}, answered once per domain (see
   L{_providers.CachingFakeChecker}), and addresses from static tables: no
   DNS is measured. One more DNA round with the fake as it is shows what the
   fake costs.
2. Throughput: over the DNA connection with all pairs bound, A sends
   C{stanzas} messages on C{pairs} pairs and the clock stops when B has
   delivered them all; rounds alternate between B's stream with its
   L{dna.core.enforcement.StanzaFilter} installed and uninstalled, medians. Both
   providers run in this one process and reactor, so every rate includes A's
   send path as well as B's receive path. The stanzas are built once, in
   C{jabber:server}, and sent again each round. A warm-up round of at most
   10,000 stanzas sets how many rounds per mode (up to C{rounds}) of how
   many stanzas (up to C{stanzas}) fit in C{budget} seconds; see
   L{blastPlan}.

Prints C{name: value} lines; comment lines start with C{#}. Goals:
C{dna_connections} 1, C{setup_speedup} >= 10, C{tls_enforcement_ratio} >= 0.95.
"""

import argparse
import gc
import resource
import statistics
import sys
import time

import _providers
from twisted.internet import defer, task
from twisted.logger import LogLevel, globalLogBeginner

from dna.namespaces import NS_SERVER

#: Seconds one setup or one throughput round may take before it fails.
ROUND_TIMEOUT = 60.0


class Problems:
    """
    A log observer keeping warnings, errors and failures, and counting them.
    """

    def __init__(self):
        self.events = []

    def __call__(self, event):
        if "log_failure" in event or event.get("log_level", LogLevel.info) >= LogLevel.warn:
            self.events.append(event)

    def report(self):
        from twisted.logger import formatEvent

        for event in self.events[:5]:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            print("# logged: " + text.replace("\n", "\n# "), file=sys.stderr)


def listenDrops():
    """
    The kernel's count of SYNs dropped at full listen queues (all sockets;
    L{None} where C{/proc/net/netstat} is missing).
    """
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenDrops", 0))
    return None


def note(name, value):
    print("# %s: %s" % (name, value))


def setupMessages(senders, targets):
    return [
        _providers.message(
            "romeo@%s/orchard" % (sender,), "juliet@%s" % (target,), "p-%s-%s" % (sender, target)
        )
        for sender in senders
        for target in targets
    ]


@defer.inlineCallbacks
def timeSetup(reactor, providers, senders, targets):
    """
    Start C{providers}, send one message per pair, wait for B to deliver all.

    @return: A L{Deferred} firing with the seconds from the first send to the
        last delivery; the providers stay up.
    """
    yield defer.maybeDeferred(providers.start)
    messages = setupMessages(senders, targets)
    gc.collect()
    delivered = providers.sinkB.waitFor(len(messages), ROUND_TIMEOUT)
    start = time.perf_counter()
    for stanza in messages:
        providers.send(stanza)
    providers.sendLoop = time.perf_counter() - start
    yield delivered
    elapsed = time.perf_counter() - start
    providers.firstDelivery = providers.sinkB.firstAt - start
    expected = {(s, t) for s in senders for t in targets}
    pairs = providers.sinkB.pairs
    bounced = getattr(providers, "sinkA", None)
    if (
        set(pairs) != expected
        or any(n != 1 for n in pairs.values())
        or providers.sinkB.errors
        or (bounced is not None and bounced.count)
    ):
        raise RuntimeError("%s: wrong deliveries" % (type(providers).__name__,))
    return elapsed


def blastStanzas(senders, targets, count, pairs):
    """
    C{count} messages from 50 users per domain over C{pairs} bound pairs,
    already in C{jabber:server}.
    """
    chosen = [(senders[i % len(senders)], targets[i % len(targets)]) for i in range(pairs)]
    stanzas = []
    for i in range(count):
        sender, target = chosen[i % pairs]
        user = (i // pairs) % 50
        stanzas.append(
            _providers.message(
                "romeo%d@%s/orchard" % (user, sender),
                "juliet%d@%s" % (user, target),
                "m%d" % (i,),
                uri=NS_SERVER,
            )
        )
    return stanzas


@defer.inlineCallbacks
def timeBlast(reactor, dna, stanzas, batch=1000):
    """
    Send C{stanzas} from A, a batch per reactor turn, and wait for B.

    @return: A L{Deferred} firing with stanzas per second.
    """
    sink = dna.sinkB
    sink.reset()
    sink.recordPairs = False
    gc.collect()
    delivered = sink.waitFor(len(stanzas), ROUND_TIMEOUT)
    send = dna.a.send
    federation = dna.a.federation
    start = time.perf_counter()
    for i in range(0, len(stanzas), batch):
        # Back-pressure, as a component gets it: stanzas beyond a full
        # stream wait in bounded queues (then bounce), so send no faster
        # than the link drains.
        while federation.waitingCount > batch:
            yield task.deferLater(reactor, 0, lambda: None)
        for stanza in stanzas[i : i + batch]:
            send(stanza)
        yield task.deferLater(reactor, 0, lambda: None)
    yield delivered
    return len(stanzas) / (time.perf_counter() - start)


def blastPlan(options, rate):
    """
    How many rounds per mode, and how many stanzas per round, fit in
    C{options.budget} seconds at C{rate} stanzas per second: up to
    C{options.rounds} rounds of C{options.stanzas}; when fewer than three fit,
    three shorter rounds (at least 10,000 stanzas each), for a median.
    """
    fit = int(options.budget * rate / (2 * options.stanzas))
    if fit >= 3:
        return min(options.rounds, fit), options.stanzas
    rounds = min(options.rounds, 3)
    perRound = int(options.budget * rate / (2 * rounds))
    return rounds, min(options.stanzas, max(10000, perRound))


@defer.inlineCallbacks
def main(reactor, options):
    problems = Problems()
    globalLogBeginner.beginLoggingTo([problems], discardBuffer=True, redirectStandardIO=False)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    senders = _providers.senderDomains(options.senders)
    targets = _providers.targetDomains(options.targets)
    pairCount = len(senders) * len(targets)
    pki = _providers.benchPKI()

    times = {"dna": [], "dialback": []}
    firsts = {"dna": [], "dialback": []}
    loops = {"dna": [], "dialback": []}
    connections = {"dna": [], "dialback": []}
    dialbackDetail = None
    dna = None
    dropsBefore = listenDrops()
    for round in range(options.setup_rounds):
        order = ["dna", "dialback"] if round % 2 == 0 else ["dialback", "dna"]
        last = round == options.setup_rounds - 1
        for kind in order:
            if kind == "dna":
                providers = _providers.DNAProviders(reactor, pki, senders, targets)
            else:
                providers = _providers.DialbackProviders(reactor, senders, targets)
            try:
                times[kind].append((yield timeSetup(reactor, providers, senders, targets)))
                firsts[kind].append(providers.firstDelivery)
                loops[kind].append(providers.sendLoop)
                connections[kind].append(providers.accepted)
                if kind == "dialback":
                    dialbackDetail = (
                        providers.acceptedB.count,
                        providers.acceptedA.count,
                        providers.routes.connects,
                    )
            except BaseException:
                yield providers.stop()
                raise
            if kind == "dna" and last:
                dna = providers
            else:
                yield providers.stop()
    dropsAfter = listenDrops()
    uncached = _providers.DNAProviders(reactor, pki, senders, targets, cachingChecker=False)
    try:
        uncachedSetup = yield timeSetup(reactor, uncached, senders, targets)
    finally:
        yield uncached.stop()

    dnaSetup = statistics.median(times["dna"])
    dialbackSetup = statistics.median(times["dialback"])
    note("domain_pairs", "%d (%d senders x %d targets), one message each" % (
        pairCount, len(senders), len(targets)))
    note("dialback", "wokkel ServerService over plain TCP, no TLS (favours dialback); "
         "TCP_NODELAY on its streams as on DNA's")
    note("dna", "DNAService pair, mutual TLS, FakeDelegationChecker answered once per domain")
    note("listen_backlog", "%d (kernel ListenDrops during the setup rounds: %s)" % (
        _providers.BACKLOG,
        "unknown" if dropsBefore is None else dropsAfter - dropsBefore))
    note("setup_rounds", options.setup_rounds)
    for kind in ("dna", "dialback"):
        note("%s_setup_s_rounds" % (kind,), " ".join("%.3f" % t for t in times[kind]))
        note("%s_send_loop_s_rounds" % (kind,), " ".join("%.3f" % t for t in loops[kind]))
        note("%s_first_delivery_s_rounds" % (kind,), " ".join("%.3f" % t for t in firsts[kind]))
    note("dna_setup_s_uncached_fake_checker", "%.3f" % (uncachedSetup,))
    note("dialback_connections_detail",
         "%d streams accepted by B + %d verify connections accepted by A "
         "(%d connects asked for by wokkel)" % dialbackDetail)
    print("dna_connections: %d" % (max(connections["dna"]),))
    print("dialback_connections: %d" % (max(connections["dialback"]),))
    print("dna_setup_s: %.3f" % (dnaSetup,))
    print("dialback_setup_s: %.3f" % (dialbackSetup,))
    print("setup_speedup: %.1f" % (dialbackSetup / dnaSetup,))
    sys.stdout.flush()

    try:
        [authorization] = dna.b.federation.streams.values()
        note("dna_pairs_bound", "%d on %d connection(s)" % (
            len(dna.a.federation.tables.outgoing), len(dna.a.federation.tables.connections)))
        stanzas = blastStanzas(senders, targets, options.stanzas, options.pairs)
        warmup = stanzas[: min(len(stanzas), 10000)]
        warmupRate = yield timeBlast(reactor, dna, warmup)
        rounds, perRound = blastPlan(options, warmupRate)
        stanzas = stanzas[:perRound]
        rates = {"on": [], "off": []}
        for round in range(rounds):
            order = ["on", "off"] if round % 2 == 0 else ["off", "on"]
            for mode in order:
                if mode == "on":
                    authorization.filter.install()
                else:
                    authorization.filter.uninstall()
                rates[mode].append((yield timeBlast(reactor, dna, stanzas)))
        authorization.filter.install()
        on = statistics.median(rates["on"])
        off = statistics.median(rates["off"])
        note("tls_stanzas_per_round", "%d over %d pairs, %d rounds per mode "
             "(warm-up %d at %.0f/s; budget %.0fs)" % (
                 len(stanzas), options.pairs, rounds, len(warmup), warmupRate,
                 options.budget))
        note("tls_filter", "uninstalling clears the filter's accepted-pair memory: each "
             "enforced round starts cold (%d distinct address pairs)" % (
                 len({(s["to"], s["from"]) for s in stanzas}),))
        note("tls_enforced_rounds", " ".join("%.0f" % r for r in rates["on"]))
        note("tls_unenforced_rounds", " ".join("%.0f" % r for r in rates["off"]))
        note("tls_unenforced_stanzas_per_s", "%.0f" % (off,))
        note("tls_rejected", authorization.filter.rejected)
        print("tls_stanzas_per_s: %.0f" % (on,))
        print("tls_enforcement_ratio: %.3f" % (on / off,))
    finally:
        yield dna.stop()
    note("logged_problems", len(problems.events))
    problems.report()


def parseOptions(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--senders", type=int, default=40)
    parser.add_argument("--targets", type=int, default=25)
    parser.add_argument("--setup-rounds", type=int, default=3)
    parser.add_argument("--stanzas", type=int, default=50000)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=50.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parseOptions()
    task.react(main, [options])
