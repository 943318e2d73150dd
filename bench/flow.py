"""
Flow control from real processes (issue 16): two C{twistd dna} over real
DNSSEC-signed DNS, XEP-0114 components at both ends
(L{tests.integration.flowpair}).

    PYTHONPATH=. python bench/flow.py [--burst 50000] [--padding 200]

Prints C{name: value} lines:

  - C{connections_opened_during_setup} (goal 1): S2S streams provider A
    opened while its component sent one message for each of 40 x 25 = 1,000
    new domain pairs at once; C{setup_1000_pairs_s} how long until B's
    components had them all; C{setup_stream_errors}: pending-limit stream
    errors in either log (goal 0).
  - C{rss_growth_mb_during_burst} (goal < 20): the most either server's
    VmRSS (C{/proc/PID/status}, sampled every 20 ms) grew above its level
    before a burst of C{--burst} messages written at once by A's component
    to B's components, until all arrived; B's components stop reading for
    the first C{--stall} seconds of it (a slow consumer: without
    back-pressure A reads the whole burst meanwhile); C{rss_growth_mb_a},
    C{rss_growth_mb_b} each; C{burst_stanzas_per_s}.

Exits non-zero if a message is lost.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)

from twisted.internet import defer, reactor, task  # noqa: E402

from tests.integration.flowpair import (  # noqa: E402
    FlowPair,
    Inbox,
    connectComponent,
    connectComponents,
    matrix,
    message,
    rss,
)

MB = 1024 * 1024


def emit(name, value):
    print(f"{name}: {value}", flush=True)


class Peak:
    """
    The highest VmRSS of some processes, sampled on a timer.
    """

    def __init__(self, pids, interval=0.02):
        self.pids = pids
        self.base = {pid: rss(pid) for pid in pids}
        self.peak = dict(self.base)
        self._loop = task.LoopingCall(self.sample)
        self._loop.start(interval)

    def sample(self):
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss(pid))

    def stop(self):
        self.sample()
        self._loop.stop()
        return {pid: (self.peak[pid] - self.base[pid]) / MB for pid in self.pids}


@defer.inlineCallbacks
def run(options, pair):
    inbox = Inbox()
    receivers = yield connectComponents(pair.b.componentPort, pair.targets, inbox)
    xs, _, _ = yield connectComponent(pair.a.componentPort, pair.senders[0])

    stanzas = matrix(pair.senders, pair.targets)
    t0 = time.perf_counter()
    xs.transport.write("".join(stanzas).encode("utf-8"))
    yield inbox.waitFor(len(stanzas), timeout=120)
    emit("setup_1000_pairs_s", round(time.perf_counter() - t0, 3))
    emit("connections_opened_during_setup", pair.opened())
    emit("setup_stream_errors", len(pair.streamErrors()))

    yield task.deferLater(reactor, 1.0, lambda: None)
    n = options.burst
    base = len(inbox.ids)
    payload = "".join(
        message(pair.senders[i % len(pair.senders)], pair.targets[i % len(pair.targets)],
                100000 + i, padding=options.padding)
        for i in range(n)).encode("utf-8")
    peak = Peak([pair.a.pid, pair.b.pid])
    t0 = time.perf_counter()
    for reader, _, _ in receivers:
        reader.transport.pauseProducing()
    xs.transport.write(payload)
    yield task.deferLater(reactor, options.stall, lambda: None)
    for reader, _, _ in receivers:
        reader.transport.resumeProducing()
    try:
        yield inbox.waitFor(base + n, timeout=300)
    finally:
        growth = peak.stop()
    elapsed = time.perf_counter() - t0
    emit("burst_stanzas_per_s", round(n / elapsed))
    emit("rss_growth_mb_a", round(growth[pair.a.pid], 1))
    emit("rss_growth_mb_b", round(growth[pair.b.pid], 1))
    emit("rss_growth_mb_during_burst", round(max(growth.values()), 1))
    received = len(inbox.ids) - base
    if received != n or len(set(inbox.ids)) != len(inbox.ids):
        raise SystemExit(f"lost or duplicated: {received} of {n} arrived")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=50000)
    parser.add_argument("--padding", type=int, default=200,
                        help="body bytes of each burst message")
    parser.add_argument("--stall", type=float, default=2.0,
                        help="seconds B's components read nothing at the start of the burst")
    parser.add_argument("--limits", default="",
                        help="[limits] lines for both servers, e.g. 'high-water = 65536'")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="dna-flow-")
    pair = FlowPair(workdir, limits=options.limits.replace("\\n", "\n"))
    failure = []

    def go():
        d = run(options, pair)
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())

    try:
        pair.start()
        reactor.callWhenRunning(go)
        reactor.run()
    finally:
        pair.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        failure[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__":
    main()
