"""
The soak (issue 14): real providers under load while things break, and the
figures that say whether any stanza was lost, duplicated, reordered or
delivered without authorization.

    PYTHONPATH=. python bench/soak.py            # 200 streams, 1,000,000 stanzas
    PYTHONPATH=. python bench/soak.py --short    # about 60 s, every fault once (CI)

Topology. C{--providers} (default 2) C{twistd dna} processes on loopback, one
knotd serving a DNSSEC-signed zone per provider (C{soaka.example}, ...) and
one validating unbound, all real processes. A stream comes from the server
name its sender domain is delegated to (the senders C{sNNN}: a provider's
first name) and goes to one server name of the
peer (one certificate per name, so that no stream is reused for another
name): with K providers of N server names each there are K(K-1)N streams.
C{dna.app.config} sets no bound on the number of C{[[server.names]]} (each
is one certificate and key; SNI picks among them on the one listener), so
the fewest processes are two: 2 x 100 server names give the 200 streams.
Two providers also fit the machine: two cores, one per provider, while this
harness (components, proxies, checks; a third of the CPU) and the DNS
servers share them. More providers would add processes, not streams.

Each provider hosts C{--pairs} (50) sender domains C{sNNN}, delegated to
its first server name, and N target domains C{tNNN}, each delegated to its
own server name C{nNNN}. Every sender domain of a provider sends to every
target domain of every other provider: on each stream 50 (sender, target)
pairs, 10,000 pairs in all, C{--stanzas} (100) messages per pair,
1,000,000 stanzas. The server names resolve to a TCP proxy in this process
(L{dna.testing.proxy.StrippingProxy}, one per provider, in front of its
real listener), so every S2S byte passes the harness.

Components. At each provider one XEP-0114 component per hosted domain:
the sender domains' components receive bounces, the first one sends all of
its provider's stanzas (in rounds: sequence number 0 for every pair, then 1,
...), the target domains' components check what arrives. A stanza is
C{<message id='PAIR-SEQ'>} with body C{"PAIR SEQ T"} (T: the send time, for
the latency). A component whose connection breaks reconnects (every 0.5 s)
until its provider is back; the sender sends only while connected, keeping
at most C{--window} stanzas outstanding (sent, neither delivered nor
bounced, not outstanding at a SIGKILL) and at most C{--rate} per second,
the window split evenly between the providers (one provider's stalled
stanzas do not stop the others').

Faults, each once, at fixed fractions of the stanzas sent, one at a time (a
fault that is due waits for the one before it to be over), in this order:
delegation, sigkill, rst, slow, stopread, blackhole, resolver. The kill
comes before the faults that hold acknowledgements back (slow, stopread,
blackhole): a Receiving Server killed while its acknowledgements cannot
reach the sender loses its delivery counts with them, which is the limit
of a server without a durable ledger (below, C{duplicated_at_kill}), not
something this run can tell apart from a fault of its own.

  - C{rst}: one proxied S2S connection cut with a TCP RST (both ends);
  - C{blackhole}: one proxied connection silently drops everything from then
    on (the sender finds out by its acknowledgements: C{max-unacked} and
    C{ack-timeout} are lowered in C{[limits]} so that it does within
    seconds);
  - C{slow}: every proxied connection delayed by 300 ms and throttled to
    8 KB/s each way for 8 s;
  - C{stopread}: one proxied connection stops reading both ends for 8 s
    (back-pressure);
  - C{sigkill}: the last provider killed with SIGKILL and started again 2 s
    later, same configuration;
  - C{resolver}: unbound stopped for 10 s, then started again (empty cache);
  - C{delegation}: one target domain of the last provider (not its first
    server name's) redelegated, in its signed zone (re-signed, knotd
    reload), to a server name whose address nothing listens on. Its pairs
    must then be bounced, never delivered: a delivery of a stanza its
    component sent more than C{GRACE} seconds after knotd served the change
    (unbound's 5 s cache, then the binding's proof of at most 5 s and its
    re-check) counts as C{unauthorized_delivered}; stanzas sent earlier
    were taken while the binding was still proven (however late they
    arrive). C{moved_sent_after_change_delivered}: those sent after the
    change at all, delivered (within the grace).

Accounting, per stanza (sent means: written to the sending component's
connection):

  - C{stanzas_delivered}: distinct stanzas that reached their target's
    component; C{duplicated}: further copies; C{reordered}: first copies
    arriving after a later sequence number of the same pair.
  - C{bounced}: distinct stanzas that came back as errors, by fault and
    reason (C{bounced.FAULT.CONDITION}); a bounce is put down to the fault
    active at that moment (or less than C{SETTLE} seconds before), to
    C{delegation} for the moved pairs, else to C{unexplained}.
    C{bounced_and_delivered}: both happened to one stanza (a lie to its
    sender); C{bounced_twice}: one stanza bounced more than once.
  - SIGKILL: the server keeps no durable queue, so what is inside a killed
    process is gone. The stanzas its own sending component had handed to it
    (written to its component connection) and that were neither delivered
    nor bounced at the moment of the kill, and never are afterwards, are
    C{lost_in_killed_process}, not C{lost}. Stanzas sent to the killed
    provider's domains by the other providers, outstanding at the kill and
    never delivered nor bounced, are C{lost_inbound_at_kill}: they were
    with the live sender (which must send again what the killed peer did
    not acknowledge) or acknowledged by the killed process and gone with
    it; the harness cannot tell which, so it prints them apart and counts
    them as a failure like C{lost}. And a killed Receiving Server loses its
    delivery counts (L{dna.core.tables.DeliveryLedger}, in memory): the
    stanzas it handed to its components in its last moments whose
    acknowledgement never left it are sent again to the restarted process,
    which delivers them again (C{duplicated_at_kill}), or, when they cannot
    be, bounced (C{bounced_and_delivered_at_kill}). Only stanzas the killed
    provider delivered C{KILL_WINDOW} seconds or less before the kill (or
    that its components read after it: they were on their way from the
    dead process) count there; both are printed and are not failures (the limit of a server
    without a durable ledger, C{docs/delivery.rst}); any other duplicate or
    bounce after delivery is.
  - C{lost}: every other stanza sent and neither delivered nor bounced once
    the run has drained (C{--drain} seconds without progress).

Also printed: C{streams} (established S2S connections to the providers'
listeners when a tenth of the stanzas is sent), C{setup_all_pairs_s}
(until every pair has a stanza delivered), C{p99_latency_ms} (send to delivery), C{peak_rss_mb.P} and
C{rss_growth_mb.P} of each provider (VmRSS sampled every second; growth
from the end of the warm-up, a fifth of the stanzas, or from the restart,
to the end), C{rss_profile_mb.P} (VmRSS when each fifth of the stanzas
had been sent, the last at the end), C{cpu_s.P} (CPU seconds of each provider, over its
restarts), C{tracebacks} in every provider's logs (twistd rotates them:
all are read), C{wall_s}.

Exits 1, with a line saying why, on any lost, lost_inbound_at_kill,
unsent, duplicated, reordered, bounced_and_delivered, bounced_twice,
unauthorized_delivered or traceback. Every process and the temporary directory are removed at the
end, also on Ctrl-C (C{DNA_KEEP_SOAK=1} keeps the directory).
"""

import argparse
import array
import collections
import glob
import os
import random
import signal
import sys
import tempfile
import time

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)

from twisted.internet import defer, reactor, task, threads  # noqa: E402
from twisted.words.protocols.jabber import component, error, xmlstream  # noqa: E402

from bench.e2e import cleanUp, cpuSeconds, emit, note  # noqa: E402
from dna.testing.pki import CertificateAuthority  # noqa: E402
from dna.testing.proxy import StrippingProxy  # noqa: E402
from tests.integration.flowpair import SECRET, Twistd, established, rss  # noqa: E402
from tests.integration.interop import S2S_PORT, InteropDNS, pickAddresses, xmppZone  # noqa: E402

#: Seconds after knotd serves a new delegation until no stanza of a moved
#: pair may be delivered any more.
GRACE = 15.0
#: Seconds after a fault ends during which a bounce is still put down to it.
SETTLE = 20.0
#: Stanzas a provider delivered this many seconds or less before it was
#: killed may have gone unacknowledged (L{Soak.deliver}).
KILL_WINDOW = 5.0

#: States of a stanza.
UNSENT, SENT, DELIVERED, BOUNCED = 0, 1, 2, 3

#: Limits of every provider: the proxies connect from one address (so more
#: unauthenticated connections per address); a black-holed stream is found
#: out by its acknowledgements within seconds; a binding whose re-check
#: finds the resolver down lives on 30 s past its proof (unbound caps every
#: TTL at 5 s here), as an operator who wants to ride out a resolver restart
#: sets it.
LIMITS = (
    "max-unauthenticated-per-address = 512\n"
    "max-unacked = 200\n"
    "ack-timeout = 5.0\n"
    "revalidation-grace = 30.0\n"
)


def errorCondition(stanza):
    """
    The defined condition of an error stanza, as Twisted reads it.
    """
    return error.exceptionFromStanza(stanza).condition or "undefined-condition"


class Provider:
    """
    One provider: its names, domains, certificates, proxy and process.
    """

    def __init__(self, letter, names, pairs, address, proxyAddress):
        self.letter = letter
        self.zone = f"soak{letter}.example"
        self.address = address
        self.proxyAddress = proxyAddress
        self.serverNames = [f"n{j:03d}.{self.zone}" for j in range(1, names + 1)]
        self.senders = [f"s{i:03d}.{self.zone}" for i in range(1, pairs + 1)]
        self.targets = [f"t{j:03d}.{self.zone}" for j in range(1, names + 1)]
        self.twistd = None
        self.proxy = None
        self.samples = []
        #: incarnation -> CPU seconds it used (last sample)
        self.cpu = {}
        self.warm = None
        # every component attached (since the last start)
        self.attached = False
        #: VmRSS when each fifth of the stanzas had been sent (the last: at
        #: the end), to see whether it levels off
        self.profile = []
        self.incarnations = 0

    def records(self, moved=None):
        """
        The zone's records: each server name at the proxy, each target
        domain delegated to its server name, the senders to the first.

        @param moved: C{(target domain, server name)} delegated elsewhere.
        """
        label = lambda name: name.split(".")[0]  # noqa: E731
        records = []
        for j, (name, target) in enumerate(zip(self.serverNames, self.targets)):
            domains = [label(d) for d in self.senders] if j == 0 else []
            if moved is None or target != moved[0]:
                domains.append(label(target))
            records += xmppZone(name, self.proxyAddress, domains)
        if moved is not None:
            records += xmppZone(moved[1], moved[2], [label(moved[0])])
        return records

    def configure(self, workdir, resolver, ca):
        directory = os.path.join(workdir, self.letter)
        certificates = [
            ca.issue(name, dnsNames=[name], clientAuth=True) for name in self.serverNames]
        more = []
        os.makedirs(directory, exist_ok=True)
        for name, certificate in zip(self.serverNames[1:], certificates[1:]):
            base = name.split(".")[0]
            certificate.writeTo(directory, base)
            more.append(f'\n[[server.names]]\nname = "{name}"\n'
                        f'certificate = "{base}.pem"\nkey = "{base}.key"\n')
        self.twistd = Twistd(directory, self.serverNames[0], self.address,
                             self.senders + self.targets, resolver, certificates[0], ca,
                             limits=LIMITS, extra="".join(more))


class Component:
    """
    An XEP-0114 component that reconnects whenever its connection breaks.

    @ivar xs: The authenticated stream, or L{None} while disconnected.
    """

    def __init__(self, soak, provider, domain):
        self.domain = domain
        self.xs = None
        self.ready = defer.Deferred()
        self.factory = factory = component.componentFactory(domain, SECRET)
        factory.initialDelay = 0.5
        factory.maxDelay = 0.5
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT,
                             lambda xs: xs.transport.setTcpNoDelay(True))
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, self._ended)
        self._soak = soak
        self.connector = reactor.connectTCP(
            "127.0.0.1", provider.twistd.componentPort, factory)

    def _authenticated(self, xs):
        self.xs = xs
        xs.killed = False
        xs.addObserver("/message", lambda stanza: self._soak.received(stanza, xs))
        if not self.ready.called:
            self.ready.callback(self)
        self._soak.pump()

    def _ended(self, reason):
        self.xs = None

    def stop(self):
        self.factory.stopTrying()
        self.connector.disconnect()


class Soak:

    def __init__(self, options):
        self.options = options
        self.workdir = tempfile.mkdtemp(prefix="dna-soak-")
        os.chmod(self.workdir, 0o755)
        self.cleanups = []
        k = options.providers
        addresses = pickAddresses(2 * k + 1)
        self.nowhere = addresses.pop()
        self.providers = [
            Provider(chr(ord("a") + i), options.names, options.pairs,
                     addresses[2 * i], addresses[2 * i + 1]) for i in range(k)]
        # Pairs: sender domain of P -> target domain of Q != P, by sending side.
        self.pairs = []
        self.bySide = []
        for p in self.providers:
            side = []
            for q in self.providers:
                if q is not p:
                    for sender in p.senders:
                        for target in q.targets:
                            side.append(len(self.pairs))
                            self.pairs.append((p, sender, q, target))
            self.bySide.append(side)
        n = options.stanzas
        total = len(self.pairs) * n
        self.total = total
        self.state = bytearray(total)
        self.killedOwn = bytearray(total)
        self.killedInbound = bytearray(total)
        #: when each stanza was first delivered, and whether a provider
        #: delivered it just before it was killed
        self.deliveredAt = array.array("d", [0.0]) * total
        self.bouncedAt = array.array("d", [0.0]) * total
        self.deliveredByKilled = bytearray(total)
        self.duplicatedAtKill = 0
        self.bouncedAndDeliveredAtKill = 0
        self.maxSeq = array.array("i", [-1]) * len(self.pairs)
        self.latencies = array.array("d")
        self.sent = 0
        self.delivered = 0
        self.duplicated = 0
        self.reordered = 0
        self.bounced = collections.Counter()
        self.bouncedAndDelivered = 0
        self.bouncedTwice = 0
        #: per sending provider: stanzas sent, neither delivered nor bounced,
        #: not outstanding at a SIGKILL
        self.open = [0] * k
        self.pairsUp = 0
        self.setup = None
        self.unauthorized = 0
        self.movedDelivered = 0
        self.next = [0] * k
        self.faults = []
        self.moved = None
        self.progress = time.monotonic()
        self.t0 = None

    # Set-up

    def start(self):
        zones = {p.zone: p.records() for p in self.providers}
        self.dns = InteropDNS(os.path.join(self.workdir, "dns"), zones)
        self.cleanups.append(self.dns.stop)
        self.dns.start()
        ca = CertificateAuthority("soak CA")
        for p in self.providers:
            p.configure(self.workdir, self.dns.resolver, ca)
            proxy = p.proxy = StrippingProxy(reactor, p.address, S2S_PORT)
            port = reactor.listenTCP(S2S_PORT, proxy, backlog=1024,
                                     interface=p.proxyAddress)
            self.cleanups.append(port.stopListening)
            self.startProcess(p)
        for p in self.providers:
            p.twistd.waitListening()
        self.components = {}
        for p in self.providers:
            for domain in p.senders + p.targets:
                self.components[domain] = Component(self, p, domain)
        self.cleanups.append(lambda: [c.stop() for c in self.components.values()])
        return defer.gatherResults([c.ready for c in self.components.values()])

    def startProcess(self, p):
        p.twistd.start()
        p.incarnations += 1
        if p.incarnations == 1:
            self.cleanups.append(p.twistd.stop)

    def cleanup(self):
        cleanUp(self.cleanups, self.workdir, "DNA_KEEP_SOAK")

    # Sending

    def index(self, pair, seq):
        return pair * self.options.stanzas + seq

    def pump(self):
        """
        Send what the window and the rate allow, from every provider whose
        components are all connected (after a restart, the sending one may
        be back before those that receive its bounces: a bounce to a domain
        whose component is not attached is dropped, as the server must).
        """
        if self.t0 is None:
            return
        n = self.options.stanzas
        now = time.monotonic()
        for i, p in enumerate(self.providers):
            xs = self.components[p.senders[0]].xs
            side = self.bySide[i]
            if xs is None or xs.transport is None:
                continue
            if not p.attached:
                if not all(self.components[d].xs is not None
                           and self.components[d].xs.transport is not None
                           for d in p.senders + p.targets):
                    continue
                p.attached = True
            budget = self.options.window // len(self.providers) - self.open[i]
            if self.options.rate:
                allowed = int(self.options.rate * (now - self.t0) / len(self.providers))
                budget = min(budget, allowed - self.next[i])
            budget = min(budget, len(side) * n - self.next[i], 500)
            if budget <= 0:
                continue
            chunk = []
            for k in range(self.next[i], self.next[i] + budget):
                seq, pair = divmod(k, len(side))
                pair = side[pair]
                _, sender, _, target = self.pairs[pair]
                self.state[self.index(pair, seq)] = SENT
                chunk.append(
                    f"<message from='u@{sender}' to='u@{target}' id='{pair}-{seq}' "
                    f"type='chat'><body>{pair} {seq} {now:.6f}</body></message>")
            self.next[i] += budget
            self.sent += budget
            self.open[i] += budget
            xs.transport.write("".join(chunk).encode("utf-8"))
            self.progress = now

    @property
    def outstanding(self):
        """
        Stanzas sent, neither delivered nor bounced, less those outstanding
        at a SIGKILL (accounted apart: they must not hold the window).
        """
        return sum(self.open)

    def side(self, i):
        """
        The index of the provider that sends stanza C{i}.
        """
        return i // self.options.stanzas // len(self.bySide[0])

    def settled(self, i):
        """
        Stanza C{i} was delivered or bounced for the first time.
        """
        if not (self.killedOwn[i] or self.killedInbound[i]):
            self.open[self.side(i)] -= 1

    # Receiving

    def received(self, stanza, xs):
        """
        A stanza reached a component, on its stream C{xs} (C{xs.killed}:
        its provider was killed since, and this was in flight from the
        dead process).
        """
        now = time.monotonic()
        self.progress = now
        if stanza.getAttribute("type") == "error":
            self.bounce(stanza, now)
        else:
            self.deliver(stanza, now, xs.killed)
        if min(self.open) < self.options.window // len(self.providers) // 2:
            self.pump()

    def deliver(self, stanza, now, byKilled=False):
        pair, seq, sentAt = str(stanza.body).split()
        pair, seq = int(pair), int(seq)
        i = self.index(pair, seq)
        if byKilled and self.state[i] != DELIVERED:
            # Handed over by the killed process in its last moment.
            self.deliveredByKilled[i] = 1
        if self.moved is not None and self.pairs[pair][3] == self.moved[0]:
            if float(sentAt) > self.moved[1]:
                self.movedDelivered += 1
            if float(sentAt) > self.moved[1] + GRACE:
                self.unauthorized += 1
        if self.state[i] == DELIVERED:
            if self.deliveredByKilled[i]:
                self.duplicatedAtKill += 1
            else:
                self.duplicated += 1
                if self.duplicated <= 5:
                    p, sender, q, target = self.pairs[pair]
                    note(f"duplicate {sender} -> {target} #{seq}: first delivered "
                         f"{self.deliveredAt[i] - self.t0:.1f} s into the run "
                         f"({self.explain(pair, self.deliveredAt[i])}), again at "
                         f"{now - self.t0:.1f} s ({self.explain(pair, now)})")
            return
        if self.state[i] == BOUNCED:
            self.bouncedAndDelivered += 1
            self.noteBoth(pair, seq, "bounced", self.bouncedAt[i], "delivered", now)
            return
        if seq < self.maxSeq[pair]:
            self.reordered += 1
        else:
            if self.maxSeq[pair] < 0:
                self.pairsUp += 1
                if self.pairsUp == len(self.pairs):
                    self.setup = now - self.t0
            self.maxSeq[pair] = seq
        self.state[i] = DELIVERED
        self.deliveredAt[i] = now
        self.settled(i)
        self.delivered += 1
        self.latencies.append(now - float(sentAt))

    def bounce(self, stanza, now):
        pair, _, seq = (stanza.getAttribute("id") or "").partition("-")
        try:
            pair, seq = int(pair), int(seq)
        except ValueError:
            self.bounced[("unexplained", "not-ours")] += 1
            return
        i = self.index(pair, seq)
        if self.state[i] == DELIVERED:
            if self.deliveredByKilled[i]:
                self.bouncedAndDeliveredAtKill += 1
            else:
                self.bouncedAndDelivered += 1
                self.noteBoth(pair, seq, "delivered", self.deliveredAt[i],
                              f"bounced ({errorCondition(stanza)})", now)
            return
        if self.state[i] == BOUNCED:
            self.bouncedTwice += 1
            return
        self.state[i] = BOUNCED
        self.settled(i)
        self.bouncedAt[i] = now
        self.bounced[(self.explain(pair, now), errorCondition(stanza))] += 1

    def noteBoth(self, pair, seq, first, firstAt, then, now):
        """
        Say, for the first few, when a stanza was both delivered and
        bounced, and under which faults.
        """
        if self.bouncedAndDelivered > 5:
            return
        _, sender, _, target = self.pairs[pair]
        note(f"both {sender} -> {target} #{seq}: {first} {firstAt - self.t0:.1f} s into "
             f"the run ({self.explain(pair, firstAt)}), {then} at {now - self.t0:.1f} s "
             f"({self.explain(pair, now)})")

    def explain(self, pair, now):
        if self.moved is not None and self.pairs[pair][3] == self.moved[0] \
                and now >= self.moved[1]:
            return "delegation"
        for name, start, end in reversed(self.faults):
            if start - 1 <= now and (end is None or now <= end + SETTLE):
                return name
        return "unexplained"

    # Faults

    def sessions(self):
        return [s for p in self.providers for s in p.proxy.sessions if s.open]

    @defer.inlineCallbacks
    def fault(self, name):
        start = time.monotonic()
        record = [name, start, None]
        self.faults.append(record)
        note(f"fault {name} at {self.sent} stanzas sent")
        victim = self.providers[-1]
        if name == "rst":
            sessions = self.sessions()
            if sessions:
                random.choice(sessions).reset()
        elif name == "blackhole":
            sessions = self.sessions()
            if sessions:
                random.choice(sessions).blackhole()
        elif name == "slow":
            sessions = self.sessions()
            for s in sessions:
                s.slow(latency=0.3, rate=8 * 1024)
            yield task.deferLater(reactor, 8, lambda: None)
            for s in sessions:
                s.slow()
        elif name == "stopread":
            sessions = self.sessions()
            if sessions:
                session = random.choice(sessions)
                session.stopReading()
                yield task.deferLater(reactor, 8, lambda: None)
                session.resumeReading()
        elif name == "sigkill":
            side = self.providers.index(victim)
            own = set(self.bySide[side])
            recent = time.monotonic() - KILL_WINDOW
            for pair, (p, _, q, _) in enumerate(self.pairs):
                base = self.index(pair, 0)
                for i in range(base, base + self.options.stanzas):
                    if (q is victim and self.state[i] == DELIVERED
                            and self.deliveredAt[i] >= recent):
                        self.deliveredByKilled[i] = 1
                    if self.state[i] == SENT and not (
                            self.killedOwn[i] or self.killedInbound[i]):
                        if pair in own:
                            self.killedOwn[i] = 1
                            self.open[side] -= 1
                        elif q is victim:
                            self.killedInbound[i] = 1
                            self.open[self.side(i)] -= 1
            # Nothing more goes to the dead process's connections: what is
            # written from here on would be lost without ever being handed.
            # What still arrives on them was handed over by the dead one.
            for domain in victim.senders + victim.targets:
                xs = self.components[domain].xs
                if xs is not None:
                    xs.killed = True
                self.components[domain].xs = None
            victim.twistd.process.send_signal(signal.SIGKILL)
            victim.twistd.process.wait()
            victim.warm = None
            victim.attached = False
            yield task.deferLater(reactor, 2, lambda: None)
            self.startProcess(victim)
            yield threads.deferToThread(victim.twistd.waitListening)
            victim.restartedAt = self.sent
        elif name == "resolver":
            self.dns._unbound.stop()
            yield task.deferLater(reactor, 10, lambda: None)
            yield threads.deferToThread(self.dns.restartResolver)
        elif name == "delegation":
            target = victim.targets[len(victim.targets) // 2]
            gone = f"gone.{victim.zone}"
            yield threads.deferToThread(
                self.dns.setRecords, victim.zone,
                victim.records(moved=(target, gone, self.nowhere)))
            self.moved = (target, time.monotonic())
            start = record[1] = self.moved[1]
        record[2] = time.monotonic()
        note(f"fault {name} over after {record[2] - start:.1f} s")

    # Monitoring

    def tell(self):
        """
        A progress line every 10 s, on standard error.
        """
        now = time.monotonic()
        last = getattr(self, "_told", (self.t0, 0))
        rate = (self.delivered - last[1]) / max(now - last[0], 1e-9)
        self._told = (now, self.delivered)
        note(f"{now - self.t0:5.0f} s: sent {self.sent}, delivered {self.delivered}, "
             f"bounced {sum(self.bounced.values())}, outstanding {self.outstanding}, "
             f"{rate:.0f}/s")

    def sample(self):
        for p in self.providers:
            if p.twistd.process is None or p.twistd.process.poll() is not None:
                continue
            try:
                value = rss(p.twistd.pid) / 2 ** 20
            except (OSError, RuntimeError):
                continue
            p.samples.append(value)
            p.cpu[p.incarnations] = cpuSeconds(p.twistd.pid)
            warmAt = self.total / 5
            if p.incarnations > 1:
                warmAt = getattr(p, "restartedAt", 0) + self.total / 10
            if p.warm is None and self.sent >= warmAt:
                p.warm = value
            fifth = len(p.profile) + 1
            if fifth <= 4 and self.sent >= self.total * fifth / 5:
                p.profile.append(value)

    # The run

    @defer.inlineCallbacks
    def run(self):
        yield self.start()
        note(f"{len(self.components)} components attached, {len(self.pairs)} pairs, "
             f"{self.total} stanzas")
        sampler = task.LoopingCall(self.sample)
        sampler.start(1.0)
        self.cleanups.append(lambda: sampler.running and sampler.stop())
        ticker = task.LoopingCall(self.pump)
        self.wall0 = time.monotonic()
        self.t0 = time.monotonic()
        ticker.start(0.02)
        self.cleanups.append(lambda: ticker.running and ticker.stop())
        teller = task.LoopingCall(self.tell)
        teller.start(10.0, now=False)
        self.cleanups.append(lambda: teller.running and teller.stop())
        schedule = [(0.1, "streams"), (0.15, "delegation"), (0.25, "sigkill"), (0.33, "rst"),
                    (0.42, "slow"), (0.5, "stopread"), (0.6, "blackhole"),
                    (0.72, "resolver")]
        running = []
        while True:
            yield task.deferLater(reactor, 0.1, lambda: None)
            # One fault at a time: each is due at its share of the stanzas
            # sent, and waits for the one before it to be over (the short
            # run sends fast enough to overlap them otherwise, and a peer
            # killed while a stopped reader holds its acknowledgements is
            # two faults' worth of doubt).
            while (schedule and self.sent >= schedule[0][0] * self.total
                   and all(f[2] is not None for f in self.faults)):
                _, name = schedule.pop(0)
                if name == "streams":
                    self.streams = established([p.address for p in self.providers])
                else:
                    running.append(self.fault(name))
            done = self.sent == self.total and self.outstanding == 0 and not schedule
            stalled = time.monotonic() - self.progress > self.options.drain
            if done or stalled:
                break
        yield defer.gatherResults(running, consumeErrors=True)
        self.sample()
        self.wall = time.monotonic() - self.wall0

    def report(self):
        """
        Print the figures; return the reasons for failing.
        """
        lostOwn = lostInbound = lost = 0
        where = collections.Counter()
        for i in range(self.total):
            if self.state[i] == SENT:
                if self.killedOwn[i]:
                    lostOwn += 1
                elif self.killedInbound[i]:
                    lostInbound += 1
                else:
                    lost += 1
                    _, sender, _, target = self.pairs[i // self.options.stanzas]
                    where[(sender.split(".", 1)[1], target)] += 1
        for (zone, target), count in where.most_common(5):
            note(f"lost {count} from {zone} to {target}")
        unsent = self.total - self.sent
        bounced = sum(self.bounced.values())
        emit("providers", len(self.providers))
        emit("streams", getattr(self, "streams", "not measured"))
        emit("pairs", len(self.pairs))
        emit("setup_all_pairs_s", "never" if self.setup is None else round(self.setup, 1))
        emit("stanzas_sent", self.sent)
        emit("stanzas_unsent", unsent)
        emit("stanzas_delivered", self.delivered)
        emit("lost", lost)
        emit("lost_in_killed_process", lostOwn)
        emit("lost_inbound_at_kill", lostInbound)
        emit("duplicated", self.duplicated)
        emit("duplicated_at_kill", self.duplicatedAtKill)
        emit("reordered", self.reordered)
        emit("bounced", bounced)
        for (fault, condition), count in sorted(self.bounced.items()):
            emit(f"bounced.{fault}.{condition}", count)
        emit("bounced_and_delivered", self.bouncedAndDelivered)
        emit("bounced_and_delivered_at_kill", self.bouncedAndDeliveredAtKill)
        emit("bounced_twice", self.bouncedTwice)
        emit("moved_sent_after_change_delivered", self.movedDelivered)
        emit("unauthorized_delivered", self.unauthorized)
        for p in self.providers:
            if p.samples:
                emit(f"peak_rss_mb.{p.letter}", round(max(p.samples), 1))
                if p.warm is not None:
                    emit(f"rss_growth_mb.{p.letter}", round(p.samples[-1] - p.warm, 1))
                profile = p.profile[:4] + [p.samples[-1]]
                emit(f"rss_profile_mb.{p.letter}", " ".join(f"{v:.0f}" for v in profile))
                emit(f"cpu_s.{p.letter}", round(sum(p.cpu.values()), 1))
        latencies = sorted(self.latencies)
        if latencies:
            emit("p50_latency_ms", round(latencies[len(latencies) // 2] * 1000, 1))
            emit("p99_latency_ms", round(
                latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1))
        tracebacks = {}
        for p in self.providers:
            # twistd rotates its log every megabyte: twistd.log, .1, .2, ...
            tracebacks[p.letter] = 0
            for path in glob.glob(glob.escape(p.twistd.log) + "*"):
                with open(path, encoding="utf-8", errors="replace") as f:
                    tracebacks[p.letter] += f.read().count("Traceback (most recent call last)")
            emit(f"tracebacks.{p.letter}", tracebacks[p.letter])
        emit("tracebacks", sum(tracebacks.values()))
        emit("wall_s", round(self.wall, 1))
        failures = []
        for name, value in [("lost", lost), ("lost_inbound_at_kill", lostInbound),
                            ("unsent", unsent), ("duplicated", self.duplicated),
                            ("reordered", self.reordered),
                            ("bounced_and_delivered", self.bouncedAndDelivered),
                            ("bounced_twice", self.bouncedTwice),
                            ("unauthorized_delivered", self.unauthorized),
                            ("tracebacks", sum(tracebacks.values()))]:
            if value:
                failures.append(f"{name} {value}")
        return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="about 60 s: 20 streams, 200 pairs, 100 stanzas a pair")
    parser.add_argument("--providers", type=int, default=2)
    parser.add_argument("--names", type=int, default=100,
                        help="server names (and target domains) per provider")
    parser.add_argument("--pairs", type=int, default=50,
                        help="sender domains per provider: pairs per stream")
    parser.add_argument("--stanzas", type=int, default=100, help="stanzas per pair")
    parser.add_argument("--window", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=0, help="stanzas/s, 0: no limit")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds without progress that end the run")
    options = parser.parse_args()
    if options.short:
        options.names, options.pairs, options.stanzas = 10, 10, 100
        options.rate = options.rate or 500
        options.window = min(options.window, 1000)
        options.drain = 20.0
    started = time.monotonic()
    soak = Soak(options)
    outcome = []

    def done(result):
        outcome.append(result)
        if reactor.running:
            reactor.stop()

    def go():
        d = soak.run()
        d.addBoth(done)

    reactor.callWhenRunning(go)
    # Ctrl-C stops the run and cleans up, even when started from a shell
    # that ignores SIGINT for background jobs (the reactor only takes
    # SIGINT over from Python's default handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reactor.run()
        if not outcome:
            print("soak: interrupted", file=sys.stderr)
            sys.exit(2)
        result = outcome[0]
        if hasattr(result, "printTraceback"):
            result.printTraceback(file=sys.stderr)
            print("soak: FAILED: the harness broke", file=sys.stderr)
            sys.exit(2)
        failures = soak.report()
    finally:
        soak.cleanup()
    note(f"total {time.monotonic() - started:.1f} s")
    if failures:
        print("soak: FAILED: " + ", ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("soak: every goal met", file=sys.stderr)


if __name__ == "__main__":
    main()
