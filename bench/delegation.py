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
  - C{keytrap_worst_ms}: the longest validation, in memory, of a crafted
    KeyTrap answer (CVE-2023-50387) under the limits of
    L{dna.dns.dnssec.proofs}: a zone with a 4096-bit RSA key and DNSKEYs
    sharing its key tag, answering with many RRSIGs of that tag, or with
    many NSEC RRsets each first signed wrongly; the median of R rounds of
    each answer (goal < 50). With C{--keytrap-only} nothing else runs.
  - C{dane_check_ms_cold_ad}, C{dane_check_ms_cold_validate}: one DANE
    look-up (L{dna.dns.tlsa.TLSALookup}: the SRV target's A records, then
    its TLSA records) by a fresh lookup, asking a freshly restarted unbound,
    in mode 'ad' and in mode 'validate'; C{dane_check_ms} the cold one in
    mode 'ad' and C{dane_check_ms_cached} one answered from the cache; the
    medians of R rounds.
  - C{posh_check_ms_cold}: one POSH fetch (L{dna.dns.posh.POSHFetcher}:
    HTTPS with a new TLS connection, PKIX verification, one redirect)
    from a local HTTPS server by a fresh fetcher, then matching a
    certificate; C{posh_check_ms_cached} the same answered from the cache;
    C{posh_check_ms} the cold one; medians of R rounds.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dns.dnssec  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402
from dns.dnssecalgs.rsa import PrivateRSASHA256  # noqa: E402
from dns.dnssectypes import Algorithm  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from dna.app.delegation import makeDelegationChecker, makeTLSALookup  # noqa: E402
from dna.dns import posh  # noqa: E402
from dna.dns.client import DNSClient  # noqa: E402
from dna.dns.dnssec.proofs import (  # noqa: E402
    BOGUS,
    MAX_KEYS_PER_SIGNATURE,
    parseAnchors,
    readAnchors,
)
from dna.dns.dnssec.walker import Validator  # noqa: E402
from dna.dns.tlsa import DANE  # noqa: E402
from dna.dns.verdict import SECURE  # noqa: E402
from dna.testing.fakes import collidingKeys  # noqa: E402
from dna.testing.https import listenHTTPS, loopbackAgent  # noqa: E402
from dna.testing.pki import CertificateAuthority  # noqa: E402
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


#: The certificate POSH documents name.
POSH_SERVER = CertificateAuthority("POSH Bench Server CA").issue("xmpp.hosting.example")


def _poshSite():
    from twisted.web import resource, server

    class Documents(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-type", b"application/json")
            if request.getRequestHostname() == b"tenant.example":
                return json.dumps({"url": "https://hosting.example/.well-known/posh/"
                                   "xmpp-server.json", "expires": 3600}).encode()
            return json.dumps({"fingerprints": [{"sha-256": posh.fingerprint(
                POSH_SERVER.certificate)}], "expires": 3600}).encode()

    return server.Site(Documents())


@defer.inlineCallbacks
def poshCheck(reactor, rounds):
    """
    @return: The medians, in seconds, of a cold and of a cached POSH check
        of tenant.example (redirected to hosting.example).
    """
    authority = CertificateAuthority("POSH Bench CA")
    port = yield listenHTTPS(reactor, _poshSite(), authority.issue(
        "posh", dnsNames=["tenant.example", "hosting.example"]))
    agent = loopbackAgent(reactor, port.getHost().port, authority.toCertificate())
    cold, cached = [], []
    try:
        for _ in range(rounds):
            fetcher = posh.POSHFetcher(agent, reactor)
            start = time.perf_counter()
            result = yield fetcher.fetch("tenant.example")
            assert posh.matches(result.document, POSH_SERVER.certificate), result
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = yield fetcher.fetch("tenant.example")
            assert posh.matches(result.document, POSH_SERVER.certificate), result
            cached.append(time.perf_counter() - start)
    finally:
        yield port.stopListening()
    return statistics.median(cold), statistics.median(cached)


#: A zone with a TLSA record, for the DANE look-ups.
DANE_ZONES = {"danebench.example": ("nsec", [
    "xmpp1 A 127.0.0.81", "_5269._tcp.xmpp1 TLSA 3 1 1 " + "ab" * 32,
], "xmpp1.danebench.example with a DANE-EE record.")}


@defer.inlineCallbacks
def daneCheck(reactor, env, mode, rounds, **kwargs):
    """
    @return: The medians, in seconds, of a cold and of a cached DANE
        look-up of xmpp1.danebench.example.
    """
    cold, cached = [], []
    for _ in range(rounds):
        env.restartResolver()
        client = DNSClient([env.resolver], reactor=reactor)
        tlsa = makeTLSALookup(reactor, client, mode, **kwargs)
        start = time.perf_counter()
        result = yield tlsa.lookup("xmpp1.danebench.example", 5269)
        cold.append(time.perf_counter() - start)
        assert result.status == DANE, result
        start = time.perf_counter()
        yield tlsa.lookup("xmpp1.danebench.example", 5269)
        cached.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(cached)


def keyTrapWorstMs(rounds):
    """
    @return: The longest of the median validation times, in milliseconds,
        of the crafted KeyTrap answers, and the statuses found.
    """
    zone = dns.name.from_text("keytrap.example.")
    qname = dns.name.from_text("_xmpp-server._tcp.keytrap.example.")
    now = int(time.time())
    private = PrivateRSASHA256.generate(key_size=4096)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), Algorithm.RSASHA256, flags=257)
    anchors = parseAnchors(
        f"{zone} 3600 IN DS {dns.dnssec.make_ds(zone, dnskey, 'SHA256').to_text()}")

    def signed(rrset, wrong=0):
        good = dns.dnssec.sign(rrset, private, zone, dnskey, inception=now - 3600,
                               expiration=now + 86400)
        sigs = dns.rrset.RRset(rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                               rrset.rdtype)
        for i in range(wrong):
            sigs.add(good.replace(signature=(i + 1).to_bytes(4, "big") * 128))
        sigs.add(good)
        return [rrset, sigs]

    soa = dns.rrset.from_text(zone, 300, "IN", "SOA",
                              "ns.keytrap.example. h.keytrap.example. 1 3600 600 86400 300")
    srv = dns.rrset.from_text(qname, 300, "IN", "SRV", "0 0 5269 xmpp.keytrap.example.")
    nsecs = []
    for i in range(150):
        nsec = dns.rrset.from_text(f"n{i:03d}.keytrap.example.", 300, "IN", "NSEC",
                                   f"n{i + 1:03d}.keytrap.example. A RRSIG NSEC")
        nsecs.extend(signed(nsec, wrong=1))

    srvAnswer = signed(srv, wrong=300)
    negativeAnswer = signed(soa) + nsecs

    def answers(colliding, negative):
        # The real key last: every key of its tag is tried before it.
        keys = dns.rrset.from_rdata_list(zone, 3600, collidingKeys(dnskey, colliding)
                                         + [dnskey])
        responses = {}
        for name, rdtype in [(zone, dns.rdatatype.DNSKEY), (qname, dns.rdatatype.SRV)]:
            response = responses[name, rdtype] = dns.message.make_response(
                dns.message.make_query(name, rdtype, want_dnssec=True))
            response.flags |= dns.flags.AA
        responses[zone, dns.rdatatype.DNSKEY].answer = signed(keys)
        if negative:
            responses[qname, dns.rdatatype.SRV].set_rcode(dns.rcode.NXDOMAIN)
            responses[qname, dns.rdatatype.SRV].authority = negativeAnswer
        else:
            responses[qname, dns.rdatatype.SRV].answer = srvAnswer

        def query(name, rdtype):
            # Made beforehand: only the validation is timed.
            return defer.succeed(responses[name, rdtype])

        return query

    worst = 0
    statuses = set()
    for colliding in (MAX_KEYS_PER_SIGNATURE - 1, 300):
        for negative in (False, True):
            query = answers(colliding, negative)
            times = []
            for _ in range(rounds):
                validator = Validator(query, anchors, maxZones=0)
                start = time.perf_counter()
                d = validator.resolve(qname, dns.rdatatype.SRV, now)
                times.append(time.perf_counter() - start)
                results = []
                d.addCallback(results.append)
                statuses.add(results[0].status)
            worst = max(worst, statistics.median(times))
    return worst * 1000, statuses


@defer.inlineCallbacks
def main(reactor, options):
    worst, statuses = keyTrapWorstMs(options.rounds)
    assert statuses == {BOGUS}, statuses
    emit("keytrap_worst_ms", f"{worst:.2f}")
    if options.keytrap_only:
        return
    poshCold, poshCached = yield poshCheck(reactor, options.rounds)
    emit("posh_check_ms_cold", f"{poshCold * 1000:.2f}")
    emit("posh_check_ms", f"{poshCold * 1000:.2f}")
    emit("posh_check_ms_cached", f"{poshCached * 1000:.4f}")
    workdir = tempfile.mkdtemp(prefix="dna-bench-")
    env = DNSEnvironment(workdir, manyCount=options.domains, extraZones=DANE_ZONES)
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

        daneAD, daneCached = yield daneCheck(reactor, env, "ad", options.rounds)
        daneValidate, _ = yield daneCheck(reactor, env, "validate", options.rounds,
                                          anchors=anchors)
        emit("dane_check_ms_cold_ad", f"{daneAD * 1000:.2f}")
        emit("dane_check_ms_cold_validate", f"{daneValidate * 1000:.2f}")
        emit("dane_check_ms", f"{daneAD * 1000:.2f}")
        emit("dane_check_ms_cached", f"{daneCached * 1000:.4f}")
    finally:
        env.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cached", type=int, default=400_000)
    parser.add_argument("--keytrap-only", action="store_true")
    task.react(main, (parser.parse_args(),))
