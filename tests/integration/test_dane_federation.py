"""
Two DNA providers whose certificates no trusted authority issued
authenticate each other by DANE (RFC 7673) over real sockets, with TLSA
records in knotd-signed zones validated by a real unbound: the originating
side checks the receiving server's certificate, the receiving side the
client certificate, each against the other's SRV target's TLSA.
"""

import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from dna.app.delegation import makeDelegationChecker, makeTLSALookup
from dna.channel.dane import associationData
from dna.dns.client import DNSClient
from dna.testing.pki import CertificateAuthority
from tests.integration.dnsenv import startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.unit.streams import stanzaErrorOf

A, B, C = "xmpp-a.danefed.example", "xmpp-b.danefed.example", "xmpp-c.danefed.example"
ADDRESSES = {A: "127.0.0.91", B: "127.0.0.92", C: "127.0.0.93"}
#: Untrusted: neither provider's trust root.
SELF_SIGNED = CertificateAuthority("DANE Federation Private CA")
CERTIFICATES = {name: SELF_SIGNED.issue(name, dnsNames=[name]) for name in ADDRESSES}


def _records(wrongFor=()):
    """
    The records of danefed.example; the TLSA records of the server names
    C{wrongFor} hold a digest their certificates do not match.
    """
    records = []
    for label, name in (("a", A), ("b", B), ("c", C)):
        host = name.split(".")[0]
        records.append(f"_xmpp-server._tcp.{label} SRV 0 5 5269 {name}.")
        records.append(f"{host} A {ADDRESSES[name]}")
    for name in (A, B):
        spki = associationData(CERTIFICATES[name].certificate, 1, 1).hex()
        if name in wrongFor:
            spki = "22" * 32
        records.append(f"_5269._tcp.{name.split('.')[0]} TLSA 3 1 1 {spki}")
    # C publishes a TLSA record its certificate does not match.
    records.append(f"_5269._tcp.xmpp-c TLSA 3 1 1 {'11' * 32}")
    return records


def _zones():
    return {"danefed.example": ("nsec", _records(), "Providers a, b, c authenticated by DANE.")}


class DANEFederationTests(ProvidersMixin, unittest.TestCase):
    """
    a.danefed.example (provider A) and b.danefed.example (provider B),
    each presenting a certificate of a private authority that matches its
    TLSA record; c.danefed.example's certificate matches none.
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self, extraZones=_zones())
        self.setUpPKI()

    @defer.inlineCallbacks
    def start(self, name, domains):
        client = DNSClient([self.env.resolver], reactor)
        checker = makeDelegationChecker(reactor, [self.env.resolver], "ad")
        tlsa = makeTLSALookup(reactor, client, "ad")
        service, inbox, port = yield self.startProvider(
            domains, {name: CERTIFICATES[name]}, checker, client=client,
            interface=ADDRESSES[name], port=5269, tlsaLookup=tlsa)
        return service, inbox

    @defer.inlineCallbacks
    def test_bothWays(self):
        """
        A's stanza reaches B and B's reaches A: each side authenticated the
        other by its TLSA record although PKIX refuses both certificates,
        and records the server name DANE proved.
        """
        a, inboxA = yield self.start(A, ["a.danefed.example"])
        b, inboxB = yield self.start(B, ["b.danefed.example"])
        a.send(message("romeo@a.danefed.example", "juliet@b.danefed.example"))
        [received] = yield inboxB.waitFor(1, timeout=20)
        self.assertEqual("juliet@b.danefed.example", received["to"])
        b.send(message("juliet@b.danefed.example", "romeo@a.danefed.example"))
        [back] = yield inboxA.waitFor(1, timeout=20)
        self.assertEqual("romeo@a.danefed.example", back["to"])
        [row] = [a.federation.tables.connections.get(s) for s in a.federation.tables.connections]
        self.assertEqual({B}, set(row.serverNames))

    @defer.inlineCallbacks
    def test_mismatchRefused(self):
        """
        C's certificate matches no TLSA record of its target: A refuses it
        (the stanza bounces), and B refuses C's client certificate.
        """
        a, inboxA = yield self.start(A, ["a.danefed.example"])
        c, inboxC = yield self.start(C, ["c.danefed.example"])
        a.send(message("romeo@a.danefed.example", "x@c.danefed.example"))
        [bounce] = yield inboxA.waitFor(1, timeout=20)
        self.assertEqual("remote-server-not-found", stanzaErrorOf(bounce)[0])
        self.assertEqual([], inboxC.stanzas)
        c.send(message("x@c.danefed.example", "romeo@a.danefed.example"))
        [bounce] = yield inboxC.waitFor(1, timeout=20)
        self.assertEqual("remote-server-not-found", stanzaErrorOf(bounce)[0])
        # Only A's own bounce: nothing from C was delivered.
        self.assertEqual(1, len(inboxA.stanzas))

    @defer.inlineCallbacks
    def test_changedTLSAEndsConnection(self):
        """
        A's TLSA record changes to a digest its certificate does not match:
        within the TTL (unbound's C{cache-max-ttl}, 5 s) and a few seconds,
        B's re-check of the TLSA proof ends the connection A authenticated
        on by DANE, with C{<policy-violation/>}, and counts it.
        """
        a, inboxA = yield self.start(A, ["a.danefed.example"])
        b, inboxB = yield self.start(B, ["b.danefed.example"])
        a.send(message("romeo@a.danefed.example", "juliet@b.danefed.example"))
        yield inboxB.waitFor(1, timeout=20)
        [streamID] = list(b.federation.tables.connections)
        expires = b.federation.revalidator.identityProofExpires(streamID)
        self.assertIsNotNone(expires)
        self.assertLessEqual(expires - time.time(), 6)

        self.env.setRecords("danefed.example", _records(wrongFor=[A]))
        ended = yield self.until(lambda: b.federation.counters["tlsa-expired"] == 1, 20,
                                 "B ends the connection")
        # The TTL, and the interval of a re-check that found the old
        # records about to expire.
        self.assertLess(ended, 5 + 5 + 1)
        yield self.until(lambda: streamID not in b.federation.tables.connections, 6,
                         "the connection goes")
        self.assertEqual(1, b.federation.counters["tlsa-expired"])
