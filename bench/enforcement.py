"""
Receive-path throughput with and without enforcement of the binding table.

Stanzas go through L{XmlStream.dataReceived} (expat parsing, element building,
dispatch) to the same delivery observer, once on a plain stream and once with
L{dna.core.enforcement.StanzaFilter} installed; rounds alternate and the medians
are compared (CPU time; the median of per-round ratios). For reference it
also measures a naive enforcement observer
(an XPath observer per stanza, the design this module avoids), and Twisted's
own XmlStream without DNA's guarded parser (L{dna.channel.stream}).

The whole receive path of a L{DNAService} (authorization, filter,
acknowledgements, delivery) is measured twice more, side by side: without
metrics and with its Prometheus registry (L{dna.app.metrics}) scraped at the
start and the end of every round, some forty times as often as a scraper
every 15 s would.

    python bench/enforcement.py [--stanzas N] [--rounds R]

Prints C{name: value} lines; C{enforcement_ratio} is the goal (>= 0.97);
C{guarded_parser_ratio} is the cost of the parser's limits and restrictions;
C{metrics_enforcement_ratio} (service receive path with metrics on vs off)
has the goal >= 0.97 too.
"""

import argparse
import statistics
import time

from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber import xmlstream

from dna.channel.stream import S2SStream
from dna.core.enforcement import StanzaFilter
from dna.core.names import domainOf
from dna.core.tables import INCOMING, Tables

HEADER = (
    b"<stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' "
    b"from='xmpp1.originating.tld' to='xmpp1.receiving.tld' id='s1' version='1.0'>"
)
STANZA = (
    "<message from='romeo{u}@sender{d}.tld/orchard' to='juliet{u}@target{d}.tld' "
    "type='chat' id='m{i}'><body>Wherefore art thou, Romeo?</body></message>"
)
USERS = 50
DOMAINS = 20
CHUNK = 8192


def makeData(count):
    """
    C{count} messages from 50 users over 20 bound domain pairs, in chunks
    as they would come off a socket.
    """
    data = "".join(
        STANZA.format(u=i % USERS, d=i % DOMAINS, i=i) for i in range(count)
    ).encode("utf-8")
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def makeTables():
    tables = Tables()
    tables.openConnection("s1", ["xmpp1.originating.tld"])
    for d in range(DOMAINS):
        tables.bind(INCOMING, "target%d.tld" % (d,), "sender%d.tld" % (d,), "s1")
    return tables


def naiveObserver(tables):
    """
    Enforcement as an XPath observer that parses both addresses per stanza.
    """

    def check(element):
        if not tables.accepts(
            "s1", domainOf(element["to"]), domainOf(element["from"])
        ):
            element.handled = True

    return check


#: The test CA and our certificate, made once.
_PKI = []


def makeService():
    """
    A L{DNAService} hosting the benchmark's target domains, and an
    authenticated incoming stream on which every pair is bound.

    @return: C{(service, stream, delivered)}.
    """
    from twisted.internet.ssl import trustRootFromCertificates
    from twisted.internet.task import Clock

    from dna.app.service import DNAService
    from dna.dns.addresses import AddressResolver
    from dna.testing.fakes import FakeDelegationChecker
    from dna.testing.pki import CertificateAuthority

    if not _PKI:
        ca = CertificateAuthority("Bench CA")
        _PKI.extend([ca, ca.issue("xmpp1.receiving.tld", dnsNames=["xmpp1.receiving.tld"])])
    ca, ours = _PKI
    delivered = []
    service = DNAService(
        ["target%d.tld" % (d,) for d in range(DOMAINS)],
        {"xmpp1.receiving.tld": ours.toPrivateCertificate()},
        trustRootFromCertificates([ca.toCertificate()]), FakeDelegationChecker({}),
        AddressResolver(hosts={}), deliver=delivered.append, reactor=Clock())
    xs = S2SStream(xmlstream.Authenticator())
    xs.makeConnection(StringTransport())
    xs.dataReceived(HEADER)
    xs.sid = "s1"
    service._streamConnected(xs)
    service.federation.streamAuthenticated(
        xs, initiating=False, serverNames=["xmpp1.originating.tld"])
    for d in range(DOMAINS):
        service.federation.tables.bind(
            INCOMING, "target%d.tld" % (d,), "sender%d.tld" % (d,), "s1")
    return service, xs, delivered


def runService(chunks, count, mode):
    """
    The receive path of a whole L{DNAService}; with C{mode} C{"metrics"},
    its registry is scraped before and after the stanzas.
    """
    from prometheus_client.exposition import generate_latest

    from dna.app.metrics import serviceRegistry

    service, xs, delivered = makeService()
    registry = serviceRegistry(service) if mode == "metrics" else None
    start = time.process_time()
    if registry is not None:
        generate_latest(registry)
    for chunk in chunks:
        xs.dataReceived(chunk)
    if registry is not None:
        generate_latest(registry)
    elapsed = time.process_time() - start
    if len(delivered) != count:
        raise RuntimeError("%s delivered %d of %d" % (mode, len(delivered), count))
    return count / elapsed


def run(chunks, count, mode):
    if mode in ("service", "metrics"):
        return runService(chunks, count, mode)
    if mode == "twisted":
        xs = xmlstream.XmlStream(xmlstream.Authenticator())
    else:
        xs = S2SStream(xmlstream.Authenticator())
    xs.makeConnection(StringTransport())
    xs.dataReceived(HEADER)
    delivered = []

    def deliver(element):
        if not getattr(element, "handled", False):
            delivered.append(element)

    xs.addObserver("/message", deliver)
    tables = makeTables()
    if mode == "filter":
        StanzaFilter(xs, "s1", tables.incoming).install()
    elif mode == "naive":
        xs.addObserver("/*", naiveObserver(tables), priority=100)
    # CPU time of this process: the machines are shared and noisy, and the
    # receive path is pure CPU work.
    start = time.process_time()
    for chunk in chunks:
        xs.dataReceived(chunk)
    elapsed = time.process_time() - start
    if len(delivered) != count:
        raise RuntimeError("%s delivered %d of %d" % (mode, len(delivered), count))
    return count / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--stanzas", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=21)
    options = parser.parse_args()
    chunks = makeData(options.stanzas)
    modes = ("plain", "filter", "naive", "twisted", "service", "metrics")
    rates = {mode: [] for mode in modes}
    run(chunks, options.stanzas, "plain")  # warm up
    for _ in range(options.rounds):
        for mode in modes:
            rates[mode].append(run(chunks, options.stanzas, mode))
    median = {mode: statistics.median(rates[mode]) for mode in modes}
    # Each round runs the modes back to back: the median of the per-round
    # ratios cancels most of the drift of a shared machine.
    paired = {
        mode: statistics.median(r / p for r, p in zip(rates[mode], rates["plain"]))
        for mode in modes
    }
    print("stanzas_per_round: %d" % (options.stanzas,))
    print("rounds: %d" % (options.rounds,))
    print("plain_stanzas_per_s: %.0f" % (median["plain"],))
    print("enforced_stanzas_per_s: %.0f" % (median["filter"],))
    print("naive_xpath_stanzas_per_s: %.0f" % (median["naive"],))
    print("naive_xpath_ratio: %.3f" % (paired["naive"],))
    print("twisted_stanzas_per_s: %.0f" % (median["twisted"],))
    print("guarded_parser_ratio: %.3f" % (1 / paired["twisted"],))
    print("enforcement_ratio: %.3f" % (paired["filter"],))
    print("service_stanzas_per_s: %.0f" % (median["service"],))
    print("metrics_stanzas_per_s: %.0f" % (median["metrics"],))
    print("metrics_enforcement_ratio: %.3f" % (
        statistics.median(m / s for m, s in zip(rates["metrics"], rates["service"])),))


if __name__ == "__main__":
    main()
