"""
Costs of the delegation checker (dna.dns.delegation), against a real knotd and
unbound on loopback started here with tests/dnsenv.py.

    python bench/delegation.py [--domains N] [--rounds R] [--cached N]

Prints C{name: value} lines:

  - C{cached_checks_per_s}: C{check()} calls per second answered from the
    cache (goal >= 200,000).
  - C{cold_ratio_vs_raw}: N distinct signed domains checked concurrently in
    mode 'ad' by a fresh checker, over the time of the same N SRV queries
    sent raw (dnspython-built, no validation logic) over the same
    L{dna.dns.client.DNSClient} transport; unbound's cache warmed equally for
    both just before each measurement, the order alternating; the median of
    R rounds (goal <= 1.3). C{cold_cpu_ratio_vs_raw} is the same for the
    CPU time of this process, less sensitive to a busy machine.
  - C{selfvalidate_cold_ms}: one check of c.b.example (three zones below the
    anchor) in mode 'validate' by a fresh checker, asking a freshly
    restarted unbound with CD set; the median of R rounds.
  - C{selfvalidate_ratio_vs_ad}: that over the same cold check in mode 'ad'
    (fresh checker, freshly restarted unbound).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dns.rdatatype  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from dna.app.delegation import makeDelegationChecker  # noqa: E402
from dna.dns.client import DNSClient  # noqa: E402
from dna.dns.verdict import SECURE  # noqa: E402
from dna.dns.dnssec.proofs import readAnchors  # noqa: E402
from tests.integration.dnsenv import DNSEnvironment  # noqa: E402


def emit(name, value):
    print(f"{name}: {value}", flush=True)


def cachedChecksPerSecond(reactor, env, count):
    checker = makeDelegationChecker(reactor, [env.resolver], "ad")
    domains = ["sender.example", "target.example", "multi.example", "c.b.example"]
    d = defer.gatherResults([checker.check(domain) for domain in domains])

    def measure(results):
        assert all(r.status == SECURE for r in results), results
        check = checker.check
        best = 0
        for _ in range(3):
            start = time.perf_counter()
            for i in range(count // len(domains)):
                for domain in domains:
                    check(domain)
            elapsed = time.perf_counter() - start
            best = max(best, (count // len(domains)) * len(domains) / elapsed)
        return best

    return d.addCallback(measure)


@defer.inlineCallbacks
def coldRatio(reactor, env, rounds):
    """
    @return: The medians of the wall-clock ratio, the CPU-time ratio, and
        the raw and checking wall-clock times.
    """
    client = DNSClient([env.resolver], reactor=reactor)
    names = [f"_xmpp-server._tcp.{domain}" for domain in env.manyDomains]

    def raw():
        return defer.gatherResults([client.query(name, dns.rdatatype.SRV)
                                    for name in names])

    wall = {"raw": [], "check": []}
    cpu = {"raw": [], "check": []}
    for i in range(rounds):
        for kind in (["raw", "check"] if i % 2 == 0 else ["check", "raw"]):
            # Warm unbound's cache (it keeps records at most 5 s here)
            # right before each measurement, the same for both.
            yield raw()
            start, startCPU = time.perf_counter(), time.process_time()
            if kind == "raw":
                responses = yield raw()
                assert all(r.answer for r in responses)
            else:
                checker = makeDelegationChecker(reactor, [env.resolver], "ad",
                                                cacheSize=len(names) * 2)
                results = yield defer.gatherResults([checker.check(domain)
                                                     for domain in env.manyDomains])
                bad = [r for r in results if r.status != SECURE]
                assert not bad, bad[:3]
            wall[kind].append(time.perf_counter() - start)
            cpu[kind].append(time.process_time() - startCPU)
    ratios = [c / r for c, r in zip(wall["check"], wall["raw"])]
    cpuRatios = [c / r for c, r in zip(cpu["check"], cpu["raw"])]
    return (statistics.median(ratios), statistics.median(cpuRatios),
            statistics.median(wall["raw"]), statistics.median(wall["check"]))


@defer.inlineCallbacks
def coldCheck(reactor, env, mode, rounds, **kwargs):
    times = []
    for _ in range(rounds):
        env.restartResolver()
        checker = makeDelegationChecker(reactor, [env.resolver], mode, **kwargs)
        start = time.perf_counter()
        result = yield checker.check("c.b.example")
        times.append(time.perf_counter() - start)
        assert result.status == SECURE, result
    return statistics.median(times)


@defer.inlineCallbacks
def main(reactor, options):
    workdir = tempfile.mkdtemp(prefix="dna-bench-")
    env = DNSEnvironment(workdir, manyCount=options.domains)
    env.start()
    try:
        emit("fixture_start_s", f"{env.timings['total']:.2f}")
        perSecond = yield cachedChecksPerSecond(reactor, env, options.cached)
        emit("cached_checks_per_s", f"{perSecond:.0f}")

        ratio, cpuRatio, rawTime, checkTime = yield coldRatio(reactor, env,
                                                              options.rounds)
        emit("cold_raw_ms", f"{rawTime * 1000:.1f}")
        emit("cold_checks_ms", f"{checkTime * 1000:.1f}")
        emit("cold_cpu_ratio_vs_raw", f"{cpuRatio:.3f}")
        emit("cold_ratio_vs_raw", f"{ratio:.3f}")

        anchors = readAnchors(env.anchorFile)
        validate = yield coldCheck(reactor, env, "validate", options.rounds,
                                   anchors=anchors)
        ad = yield coldCheck(reactor, env, "ad", options.rounds)
        emit("selfvalidate_cold_ms", f"{validate * 1000:.2f}")
        emit("ad_cold_ms", f"{ad * 1000:.2f}")
        emit("selfvalidate_ratio_vs_ad", f"{validate / ad:.3f}")
    finally:
        env.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cached", type=int, default=400_000)
    task.react(main, (parser.parse_args(),))
