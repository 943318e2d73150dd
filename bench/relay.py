"""
The ceiling of issue 13's path: two relays that do only what any server on
it must, beside the floor of C{bench/e2e.py}.

    PYTHONPATH=. python bench/relay.py [--rounds 3] [--stanzas 50000]

Two processes stand where C{bench/e2e.py} runs two C{twistd dna}: relay A
accepts the sending XEP-0114 component, relay B the 25 receiving ones (the
handshake accepted unchecked), and A holds one TLS link to B. Each parses
with DNA's own parser (L{dna.channel.stream}: expat, stanzas kept as their
bytes, B's side with the limits of an S2S stream), reads in slices of 16 KiB
per reactor turn through L{dna.app.flow.Source}, and writes the stanzas' bytes
once per slice and stream: A everything to the link, B each stanza to the
component of its C{to} domain. Nothing else: no binding table or filter,
no delegation, no acknowledgements, numbering or flow control, no log. The
components, the window and the floor are C{bench/e2e.py}'s (the floor
measured beside the relays in each round, just after them in even rounds,
just before in odd ones).

Prints C{name: value} lines, medians over the rounds:
C{relay_stanzas_per_s}; C{floor_stanzas_per_s}; C{relay_vs_floor}, the
median of the rounds' ratios (what C{e2e_vs_floor} would read for a server
that cost nothing beyond parsing and writing); C{relay_cpu_us_per_stanza_a},
C{_b}, C{_bench} as C{bench/e2e.py} counts them. Exits non-zero with a
message if a round loses a stanza.
"""

import argparse
import collections
import os
import subprocess
import sys
import tempfile

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)

from twisted.internet import defer, protocol, reactor, ssl  # noqa: E402

from bench.e2e import (  # noqa: E402
    SENDERS,
    TARGETS,
    ComponentsReceiver,
    Inbox,
    besideFloor,
    cleanUp,
    emit,
    measureFloor,
    median,
    message,
    note,
    runToEnd,
    throughput,
)
from dna.app.federation import toServerNamespace  # noqa: E402
from dna.app.flow import FlowControl, Source  # noqa: E402
from dna.channel.stream import RawStanza, _GuardedElementStream, _RawElementStream  # noqa: E402
from dna.testing.pki import CertificateAuthority  # noqa: E402
from tests.integration.flowpair import connectComponents, disconnectComponents  # noqa: E402
from tests.integration.processes import freePort, waitForPort  # noqa: E402

NS_SERVER = "jabber:server"
NS_COMPONENT = "jabber:component:accept"


# The relays (each in its own process)


#: A server's flow control with no sinks: it only slices the reads.
_FLOW = FlowControl(collections.Counter(), reactor)


class _Sliced(protocol.Protocol):
    """
    Hands what it reads to L{handle} in slices, one per reactor turn, its
    transport paused meanwhile: through a server's own L{Source}.
    """

    def makeConnection(self, transport):
        self._source = Source(_FLOW, self, self.handle)
        protocol.Protocol.makeConnection(self, transport)

    def dataReceived(self, data):
        self._source.dataReceived(data)


class ComponentSide(_Sliced):
    """
    An XEP-0114 component's connection: on relay A, what it sends goes to
    the link; on relay B, it is the route of its domain.
    """

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.stream = _RawElementStream()
        self.stream.DocumentStartEvent = self.onStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = lambda: None
        self.held = []

    def onStart(self, root):
        self.domain = root.attributes.get("to")
        self.transport.write(
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='r1' from='%s'>"
            % self.domain.encode("utf-8"))

    def onElement(self, element):
        if element.name == "handshake":
            self.transport.write(b"<handshake/>")
            self.factory.routes[self.domain] = self
            return
        # As DNA moves a component's stanza to jabber:server.
        toServerNamespace(element)
        data = None
        if element.__class__ is RawStanza:
            data = element.verbatim(NS_SERVER)
        if data is None:
            data = element.toXml(defaultUri=NS_SERVER).encode("utf-8")
        self.factory.link.held.append(data)

    def handle(self, data):
        self.stream.parse(data)
        link = self.factory.link
        if link is not None and link.held:
            link.transport.write(b"".join(link.held))
            del link.held[:]


class LinkIn(_Sliced):
    """
    Relay B's end of the link: each stanza to the component of its domain.
    """

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.stream = _GuardedElementStream(lambda: 256 * 1024, lambda: 20)
        self.stream.DocumentStartEvent = lambda root: None
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = lambda: None
        self.holding = []

    def onElement(self, element):
        to = element.attributes["to"]
        route = self.factory.routes[to[to.index("@") + 1:]]
        data = element.verbatim(NS_COMPONENT) or element.toXml().encode("utf-8")
        if not route.held:
            self.holding.append(route)
        route.held.append(data)

    def handle(self, data):
        self.stream.parse(data)
        for route in self.holding:
            route.transport.write(b"".join(route.held))
            del route.held[:]
        del self.holding[:]


class LinkOut(protocol.Protocol):
    """
    Relay A's end of the link.
    """

    def connectionLost(self, reason):
        # Nothing to relay to: end, and the bench notices.
        if reactor.running:
            reactor.stop()

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.held = []
        self.transport.write(
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='b' from='a' version='1.0'>")
        self.factory.components.link = self
        sys.stdout.write("ready\n")
        sys.stdout.flush()


def relay(role, componentPort, linkPort, directory):
    """
    Run relay C{role} (C{"a"} or C{"b"}): components on C{componentPort},
    the link on C{linkPort} (B listens with the certificate in
    C{directory}, A connects). Writes C{ready} once it can relay.
    """
    components = protocol.Factory.forProtocol(ComponentSide)
    components.routes = {}
    components.link = None
    reactor.listenTCP(componentPort, components, interface="127.0.0.1")
    if role == "b":
        pem = b""
        for name in ("server.pem", "server.key"):
            with open(os.path.join(directory, name), "rb") as f:
                pem += f.read()
        link = protocol.Factory.forProtocol(LinkIn)
        link.routes = components.routes
        reactor.listenSSL(linkPort, link, ssl.PrivateCertificate.loadPEM(pem).options(),
                          interface="127.0.0.1")
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    else:
        out = protocol.ClientFactory.forProtocol(LinkOut)
        out.clientConnectionFailed = lambda connector, reason: reactor.stop()
        out.components = components
        reactor.connectSSL("127.0.0.1", linkPort, out, ssl.CertificateOptions())
    reactor.run()


# The driver


def startRelay(role, componentPort, linkPort, directory, cleanups):
    """
    Start relay C{role} and wait until it can relay (it exits if it
    cannot); C{cleanups} gets a callable that kills it.
    """
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--relay", role, str(componentPort),
         str(linkPort), directory],
        cwd=CHECKOUT, env=dict(os.environ, PYTHONPATH=CHECKOUT),
        stdout=subprocess.PIPE)
    cleanups.append(lambda: process.poll() is None and process.kill())
    ready = process.stdout.readline()
    process.stdout.close()
    if ready != b"ready\n":
        raise RuntimeError(f"relay {role} did not start")
    return process


@defer.inlineCallbacks
def run(options, workdir, results, cleanups):
    ca = CertificateAuthority("bench relay CA")
    certificate = ca.issue("xmpp.provb.example", dnsNames=["xmpp.provb.example"])
    certificate.writeTo(workdir, "server")
    senders = [f"s{i:02d}.prova.example" for i in range(1, SENDERS + 1)]
    targets = [f"t{i:02d}.provb.example" for i in range(1, TARGETS + 1)]
    n = options.stanzas

    def record(name, value):
        results.setdefault(name, []).append(value)

    for r in range(options.rounds):
        portA, portB, portLink = freePort(), freePort(), freePort()
        b = startRelay("b", portB, portLink, workdir, cleanups)
        a = startRelay("a", portA, portLink, workdir, cleanups)
        waitForPort(portA, a)
        inbox = Inbox()
        receiver = ComponentsReceiver(inbox)
        cleanups.append(receiver.stop)
        attached = []
        try:
            yield receiver.start(portB, targets)
            [(xs, _, _)] = attached = yield connectComponents(portA, senders[:1])
            floorStanzas = [message(senders[i % SENDERS], targets[i % TARGETS], i)
                            for i in range(n)]
            stanzas = [message(senders[i % SENDERS], targets[i % TARGETS], 100000 + i)
                       for i in range(n)]
            pids = {"a": a.pid, "b": b.pid, "bench": os.getpid(), "receiver": receiver.pid}
            (rate, used), (floorRate, _) = yield besideFloor(
                lambda: throughput(xs, stanzas, inbox, pids, f"round {r}"),
                lambda: measureFloor(os.path.join(workdir, f"floor{r}"), certificate, ca,
                                     floorStanzas, cleanups),
                floorFirst=r % 2)
            record("relay_stanzas_per_s", rate)
            record("floor_stanzas_per_s", floorRate)
            record("relay_vs_floor", rate / floorRate)
            record("relay_cpu_us_per_stanza_a", used["a"])
            record("relay_cpu_us_per_stanza_b", used["b"])
            record("relay_cpu_us_per_stanza_bench", used["bench"] + used["receiver"])
            note(f"round {r}: {rate:.0f} against a floor of {floorRate:.0f}: "
                 f"{rate / floorRate:.2f}")
        finally:
            disconnectComponents(attached)
            receiver.stop()
            for process in (a, b):
                process.kill()
                process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stanzas", type=int, default=50000)
    parser.add_argument("--relay", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.relay:
        role, componentPort, linkPort, directory = options.relay
        relay(role, int(componentPort), int(linkPort), directory)
        return
    results, cleanups = {}, []
    workdir = tempfile.mkdtemp(prefix="dna-relay-")
    runToEnd(lambda: run(options, workdir, results, cleanups), "relay",
             lambda: cleanUp(cleanups, workdir, "DNA_KEEP_RELAY"))
    for name in ("relay_stanzas_per_s", "floor_stanzas_per_s", "relay_vs_floor",
                 "relay_cpu_us_per_stanza_a", "relay_cpu_us_per_stanza_b",
                 "relay_cpu_us_per_stanza_bench"):
        value = median(results[name])
        emit(name, round(value, 2) if value < 100 else round(value))


if __name__ == "__main__":
    main()
