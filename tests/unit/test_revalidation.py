"""
Tests for L{dna.core.proofs} and L{dna.app.revalidation}: an authorization
lives no longer than its proof (issue 11), with an injected clock.
"""

import random

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream

from dna.app.federation import Federation
from dna.channel.stream import S2SStream
from dna.core import proofs
from dna.core.proofs import Proof, decide, recheckTime
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.delegation import DelegationChecker
from dna.dns.dnssec.proofs import SECURE
from dna.dns.verdict import DelegationResult, SRVRecord
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import HEADER
from tests.unit.test_model import _TwoServersMixin


class DecideTests(SynchronousTestCase):
    """
    L{decide} is a pure function of the proof, the new outcome and the time.
    """

    def test_extend(self):
        """
        Still delegated: the binding lasts until the new proof expires.
        """
        self.assertEqual((proofs.EXTEND, 700.0),
                         decide(Proof(400.0), proofs.DELEGATED, 700.0, 395.0))

    def test_extendNeverLoops(self):
        """
        A new proof valid for no time extends by the retry interval, so the
        re-check is not repeated at once.
        """
        self.assertEqual((proofs.EXTEND, 405.0),
                         decide(Proof(400.0), proofs.DELEGATED, 400.0, 400.0,
                                retryInterval=5.0))

    def test_revokeWhenNotDelegated(self):
        """
        No longer delegated, elsewhere or bogus: revoke.
        """
        self.assertEqual((proofs.REVOKE, None),
                         decide(Proof(400.0), proofs.NOT_DELEGATED, 700.0, 395.0))

    def test_indeterminateKeptUntilHardLimitPlusGrace(self):
        """
        Indeterminate: retried until the proof's expiry plus the grace, and
        never past it; then revoked.
        """
        proof = Proof(400.0)
        self.assertEqual((proofs.RETRY, 401.0),
                         decide(proof, proofs.INDETERMINATE, 0, 396.0, grace=10.0,
                                retryInterval=5.0))
        self.assertEqual((proofs.RETRY, 410.0),
                         decide(proof, proofs.INDETERMINATE, 0, 408.0, grace=10.0,
                                retryInterval=5.0))
        self.assertEqual((proofs.REVOKE, None),
                         decide(proof, proofs.INDETERMINATE, 0, 410.0, grace=10.0))

    def test_expiresIsEarliest(self):
        """
        A proof expires with the earlier of its lookup and its certificate.
        """
        self.assertEqual(300.0, Proof(400.0, 300.0).expires)
        self.assertEqual(400.0, Proof(400.0, None).expires)
        self.assertIsNone(Proof(None).expires)


class RecheckTimeTests(SynchronousTestCase):
    """
    L{recheckTime} spreads re-checks before the expiry.
    """

    def test_beforeExpiry(self):
        """
        Every re-check falls within the window before the expiry.
        """
        rng = random.Random(1)
        for _ in range(1000):
            when = recheckTime(1300.0, 1000.0, rng.random, spread=0.1, maxSpread=60)
            self.assertTrue(1270.0 <= when <= 1300.0, when)

    def test_jitterSpreads(self):
        """
        100,000 bindings granted at the same instant with the same TTL are
        re-checked over the whole window: no second holds more than a few
        percent of them.
        """
        rng = random.Random(2)
        times = [recheckTime(1300.0, 1000.0, rng.random) for _ in range(100000)]
        perSecond = {}
        for when in times:
            perSecond[int(when)] = perSecond.get(int(when), 0) + 1
        self.assertGreaterEqual(len(perSecond), 30)
        self.assertLess(max(perSecond.values()), 100000 * 0.05)

    def test_expiredNow(self):
        """
        A proof already expired is re-checked now.
        """
        self.assertEqual(1000.0, recheckTime(900.0, 1000.0, lambda: 0.5))


class RevalidationTests(_TwoServersMixin, SynchronousTestCase):
    """
    Two L{Federation}s over in-memory streams: B re-checks the pairs it
    granted A before their proofs expire (the fake checker's TTL is 60 s).
    """

    def setUp(self):
        _TwoServersMixin.setUp(self)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.link = self.servers.connect()
        self.servers.send("a1.tld", "b1.tld")
        self.servers.send("a2.tld", "b1.tld")
        self.servers.pump()
        self.assertEqual({"m1": self.link.sid, "m2": self.link.sid},
                         self.servers.delivered)

    def proof(self):
        return self.servers.b.revalidator.proofOf(INCOMING, "b1.tld", "a1.tld", self.link.sid)

    def revocations(self):
        return [event for event in self.events
                if event.get("event") == "revalidation-revoked"]

    def test_proofRecorded(self):
        """
        A granted pair records its proof's expiry and a re-check before it.
        """
        proof = self.proof()
        self.assertEqual(60.0, proof.dnsExpires)
        self.assertTrue(54.0 <= proof.nextCheck <= 60.0)

    def test_extension(self):
        """
        Still delegated to the same server names: the binding is extended,
        silently, and stanzas keep flowing.
        """
        checked = len(self.servers.checker.checked)
        self.servers.advance(60)
        self.servers.pump()
        self.assertGreater(len(self.servers.checker.checked), checked)
        self.assertTrue(self.servers.b.tables.accepts(self.link.sid, "b1.tld", "a1.tld"))
        self.assertGreater(self.proof().dnsExpires, 60.0)
        self.assertNotIn(b"invalid", self.link.b.transport.value())
        self.assertEqual([], self.revocations())
        self.servers.send("a1.tld", "b1.tld")
        self.servers.pump()
        self.assertIn("m3", self.servers.delivered)
        self.assertClean()

    def assertRevokedA1(self, reason):
        """
        B revoked a1.tld -> b1.tld with C{<not-authorized/>}, A no longer
        routes it, its next message is refused, and a2.tld keeps flowing on
        the same stream.
        """
        servers = self.servers
        self.assertFalse(servers.b.tables.accepts(self.link.sid, "b1.tld", "a1.tld"))
        self.assertIn(b"type='invalid'", self.link.b.transport.value())
        self.assertIn(b"not-authorized", self.link.b.transport.value())
        servers.pump()
        self.assertIsNone(servers.a.tables.route("a1.tld", "b1.tld"))
        self.assertEqual(1, servers.b.counters["revalidation-revoked"])
        [event] = self.revocations()
        self.assertEqual(("b1.tld", "a1.tld", self.link.sid),
                         (event["local"], event["remote"], event["streamID"]))
        self.assertIn(reason, event["reason"])
        refused = servers.send("a1.tld", "b1.tld")
        servers.pump()
        self.assertEqual("not-authorized", self.bounceOf(refused))
        kept = servers.send("a2.tld", "b1.tld")
        servers.pump()
        self.assertEqual(self.link.sid, servers.delivered[kept])

    def test_revocationOnChange(self):
        """
        Delegated elsewhere: the pair is revoked at the re-check.
        """
        self.servers.checker.delegations["a1.tld"] = ["xmpp.elsewhere.tld"]
        self.servers.advance(60)
        self.assertRevokedA1("no longer delegated")

    def test_revocationOnBogus(self):
        """
        Bogus: the pair is revoked at the re-check.
        """
        self.servers.checker.bogus.add("a1.tld")
        self.servers.advance(60)
        self.assertRevokedA1("bogus")

    def test_graceThenRevocationOnIndeterminate(self):
        """
        Indeterminate: the binding is kept past the proof's expiry only for
        the grace, retried meanwhile, then revoked.
        """
        self.servers.b.revalidator.grace = 20.0
        self.servers.checker.indeterminate.add("a1.tld")
        self.servers.advance(59.9)
        self.servers.advance(0.1)
        self.assertTrue(self.servers.b.tables.accepts(self.link.sid, "b1.tld", "a1.tld"))
        self.servers.advance(15)
        self.assertTrue(self.servers.b.tables.accepts(self.link.sid, "b1.tld", "a1.tld"))
        for _ in range(5):
            self.servers.advance(1)
        self.assertRevokedA1("indeterminate past the proof's hard limit")

    def test_indeterminateThenRecovered(self):
        """
        An indeterminate re-check followed, within the grace, by one that
        confirms the delegation keeps the binding.
        """
        self.servers.b.revalidator.grace = 20.0
        self.servers.checker.indeterminate.add("a1.tld")
        self.servers.advance(60)
        self.servers.checker.indeterminate.clear()
        for _ in range(10):
            self.servers.advance(1)
        self.assertTrue(self.servers.b.tables.accepts(self.link.sid, "b1.tld", "a1.tld"))
        self.assertEqual([], self.revocations())

    def test_oneTimer(self):
        """
        However many bindings, one timer is pending.
        """
        for target in ("b1.tld", "b2.tld"):
            for sender in ("a1.tld", "a2.tld"):
                self.servers.send(sender, target)
        self.servers.pump()
        calls = [call for call in self.servers.clock.getDelayedCalls()
                 if "Revalidator" in repr(call)]
        self.assertEqual(1, len(calls))

    def test_closedStreamForgotten(self):
        """
        Closing the stream drops its proofs and the timer.
        """
        self.servers.close(self.link)
        self.servers.pump()
        self.assertEqual({}, self.servers.b.revalidator.proofs)
        calls = [call for call in self.servers.clock.getDelayedCalls()
                 if "Revalidator" in repr(call)]
        self.assertEqual([], calls)


class CertificateExpiryTests(SynchronousTestCase):
    """
    A peer certificate that expires while its connection is open ends the
    connection at that moment.
    """

    def federationWithStream(self, clock, notAfter):
        """
        A L{Federation} with one incoming stream C{"s1"} from
        C{xmpp.a.tld}, whose certificate expires at C{notAfter}.
        """
        federation = Federation(
            ["b1.tld"], FakeDelegationChecker({"a1.tld": ["xmpp.a.tld"]}),
            lambda stanza: None, clock=clock,
            revalidation={"certificateExpiry": lambda xs: notAfter})
        xs = S2SStream(xmlstream.Authenticator())
        xs.makeConnection(StringTransport())
        xs.dataReceived(HEADER.format(peer="xmpp.a.tld", us="xmpp.b.tld",
                                      sid="s1").encode("utf-8"))
        xs.sid = "s1"
        xs._headerSent = True
        federation.streamAuthenticated(xs, initiating=False, serverNames=["xmpp.a.tld"])
        return federation, xs

    def test_certificateExpiryCloses(self):
        """
        At the certificate's notAfter the stream gets a stream error and the
        connection is closed; the count says so.
        """
        clock = Clock()
        clock.advance(1000)
        federation, xs = self.federationWithStream(clock, 1100.0)
        self.assertEqual(1100.0, federation.revalidator.proofs[("certificate", "s1")]
                         .certificateExpires)
        clock.advance(99.9)
        self.assertFalse(xs.transport.disconnecting)
        clock.advance(0.1)
        self.assertIn(b"policy-violation", xs.transport.value())
        self.assertTrue(xs.transport.disconnecting)
        self.assertEqual(1, federation.counters["certificate-expired"])

    def test_proofIncludesCertificate(self):
        """
        A binding's proof expires no later than the certificate.
        """
        federation, xs = self.federationWithStream(Clock(), 30.0)
        federation.tables.bind(INCOMING, "b1.tld", "a1.tld", "s1")
        federation.tables.bind(OUTGOING, "b1.tld", "a1.tld", "s1")
        proof = federation.revalidator.proofOf(INCOMING, "b1.tld", "a1.tld", "s1")
        self.assertEqual(30.0, proof.expires)
        self.assertEqual(60.0, proof.dnsExpires)


class _CountingLookup:
    """
    An L{IDelegationLookup} answering a secure delegation with a TTL of
    300 s, counting its lookups.
    """

    def __init__(self):
        self.lookups = 0

    def lookup(self, name):
        self.lookups += 1
        domain = name.to_text(omit_final_dot=True)
        return succeed(DelegationResult(domain, [SRVRecord(0, 0, 5269, "xmpp.a.tld")],
                                        SECURE, ttl=300))


class CheckerExpiryTests(SynchronousTestCase):
    """
    L{DelegationChecker} results say when their proof expires, and
    C{check(after=...)} asks for one that outlasts a given time.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.lookup = _CountingLookup()
        self.checker = DelegationChecker(self.lookup, self.clock)

    def test_expires(self):
        """
        The result of a lookup expires its TTL after the lookup, also when
        served later from the cache.
        """
        self.assertEqual(1300, self.successResultOf(self.checker.check("a1.tld")).expires)
        self.clock.advance(100)
        self.assertEqual(1300, self.successResultOf(self.checker.check("a1.tld")).expires)
        self.assertEqual(1300, self.checker.cached("a1.tld").expires)
        self.assertEqual(1, self.lookup.lookups)

    def test_after(self):
        """
        A cached result expiring at or before C{after} is looked up again,
        and the fresh one serves the next checks.
        """
        self.successResultOf(self.checker.check("a1.tld"))
        self.clock.advance(290)
        fresh = self.successResultOf(self.checker.check("a1.tld", after=1300))
        self.assertEqual(1590, fresh.expires)
        self.assertEqual(1590, self.successResultOf(
            self.checker.check("a1.tld", after=1300)).expires)
        self.assertEqual(2, self.lookup.lookups)
