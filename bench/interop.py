"""
What DNA costs and saves against servers that do not speak it: two DNA
providers, a DNA provider falling back to Prosody, and two Prosody 0.12
servers, all on loopback, resolving through the same knotd + validating
unbound (L{tests.integration.interop}).

    python bench/interop.py [--rounds R] [--senders 5] [--targets 10] [--prosody-nodelay]

Prints C{name: value} lines:

  - C{first_stanza_dna_ms}: the first stanza between two DNA providers
    that have no connection yet: an iq ping from a sender domain of one to
    a target domain of the other, until its result is back (DNSSEC SRV
    look-up, TCP, STARTTLS with mutual certificates, bidi, the
    C{<db:result/>} of the pair; the result travels back on the same
    connection). Fresh providers each round; the median of R rounds after
    an untimed one (so unbound's cache is warm for all three figures).
  - C{first_stanza_fallback_ms}: the same from a DNA provider to a domain
    hosted by Prosody: the DNA attempt is refused (host-unknown), then the
    legacy stream (STARTTLS, bidi, SASL EXTERNAL) carries it; Prosody's
    C{mod_ping} answers. Prosody keeps running; each round a fresh provider
    pings a Prosody domain.
  - C{first_stanza_prosody_ms}: the same between two Prosody servers,
    timed by Prosody itself (C{xmpp:ping} of its admin shell, which
    reports the round trip from sending to the pong). Both keep running;
    each round pings a domain pair not used before, which Prosody gives a
    connection of its own.
  - C{connections_dna}, C{connections_prosody}: the TCP connections
    between the two providers after one ping round trip for each of the
    S x T domain pairs (default 5 x 10 = 50), counted as the established
    sockets on the two S2S listeners.

Prosody as shipped leaves Nagle's algorithm on: each of its TCP connections
stalls about 45 ms after STARTTLS (a delayed acknowledgement holds its next
small write), which the fallback and Prosody figures include. With
C{--prosody-nodelay} it runs with C{network_settings = { nagle = false }}.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, endpoints, task  # noqa: E402
from twisted.internet.ssl import trustRootFromCertificates  # noqa: E402
from twisted.words.protocols.jabber import xmlstream  # noqa: E402
from twisted.words.xish import domish  # noqa: E402

from dna.app.service import DNAService  # noqa: E402
from dna.dns.addresses import AddressResolver  # noqa: E402
from dna.dns.client import DNSClient  # noqa: E402
from dna.dns.delegation import DelegationChecker  # noqa: E402
from dna.dns.lookup import ResolverLookup  # noqa: E402
from dna.legacy.policy import FALLBACK_PKIX  # noqa: E402
from dna.testing.pki import CertificateAuthority  # noqa: E402
from tests.integration.flowpair import established  # noqa: E402
from tests.integration.interop import (  # noqa: E402
    S2S_PORT,
    InteropDNS,
    ProsodyServer,
    pickAddresses,
    xmppZone,
)

NS_PING = "urn:xmpp:ping"


def emit(name, value):
    print(f"{name}: {value}", flush=True)


class Pinger:
    """
    The router behind a DNA provider: answers iq pings, and fires waiters
    when results come back.
    """

    def __init__(self):
        self.service = None
        self._waiting = {}
        self._counter = 0

    def __call__(self, stanza):
        if stanza.name != "iq":
            return
        if stanza.getAttribute("type") == "get":
            self.service.send(xmlstream.toResponse(stanza, "result"))
            return
        d = self._waiting.pop(stanza.getAttribute("id"), None)
        if d is not None:
            if stanza.getAttribute("type") == "result":
                d.callback(stanza)
            else:
                d.errback(RuntimeError("ping failed: " + stanza.toXml()))

    def ping(self, sender, target, timeout=20):
        self._counter += 1
        iq = domish.Element((None, "iq"))
        iq["type"] = "get"
        iq["from"] = sender
        iq["to"] = target
        iq["id"] = "p%d" % (self._counter,)
        iq.addElement((NS_PING, "ping"))
        d = self._waiting[iq["id"]] = defer.Deferred()
        from twisted.internet import reactor

        d.addTimeout(timeout, reactor)
        self.service.send(iq)
        return d


class Setup:
    """
    Addresses, zones, certificates; starts providers on demand.
    """

    def __init__(self, reactor, senders, targets, prosodyConfig=""):
        self.reactor = reactor
        self.prosodyConfig = prosodyConfig
        self.senders = senders
        self.targets = targets
        self.a, self.b, self.pa, self.pb = pickAddresses(4)
        self.dnaSenders = ["s%d.dna-a.example" % i for i in range(1, senders + 1)]
        self.dnaTargets = ["t%d.dna-b.example" % i for i in range(1, targets + 1)]
        self.prosodySenders = ["s%d.pa.example" % i for i in range(1, senders + 1)]
        self.prosodyTargets = ["t%d.pb.example" % i for i in range(1, targets + 1)]
        labels = lambda domains: [d.split(".", 1)[0] for d in domains]  # noqa: E731
        self.workdir = tempfile.mkdtemp(prefix="dna-bench-interop-")
        self.dns = InteropDNS(self.workdir, {
            "dna-a.example": xmppZone("xmpp1.dna-a.example", self.a, labels(self.dnaSenders)),
            "dna-b.example": xmppZone("xmpp1.dna-b.example", self.b, labels(self.dnaTargets)),
            "pa.example": xmppZone("xmpp.pa.example", self.pa, labels(self.prosodySenders)),
            "pb.example": xmppZone("xmpp.pb.example", self.pb, labels(self.prosodyTargets)),
        })
        self.dns.start()
        self.ca = CertificateAuthority("Interop bench CA")
        self.trustRoot = trustRootFromCertificates([self.ca.toCertificate()])
        self.certA = self.ca.issue("xmpp1.dna-a.example", dnsNames=["xmpp1.dna-a.example"] + self.dnaSenders)
        self.certB = self.ca.issue("xmpp1.dna-b.example", dnsNames=["xmpp1.dna-b.example"])
        self.certPA = self.ca.issue("pa.example", dnsNames=self.prosodySenders)
        self.certPB = self.ca.issue("pb.example", dnsNames=self.prosodyTargets)

    @defer.inlineCallbacks
    def startDNA(self, domains, serverName, certificate, address, **kw):
        client = DNSClient([self.dns.resolver], self.reactor)
        checker = DelegationChecker(ResolverLookup(client, self.reactor), self.reactor)
        pinger = Pinger()
        service = DNAService(
            domains, {serverName: certificate.toPrivateCertificate()}, self.trustRoot, checker,
            AddressResolver(client=client), deliver=pinger, reactor=self.reactor, **kw
        )
        pinger.service = service
        service.startService()
        yield service.listen(
            endpoints.TCP4ServerEndpoint(self.reactor, S2S_PORT, interface=address, backlog=200)
        )
        return pinger

    def startA(self, **kw):
        return self.startDNA(self.dnaSenders, "xmpp1.dna-a.example", self.certA, self.a, **kw)

    def startB(self):
        return self.startDNA(self.dnaTargets, "xmpp1.dna-b.example", self.certB, self.b)

    def startProsody(self, which):
        domains, certificate, address = {
            "pa": (self.prosodySenders, self.certPA, self.pa),
            "pb": (self.prosodyTargets, self.certPB, self.pb),
        }[which]
        return ProsodyServer(
            domains, address, certificate, self.ca.certificatePEM, self.dns.resolver,
            self.dns.anchorFile, secureAuth=True, logLevel="warn", extraConfig=self.prosodyConfig,
        ).start()

    def stop(self):
        self.dns.stop()


def prosodyPing(server, sender, target):
    """
    The round trip C{xmpp:ping} reports, in seconds.
    """
    result = server.shell("xmpp:ping('{}', '{}')".format(sender, target))
    for line in result.stdout.splitlines():
        if "pong from" in line:
            return float(line.rsplit(" in ", 1)[1].rstrip("s \n"))
    raise RuntimeError("no pong: {}{}\n{}".format(result.stdout, result.stderr, server.logTail()))


@defer.inlineCallbacks
def firstStanzaDNA(setup, rounds):
    """
    Fresh providers each round (one untimed round first).
    """
    times = []
    for round in range(rounds + 1):
        a = yield setup.startA()
        b = yield setup.startB()
        start = time.perf_counter()
        yield a.ping(setup.dnaSenders[0], setup.dnaTargets[0])
        times.append(time.perf_counter() - start)
        yield a.service.stopService()
        yield b.service.stopService()
    return statistics.median(times[1:]) * 1000


@defer.inlineCallbacks
def firstStanzaFallback(setup, pb, rounds):
    """
    A fresh DNA provider each round, pinging a domain of the running
    Prosody it has not reached before (one untimed round first).
    """
    times = []
    for round in range(rounds + 1):
        a = yield setup.startA(fallback=FALLBACK_PKIX)
        target = setup.prosodyTargets[round % len(setup.prosodyTargets)]
        start = time.perf_counter()
        yield a.ping(setup.dnaSenders[0], target)
        times.append(time.perf_counter() - start)
        yield a.service.stopService()
    return statistics.median(times[1:]) * 1000


def firstStanzaProsody(setup, pa, pairs, rounds):
    """
    Running Prosody servers, a domain pair without a connection each round
    (Prosody opens one per pair); one untimed round first. The pairs used
    are taken off C{pairs}.
    """
    times = [prosodyPing(pa, *pairs.pop(0)) for round in range(rounds + 1)]
    return statistics.median(times[1:]) * 1000


@defer.inlineCallbacks
def connectionsDNA(setup):
    a = yield setup.startA()
    b = yield setup.startB()
    pings = [a.ping(s, t) for s in setup.dnaSenders for t in setup.dnaTargets]
    yield defer.gatherResults(pings)
    count = established([setup.a, setup.b])
    yield a.service.stopService()
    yield b.service.stopService()
    return count, len(pings)


def connectionsProsody(setup, pa, pairs):
    """
    Ping every pair left in C{pairs}, then count.
    """
    for sender, target in pairs:
        prosodyPing(pa, sender, target)
    return established([setup.pa, setup.pb])


@defer.inlineCallbacks
def main(reactor, *argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument(
        "--prosody-nodelay", action="store_true",
        help="run Prosody with network_settings = { nagle = false } (default: as shipped)",
    )
    options = parser.parse_args(argv)
    setup = Setup(
        reactor, options.senders, options.targets,
        "network_settings = { nagle = false }" if options.prosody_nodelay else "",
    )
    pa = pb = None
    try:
        emit("first_stanza_dna_ms", "%.1f" % (yield firstStanzaDNA(setup, options.rounds)))
        pb = setup.startProsody("pb")
        emit("first_stanza_fallback_ms", "%.1f" % (yield firstStanzaFallback(setup, pb, options.rounds)))
        pa = setup.startProsody("pa")
        pairs = [(s, t) for s in setup.prosodySenders for t in setup.prosodyTargets]
        total = len(pairs)
        emit("first_stanza_prosody_ms", "%.1f" % firstStanzaProsody(setup, pa, pairs, options.rounds))
        count, dnaPairs = yield connectionsDNA(setup)
        print("# domain_pairs: %d (DNA), %d (Prosody)" % (dnaPairs, total), flush=True)
        emit("connections_dna", "%d" % (count,))
        emit("connections_prosody", "%d" % (connectionsProsody(setup, pa, pairs),))
    finally:
        for server in (pa, pb):
            if server is not None:
                server.stop()
        setup.stop()

if __name__ == "__main__":
    task.react(main, sys.argv[1:])
