"""
The real path, end to end: two C{twistd dna} processes over real DNS, with
XEP-0114 components delivering at both ends, side by side with two Prosody
0.12 servers on the same DNS (issue 13).

    PYTHONPATH=. python bench/e2e.py [--rounds 3] [--stanzas 20000]

One knotd + validating unbound (L{tests.integration.interop.InteropDNS})
serves four providers: C{xmpp.prova.example} (DNA provider A) hosting the
40 sender domains C{sNN.prova.example} (and more, for the latency and
binding figures), C{xmpp.provb.example} (DNA provider B) hosting the 25
target domains C{tNN.provb.example}, and the same for two Prosody servers
(C{prosa.example}, C{prosb.example}). Every round starts fresh processes on
fresh component ports and restarts unbound (cold cache); rounds alternate
which system goes first. Prints C{name: value} lines (medians over the
rounds):

  - C{e2e_setup_1000_pairs_s}: A's component sends one message for each of
    the 40 x 25 pairs; until B's components (one per target domain, in
    their own process) have all 1,000. Includes every DNSSEC look-up, the connection, STARTTLS with
    mutual certificates and the 1,000 C{<db:result/>} authorizations.
    C{e2e_connections}: S2S connections between A and B afterwards.
  - C{prosody_setup_1000_pairs_s}, C{prosody_connections}: the same between
    two Prosody servers (s2s_secure_auth: certificates and SASL EXTERNAL;
    components for every hosted domain), with C{nagle = false};
    C{prosody_nagle_setup_1000_pairs_s} as Prosody ships (Nagle on).
    C{setup_speedup_vs_prosody}: the Prosody (nagle off) time over ours.
  - C{e2e_stanzas_per_s}: N messages component to component through both
    servers over the open connection (a sliding window of 2,000 in flight,
    topped up 100 at a time, as a component with flow control keeps it
    full: L{sendAll}). The receiving components are real XEP-0114
    components (Twisted's, handshake and all) that parse every message with
    their C{XmlStream}, as the floor's receiver does, so that the ratio
    compares like with like; and, as the floor's receiver, they run in a
    process of their own (L{ComponentsReceiver}): they are provider B's
    services, and in the sender's process the sender could not send while
    they parsed. With C{--lean-components} they
    read, once authenticated, with a bare expat parser that counts the
    top-level C{<message/>} elements (L{MessageCounter}) instead of building
    a domish tree for each and dispatching it: every message is still
    received, parsed and counted, with 2 Python calls per message instead
    of about 45 (C{_bench} falls from 11-17 to 4-5 us per stanza), so that
    the bench process takes less of the two cores from the servers
    measured; the floor's receiver still parses with an C{XmlStream}, so
    C{e2e_vs_floor} is then not like for like. C{e2e_cpu_us_per_stanza_a}, C{_b}:
    CPU time of each server per stanza meanwhile (/proc/PID/stat), which
    depends less on what else the machine runs; C{_bench}, the components'
    (this process, which sends, and the receiving components' process: on
    two cores the four processes share the CPU, so their sum sets the
    rate). C{floor_stanzas_per_s}: the same
    stanzas, same window, over one bare Twisted TLS link to another process
    that parses them with an C{XmlStream}, measured just after our
    throughput in even rounds and just before it in odd ones (the speed of
    a shared machine drifts within seconds: the floor's receiver spent 9.5
    to 12.7 us per stanza in six runs in a row);
    C{floor_cpu_us_per_stanza_receiver}, that receiver's CPU time per
    stanza, tells how fast the machine was. C{e2e_vs_floor}: the median of
    the rounds' ratios of the two.
  - C{new_pair_ms_p50}, C{new_pair_ms_p99}: after unbound restarts (cold
    cache), one message at a time from a sender domain never used before to
    a target on the open connection, until B's component has it.
  - Memory, in the first round only (C{--memory-rounds}):
    C{rss_per_connection_kb}: VmRSS growth of B's process per idle
    authenticated DNA connection (100 opened from here).
  - C{rss_per_binding_b}: VmRSS growth of B's process per binding, from
    1,000 to 11,000 bindings (400 more sender domains x 25 targets).

Exits non-zero with a message if any round loses a stanza.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)

from xml.parsers import expat  # noqa: E402

from twisted.internet import defer, error, protocol, reactor, ssl, stdio, task  # noqa: E402
from twisted.words.xish import xmlstream as xishstream  # noqa: E402
from twisted.words.xish.xmlstream import STREAM_END_EVENT  # noqa: E402

from dna.channel.originating import Connector  # noqa: E402
from dna.testing.pki import CertificateAuthority  # noqa: E402
from tests.integration.flowpair import (  # noqa: E402
    SECRET,
    Twistd,
    connectComponents,
    disconnectComponents,
    established,
    matrix,
    rss,
)
from tests.integration.interop import (  # noqa: E402
    S2S_PORT,
    InteropDNS,
    ProsodyServer,
    pickAddresses,
    xmppZone,
)
from tests.integration.processes import freePort, waitForPort  # noqa: E402

SENDERS, TARGETS, FRESH, MANY = 40, 25, 40, 400
WINDOW = 2000
#: Stanzas written at once by L{sendAll}.
CHUNK = 100
IDLE_CONNECTIONS = 100


class Lost(Exception):
    """
    A round lost a stanza.
    """


def emit(name, value):
    print(f"{name}: {value}", flush=True)


def note(text):
    print(f"# {text}", file=sys.stderr, flush=True)


def cleanUp(cleanups, workdir, keep):
    """
    Call C{cleanups} last first (one failing does not stop the others),
    empty the list, then remove C{workdir} unless the environment variable
    C{keep} is set.
    """
    for f in reversed(cleanups):
        try:
            f()
        except Exception as e:  # cleanup goes on
            note(f"cleanup: {e!r}")
    del cleanups[:]
    if os.environ.get(keep):
        note(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def cpuSeconds(pid):
    """
    User + system CPU seconds a process has used (/proc/PID/stat).
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """
    Samples the CPU of some processes every C{interval} seconds in a thread
    (C{DNA_E2E_SAMPLE=1}): each process's utilisation over the run, and how
    often each was idle (under 20% of a core in a sample) while another
    was busy, to see whether the pipeline overlaps.
    """

    def __init__(self, pids, interval=0.1):
        self.pids = pids
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        last = [cpuSeconds(pid) for pid in self.pids.values()]
        t = time.perf_counter()
        while not self._stop.wait(self.interval):
            now = [cpuSeconds(pid) for pid in self.pids.values()]
            t2 = time.perf_counter()
            self.samples.append([(b - a) / (t2 - t) for a, b in zip(last, now)])
            last, t = now, t2

    def stop(self):
        self._stop.set()
        self._thread.join()
        names = list(self.pids)
        n = len(self.samples) or 1
        for i, name in enumerate(names):
            busy = [s[i] for s in self.samples]
            note(f"sample {name}: utilisation {sum(busy) / n:.2f}, "
                 f"idle in {sum(1 for b in busy if b < 0.2) / n:.0%} of samples")
        note("sample sum of utilisations: "
             f"{sum(sum(s) for s in self.samples) / n:.2f} (of 2 cores)")
        note("samples: " + " ".join(
            "/".join(f"{x:.1f}" for x in s) for s in self.samples[:40]))


def median(values):
    return statistics.median(values)


def message(sender, target, n):
    return (f"<message from='u@{sender}' to='u@{target}' id='m{n}' type='chat'>"
            f"<body>hello {n}</body></message>")


# Components


class Inbox:
    """
    How many messages the components of one end received, with waiting
    for a count.
    """

    def __init__(self):
        self.count = 0
        self._waiters = []

    def reached(self, count):
        self.count = count
        for waiter in list(self._waiters):
            if self.count >= waiter[0]:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    #: Whether the receiving components count with L{MessageCounter}
    #: (C{--lean-components}) rather than parse with their C{XmlStream}.
    lean = False

    def attach(self, xs):
        """
        Count the messages that reach C{xs}, an authenticated component
        stream, from now on: with its own C{XmlStream} parsing each into a
        domish tree and dispatching it, as the floor's receiver does; or,
        when L{lean}, with a L{MessageCounter}. (In the receiving
        components' process, L{componentsReceiver}, which reports the count
        once per reactor turn.)
        """
        if self.lean:
            MessageCounter(xs, self)
        else:
            xs.addObserver("/message", self._counted)

    def _counted(self, stanza):
        # As the floor's receiver counts: no waiters here.
        self.count += 1

    def waitFor(self, count, timeout):
        d = defer.Deferred()
        if self.count >= count:
            d.callback(None)
            return d
        self._waiters.append((count, d))
        return d.addTimeout(timeout, reactor)


class MessageCounter:
    """
    Reads an authenticated component stream in place of Twisted's parser:
    a bare expat parser (no namespaces, no elements built, no dispatch)
    that counts the C{<message/>} elements at the top level of the stream,
    and tells the L{Inbox} once per read. Expat still checks that what
    arrives is well-formed XML: an error stops the stream's reading (and
    the round then loses stanzas).
    """

    def __init__(self, xs, inbox):
        self._inbox = inbox
        self._depth = 0
        self.count = 0
        parser = self._parser = expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        # Inside the stream's root element, as the stream is.
        parser.Parse(b"<stream:stream>", False)
        xs.dataReceived = self.dataReceived

    def _start(self, name, attributes):
        self._depth += 1

    def _end(self, name):
        depth = self._depth = self._depth - 1
        if depth == 1 and name == "message":
            self.count += 1

    def dataReceived(self, data):
        before = self.count
        self._parser.Parse(data, False)
        if self.count != before:
            self._inbox.reached(self._inbox.count + self.count - before)


@defer.inlineCallbacks
def sendAll(xs, stanzas, inbox, base, window=WINDOW):
    """
    Write C{stanzas} (text) with at most C{window} in flight beyond what
    C{inbox} has received (C{base} before the first): a sliding window, as
    a sender with flow control keeps it full, topped up by L{CHUNK} (at most
    half the window) as soon as that many have arrived (not refilled by half once half has drained,
    which left the first server idle while the window was refilled).
    """
    step = max(1, min(CHUNK, window // 2))
    sent = 0
    while sent < len(stanzas):
        inFlight = base + sent - inbox.count
        if inFlight > window - step:
            try:
                yield inbox.waitFor(base + sent - (window - step), timeout=60)
            except defer.TimeoutError:
                raise Lost(f"{inbox.count - base} of {sent} stanzas arrived in 60 s")
            continue
        chunk = stanzas[sent:sent + step]
        xs.transport.write("".join(chunk).encode("utf-8"))
        sent += len(chunk)
        if (sent - len(chunk)) // 1000 != sent // 1000:
            # Let the reactor read, every thousand.
            yield task.deferLater(reactor, 0, lambda: None)


@defer.inlineCallbacks
def expect(inbox, count, what, timeout=60):
    """
    Wait until C{inbox} has C{count}; raise L{Lost}, naming C{what}, if it
    has not after C{timeout} seconds.
    """
    try:
        yield inbox.waitFor(count, timeout)
    except defer.TimeoutError:
        raise Lost(f"{what}: {inbox.count} of {count} stanzas arrived in {timeout} s")


@defer.inlineCallbacks
def throughput(xs, stanzas, inbox, pids, what):
    """
    Send C{stanzas} on C{xs} with L{sendAll} until C{inbox} has them all.

    @param pids: Name -> process id of the processes whose CPU is counted.
    @return: A L{Deferred} firing with (stanzas per second, name -> CPU
        microseconds per stanza).
    """
    n = len(stanzas)
    before = inbox.count
    cpu0 = {name: cpuSeconds(pid) for name, pid in pids.items()}
    t0 = time.perf_counter()
    yield sendAll(xs, stanzas, inbox, before)
    yield expect(inbox, before + n, what)
    rate = n / (time.perf_counter() - t0)
    return rate, {name: (cpuSeconds(pid) - cpu0[name]) / n * 1e6
                  for name, pid in pids.items()}


@defer.inlineCallbacks
def besideFloor(measure, floor, floorFirst):
    """
    Call C{measure} and C{floor} (each returns a L{Deferred}) one after the
    other, C{floor} first if C{floorFirst}: the speed of a shared machine
    drifts within seconds, so a ratio compares what was measured together.

    @return: A L{Deferred} firing with (C{measure}'s result, C{floor}'s).
    """
    if floorFirst:
        bare = yield floor()
    result = yield measure()
    if not floorFirst:
        bare = yield floor()
    return result, bare


def runToEnd(start, name, cleanUp=lambda: None):
    """
    Run the reactor until the L{Deferred} C{start()} returns fires, then
    C{cleanUp()}; exit non-zero, saying why, if it failed (L{Lost}: with
    C{"{name}: LOST STANZAS"}).
    """
    failure = []

    def done(result):
        if result is not None and hasattr(result, "value"):
            failure.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: start().addBoth(done))
    reactor.run()
    cleanUp()
    if failure:
        f = failure[0]
        if f.check(Lost):
            print(f"{name}: LOST STANZAS: {f.value}", file=sys.stderr)
        else:
            f.printTraceback(file=sys.stderr)
        sys.exit(1)


class ComponentsReceiver(protocol.ProcessProtocol):
    """
    The receiving end's components, in a process of their own
    (L{componentsReceiver}), as the floor's receiver is: they are the
    target domains' services, at the other provider, and share no reactor
    with the sending component (in one process, the sender could not send
    while the receivers parsed, and the servers between would wait). The
    process writes how many messages its components have received, as a
    decimal line once per reactor turn in which some arrived, and C{ready}
    once all are authenticated; the counts go to the L{Inbox}. It exits
    when its standard input closes (this process ended, however) or a
    component's connection is lost.
    """

    transport = None

    def __init__(self, inbox):
        self.inbox = inbox
        self._ready = None
        self._buffer = b""

    @property
    def pid(self):
        """
        The process's id while it runs, else L{None}.
        """
        return None if self.transport is None else self.transport.pid

    def start(self, port, domains):
        """
        Start the process with a component for each of C{domains} on the
        component port C{port} of a server.

        @return: A L{Deferred} that fires once all are authenticated.
        """
        self._ready = defer.Deferred()
        arguments = [sys.executable, os.path.abspath(__file__),
                     "--components-receiver", str(port), ",".join(domains)]
        if Inbox.lean:
            arguments.append("--lean-components")
        reactor.spawnProcess(
            self, sys.executable, arguments, env=dict(os.environ, PYTHONPATH=CHECKOUT),
            path=CHECKOUT)
        return self._ready.addTimeout(30, reactor)

    def outReceived(self, data):
        """
        Lines from the process: C{ready}, then counts.
        """
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            if line == b"ready":
                self._ready.callback(None)
            elif line:
                self.inbox.reached(int(line))

    def errReceived(self, data):
        """
        The process's errors go to ours.
        """
        sys.stderr.write(data.decode("utf-8", "replace"))

    def processEnded(self, reason):
        """
        The process ended: unless we stopped it, whatever waits for it
        fails now, saying so.
        """
        if self._ready is not None and not self._ready.called:
            self._ready.errback(reason)
        if not self._stopping:
            waiters, self.inbox._waiters = self.inbox._waiters, []
            for count, d in waiters:
                d.errback(Lost(f"the receiving components' process ended "
                               f"({reason.value}) after {self.inbox.count} of {count}"))

    _stopping = False

    def stop(self):
        """
        Kill the process, if it still runs.
        """
        self._stopping = True
        if self.pid is not None:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass


class _Parent(protocol.Protocol):
    """
    The receiving components' standard input: when it closes, the process
    that started them has ended, and so do they.
    """

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def componentsReceiver(port, domains):
    """
    The receiving components, in their own process (L{ComponentsReceiver}):
    an XEP-0114 component for each of C{domains}, parsing what it receives
    with its C{XmlStream} (or a L{MessageCounter}); the count of messages
    on standard output once per reactor turn in which some arrived. Ends
    when standard input closes or a component's connection is lost (never
    reconnecting: a server gone must not leave it spinning).
    """
    stdio.StandardIO(_Parent(), stdout=os.dup(1))
    inbox = Inbox()
    reported = [0]
    pending = []

    def report():
        del pending[:]
        if inbox.count != reported[0]:
            reported[0] = inbox.count
            os.write(1, b"%d\n" % (inbox.count,))

    def attach(xs):
        inbox.attach(xs)
        xs.addObserver(STREAM_END_EVENT, lambda reason: reactor.running and reactor.stop())
        dataReceived = xs.dataReceived

        def reading(data):
            dataReceived(data)
            # Once for all the reads of this reactor turn.
            if not pending:
                pending.append(reactor.callLater(0, report))

        xs.dataReceived = reading

    def ready(result):
        os.write(1, b"ready\n")

    def failed(failure):
        failure.printTraceback(file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(
        lambda: connectComponents(port, domains, attach=attach).addCallbacks(ready, failed))
    reactor.run()


# Processes


def spawnMatrix(senders, targets, start=0):
    return matrix(senders, targets, start, make=message)


class Bench:

    def __init__(self, options):
        self.options = options
        self.workdir = tempfile.mkdtemp(prefix="dna-e2e-")
        os.chmod(self.workdir, 0o755)
        self.results = {}
        self.cleanups = []
        self.dnaA, self.dnaB, self.proA, self.proB = pickAddresses(4)
        self.senders = [f"s{i:02d}.prova.example" for i in range(1, SENDERS + 1)]
        self.fresh = [f"x{i:02d}.prova.example" for i in range(1, FRESH + 1)]
        self.many = [f"m{i:03d}.prova.example" for i in range(1, MANY + 1)]
        self.targets = [f"t{i:02d}.provb.example" for i in range(1, TARGETS + 1)]
        self.pSenders = [f"s{i:02d}.prosa.example" for i in range(1, SENDERS + 1)]
        self.pTargets = [f"t{i:02d}.prosb.example" for i in range(1, TARGETS + 1)]
        label = lambda names: [n.split(".")[0] for n in names]  # noqa: E731
        zones = {
            "prova.example": xmppZone("xmpp.prova.example", self.dnaA,
                                      label(self.senders + self.fresh + self.many)),
            "provb.example": xmppZone("xmpp.provb.example", self.dnaB, label(self.targets)),
            "prosa.example": xmppZone("xmpp.prosa.example", self.proA,
                                      ["@"] + label(self.pSenders)),
            "prosb.example": xmppZone("xmpp.prosb.example", self.proB,
                                      ["@"] + label(self.pTargets)),
        }
        self.ca = CertificateAuthority("bench e2e CA")
        self.certs = {
            name: self.ca.issue(name, dnsNames=[name] + extra, clientAuth=True)
            for name, extra in [
                ("xmpp.prova.example", []), ("xmpp.provb.example", []),
                ("xmpp.provc.example", []),
                ("xmpp.prosa.example", ["prosa.example"] + self.pSenders),
                ("xmpp.prosb.example", ["prosb.example"] + self.pTargets)]}
        self.dns = InteropDNS(os.path.join(self.workdir, "dns"), zones)
        self.cleanups.append(self.dns.stop)
        self.dns.start()
        self.round = 0

    def cleanup(self):
        cleanUp(self.cleanups, self.workdir, "DNA_KEEP_E2E")

    def record(self, name, value):
        self.results.setdefault(name, []).append(value)

    # DNA

    @defer.inlineCallbacks
    def dnaRound(self):
        self.dns.restartResolver()
        base = os.path.join(self.workdir, f"round{self.round}")
        a = Twistd(os.path.join(base, "a"), "xmpp.prova.example", self.dnaA,
                   self.senders + self.fresh + self.many, self.dns.resolver,
                   self.certs["xmpp.prova.example"], self.ca)
        b = Twistd(os.path.join(base, "b"), "xmpp.provb.example", self.dnaB,
                   self.targets, self.dns.resolver, self.certs["xmpp.provb.example"], self.ca)
        attached = []
        receiver = None
        try:
            a.start()
            b.start()
            self.cleanups.append(a.stop)
            self.cleanups.append(b.stop)
            a.waitListening()
            b.waitListening()
            inbox = Inbox()
            receiver = ComponentsReceiver(inbox)
            self.cleanups.append(receiver.stop)
            yield receiver.start(b.componentPort, self.targets)
            [(xs, _, _)] = senders = yield connectComponents(
                a.componentPort, self.senders[:1])
            attached += senders

            # Set-up: 1,000 pairs.
            stanzas = spawnMatrix(self.senders, self.targets)
            t0 = time.perf_counter()
            xs.transport.write("".join(stanzas).encode("utf-8"))
            yield self.expect(inbox, len(stanzas), "set-up", timeout=60)
            self.record("e2e_setup_1000_pairs_s", time.perf_counter() - t0)
            self.record("e2e_connections", established([self.dnaA, self.dnaB]))

            # Throughput over the open connection.
            n = self.options.stanzas
            stanzas = [message(self.senders[i % SENDERS], self.targets[i % TARGETS],
                               100000 + i) for i in range(n)]
            pids = {"a": a.pid, "b": b.pid, "bench": os.getpid(),
                    "receiver": receiver.pid}

            @defer.inlineCallbacks
            def measure():
                sampler = None
                if os.environ.get("DNA_E2E_SAMPLE"):
                    sampler = Sampler(pids)
                    sampler.start()
                result = yield throughput(
                    xs, stanzas, inbox, pids, f"round {self.round}, throughput")
                if sampler is not None:
                    sampler.stop()
                return result

            if self.options.only is None:
                # The floor beside it, just before it in odd rounds.
                (e2e, used), bare = yield besideFloor(
                    measure, self.floorRound, floorFirst=self.round % 2)
                self.record("e2e_vs_floor", e2e / bare)
                note(f"round {self.round}: {e2e:.0f} against a floor of {bare:.0f}: "
                     f"{e2e / bare:.2f}")
            else:
                e2e, used = yield measure()
            self.record("e2e_stanzas_per_s", e2e)
            self.record("e2e_cpu_us_per_stanza_a", used["a"])
            self.record("e2e_cpu_us_per_stanza_b", used["b"])
            self.record("e2e_cpu_us_per_stanza_bench", used["bench"] + used["receiver"])

            # A new pair on the open connection, cold resolver cache.
            self.dns.restartResolver()
            latencies = []
            for i, sender in enumerate(self.fresh):
                before = inbox.count
                t0 = time.perf_counter()
                xs.send(message(sender, self.targets[i % TARGETS], 200000 + i))
                yield self.expect(inbox, before + 1, "new pair", timeout=20)
                latencies.append((time.perf_counter() - t0) * 1000)
            self.results.setdefault("latencies", []).extend(latencies)

            if self.round >= self.options.memory_rounds:
                return
            # Memory per binding, in B.
            yield task.deferLater(reactor, 0.2, lambda: None)
            rss0 = rss(b.pid)
            stanzas = spawnMatrix(self.many, self.targets, 300000)
            before = inbox.count
            # B closes a stream with more than 100 requests pending (until A
            # keeps a request window): at most 90 new pairs in flight.
            yield sendAll(xs, stanzas, inbox, before, window=90)
            yield self.expect(inbox, before + len(stanzas), "bindings", timeout=60)
            yield task.deferLater(reactor, 0.2, lambda: None)
            self.record("rss_per_binding_b", (rss(b.pid) - rss0) / len(stanzas))
            # Memory per idle authenticated connection, in B.
            rss0 = rss(b.pid)
            streams = yield self.idleConnections(b)
            yield task.deferLater(reactor, 0.2, lambda: None)
            self.record("rss_per_connection_kb", (rss(b.pid) - rss0) / 1024 / len(streams))
            for stream in streams:
                stream.transport.abortConnection()
        finally:
            disconnectComponents(attached)
            if receiver is not None:
                receiver.stop()
            a.stop()
            b.stop()

    @defer.inlineCallbacks
    def idleConnections(self, b):
        """
        Open L{IDLE_CONNECTIONS} authenticated DNA streams to B, eight at a
        time (B's cap of unauthenticated connections from one address).
        """
        pki = self.certs["xmpp.provc.example"]
        connector = Connector(
            None, None, "xmpp.provc.example", pki.toPrivateCertificate(),
            ssl.trustRootFromCertificates([self.ca.toCertificate()]), reactor)
        streams = []
        while len(streams) < IDLE_CONNECTIONS:
            batch = yield defer.gatherResults(
                [connector._connectOne(b.address, S2S_PORT, "xmpp.provb.example")
                 for _ in range(8)])
            streams.extend(batch)
        return streams

    def expect(self, inbox, count, what, timeout):
        return expect(inbox, count, f"round {self.round}, {what}", timeout)

    # Prosody

    @defer.inlineCallbacks
    def prosodyRound(self, nagle):
        self.dns.restartResolver()
        ports = {}
        servers = []
        # Prosody's default s2s_timeout (the test config's 10 s is too short
        # for 1,000 handshakes on a loaded machine).
        extra = "s2s_timeout = 90\n" + (
            "" if nagle else "network_settings = { nagle = false; tcp_backlog = 1024 }\n")
        for address, name, domains in [
                (self.proA, "xmpp.prosa.example", self.pSenders),
                (self.proB, "xmpp.prosb.example", self.pTargets)]:
            port = ports[name] = freePort()
            components = "".join(
                f'Component "{d}"\n    component_secret = "{SECRET}"\n' for d in domains)
            server = ProsodyServer(
                [name.split(".", 1)[1]], address, self.certs[name], self.ca.certificatePEM,
                self.dns.resolver, self.dns.anchorFile, logLevel="info",
                extraConfig=(extra + f'component_ports = {{ {port} }}\n'
                             'component_interface = "127.0.0.1"\n' + components))
            servers.append(server)
            self.cleanups.append(server.stop)
        attached = []
        receiver = None
        try:
            for server in servers:
                server.start()
            inbox = Inbox()
            receiver = ComponentsReceiver(inbox)
            self.cleanups.append(receiver.stop)
            try:
                yield receiver.start(ports["xmpp.prosb.example"], self.pTargets)
            except Exception:
                # Seen once in a dozen runs: say what Prosody said.
                for server in servers:
                    note(f"{server.hosts[0]}:\n{server.logTail(15)}")
                raise
            senders = yield connectComponents(
                ports["xmpp.prosa.example"], self.pSenders)
            attached += senders
            t0 = time.perf_counter()
            for (xs, _, _), sender in zip(senders, self.pSenders):
                xs.transport.write("".join(spawnMatrix([sender], self.pTargets)).encode("utf-8"))
            try:
                yield self.expect(inbox, SENDERS * TARGETS, "prosody set-up", timeout=60)
            except Lost:
                for server in servers:
                    note(f"{server.hosts[0]}:\n{server.logTail(15)}")
                raise
            key = "prosody_nagle" if nagle else "prosody"
            self.record(f"{key}_setup_1000_pairs_s", time.perf_counter() - t0)
            self.record(f"{key}_connections", established([self.proA, self.proB]))
        finally:
            disconnectComponents(attached)
            if receiver is not None:
                receiver.stop()
            for server in servers:
                server.stop()

    # The floor

    @defer.inlineCallbacks
    def floorRound(self):
        directory = os.path.join(self.workdir, f"floor{self.round}")
        n = self.options.stanzas
        stanzas = [message(self.senders[i % SENDERS], self.targets[i % TARGETS], i)
                   for i in range(n)]
        rate, cpu = yield measureFloor(
            directory, self.certs["xmpp.provb.example"], self.ca, stanzas, self.cleanups)
        self.record("floor_stanzas_per_s", rate)
        self.record("floor_cpu_us_per_stanza_receiver", cpu)
        return rate


@defer.inlineCallbacks
def measureFloor(directory, certificate, ca, stanzas, cleanups):
    """
    The floor: C{stanzas} over one bare Twisted TLS link to a process that
    parses them with an C{XmlStream} (L{floorReceiver}), with L{sendAll}'s
    window.

    @param certificate: The receiver's, for C{xmpp.provb.example}, issued
        by C{ca}.
    @param cleanups: Gets a callable that kills the receiver.
    @return: A L{Deferred} firing with (stanzas per second, the receiver's
        CPU microseconds per stanza).
    """
    os.makedirs(directory)
    certificate.writeTo(directory, "server")
    port = freePort()
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--floor-receiver", str(port),
         directory], cwd=CHECKOUT, env=dict(os.environ, PYTHONPATH=CHECKOUT))
    cleanups.append(lambda: process.poll() is None and process.kill())
    try:
        waitForPort(port, process)
        inbox = Inbox()
        factory = FloorSenderFactory(inbox)
        options = ssl.optionsForClientTLS(
            "xmpp.provb.example", trustRoot=ssl.Certificate.loadPEM(ca.certificatePEM))
        reactor.connectSSL("127.0.0.1", port, factory, options)
        link = yield factory.ready
        rate, used = yield throughput(link, stanzas, inbox, {"receiver": process.pid}, "floor")
        link.transport.loseConnection()
    finally:
        process.kill()
        process.wait()
    return rate, used["receiver"]


class FloorSender(protocol.Protocol):
    """
    The sending end of the floor: writes a stream header, then whatever
    L{sendAll} gives it; the receiver reports its count as decimal lines.
    """

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='x' from='y' version='1.0'>")
        self._buffer = b""
        self.factory.ready.callback(self)

    def dataReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if lines:
            self.factory.inbox.reached(int(lines[-1]))


class FloorSenderFactory(protocol.ClientFactory):
    protocol = FloorSender

    def __init__(self, inbox):
        self.inbox = inbox
        self.ready = defer.Deferred()


def floorReceiver(port, directory):
    """
    The receiving end of the floor, in its own process: TLS, an
    L{XmlStream} parsing every stanza, counting messages and reporting the
    count every 100 and at the end of each read.
    """
    with open(os.path.join(directory, "server.pem"), "rb") as f:
        pem = f.read()
    with open(os.path.join(directory, "server.key"), "rb") as f:
        pem += f.read()
    certificate = ssl.PrivateCertificate.loadPEM(pem)
    options = certificate.options()

    class Receiver(xishstream.XmlStream):
        count = 0

        def connectionMade(self):
            xishstream.XmlStream.connectionMade(self)
            self.transport.setTcpNoDelay(True)
            self.addObserver("/message", self.onMessage)

        def onMessage(self, stanza):
            self.count += 1

        def dataReceived(self, data):
            before = self.count
            xishstream.XmlStream.dataReceived(self, data)
            if self.count != before:
                self.transport.write(b"%d\n" % (self.count,))

    factory = protocol.Factory.forProtocol(Receiver)
    reactor.listenSSL(port, factory, options, interface="127.0.0.1")
    reactor.run()


@defer.inlineCallbacks
def run(options):
    bench = Bench(options)
    try:
        for r in range(options.rounds):
            bench.round = r
            steps = [bench.dnaRound, lambda: bench.prosodyRound(nagle=False)]
            if r % 2:
                steps.reverse()
            if options.only == "prosody":
                steps = steps[1:] if r % 2 == 0 else steps[:1]
            elif options.only == "dna":
                steps = steps[:1] if r % 2 == 0 else steps[1:]
            elif options.only == "floor":
                steps = [bench.floorRound]
            for step in steps:
                yield step()
            if options.only:
                continue
            if r < options.prosody_nagle_rounds:
                yield bench.prosodyRound(nagle=True)
            note(f"round {r} done")
    finally:
        bench.cleanup()
    results = bench.results
    if options.only:
        for name, values in sorted(results.items()):
            if name != "latencies":
                emit(name, round(median(values), 3))
        if "latencies" in results:
            emit("new_pair_ms_p50", round(median(results["latencies"]), 2))
        return
    for name in ["e2e_setup_1000_pairs_s", "e2e_connections", "prosody_setup_1000_pairs_s",
                 "prosody_connections", "prosody_nagle_setup_1000_pairs_s",
                 "prosody_nagle_connections"]:
        if name in results:
            emit(name, round(median(results[name]), 3))
    emit("setup_speedup_vs_prosody", round(
        median(results["prosody_setup_1000_pairs_s"])
        / median(results["e2e_setup_1000_pairs_s"]), 1))
    emit("e2e_stanzas_per_s", round(median(results["e2e_stanzas_per_s"])))
    emit("floor_stanzas_per_s", round(median(results["floor_stanzas_per_s"])))
    # Each round's ratio of the two measured side by side, then the median.
    emit("e2e_vs_floor", round(median(results["e2e_vs_floor"]), 2))
    for name in ("e2e_cpu_us_per_stanza_a", "e2e_cpu_us_per_stanza_b",
                 "e2e_cpu_us_per_stanza_bench", "floor_cpu_us_per_stanza_receiver"):
        emit(name, round(median(results[name]), 1))
    latencies = sorted(results["latencies"])
    emit("new_pair_ms_p50", round(median(latencies), 2))
    emit("new_pair_ms_p99", round(latencies[min(len(latencies) - 1,
                                                 int(0.99 * len(latencies)))], 2))
    if results.get("rss_per_connection_kb"):
        emit("rss_per_connection_kb", round(median(results["rss_per_connection_kb"]), 1))
        emit("rss_per_binding_b", round(median(results["rss_per_binding_b"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stanzas", type=int, default=10000)
    parser.add_argument("--prosody-nagle-rounds", type=int, default=1,
                        help="rounds that also time Prosody as shipped (Nagle on)")
    parser.add_argument("--memory-rounds", type=int, default=1,
                        help="rounds that also measure RSS (10,000 bindings, 100 connections)")
    parser.add_argument("--lean-components", action="store_true",
                        help="the receiving components count messages with a bare expat "
                             "parser instead of parsing them with their XmlStream (less CPU "
                             "for the bench; the floor's receiver still uses an XmlStream)")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--floor-receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--components-receiver", type=int, help=argparse.SUPPRESS)
    options, rest = parser.parse_known_args()
    Inbox.lean = options.lean_components
    if options.floor_receiver:
        floorReceiver(options.floor_receiver, rest[0])
        return
    if options.components_receiver:
        componentsReceiver(options.components_receiver, rest[0].split(","))
        return
    started = time.monotonic()
    runToEnd(lambda: run(options), "e2e")
    note(f"total {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
