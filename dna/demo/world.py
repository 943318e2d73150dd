"""
The world of C{dna-demo}: the federation of draft-ietf-xmpp-dna-01 section 3
built in one process on loopback, and the witnesses recording what its
providers do.

  1. A DNS tree under the test TLD C{tld.} (its own trust anchor), signed
     with dnspython and served by L{dna.testing.zoneserver} on a loopback
     address: each tenant's C{_xmpp-server._tcp} SRV record names its
     provider's host and real port, the hosts' A records are on 127.x.y.z,
     and one domain (C{paris.tld}) is delegated without a DS record,
     insecurely.
  2. A test CA and certificates for the two server names only.
  3. Two L{dna.app.service.DNAService} providers (built with
     L{dna.testing.providers}) that validate DNSSEC themselves
     (L{DelegationChecker} in mode C{validate}, asking the zone server with
     RD clear) and authenticate each other over mutual TLS.

What the providers do is recorded in a L{Trace} of events (L{Lookup},
L{Verdict}, L{Resolved}, L{Accepted}, L{Delivered}) for the scenario to
check and the report to tell.
"""

import math
import random
import socket

import attr
import dns.dnssec
import dns.rdatatype
import dns.zone
from dns.dnssecalgs import PrivateECDSAP256SHA256
from dns.dnssectypes import Algorithm
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.words.protocols.jabber.xmlstream import STREAM_CONNECTED_EVENT
from zope.interface import implementer

from dna.dns.addresses import AddressResolver
from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.dnssec.proofs import parseAnchors
from dna.dns.lookup import SelfValidatingLookup
from dna.interfaces import IDelegationChecker, IDelegationPolicy
from dna.testing.providers import ORIGINATING, RECEIVING, ProviderPKI, startProvider
from dna.testing.zoneserver import ZoneServer

TLD = "tld"
#: Hosted by the Receiving Server but delegated without DNSSEC.
INSECURE_DOMAIN = "paris.tld"
SRV_TTL = 400

_SENDERS = [("romeo", "sender.tld"), ("benvolio", "montague.tld"),
            ("mercutio", "verona.tld")]
_TARGETS = [("juliet", "target.tld"), ("nurse", "capulet.tld"),
            ("tybalt", "mantua.tld")]


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

    def check(self, domain, after=None):
        def looked(result):
            cached = self._seen.get(result.domain) is result
            self._seen[result.domain] = result
            self._trace.add(Lookup(self._provider, result, cached))
            return result

        return self._checker.check(domain, after=after).addCallback(looked)

    def isDelegated(self, domain, serverNames, certificate=None):
        serverNames = sorted(serverNames)

        def looked(result):
            self._seen[result.domain] = result
            d = self._checker.isDelegated(domain, serverNames, certificate)
            return d.addCallback(decided, result)

        def decided(delegated, result):
            self._trace.add(Verdict(self._provider, result.domain, serverNames, result,
                                    delegated))
            return delegated

        return self._checker.check(domain).addCallback(looked)

    def cached(self, domain):
        return self._checker.cached(domain)

    @property
    def fallback(self):
        return self._checker.fallback

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


def validatingDNS(reactor, nameServer, anchors):
    """
    What one provider asks DNS with: a delegation checker validating DNSSEC
    itself from C{anchors} (mode C{validate}, RD clear, section 5 step 2),
    and an address resolver, both asking only the zone server.

    @param nameServer: C{(host, port)} of the zone server.
    @param anchors: The trust anchors, as from L{parseAnchors}.
    @return: C{(client, checker, resolver)}: the L{CountingClient} the
        checker queries through, the L{DelegationChecker} and the
        L{AddressResolver}.
    """
    client = CountingClient(DNSClient([nameServer], reactor=reactor))
    checker = DelegationChecker(
        SelfValidatingLookup(client, reactor, anchors, authoritative=True), reactor)
    resolver = AddressResolver(client=DNSClient([nameServer], reactor=reactor))
    return client, checker, resolver


class World:
    """
    The zone server, the test CA and the two providers, on loopback.

    Provider C{"A"} (L{ORIGINATING}) hosts the senders' domains, provider
    C{"B"} (L{RECEIVING}) the targets' and L{INSECURE_DOMAIN}.

    Set once L{setUp} has fired:

    @ivar addresses: The L{Addresses} picked.
    @ivar nameServer: C{(host, port)} of the zone server.
    @ivar anchorText: The trust anchor, the DS record of C{tld.}.
    @ivar keyTags: C{{zone: key tag}} of every signed zone.
    @ivar ca: The test L{CertificateAuthority}.
    @ivar plan: C{(provider, server name, address, hosted domains)} of each
        provider.
    @ivar ports: The ports the providers listen on, in the order of L{plan}.
    @ivar providers: C{{provider: DNAService}}.
    @ivar inboxes: C{{provider: Inbox}}.
    @ivar clients: C{{provider: CountingClient}} of the checkers.
    @ivar children: The zones below C{tld.}, as from L{childZones}.
    @ivar zones: The L{dns.zone.Zone}s served.
    """

    def __init__(self, reactor, senders, targets, trace, onStanza):
        """
        @param reactor: The reactor: TCP, UDP, time.
        @param senders: The Originating Server's tenants, as from
            L{tenants}.
        @param targets: The Receiving Server's tenants.
        @param trace: The L{Trace} the witnesses record into.
        @param onStanza: Called with C{(provider, stanza)} for each stanza
            a provider delivers locally.
        """
        self._reactor = reactor
        self._senders = senders
        self._targets = targets
        self._trace = trace
        self._onStanza = onStanza
        self._services = []
        self._zoneServer = None
        self.clients = {}

    @defer.inlineCallbacks
    def setUp(self):
        """
        Sign the zones, serve them, make the PKI and start both providers.

        @return: A L{Deferred} firing once all listen, or failing with
            L{DemoFailed} when something cannot.
        """
        reactor = self._reactor
        self.addresses = pickAddresses()
        now = reactor.seconds()
        children = childZones(self.addresses, (0, 0), self._senders, self._targets)
        keys = {name: newKey() for name in [TLD] + [c for c, (signed, _) in
                                                      children.items() if signed]}
        self._zoneServer = ZoneServer(reactor)
        try:
            self.nameServer = yield self._zoneServer.listen(self.addresses.nameServer)
        except CannotListenError as e:
            raise DemoFailed(f"the DNS server cannot listen on {self.addresses.nameServer}: "
                             f"{e.socketError}")
        anchorDS = dns.dnssec.make_ds(TLD + ".", keys[TLD][1], "SHA256")
        self.anchorText = f"{TLD}. 3600 IN DS {anchorDS.to_text()}"
        anchors = parseAnchors(self.anchorText)

        pki = ProviderPKI("DNA Demo CA")
        self.ca = pki.ca

        self.inboxes = {}
        self.providers = {}
        ports = []
        self.plan = [("A", ORIGINATING, self.addresses.originating,
                      [domain for _, domain in self._senders]),
                     ("B", RECEIVING, self.addresses.receiving,
                      [domain for _, domain in self._targets] + [INSECURE_DOMAIN])]
        for provider, serverName, host, domains in self.plan:
            client, checker, resolver = validatingDNS(reactor, self.nameServer, anchors)
            self.clients[provider] = client
            inbox = self.inboxes[provider] = Inbox(provider, self._trace, self._onStanza)
            try:
                service, port = yield startProvider(
                    reactor, domains, {serverName: pki.certificates[serverName]},
                    pki.trustRoot, WitnessChecker(checker, provider, self._trace),
                    self._tracingResolver(provider, resolver), inbox, interface=host)
            except CannotListenError as e:
                raise DemoFailed(f"{serverName} cannot listen on {host}: {e.socketError}")
            self._services.append(service)
            service.factory.addBootstrap(STREAM_CONNECTED_EVENT,
                                         self._accepted(provider))
            ports.append(port.getHost().port)
            self.providers[provider] = service
        self.ports = tuple(ports)

        self.children = childZones(self.addresses, self.ports, self._senders, self._targets)
        self.zones = buildZones(self.children, self.addresses.nameServer, keys, now)
        self._zoneServer.setZones(self.zones)
        self.keyTags = {name: dns.dnssec.key_id(key[1]) for name, key in keys.items()}

    def _tracingResolver(self, provider, resolver):
        def resolve(serverName, port):
            def found(addresses):
                self._trace.add(Resolved(provider, serverName, addresses))
                return addresses

            return resolver(serverName, port).addCallback(found)

        return resolve

    def _accepted(self, provider):
        def accepted(xs):
            self._trace.add(Accepted(provider, xs.transport.getPeer(), xs))

        return accepted

    def tearDown(self):
        """
        Stop the providers and the zone server, whatever L{setUp} got to.

        @return: A L{Deferred} firing once all are stopped.
        """
        stopping = [defer.maybeDeferred(service.stopService) for service in self._services]
        if self._zoneServer is not None:
            stopping.append(self._zoneServer.stopListening())
        return defer.DeferredList(stopping, consumeErrors=True)
