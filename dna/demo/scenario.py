"""
C{dna-demo}: the scenario of draft-ietf-xmpp-dna-01 sections 3 to 6, played
in one process on loopback, with nothing from outside.

C{sender.tld} has outsourced its XMPP service to the provider running
C{xmpp1.originating.tld}, C{target.tld} to C{xmpp1.receiving.tld}, and so
have more tenant domains on each side. The demo

  1. signs a DNS tree under the test TLD C{tld.} (its own trust anchor) with
     dnspython and serves it with L{dna.testing.zoneserver} on a loopback address:
     each tenant's C{_xmpp-server._tcp} SRV record names its provider's
     host and real port, the hosts' A records are on 127.x.y.z, and one
     domain (C{paris.tld}) is delegated without a DS record, insecurely;
  2. makes a test CA and certificates for the two server names only;
  3. starts two L{DNAService} providers that validate DNSSEC themselves
     (L{DelegationChecker} in mode C{validate}, asking the zone server with
     RD clear) and authenticate each other over mutual TLS;
  4. sends C{romeo@sender.tld} -> C{juliet@target.tld} and more pairs, with
     replies over the same bidirectional stream, and one message to the
     insecurely delegated domain, which must be refused;
  5. prints what happened step by step, both providers' connection and
     binding tables as in section 4, and the proof that every pair used one
     TCP connection.

It exits with status 0 when all of that happened as the draft says, 1 with a
message saying what did not, 2 on a usage error.
"""

import math
import random
import socket
import sys
import time
import traceback

import attr
import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
from cryptography import x509
from cryptography.x509.oid import NameOID
from dns.dnssecalgs import PrivateECDSAP256SHA256
from dns.dnssectypes import Algorithm
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.ssl import trustRootFromCertificates
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from twisted.python import usage
from twisted.words.protocols.jabber import error as jabberError
from twisted.words.protocols.jabber.xmlstream import STREAM_CONNECTED_EVENT
from zope.interface import implementer

from dna.dns.addresses import AddressResolver
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import SelfValidatingLookup
from dna.dns.verdict import SECURE
from dna.dns.client import DNSClient
from dna.dns.dnssec.proofs import parseAnchors
from dna.interfaces import IDelegationChecker, IDelegationPolicy
from dna.app.service import DNAService
from dna.core.tables import INCOMING, OUTGOING
from dna.channel.tls import peerCertificate, serverNamesFromCertificate
from dna.testing.pki import CertificateAuthority
from dna.testing.zoneserver import ZoneServer
from dna.app.script import runCommand
from dna.testing.fakes import chatMessage as message

TLD = "tld"
ORIGINATING = "xmpp1.originating.tld"
RECEIVING = "xmpp1.receiving.tld"
#: Hosted by the Receiving Server but delegated without DNSSEC.
INSECURE_DOMAIN = "paris.tld"
SRV_TTL = 400

DEFAULT_PAIRS = 6
MAX_PAIRS = 100
#: Seconds to wait for one stanza.
STANZA_TIMEOUT = 10.0

_SENDERS = [("romeo", "sender.tld"), ("benvolio", "montague.tld"),
            ("mercutio", "verona.tld")]
_TARGETS = [("juliet", "target.tld"), ("nurse", "capulet.tld"),
            ("tybalt", "mantua.tld")]
_FIRST_LINES = ("But soft, what light through yonder window breaks?",
                "Wherefore art thou Romeo?")


class DemoFailed(Exception):
    """
    The scenario did not go as the draft says; the argument says how.
    """


# The plan: pure.


def tenants(pairs):
    """
    The tenant users of both providers, enough for C{pairs} domain pairs.

    @return: C{(senders, targets)}: lists of C{(user, domain)}, for the
        Originating and the Receiving Server.
    """
    count = max(len(_SENDERS), math.ceil(math.sqrt(pairs)))
    senders = list(_SENDERS) + [("romeo", f"sender{i}.tld")
                                for i in range(len(_SENDERS) + 1, count + 1)]
    targets = list(_TARGETS) + [("juliet", f"target{i}.tld")
                                for i in range(len(_TARGETS) + 1, count + 1)]
    return senders, targets


def domainPairs(senders, targets, count):
    """
    C{count} distinct (sender, target) pairs of JIDs, the draft's
    C{romeo@sender.tld} -> C{juliet@target.tld} first, then every sender
    with a different target before any repeats.
    """
    pairs = []
    size = len(senders)
    for offset in range(size):
        for i in range(size):
            user, domain = senders[i]
            peer, peerDomain = targets[(i + offset) % size]
            pairs.append((f"{user}@{domain}", f"{peer}@{peerDomain}"))
    return pairs[:count]


@attr.s(frozen=True)
class Addresses:
    """
    The loopback addresses of the zone server and the two providers.
    """

    nameServer = attr.ib()
    originating = attr.ib()
    receiving = attr.ib()


def _bindable(host):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, 0))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pickAddresses(rng=None):
    """
    Three loopback addresses in a random C{127.x.y.0/24} (not C{127.0.0.53},
    which systemd-resolved may hold), checked bindable; all C{127.0.0.1}
    where only that one is (as on macOS). Ports are chosen by the system
    when listening.
    """
    rng = rng or random.SystemRandom()
    for _ in range(20):
        net = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}"
        addresses = Addresses(f"{net}.53", f"{net}.1", f"{net}.2")
        if all(_bindable(host) for host in attr.astuple(addresses)):
            return addresses
    return Addresses("127.0.0.1", "127.0.0.1", "127.0.0.1")


def newKey():
    """
    A combined signing key (flags 257), ECDSAP256SHA256.

    @return: C{(private key, DNSKEY)} as L{dns.dnssec.sign_zone} takes them.
    """
    private = PrivateECDSAP256SHA256.generate()
    return private, dns.dnssec.make_dnskey(private.public_key(),
                                           Algorithm.ECDSAP256SHA256, flags=257)


def srvRecord(port, host):
    """
    The zone file line of a tenant's SRV record, like the draft's
    C{20 0 5269 xmpp1.receiving.tld}.
    """
    return f"_xmpp-server._tcp {SRV_TTL} IN SRV 20 0 {port} {host}."


def childZones(addresses, ports, senders, targets):
    """
    The zones below C{tld.}: the providers' own zones with their hosts'
    addresses, and one per tenant domain with its SRV record.

    @param ports: C{(originating port, receiving port)}.
    @return: C{{zone: (signed, [record lines, owners relative])}}, in the
        order to show them.
    """
    originatingPort, receivingPort = ports
    zones = {
        "originating.tld": (True, [f"xmpp1 3600 IN A {addresses.originating}"]),
        "receiving.tld": (True, [f"xmpp1 3600 IN A {addresses.receiving}"]),
    }
    for _, domain in senders:
        zones[domain] = (True, [srvRecord(originatingPort, ORIGINATING)])
    for _, domain in targets:
        zones[domain] = (True, [srvRecord(receivingPort, RECEIVING)])
    zones[INSECURE_DOMAIN] = (False, [srvRecord(receivingPort, RECEIVING)])
    return zones


def _zone(name, records, key, inception, expiration):
    text = (f"@ 3600 IN SOA ns1.{TLD}. hostmaster.{TLD}. 1 3600 600 86400 300\n"
            f"@ 3600 IN NS ns1.{TLD}.\n" + "".join(line + "\n" for line in records))
    zone = dns.zone.from_text(text, origin=name + ".", relativize=False)
    if key is not None:
        dns.dnssec.sign_zone(zone, keys=[key], dnskey_ttl=3600,
                             inception=inception, expiration=expiration)
    return zone


def buildZones(children, nameServer, keys, now):
    """
    The signed tree: C{tld.} delegating every child to C{ns1.tld.}, with a DS
    record for each signed one (an unsigned one gets only its NS, and the
    NSEC at its cut proves there is no DS).

    @param children: As from L{childZones}.
    @param nameServer: The address of C{ns1.tld.}.
    @param keys: C{{zone: (private, DNSKEY)}} for C{tld} and each signed
        child.
    @param now: Seconds since the epoch: signatures hold from an hour before
        to a day after.
    @return: The L{dns.zone.Zone}s, C{tld.} first.
    """
    inception, expiration = now - 3600, now + 86400
    records = [f"ns1 3600 IN A {nameServer}"]
    for child, (signed, _) in children.items():
        label = child[:-len(TLD) - 1]
        records.append(f"{label} 3600 IN NS ns1.{TLD}.")
        if signed:
            ds = dns.dnssec.make_ds(child + ".", keys[child][1], "SHA256")
            records.append(f"{label} 3600 IN DS {ds.to_text()}")
    zones = [_zone(TLD, records, keys[TLD], inception, expiration)]
    for child, (signed, lines) in children.items():
        zones.append(_zone(child, lines, keys[child] if signed else None,
                           inception, expiration))
    return zones


def formatTable(headers, rows):
    """
    An ASCII table drawn like the figures of draft-ietf-xmpp-dna-01 section
    4; a cell given as a list is one line per item.

    @param headers: The column titles.
    @param rows: Lists of cells, C{str} or lists of C{str}.
    @return: The lines, joined (C{str}).
    """
    cells = [[cell if isinstance(cell, list) else [str(cell)] for cell in row]
             for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max([widths[i]] + [len(line) for line in cell])
    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    lines = [rule, line(headers), rule]
    for row in cells:
        for k in range(max(1, max(len(cell) for cell in row))):
            lines.append(line([cell[k] if k < len(cell) else "" for cell in row]))
    lines.append(rule)
    return "\n".join(lines)


def connectionTable(tables):
    """
    The connection table (section 4), one row per stream.
    """
    rows = []
    for streamID in tables.connections:
        row = tables.connections.get(streamID)
        rows.append([streamID, sorted(row.serverNames), sorted(row.delegatedNames)])
    return formatTable(["Connection", "Server Domain Names", "Delegated Domain Names"],
                       rows)


def bindingTable(table):
    """
    One direction's binding table (section 4): Local, Remote, Connections.
    """
    pairs = set()
    for streamID in table.boundStreams():
        pairs.update(table.pairs(streamID))
    rows = [[local, remote, ", ".join(table.streams(local, remote))]
            for local, remote in sorted(pairs)]
    return formatTable(["Local", "Remote", "Connections"], rows)


# What happened: a trace of the providers' own calls.


@attr.s(frozen=True)
class Lookup:
    """
    A provider's checker gave the result of an SRV lookup.
    """

    provider = attr.ib()
    result = attr.ib()
    cached = attr.ib()


@attr.s(frozen=True)
class Verdict:
    """
    A provider decided whether a domain is delegated to server names.
    """

    provider = attr.ib()
    domain = attr.ib()
    serverNames = attr.ib()
    result = attr.ib()
    delegated = attr.ib()


@attr.s(frozen=True)
class Resolved:
    """
    A provider found the addresses of an SRV target to connect to.
    """

    provider = attr.ib()
    serverName = attr.ib()
    addresses = attr.ib()


@attr.s(frozen=True)
class Accepted:
    """
    A provider accepted a TCP connection.
    """

    provider = attr.ib()
    peer = attr.ib()
    xs = attr.ib()


@attr.s(frozen=True)
class Delivered:
    """
    A provider handed a stanza to its local router (delivered or bounced).
    """

    provider = attr.ib()
    stanza = attr.ib()


class Trace:
    """
    The events of the run, in the order they happened.
    """

    def __init__(self):
        self.events = []

    def add(self, event):
        self.events.append(event)

    def mark(self):
        return len(self.events)

    def since(self, mark):
        return self.events[mark:]


def lookupTable(events):
    """
    The first result of every (provider, domain) SRV lookup in a trace.
    """
    rows = {}
    for event in events:
        if isinstance(event, (Lookup, Verdict)):
            key = (event.provider, event.result.domain)
            if key not in rows:
                result = event.result
                rows[key] = [event.provider, f"_xmpp-server._tcp.{result.domain}",
                             result.status,
                             [str(record) for record in result.records] or ["(none)"]]
    return formatTable(["By", "SRV", "Status", "Records"],
                       [rows[key] for key in sorted(rows)])


@implementer(IDelegationChecker, IDelegationPolicy)
class WitnessChecker:
    """
    An L{IDelegationChecker} that records, in a L{Trace}, what the checker it
    wraps found for the provider using it.
    """

    def __init__(self, checker, provider, trace):
        self._checker = checker
        self._provider = provider
        self._trace = trace
        self._seen = {}

    def check(self, domain):
        def looked(result):
            cached = self._seen.get(result.domain) is result
            self._seen[result.domain] = result
            self._trace.add(Lookup(self._provider, result, cached))
            return result

        return self._checker.check(domain).addCallback(looked)

    def isDelegated(self, domain, serverNames):
        serverNames = sorted(serverNames)

        def looked(result):
            self._seen[result.domain] = result
            d = self._checker.isDelegated(domain, serverNames)
            return d.addCallback(decided, result)

        def decided(delegated, result):
            self._trace.add(Verdict(self._provider, result.domain, serverNames, result,
                                    delegated))
            return delegated

        return self._checker.check(domain).addCallback(looked)

    def policyFor(self, domain):
        return self._checker.policyFor(domain)


class CountingClient:
    """
    A DNS client counting the queries it sends.
    """

    def __init__(self, client):
        self._client = client
        self.queries = []

    def query(self, name, rdtype, **kwargs):
        self.queries.append((str(name), dns.rdatatype.to_text(
            dns.rdatatype.RdataType.make(rdtype))))
        return self._client.query(name, rdtype, **kwargs)


class Inbox:
    """
    The local router of a provider: keeps what it is handed and tells the
    demo.
    """

    def __init__(self, provider, trace, onStanza):
        self._provider = provider
        self._trace = trace
        self._onStanza = onStanza
        self.stanzas = []

    def __call__(self, stanza):
        self.stanzas.append(stanza)
        self._trace.add(Delivered(self._provider, stanza))
        self._onStanza(self._provider, stanza)


# Presenting.


def _srvText(result):
    records = ", ".join(f"{record}" for record in result.records) or "no SRV record"
    return f"{records}  [{result.status}]"


def _names(certificate, kind):
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(kind)


def _commonName(name):
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return values[0].value if values else "(none)"


def describeCertificate(transport):
    """
    The subject, DNS names and issuer of the certificate the peer of a TLS
    transport presented.
    """
    certificate = peerCertificate(transport)
    if certificate is None:
        return "no certificate"
    dnsNames = ", ".join("DNS:" + name for name in _names(certificate, x509.DNSName))
    return (f"CN={_commonName(certificate.subject)} [{dnsNames}], issued by "
            f"{_commonName(certificate.issuer)}")


def _tlsParameters(transport):
    try:
        handle = transport.getHandle()
        return handle.get_protocol_version_name(), handle.get_cipher_name()
    except Exception:
        return None, None


def _errorText(stanza):
    exception = jabberError.exceptionFromStanza(stanza)
    text = f" ({exception.text})" if exception.text else ""
    return f"<{exception.condition}/>{text}"


def _address(address):
    return f"{address.host}:{address.port}"


def _stanzaText(stanza):
    return (f"<message id='{stanza['id']}' from='{stanza['from']}' "
            f"to='{stanza['to']}'>")


class Demo:
    """
    The scenario, step by step.
    """

    def __init__(self, reactor, pairs, out, quiet=False):
        """
        @param reactor: The reactor: TCP, UDP, time.
        @param pairs: How many domain pairs to send over.
        @param out: Where to tell the story.
        @param quiet: Whether to keep it to the outcome.
        """
        self._reactor = reactor
        self._out = out
        self._quiet = quiet
        self.trace = Trace()
        self.senders, self.targets = tenants(pairs)
        self.pairs = domainPairs(self.senders, self.targets, pairs)
        self._services = []
        self._zoneServer = None
        self._clients = {}
        # stanza id -> (provider expected, description, Deferred)
        self._expected = {}

    def say(self, text=""):
        if not self._quiet:
            self._out.write(text + "\n")

    def heading(self, text):
        self.say()
        self.say(text)
        self.say("-" * len(text))

    # Setting up

    @defer.inlineCallbacks
    def setUp(self):
        reactor = self._reactor
        self.addresses = pickAddresses()
        now = reactor.seconds()
        children = childZones(self.addresses, (0, 0), self.senders, self.targets)
        keys = {name: newKey() for name in [TLD] + [c for c, (signed, _) in
                                                      children.items() if signed]}
        self._zoneServer = ZoneServer(reactor=reactor)
        try:
            self.nameServer = yield self._zoneServer.listen(self.addresses.nameServer)
        except CannotListenError as e:
            raise DemoFailed(f"the DNS server cannot listen on {self.addresses.nameServer}: "
                             f"{e.socketError}")
        anchorDS = dns.dnssec.make_ds(TLD + ".", keys[TLD][1], "SHA256")
        self.anchorText = f"{TLD}. 3600 IN DS {anchorDS.to_text()}"
        anchors = parseAnchors(self.anchorText)

        self.ca = CertificateAuthority("DNA Demo CA")
        trustRoot = trustRootFromCertificates([self.ca.toCertificate()])
        certificates = {name: self.ca.issue(name, dnsNames=[name])
                        for name in (ORIGINATING, RECEIVING)}

        self.inboxes = {}
        self.providers = {}
        ports = []
        plan = [("A", ORIGINATING, self.addresses.originating,
                 [domain for _, domain in self.senders]),
                ("B", RECEIVING, self.addresses.receiving,
                 [domain for _, domain in self.targets] + [INSECURE_DOMAIN])]
        for provider, serverName, host, domains in plan:
            client = CountingClient(DNSClient([self.nameServer], reactor=reactor))
            self._clients[provider] = client
            checker = WitnessChecker(
                DelegationChecker(SelfValidatingLookup(client, reactor, anchors,
                                                       authoritative=True), reactor),
                provider, self.trace)
            resolver = self._tracingResolver(
                provider, AddressResolver(client=DNSClient([self.nameServer], reactor=reactor)))
            inbox = self.inboxes[provider] = Inbox(provider, self.trace, self._arrived)
            service = DNAService(
                domains, {serverName: certificates[serverName].toPrivateCertificate()},
                trustRoot, checker, resolver, deliver=inbox, reactor=reactor)
            service.startService()
            self._services.append(service)
            service.factory.addBootstrap(STREAM_CONNECTED_EVENT,
                                         self._accepted(provider))
            try:
                port = yield service.listen(endpoints.TCP4ServerEndpoint(
                    reactor, 0, interface=host))
            except CannotListenError as e:
                raise DemoFailed(f"{serverName} cannot listen on {host}: {e.socketError}")
            ports.append(port.getHost().port)
            self.providers[provider] = service
        self.ports = tuple(ports)

        self.children = childZones(self.addresses, self.ports, self.senders, self.targets)
        self.zones = buildZones(self.children, self.addresses.nameServer, keys, now)
        self._zoneServer.setZones(self.zones)
        self.keyTags = {name: dns.dnssec.key_id(key[1]) for name, key in keys.items()}
        self._showSetUp(plan)

    def _tracingResolver(self, provider, resolver):
        def resolve(serverName, port):
            def found(addresses):
                self.trace.add(Resolved(provider, serverName, addresses))
                return addresses

            return resolver(serverName, port).addCallback(found)

        return resolve

    def _accepted(self, provider):
        def accepted(xs):
            self.trace.add(Accepted(provider, xs.transport.getPeer(), xs))

        return accepted

    def _showSetUp(self, plan):
        host, port = self.nameServer
        self.say("DNA demo: draft-ietf-xmpp-dna-01 sections 3-6, in one process on loopback")
        self.heading(f"1. DNS: the delegations, signed here, served on {host} port {port} "
                     f"(UDP, TCP)")
        self.say(f"   Trust anchor: {self.anchorText}")
        rows = [[f"{TLD}.", f"signed, key {self.keyTags[TLD]}, trust anchor",
                 f"ns1 A {self.addresses.nameServer}"]]
        for child, (signed, lines) in self.children.items():
            if signed:
                status = f"signed, key {self.keyTags[child]}, DS in {TLD}."
            else:
                status = f"UNSIGNED, no DS in {TLD}. (NSEC proves it)"
            rows.append([child + ".", status,
                         [" ".join(line.split()[0:1] + line.split()[3:]) for line in lines]])
        for line in formatTable(["Zone", "DNSSEC (ECDSAP256SHA256, NSEC)", "Records"],
                                rows).splitlines():
            self.say("   " + line)
        self.heading("2. PKI: a test CA, certificates for the server names only")
        for name in (ORIGINATING, RECEIVING):
            self.say(f"   {name}: CN={name} [DNS:{name}], issued by {self.ca.name}")
        self.say("   No certificate names a tenant domain: DNSSEC-signed SRV records "
                 "delegate those.")
        self.heading("3. Two providers")
        for (provider, serverName, address, domains), listening in zip(plan, self.ports):
            self.say(f"   {provider}: {serverName} on {address}:{listening}, hosting "
                     f"{', '.join(domains)}")
        self.say(f"   Both validate DNSSEC themselves from the {TLD}. anchor (mode "
                 f"'validate', RD=0 DO=1 to {host}:{port}), policy require-secure.")

    # Stanzas

    def _arrived(self, provider, stanza):
        expected = self._expected.pop(stanza.getAttribute("id"), None)
        if expected is not None:
            expected[2].callback((provider, stanza))

    def expect(self, stanzaID, provider, what, bounce=False):
        """
        Wait for a stanza we sent to reach C{provider}'s router: delivered,
        or with C{bounce} bounced back to its sender.

        @return: A L{Deferred} firing with the stanza, or failing with
            L{DemoFailed} when it bounced or went elsewhere unexpectedly, or
            did not arrive within L{STANZA_TIMEOUT} seconds.
        """
        d = defer.Deferred()
        self._expected[stanzaID] = (provider, what, d)

        def arrived(result):
            where, stanza = result
            bounced = stanza.getAttribute("type") == "error"
            if bounced and not bounce:
                raise DemoFailed(f"{what} bounced back to its sender with "
                                 f"{_errorText(stanza)}{self._whyNot(stanza)}")
            if where != provider or bounced != bounce:
                raise DemoFailed(f"{what} reached provider {where} as {stanza.toXml()}")
            return stanza

        def timedOut(failure):
            failure.trap(defer.TimeoutError)
            self._expected.pop(stanzaID, None)
            raise DemoFailed(f"{what} did not arrive within {STANZA_TIMEOUT:g} s")

        d.addTimeout(STANZA_TIMEOUT, self._reactor)
        return d.addCallbacks(arrived, timedOut)

    def _whyNot(self, bounce):
        """
        What the sender's provider found when it looked up the target.
        """
        target = bounce.getAttribute("from", "").split("@")[-1]
        for event in reversed(self.trace.events):
            if isinstance(event, (Lookup, Verdict)) and event.result.domain == target:
                return (f": {event.provider} found SRV _xmpp-server._tcp.{target} "
                        f"{event.result.status}"
                        + (f" ({event.result.reason})" if event.result.reason else ""))
        return ""

    @defer.inlineCallbacks
    def expectAll(self, waits):
        """
        L{expect} for several stanzas at once.

        @param waits: C{(stanza id, provider, what)} tuples.
        """
        results = yield defer.DeferredList(
            [self.expect(*wait) for wait in waits], consumeErrors=True)
        for success, value in results:
            if not success:
                value.raiseException()

    # The scenario

    @defer.inlineCallbacks
    def play(self):
        a, b = self.providers["A"], self.providers["B"]
        sender, target = self.pairs[0]
        self.heading(f"4. {sender} -> {target} (section 3), step by step")
        mark = self.trace.mark()
        arrival = self.expect("m1", "B", f"{sender} -> {target}")
        a.send(message(sender, target, "m1", _FIRST_LINES[0]))
        yield arrival
        self._narrate(self.trace.since(mark), sender, target)
        self.say()
        self.say(f"   The reply, {target} -> {sender}:")
        mark = self.trace.mark()
        arrival = self.expect("m1-reply", "A", f"the reply {target} -> {sender}")
        b.send(message(target, sender, "m1-reply", _FIRST_LINES[1]))
        yield arrival
        self._narrate(self.trace.since(mark), target, sender)

        if len(self.pairs) > 1:
            yield self._morePairs()
        yield self._insecure()

    def _narrate(self, events, sender, target):
        senderDomain, targetDomain = sender.split("@")[1], target.split("@")[1]
        for event in events:
            who = event.provider
            if isinstance(event, Lookup):
                how = " (cached)" if event.cached else ""
                self.say(f"   {who}: SRV _xmpp-server._tcp.{event.result.domain}{how} -> "
                         f"{_srvText(event.result)}")
                if not event.cached and event.result.chain:
                    self.say(f"      validated from the {TLD}. trust anchor:")
                    for link in event.result.chain:
                        self.say(f"        {link}")
            elif isinstance(event, Verdict) and event.domain == targetDomain:
                verdict = "securely delegated" if event.delegated else "NOT delegated"
                self.say(f"   {who}: {event.domain} is {verdict} to "
                         f"{', '.join(event.serverNames)} (section 5 steps 1-2)")
            elif isinstance(event, Verdict):
                self.say(f"   {who}: got <db:result from='{senderDomain}' "
                         f"to='{targetDomain}'/> (section 6)")
                self.say(f"   {who}: SRV _xmpp-server._tcp.{event.domain} -> "
                         f"{_srvText(event.result)}; the peer authenticated as "
                         f"{', '.join(event.serverNames)}")
                answer = "valid" if event.delegated else "invalid"
                self.say(f"   {who}: answers <db:result type='{answer}' "
                         f"from='{targetDomain}' to='{senderDomain}'/>")
            elif isinstance(event, Resolved):
                addresses = ", ".join(f"{host}:{port}" for host, port in event.addresses)
                self.say(f"   {who}: {event.serverName} A -> connects to {addresses}")
            elif isinstance(event, Accepted):
                self.say(f"   {who}: accepts TCP from {_address(event.peer)}")
                self._describeStream(event.xs)
            elif isinstance(event, Delivered):
                body = str(event.stanza.body) if event.stanza.body else ""
                self.say(f"   {who}: delivers {_stanzaText(event.stanza)} \"{body}\"")
        if not any(isinstance(e, (Resolved, Accepted)) for e in events):
            streamID = self._onlyStream()
            self.say(f"   (no new connection: stream {streamID} was reused, section 5 "
                     f"step 3, bidirectional by XEP-0288)")

    def _describeStream(self, accepted):
        """
        TLS and stream, as both ends saw them.
        """
        [authorizationA] = self.providers["A"].federation.streams.values()
        xsA = authorizationA.xs
        version, cipher = _tlsParameters(xsA.transport)
        sni = None
        try:
            sni = accepted.transport.getHandle().get_servername()
        except Exception:
            pass
        sniText = sni.decode("ascii") if sni else "(unknown)"
        self.say(f"   TLS {version or ''} {cipher or ''}, SNI {sniText}:")
        self.say(f"      A verified B's certificate: {describeCertificate(xsA.transport)}")
        names = sorted(serverNamesFromCertificate(peerCertificate(xsA.transport)))
        self.say(f"        presented names {names} include the SRV target "
                 f"(section 5 steps 6-8)")
        self.say(f"      B verified A's client certificate: "
                 f"{describeCertificate(accepted.transport)}")
        self.say(f"        it covers the stream's from='{accepted.otherEntity.full()}' "
                 f"(section 5, receiving steps 2-3)")
        bidi = "bidirectional (XEP-0288)" if getattr(xsA, "bidi", False) else "one-way"
        self.say(f"   Stream {xsA.sid}: from='{xsA.thisEntity.full()}' "
                 f"to='{xsA.otherEntity.full()}', {bidi}")

    def _onlyStream(self):
        streams = list(self.providers["A"].federation.tables.connections)
        return streams[0] if len(streams) == 1 else ", ".join(streams)

    @defer.inlineCallbacks
    def _morePairs(self):
        a, b = self.providers["A"], self.providers["B"]
        rest = list(enumerate(self.pairs))[1:]
        count = len(rest)
        self.heading(f"5. {count} more domain pair{'s' if count > 1 else ''}, all at "
                     f"once, and the replies")
        mark = self.trace.mark()
        arrivals = self.expectAll([(f"m{i + 1}", "B", f"{sender} -> {target}")
                                   for i, (sender, target) in rest])
        for i, (sender, target) in rest:
            a.send(message(sender, target, f"m{i + 1}", f"pair {i + 1}: hello from {sender}"))
        yield arrivals
        arrivals = self.expectAll([(f"m{i + 1}-reply", "A", f"the reply {target} -> {sender}")
                                   for i, (sender, target) in rest])
        for i, (sender, target) in rest:
            b.send(message(target, sender, f"m{i + 1}-reply", f"pair {i + 1}: hello back"))
        yield arrivals
        events = self.trace.since(mark)
        statuses = {}
        for event in events:
            if isinstance(event, (Lookup, Verdict)):
                statuses[(event.provider, event.result.domain)] = event.result.status
        streamID = self._onlyStream()
        for i, (sender, target) in rest:
            senderDomain, targetDomain = sender.split("@")[1], target.split("@")[1]
            self.say(f"   {i + 1}. {sender} -> {target}: delivered; reply delivered"
                     f"  (A: SRV {targetDomain} {statuses.get(('A', targetDomain), '?')}, "
                     f"B: SRV {senderDomain} {statuses.get(('B', senderDomain), '?')})")
        if not any(isinstance(e, (Resolved, Accepted)) for e in events):
            self.say(f"   No new connection: every pair was authorized on stream {streamID} "
                     f"(<db:result/> per pair, section 6).")

    @defer.inlineCallbacks
    def _insecure(self):
        a = self.providers["A"]
        sender = self.pairs[0][0]
        target = f"paris@{INSECURE_DOMAIN}"
        step = 6 if len(self.pairs) > 1 else 5
        self.heading(f"{step}. What DNA refuses: {sender} -> {target} "
                     f"({INSECURE_DOMAIN} is delegated without DNSSEC)")
        mark = self.trace.mark()
        received = len(self.inboxes["B"].stanzas)
        arrival = self.expect("insecure", "A", f"the bounce of {sender} -> {target}",
                              bounce=True)
        a.send(message(sender, target, "insecure", "Will you marry me?"))
        bounce = yield arrival
        lookups = [e for e in self.trace.since(mark)
                   if isinstance(e, Lookup) and e.result.domain == INSECURE_DOMAIN]
        if not lookups:
            raise DemoFailed(f"A did not look up {INSECURE_DOMAIN}")
        result = lookups[0].result
        self.say(f"   A: SRV _xmpp-server._tcp.{INSECURE_DOMAIN} -> {_srvText(result)}")
        self.say(f"      {result.reason}")
        condition = jabberError.exceptionFromStanza(bounce).condition
        self.say(f"   A: refuses to connect (section 5 step 2, policy require-secure) and "
                 f"bounces it to {sender} with <{condition}/>")
        if result.status != "insecure":
            raise DemoFailed(f"{INSECURE_DOMAIN} should be insecure, not {result.status}")
        if condition != "remote-server-not-found":
            raise DemoFailed(f"expected a <remote-server-not-found/> bounce, got "
                             f"{bounce.toXml()}")
        if len(self.inboxes["B"].stanzas) != received:
            raise DemoFailed("B received a stanza for the insecure domain")
        self.say("   Nothing reached B.")

    # Checking and reporting

    def check(self):
        """
        Verify the outcome against the draft.

        @return: The summary line.
        @raise DemoFailed: When anything is not as it should be.
        """
        a, b = self.providers["A"], self.providers["B"]
        expected = {f"m{i + 1}": pair for i, pair in enumerate(self.pairs)}
        got = {s["id"]: (s["from"], s["to"]) for s in self.inboxes["B"].stanzas}
        if got != expected:
            raise DemoFailed(f"B received {sorted(got)} instead of {sorted(expected)}")
        replies = {f"m{i + 1}-reply": (t, s) for i, (s, t) in enumerate(self.pairs)}
        got = {s["id"]: (s["from"], s["to"]) for s in self.inboxes["A"].stanzas
               if s.getAttribute("type") != "error"}
        if got != replies:
            raise DemoFailed(f"A received {sorted(got)} instead of {sorted(replies)}")
        for event in self.trace.events:
            if (isinstance(event, (Lookup, Verdict)) and event.result.domain != INSECURE_DOMAIN
                    and event.result.status != SECURE):
                raise DemoFailed(f"{event.provider} found {event.result.domain} "
                                 f"{event.result.status}: {event.result.reason}")
        accepted = [e for e in self.trace.events if isinstance(e, Accepted)]
        streamsA = list(a.federation.tables.connections)
        streamsB = list(b.federation.tables.connections)
        if len(accepted) != 1 or len(streamsA) != 1 or streamsA != streamsB:
            raise DemoFailed(f"expected ONE connection: B accepted {len(accepted)}; A's "
                             f"connection table lists {streamsA}, B's {streamsB}")
        [streamID] = streamsA
        pairs = {(s.split("@")[1], t.split("@")[1]) for s, t in self.pairs}
        for name, service, sending, receiving in [
                ("A", a, pairs, pairs), ("B", b, {(t, s) for s, t in pairs},
                                          {(t, s) for s, t in pairs})]:
            tables = service.federation.tables
            tables.checkInvariants()
            for direction, table, wanted in [(OUTGOING, tables.outgoing, sending),
                                             (INCOMING, tables.incoming, receiving)]:
                bound = {pair: table.streams(*pair) for pair in table.pairs(streamID)}
                if set(bound) != wanted or any(s != (streamID,) for s in bound.values()):
                    raise DemoFailed(f"{name}'s {direction} bindings are {bound}, expected "
                                     f"{sorted(wanted)} on {streamID}")
        peer = accepted[0].peer
        host = accepted[0].xs.transport.getHost()
        count = len(self.pairs)
        carried = f"all {count} domain pairs" if count > 1 else "the domain pair"
        return (f"ONE TCP connection ({_address(peer)} -> {_address(host)}, stream "
                f"{streamID}) carried {carried} both ways: {2 * count} messages "
                f"delivered, B accepted 1 connection, and both providers' tables hold "
                f"only that stream.")

    def showTables(self):
        step = 7 if len(self.pairs) > 1 else 6
        self.heading(f"{step}. Every SRV lookup, and the tables of section 4 as both "
                     f"providers hold them now")
        self.say()
        self.say("   SRV lookups, each validated by the provider itself from the "
                 f"{TLD}. trust anchor (section 5 step 2):")
        for line in lookupTable(self.trace.events).splitlines():
            self.say("   " + line)
        for provider, serverName in [("A", ORIGINATING), ("B", RECEIVING)]:
            tables = self.providers[provider].federation.tables
            self.say()
            self.say(f"   Provider {provider} ({serverName}): connection table")
            for line in connectionTable(tables).splitlines():
                self.say("   " + line)
            for direction, table, local in [(OUTGOING, tables.outgoing, "Sender"),
                                            (INCOMING, tables.incoming, "Target")]:
                self.say(f"   Provider {provider}: binding table, {direction} "
                         f"(Local = {local} Domain)")
                for line in bindingTable(table).splitlines():
                    self.say("   " + line)
        queries = ", ".join(f"{provider}'s {len(client.queries)}"
                            for provider, client in sorted(self._clients.items()))
        self.say()
        self.say(f"   DNSSEC validation queries to the zone server (RD=0, DO=1): {queries}")

    @defer.inlineCallbacks
    def tearDown(self):
        stopping = [defer.maybeDeferred(service.stopService) for service in self._services]
        if self._zoneServer is not None:
            stopping.append(self._zoneServer.stopListening())
        yield defer.DeferredList(stopping, consumeErrors=True)


class Options(usage.Options):
    """
    Command line options of C{dna-demo}.
    """

    synopsis = "Usage: dna-demo [--pairs N] [--quiet | --verbose]"
    longdesc = ("Play draft-ietf-xmpp-dna-01 sections 3-6 in one process on loopback: a "
                "DNSSEC-signed test TLD served here, two providers with mutual TLS, "
                "romeo@sender.tld -> juliet@target.tld and more pairs over ONE "
                "connection. Exit status 0 when all went as the draft says.")
    optParameters = [
        ["pairs", "n", DEFAULT_PAIRS, f"How many domain pairs (1-{MAX_PAIRS}).", int],
    ]
    optFlags = [
        ["quiet", "q", "Print only the outcome."],
        ["verbose", "v", "Also print the log events of DNA as they happen."],
    ]

    def postOptions(self):
        if not 1 <= self["pairs"] <= MAX_PAIRS:
            raise usage.UsageError(f"--pairs must be between 1 and {MAX_PAIRS}")
        if self["quiet"] and self["verbose"]:
            raise usage.UsageError("--quiet and --verbose exclude each other")


def _logObservers(out, verbose, errors):
    """
    Observers to add for the run: one collecting errors DNA logs, and with
    C{verbose} one printing DNA's events.
    """

    def collectErrors(event):
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or \
                event.get("log_failure") is not None:
            errors.append(formatEvent(event) or repr(event.get("log_failure")))

    observers = [collectErrors]
    if verbose:
        def show(event):
            namespace = str(event.get("log_namespace", ""))
            # Modules only: not the factories' start and stop chatter.
            if namespace.startswith("dna.") and namespace in sys.modules:
                level = event["log_level"].name
                out.write(f"   [{level} {event['log_namespace']}] {formatEvent(event)}\n")

        observers.append(FilteringLogObserver(
            show, [LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)]))
    return observers


@defer.inlineCallbacks
def run(reactor, options, out=None, err=None):
    """
    Play the demo.

    @param options: Parsed L{Options}.
    @param out: Where to print; C{sys.stdout} by default.
    @param err: Where failures are told; C{sys.stderr} by default.
    @return: A L{Deferred} firing with the exit status: 0 when everything
        happened as the draft says, 1 otherwise.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    errors = []
    observers = _logObservers(out, options["verbose"], errors)
    for observer in observers:
        globalLogPublisher.addObserver(observer)
    started = time.monotonic()
    demo = Demo(reactor, options["pairs"], out, quiet=options["quiet"])
    status = 1
    try:
        yield demo.setUp()
        yield demo.play()
        summary = demo.check()
        if errors:
            raise DemoFailed(f"errors were logged: {errors[0]}")
        demo.showTables()
        demo.heading("Result")
        out.write(f"OK: {summary}\n")
        out.write(f"dna-demo finished in {time.monotonic() - started:.2f} s\n")
        status = 0
    except DemoFailed as e:
        err.write(f"dna-demo: FAILED: {e}\n")
    except Exception as e:
        err.write(f"dna-demo: FAILED with an unexpected error: "
                  f"{type(e).__name__}: {e}\n")
        traceback.print_exc(file=err)
    finally:
        yield demo.tearDown()
        for observer in observers:
            globalLogPublisher.removeObserver(observer)
    return status


def main(argv=None, _reactor=None):
    """
    The C{dna-demo} console script (also C{python -m dna.demo}).

    @param argv: The arguments, C{sys.argv[1:]} by default.
    """
    runCommand("dna-demo", Options(), run, argv, _reactor)

