"""
Benchmark of L{dna.app.revalidation}: the share of one core spent
re-checking the proofs of 100,000 bindings whose delegations have 300 s TTLs
(issue 11; goal: under 1%).

Run from the checkout: C{PYTHONPATH=. python bench/revalidation.py}. The
bindings are incoming pairs of 10,000 sender domains (10 target domains
each) over 100 streams, checked through a real
L{dna.dns.delegation.DelegationChecker} whose lookup strategy answers at
once from memory (the cache is warm: each domain's first re-check in a
period refreshes it for the others, as in a server; the DNS round trip
itself is not counted). Simulated time runs through several TTL periods in
one-second steps; the CPU time spent in those steps, divided by the
simulated seconds, is the share of one core. Prints C{name: value} lines:

  - C{bindings}, C{ttl_s}, C{simulated_s}, C{rechecks}, C{lookups}
  - C{revalidation_cpu_s}: process CPU time spent re-checking
  - C{revalidation_cpu_share}: that, divided by C{simulated_s} (1.0 is one
    core)
  - C{pending_timers}: delayed calls of the re-validation (one)
"""

import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from dna.app.revalidation import Revalidator  # noqa: E402
from dna.core.tables import INCOMING, Tables  # noqa: E402
from dna.dns.delegation import DelegationChecker  # noqa: E402
from dna.dns.dnssec.proofs import SECURE  # noqa: E402
from dna.dns.verdict import DelegationResult, SRVRecord  # noqa: E402

BINDINGS = 100_000
SENDERS = 10_000
STREAMS = 100
TTL = 300
PERIODS = 3
SERVER = "xmpp.provider.example"


class _Lookup:
    """
    An L{IDelegationLookup} answering every domain from memory.
    """

    def __init__(self):
        self.lookups = 0

    def lookup(self, name):
        self.lookups += 1
        domain = name.to_text(omit_final_dot=True)
        return succeed(DelegationResult(domain, [SRVRecord(0, 0, 5269, SERVER)], SECURE,
                                        ttl=TTL))


class _Authorization:
    legacy = False


class _Federation:
    """
    What L{Revalidator} uses of a L{dna.app.federation.Federation}.
    """

    def __init__(self):
        self.tables = Tables()
        self.streams = {}
        self.counters = collections.Counter()


def main():
    clock = Clock()
    clock.advance(1_000_000)
    lookup = _Lookup()
    checker = DelegationChecker(lookup, clock, cacheSize=SENDERS * 2)
    federation = _Federation()
    revalidator = Revalidator(federation, checker, clock, certificateExpiry=lambda xs: None)
    senders = [f"sender{i}.example" for i in range(SENDERS)]
    for sender in senders:
        checker.check(sender)
    for s in range(STREAMS):
        streamID = f"s{s}"
        federation.tables.openConnection(streamID, [SERVER])
        federation.streams[streamID] = _Authorization()
    perSender = BINDINGS // SENDERS
    for i, sender in enumerate(senders):
        for j in range(perSender):
            # Spread over a period, as bindings are granted over time.
            streamID = f"s{(i * perSender + j) % STREAMS}"
            federation.tables.bind(INCOMING, f"target{j}.example", sender, streamID)
        if i % (SENDERS // TTL) == 0:
            clock.advance(1)
    lookupsBefore = lookup.lookups
    checksBefore = revalidator.checks
    simulated = TTL * PERIODS
    started = time.process_time()
    for _ in range(simulated):
        clock.advance(1)
    cpu = time.process_time() - started
    pending = [call for call in clock.getDelayedCalls() if "Revalidator" in repr(call)]
    print(f"python: {sys.version.split()[0]}")
    print(f"bindings: {len(federation.tables.incoming)}")
    print(f"ttl_s: {TTL}")
    print(f"simulated_s: {simulated}")
    print(f"rechecks: {revalidator.checks - checksBefore}")
    print(f"lookups: {lookup.lookups - lookupsBefore}")
    print(f"revoked: {federation.counters['revalidation-revoked']}")
    print(f"revalidation_cpu_s: {cpu:.3f}")
    print(f"revalidation_cpu_share: {cpu / simulated:.5f}")
    print(f"pending_timers: {len(pending)}")


if __name__ == "__main__":
    main()
