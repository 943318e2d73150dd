"""
Two C{twistd dna} processes over real DNSSEC-signed DNS, with XEP-0114
components at both ends, for the flow-control test (issue 16,
L{tests.integration.test_flow}) and its bench (C{bench/flow.py}).

Provider A (C{xmpp.flowa.example}) hosts the sender domains C{sNN.flowa.example},
provider B (C{xmpp.flowb.example}) the target domains C{tNN.flowb.example};
each is a real process started as an operator would, with a configuration
file, logging to a file in its directory.
"""

import os
import re
import socket
import subprocess

from twisted.internet import defer, reactor
from twisted.words.protocols.jabber import component, xmlstream

from dna.testing.pki import CertificateAuthority
from tests.integration.interop import S2S_PORT, InteropDNS, pickAddresses, xmppZone
from tests.integration.processes import (
    CHECKOUT,
    freePort,
    stopProcess,
    twistdCommand,
    waitForPort,
)

SECRET = "flow component secret"


def rss(pid):
    """
    VmRSS of a process, in bytes (from C{/proc/PID/status}).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def established(addresses, port=S2S_PORT):
    """
    How many TCP connections to listeners at C{addresses}:C{port} are
    established now.
    """
    wanted = {"{}:{:04X}".format(socket.inet_aton(a)[::-1].hex().upper(), port)
              for a in addresses}
    with open("/proc/net/tcp") as f:
        next(f)
        return sum(1 for line in f
                   if line.split()[1] in wanted and line.split()[3] == "01")


def message(sender, target, n, padding=0):
    """
    A message as a component writes it, with id C{mN} and C{padding} bytes
    of body beyond the number.
    """
    return (f"<message from='u@{sender}' to='u@{target}' id='m{n}' type='chat'>"
            f"<body>{n} {'x' * padding}</body></message>")


class Inbox:
    """
    The ids of the messages the components of one end received, in order,
    with waiting for a count.
    """

    def __init__(self):
        self.ids = []
        self._waiters = []

    def __call__(self, stanza):
        self.ids.append(stanza.getAttribute("id"))
        for waiter in list(self._waiters):
            if len(self.ids) >= waiter[0]:
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def waitFor(self, count, timeout):
        if len(self.ids) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((count, d))
        return d.addTimeout(timeout, reactor)


class Twistd:
    """
    C{twistd -n dna} as an operator runs it.
    """

    def __init__(self, directory, name, address, domains, resolver, certificate, ca,
                 limits="", extra=""):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        certificate.writeTo(directory, "server")
        with open(os.path.join(directory, "ca.pem"), "wb") as f:
            f.write(ca.certificatePEM)
        self.address = address
        self.componentPort = freePort()
        self.log = os.path.join(directory, "twistd.log")
        domainList = ", ".join(f'"{d}"' for d in domains)
        config = (
            f'[server]\nlisten = "tcp:{S2S_PORT}:interface={address}"\n'
            f'domains = [{domainList}]\nca = "ca.pem"\n\n'
            f'[[server.names]]\nname = "{name}"\ncertificate = "server.pem"\n'
            f'key = "server.key"\n\n'
            f'[dns]\nmode = "ad"\nresolvers = ["{resolver[0]}:{resolver[1]}"]\n\n'
            f'[components]\nlisten = "tcp:{self.componentPort}:interface=127.0.0.1"\n'
            f'secret = "{SECRET}"\n\n[limits]\n{limits}\n{extra}')
        self.config = os.path.join(directory, "dna.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            twistdCommand(["dna", "--config", self.config], self.log),
            cwd=CHECKOUT, env=dict(os.environ, PYTHONPATH=CHECKOUT),
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return self

    def waitListening(self):
        waitForPort(self.componentPort, self.process)
        waitForPort(S2S_PORT, self.process, host=self.address)

    @property
    def pid(self):
        return self.process.pid

    def logText(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process is not None:
            stopProcess(self.process)
        self.process = None


class FlowPair:
    """
    DNS, a CA and the two providers, ready to start.

    @ivar senders: A's hosted domains; C{targets}: B's.
    """

    def __init__(self, workdir, senders=40, targets=25, limits="", control=None, extra=""):
        """
        @param control: A directory for the control sockets of A and B
            (C{a.sock}, C{b.sock}: L{controlSocket}), or L{None} for no
            C{[control]}. UNIX socket paths are short: not
            under C{_trial_temp}.
        @param extra: More sections of both configurations, such as
            C{[log]}.
        """
        self.workdir = os.path.abspath(workdir)
        self.addressA, self.addressB = pickAddresses(2)
        self.senders = [f"s{i:02d}.flowa.example" for i in range(1, senders + 1)]
        self.targets = [f"t{i:02d}.flowb.example" for i in range(1, targets + 1)]
        label = lambda names: [n.split(".")[0] for n in names]  # noqa: E731
        zones = {
            "flowa.example": xmppZone("xmpp.flowa.example", self.addressA, label(self.senders)),
            "flowb.example": xmppZone("xmpp.flowb.example", self.addressB, label(self.targets)),
        }
        self.ca = CertificateAuthority("flow CA")
        self.dns = InteropDNS(os.path.join(workdir, "dns"), zones)
        self._limits = limits
        self._control = control
        self._extra = extra
        self.a = self.b = None
        self._cleanups = []

    def start(self):
        """
        Start DNS and both processes; wait until they listen.
        """
        self._cleanups.append(self.dns.stop)
        self.dns.start()
        self.a = Twistd(os.path.join(self.workdir, "a"), "xmpp.flowa.example", self.addressA,
                        self.senders, self.dns.resolver,
                        self.ca.issue("xmpp.flowa.example", dnsNames=["xmpp.flowa.example"],
                                      clientAuth=True),
                        self.ca, self._limits, self._sections("a"))
        self.b = Twistd(os.path.join(self.workdir, "b"), "xmpp.flowb.example", self.addressB,
                        self.targets, self.dns.resolver,
                        self.ca.issue("xmpp.flowb.example", dnsNames=["xmpp.flowb.example"],
                                      clientAuth=True),
                        self.ca, self._limits, self._sections("b"))
        for process in (self.a, self.b):
            process.start()
            self._cleanups.append(process.stop)
        self.a.waitListening()
        self.b.waitListening()

    def controlSocket(self, name):
        """
        The control socket of process C{name} (C{"a"} or C{"b"}).
        """
        return os.path.join(self._control, name + ".sock")

    def _sections(self, name):
        """
        The sections of process C{name}'s configuration beside C{[limits]}:
        its C{[control]}, if any, and the C{extra} ones.
        """
        if self._control is None:
            return self._extra
        return f'\n[control]\nsocket = "{self.controlSocket(name)}"\n' + self._extra

    def stop(self):
        for cleanup in reversed(self._cleanups):
            cleanup()
        del self._cleanups[:]

    def connections(self):
        """
        S2S connections established between A and B now.
        """
        return established([self.addressA, self.addressB])

    def opened(self):
        """
        How many S2S streams A opened and authenticated, by its log.
        """
        return len(re.findall(r"Stream \S+ to \S+ \(.*\) authenticated", self.a.logText()))

    def streamErrors(self):
        """
        The stream-error lines of both logs about pending requests.
        """
        return [line for p in (self.a, self.b) for line in p.logText().splitlines()
                if "policy-violation" in line or "requests pending" in line]


def connectComponent(port, domain, inbox=None, attach=None):
    """
    An XEP-0114 component for C{domain}, Nagle off.

    @param inbox: Observes the messages it receives, or L{None}.
    @param attach: Called with the stream each time it is authenticated
        (it reconnects), or L{None}: to read it some other way.
    @return: A L{Deferred} firing with (stream, factory, connector).
    """
    factory = component.componentFactory(domain, SECRET)
    factory.maxDelay = 0
    authenticated = defer.Deferred()

    def onConnected(xs):
        xs.transport.setTcpNoDelay(True)

    def onAuthenticated(xs):
        if inbox is not None:
            xs.addObserver("/message", inbox)
        if attach is not None:
            attach(xs)
        if not authenticated.called:
            authenticated.callback(xs)

    factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, onConnected)
    factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, onAuthenticated)
    connector = reactor.connectTCP("127.0.0.1", port, factory)
    return authenticated.addCallback(lambda xs: (xs, factory, connector))


def connectComponents(port, domains, inbox=None, attach=None):
    return defer.gatherResults([connectComponent(port, d, inbox, attach) for d in domains])


def disconnectComponents(attached):
    for xs, factory, connector in attached:
        factory.stopTrying()
        connector.disconnect()


def matrix(senders, targets, start=0, make=message):
    """
    One message for each (sender, target) pair, written by C{make} (called
    with the sender, the target and a number counting from C{start}).
    """
    stanzas, n = [], start
    for s in senders:
        for t in targets:
            stanzas.append(make(s, t, n))
            n += 1
    return stanzas
