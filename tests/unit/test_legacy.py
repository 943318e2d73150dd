"""
Tests for interoperation with servers that do not speak DNA
(draft-ietf-xmpp-dna-01 section 7): L{dna.legacy.policy}, L{dna.legacy.sasl},
L{dna.legacy.dialback}, L{dna.legacy.authorization}, L{dna.legacy.receiving} and
L{dna.legacy.originating}, in memory (real L{XmlStream}s over L{StringTransport}); the
last tests run two DNA providers over loopback to show that they never fall
back. L{tests.integration.test_prosody} interoperates with a real Prosody.
"""

import base64
import hashlib
import hmac

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

from dna.channel.receiving import DNAListenAuthenticator
from dna.core.authorization import dialbackElement, errorFromResult
from dna.core.tables import Tables
from dna.dns.verdict import (
    BOGUS,
    INDETERMINATE,
    INSECURE,
    SECURE,
    DelegationResult,
    SRVRecord,
)
from dna.error import (
    AuthorizationRefused,
    ConnectFailed,
    ConnectionLost,
    DialbackFailed,
    DowngradeRefused,
    NoDialback,
    NoLegacyRoute,
    NotDelegated,
    PeerLacksDNA,
    RequestTimedOut,
    SASLFailed,
    VerificationFailed,
)
from dna.legacy import receiving as legacyserver
from dna.legacy.authorization import LegacyAuthorization
from dna.legacy.dialback import (
    AuthoritativeResponder,
    DialbackKeys,
    OriginatingDialbackInitializer,
    Verifier,
    generateKey,
)
from dna.legacy.originating import LegacyBidiInitializer, PeerCheckInitializer
from dna.legacy.policy import (
    FALLBACK_DIALBACK,
    FALLBACK_DNA,
    FALLBACK_PKIX,
    FallbackPolicy,
    fallbackReason,
    legacyTargets,
    mayPiggyback,
)
from dna.legacy.receiving import LegacyListener
from dna.legacy.sasl import SASLExternalInitializer, checkExternalAuth
from dna.namespaces import (
    NS_BIDI,
    NS_BIDI_FEATURE,
    NS_DIALBACK,
    NS_DIALBACK_FEATURE,
    NS_DNA,
    NS_SASL,
    NS_TLS,
)
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import (
    RecordingXmlStream,
    close,
    makeStream,
    receive,
    stanza,
    stanzaErrorOf,
)

SECRET = "s3cr3tf0rd14lb4ck"



def sent(xs, name, uri=NS_DIALBACK):
    """
    The elements named C{name} a stream sent.
    """
    return [
        e for e in xs.output
        if isinstance(e, domish.Element) and (e.uri, e.name) == (uri, name)
    ]



def features(*elements):
    """
    The C{features} dict an initiating stream keeps, from feature elements.
    """
    return {(e.uri, e.name): e for e in elements}



def feature(uri, name):
    return domish.Element((uri, name))



class FallbackPolicyTests(SynchronousTestCase):
    """
    L{FallbackPolicy}: the three levels of C{[policy] fallback}.
    """

    def test_levels(self):
        """
        C{dna} allows no legacy stream; C{dna+pkix} certificates only;
        C{dna+pkix+dialback} dialback too.
        """
        self.assertEqual(
            [(False, False, False), (True, True, False), (True, True, True)],
            [
                (p.legacy, p.pkix, p.dialback)
                for p in map(FallbackPolicy, [FALLBACK_DNA, FALLBACK_PKIX, FALLBACK_DIALBACK])
            ],
        )

    def test_unknownLevel(self):
        """
        An unknown level is refused.
        """
        self.assertRaises(ValueError, FallbackPolicy, "dialback")



class FallbackReasonTests(SynchronousTestCase):
    """
    L{fallbackReason}: which failed DNA attempts call for a legacy stream.
    """

    def test_peerLacksDNA(self):
        """
        A Receiving Server without the DNA feature is a legacy peer.
        """
        reason = fallbackReason(Failure(ConnectFailed("t.tld", [], [PeerLacksDNA("xmpp.t.tld")])))
        self.assertIn("does not offer DNA", reason)

    def test_serverNameRefused(self):
        """
        A stream error for the stream to our server name (Prosody's
        host-unknown) is a legacy peer.
        """
        reason = fallbackReason(
            Failure(ConnectFailed("t.tld", [], [ierror.ConnectionRefusedError(), error.StreamError("host-unknown")]))
        )
        self.assertIn("host-unknown", reason)

    def test_notDelegated(self):
        """
        A delegation DNA cannot use (unsigned) calls for a legacy stream;
        L{legacyTargets} then decides whether the DNS data is usable.
        """
        self.assertIn("insecure", fallbackReason(Failure(NotDelegated("t.tld", INSECURE, "unsigned"))))
        self.assertIn("no SRV", fallbackReason(Failure(NotDelegated("t.tld", SECURE, None))))

    def test_badDNS(self):
        """
        Bogus or unreadable DNS data is no reason to fall back.
        """
        for status in (BOGUS, INDETERMINATE):
            self.assertIsNone(fallbackReason(Failure(NotDelegated("t.tld", status, "why"))))

    def test_noLegacyHint(self):
        """
        A refused pair, an unanswered request, a network or certificate
        failure are no reasons to fall back.
        """
        for reason in [
            AuthorizationRefused("s.tld", "t.tld", "not-authorized"),
            RequestTimedOut("s.tld", "t.tld", 30),
            ConnectFailed("t.tld", [], [ierror.ConnectionRefusedError(), ierror.TimeoutError()]),
            ConnectFailed("t.tld", []),
            ConnectionLost("s1"),
        ]:
            self.assertIsNone(fallbackReason(Failure(reason)), reason)



class LegacyTargetsTests(SynchronousTestCase):
    """
    L{legacyTargets}: where a legacy stream goes (RFC 6120 section 3.2).
    """

    def test_srvTargets(self):
        """
        SRV targets in order, signed or not.
        """
        for status in (SECURE, INSECURE):
            result = DelegationResult(
                "t.tld", [SRVRecord(0, 0, 5269, "a.t.tld"), SRVRecord(1, 0, 5270, "b.t.tld")], status
            )
            self.assertEqual([("a.t.tld", 5269), ("b.t.tld", 5270)], legacyTargets(result))

    def test_noSRV(self):
        """
        Without SRV records, the domain itself on port 5269.
        """
        self.assertEqual([("t.tld", 5269)], legacyTargets(DelegationResult("t.tld", [], INSECURE)))

    def test_unusable(self):
        """
        Bogus or unreadable DNS data, and a C{.} target, give no route.
        """
        for result in [
            DelegationResult("t.tld", [SRVRecord(0, 0, 5269, "a.t.tld")], BOGUS, "bad signature"),
            DelegationResult("t.tld", [], INDETERMINATE, "timeout"),
            DelegationResult("t.tld", [SRVRecord(0, 0, 0, "")], SECURE),
        ]:
            self.assertRaises(NoLegacyRoute, legacyTargets, result)

    def test_mayPiggyback(self):
        """
        Another sender rides on a dialback stream; on a SASL EXTERNAL stream
        only one our certificate covers.
        """
        self.assertTrue(mayPiggyback(False, "dialback"))
        self.assertTrue(mayPiggyback(True, "EXTERNAL"))
        self.assertFalse(mayPiggyback(False, "EXTERNAL"))



class KeysTests(SynchronousTestCase):
    """
    L{generateKey} and L{DialbackKeys} (XEP-0185).
    """

    def test_xep0185(self):
        """
        The key is XEP-0185's: HMAC-SHA256 keyed with the hex SHA-256 of the
        secret, of "receiving originating id"; wokkel and Prosody make the
        same.
        """
        from wokkel.server import generateKey as wokkelKey

        self.assertEqual(
            "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc",
            hashlib.sha256(SECRET.encode("ascii")).hexdigest(),
        )
        self.assertEqual(
            hmac.new(
                b"a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc",
                b"example.net example.com D60000229F", hashlib.sha256,
            ).hexdigest(),
            generateKey(SECRET, "example.net", "example.com", "D60000229F"),
        )
        self.assertEqual(
            wokkelKey(SECRET, "example.net", "example.com", "D60000229F"),
            generateKey(SECRET, "example.net", "example.com", "D60000229F"),
        )

    def test_bytesSecret(self):
        """
        A secret given as bytes makes the same keys as the same text
        (wokkel crashes on it).
        """
        self.assertEqual(
            generateKey(SECRET, "a.tld", "b.tld", "id1"),
            generateKey(SECRET.encode("ascii"), "a.tld", "b.tld", "id1"),
        )

    def test_isValid(self):
        """
        A key is valid for exactly the names and stream it was made for;
        surrounding white space does not matter, non-ASCII garbage is just
        invalid.
        """
        keys = DialbackKeys(SECRET)
        key = keys.key("r.tld", "o.tld", "s1")
        self.assertTrue(keys.isValid(" %s\n" % key, "r.tld", "o.tld", "s1"))
        self.assertFalse(keys.isValid(key, "r.tld", "o.tld", "s2"))
        self.assertFalse(keys.isValid(key, "o.tld", "r.tld", "s1"))
        self.assertFalse(keys.isValid("\u00e9" + key[1:], "r.tld", "o.tld", "s1"))

    def test_constantTime(self):
        """
        Keys are compared with L{hmac.compare_digest}.
        """
        import dna.legacy.dialback

        calls = []

        def compare(a, b):
            calls.append((a, b))
            return a == b

        self.patch(dna.legacy.dialback.hmac, "compare_digest", compare)
        keys = DialbackKeys(SECRET)
        self.assertTrue(keys.isValid(keys.key("r.tld", "o.tld", "s1"), "r.tld", "o.tld", "s1"))
        self.assertEqual(1, len(calls))

    def test_randomSecret(self):
        """
        Without a secret, each instance makes its own.
        """
        self.assertNotEqual(DialbackKeys().key("a", "b", "c"), DialbackKeys().key("a", "b", "c"))



class AuthoritativeResponderTests(SynchronousTestCase):
    """
    L{AuthoritativeResponder}: our answers to C{<db:verify/>}.
    """

    def setUp(self):
        self.keys = DialbackKeys(SECRET)
        self.xs = makeStream("s9", us="sender.tld", peer="target.tld")
        AuthoritativeResponder(self.keys, frozenset(["sender.tld"])).install(self.xs)

    def verify(self, key, sender="target.tld", target="sender.tld", streamID="s1"):
        receive(self.xs, dialbackElement("verify", sender, target, key=key, streamID=streamID))
        [answer] = sent(self.xs, "verify")
        return answer

    def test_valid(self):
        """
        A key we made is valid; the answer goes back from our domain with
        the same id.
        """
        answer = self.verify(self.keys.key("target.tld", "sender.tld", "s1"))
        self.assertEqual(
            ("sender.tld", "target.tld", "s1", "valid"),
            (answer["from"], answer["to"], answer["id"], answer["type"]),
        )

    def test_invalid(self):
        """
        A key for another stream id is invalid.
        """
        answer = self.verify(self.keys.key("target.tld", "sender.tld", "s2"))
        self.assertEqual("invalid", answer["type"])

    def test_notOurs(self):
        """
        A key of a domain we do not host gets a dialback error.
        """
        answer = self.verify("00", target="other.tld")
        self.assertEqual(("error", "item-not-found"), (answer["type"], errorFromResult(answer)[0]))

    def test_answersIgnored(self):
        """
        Typed C{<db:verify/>} elements are answers for someone else: no
        reply.
        """
        receive(self.xs, dialbackElement("verify", "target.tld", "sender.tld", elementType="valid", streamID="s1"))
        self.assertEqual([], sent(self.xs, "verify"))



class OriginatingDialbackTests(SynchronousTestCase):
    """
    L{OriginatingDialbackInitializer}: our key for a legacy stream's pair.
    """

    def setUp(self):
        self.keys = DialbackKeys(SECRET)
        self.xs = makeStream("peer-id", us="sender.tld", peer="target.tld")
        self.xs.features = features(feature(NS_DIALBACK_FEATURE, "dialback"))

    def initialize(self, allowed=True):
        initializer = OriginatingDialbackInitializer(self.xs, "sender.tld", "target.tld", self.keys, allowed)
        return initializer.initialize()

    def test_sendsKey(self):
        """
        The key is XEP-0185's for the peer's stream id; a valid answer
        authenticates the stream by dialback.
        """
        d = self.initialize()
        [result] = sent(self.xs, "result")
        self.assertEqual(("sender.tld", "target.tld"), (result["from"], result["to"]))
        self.assertEqual(generateKey(SECRET, "target.tld", "sender.tld", "peer-id"), str(result))
        receive(self.xs, dialbackElement("result", "target.tld", "sender.tld", elementType="valid"))
        self.successResultOf(d)
        self.assertEqual("dialback", self.xs.legacyMechanism)

    def test_otherPairsIgnored(self):
        """
        An answer for another pair does not settle ours.
        """
        d = self.initialize()
        receive(self.xs, dialbackElement("result", "target.tld", "other.tld", elementType="valid"))
        self.assertNoResult(d)

    def test_invalid(self):
        """
        C{type='invalid'} fails with L{DialbackFailed}.
        """
        d = self.initialize()
        receive(self.xs, dialbackElement("result", "target.tld", "sender.tld", elementType="invalid"))
        self.assertEqual(None, self.failureResultOf(d, DialbackFailed).value.condition)

    def test_error(self):
        """
        A dialback error (XEP-0220 section 2.4) fails with its condition.
        """
        d = self.initialize()
        receive(
            self.xs,
            dialbackElement(
                "result", "target.tld", "sender.tld", elementType="error",
                stanzaError=error.StanzaError("remote-server-not-found", type="cancel"),
            ),
        )
        self.assertEqual("remote-server-not-found", self.failureResultOf(d, DialbackFailed).value.condition)

    def test_afterExternal(self):
        """
        A stream SASL EXTERNAL authenticated sends no key.
        """
        self.xs.legacyMechanism = "EXTERNAL"
        self.assertIsNone(self.initialize())
        self.assertEqual([], sent(self.xs, "result"))

    def test_notAllowed(self):
        """
        Under a policy without dialback, the stream fails.
        """
        self.assertRaises(NoDialback, self.initialize, allowed=False)

    def test_notOffered(self):
        """
        A peer that offers neither the feature nor the namespace cannot do
        dialback.
        """
        self.xs.features = {}
        self.assertRaises(NoDialback, self.initialize)
        self.xs.peerDeclaresDialback = True
        self.initialize()
        self.assertEqual(1, len(sent(self.xs, "result")))



class SASLExternalInitiatingTests(SynchronousTestCase):
    """
    L{SASLExternalInitializer}: the Originating Server's SASL EXTERNAL.
    """

    def setUp(self):
        self.xs = makeStream("peer-id", us="sender.tld", peer="target.tld")
        mechanisms = feature(NS_SASL, "mechanisms")
        mechanisms.addElement("mechanism", content="EXTERNAL")
        self.xs.features = features(mechanisms)

    def test_success(self):
        """
        C{<auth/>} names our domain; C{<success/>} restarts the stream.
        """
        d = SASLExternalInitializer(self.xs, "sender.tld", usable=True, fallback=False).initialize()
        [auth] = sent(self.xs, "auth", NS_SASL)
        self.assertEqual(("EXTERNAL", b"sender.tld"), (auth["mechanism"], base64.b64decode(str(auth))))
        self.xs.transport.clear()
        receive(self.xs, "<success xmlns='%s'/>" % (NS_SASL,))
        self.assertIs(xmlstream.Reset, self.successResultOf(d))
        self.assertEqual("EXTERNAL", self.xs.legacyMechanism)
        self.assertIn(b"<stream:stream", self.xs.transport.value())

    def test_failureThenDialback(self):
        """
        A refusal leaves the stream to dialback when the policy allows it.
        """
        d = SASLExternalInitializer(self.xs, "sender.tld", usable=True, fallback=True).initialize()
        receive(self.xs, "<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.xs.legacyMechanism)

    def test_failure(self):
        """
        Without dialback, a refusal fails the stream.
        """
        d = SASLExternalInitializer(self.xs, "sender.tld", usable=True, fallback=False).initialize()
        receive(self.xs, "<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        self.assertEqual("not-authorized", self.failureResultOf(d, SASLFailed).value.condition)

    def test_unusable(self):
        """
        When our certificate does not cover our domain, or EXTERNAL is not
        offered, nothing is sent.
        """
        self.assertIsNone(SASLExternalInitializer(self.xs, "sender.tld", usable=False, fallback=True).initialize())
        self.xs.features = {}
        self.assertIsNone(SASLExternalInitializer(self.xs, "sender.tld", usable=True, fallback=True).initialize())
        self.assertEqual([], sent(self.xs, "auth", NS_SASL))



class PeerCheckTests(SynchronousTestCase):
    """
    L{PeerCheckInitializer} and L{LegacyBidiInitializer}.
    """

    def test_noDowngrade(self):
        """
        A peer that offers C{<dna/>} on a legacy stream speaks DNA: the
        stream fails with L{DowngradeRefused}.
        """
        xs = makeStream()
        xs.features = features(feature(NS_DNA, "dna"))
        self.assertRaises(DowngradeRefused, PeerCheckInitializer(xs, "target.tld").initialize)

    def test_bidiOnlyWithVerifiedPeer(self):
        """
        XEP-0288 is requested only from a peer whose certificate proved its
        domain.
        """
        xs = makeStream()
        xs.features = features(feature(NS_BIDI_FEATURE, "bidi"))
        xs.peerVerified = False
        LegacyBidiInitializer(xs).initialize()
        self.assertEqual((False, []), (xs.bidi, sent(xs, "bidi", NS_BIDI)))
        xs.peerVerified = True
        LegacyBidiInitializer(xs).initialize()
        self.assertEqual((True, 1), (xs.bidi, len(sent(xs, "bidi", NS_BIDI))))



class FakeVerifier:
    """
    A L{Verifier} whose answers the test gives.
    """

    def __init__(self):
        self.asked = []

    def verify(self, local, remote, streamID, key):
        d = defer.Deferred()
        self.asked.append(((local, remote, streamID, key), d))
        return d



class LegacyAuthorizationMixin:
    """
    A legacy stream from target.tld's server to us (sender.tld).
    """

    initiating = False
    bidi = False
    level = FALLBACK_DIALBACK

    def setUp(self):
        self.clock = Clock()
        self.tables = Tables()
        self.keys = DialbackKeys(SECRET)
        self.verifier = FakeVerifier()
        self.proven = set()
        self.xs = makeStream("s1", us="sender.tld", peer="target.tld")
        self.delivered = []
        self.xs.addObserver("/message", self.delivered.append)
        self.authorization = LegacyAuthorization(
            self.xs, self.tables, frozenset(["sender.tld", "sender2.tld"]),
            FakeDelegationChecker(), self.initiating, bidi=self.bidi, keys=self.keys,
            verifier=self.verifier if FallbackPolicy(self.level).dialback else None,
            policy=FallbackPolicy(self.level), peerProves=self.proven.__contains__,
            domain="target.tld", mechanism="dialback", offersDialback=True, clock=self.clock,
        )

    def results(self):
        return [
            (e["from"], e["to"], e.getAttribute("type"), errorFromResult(e)[0])
            for e in sent(self.xs, "result")
        ]



class LegacyReceivingTests(LegacyAuthorizationMixin, SynchronousTestCase):
    """
    L{LegacyAuthorization} receiving the peer's C{<db:result/>}.
    """

    def request(self, sender="target.tld", target="sender.tld", key="k1"):
        receive(self.xs, dialbackElement("result", sender, target, key=key))

    def test_verifiedKey(self):
        """
        The key is checked with the Authoritative Server of the asserted
        domain, for this stream's id; a valid key binds the pair for
        receiving, in the shared tables, and stanzas of the pair pass.
        """
        self.request()
        [(question, d)] = self.verifier.asked
        self.assertEqual(("sender.tld", "target.tld", "s1", "k1"), question)
        self.assertEqual([], self.results())
        d.callback(True)
        self.assertEqual([("sender.tld", "target.tld", "valid", None)], self.results())
        self.assertTrue(self.tables.incoming.accepts("s1", "sender.tld", "target.tld"))
        self.assertFalse(self.tables.outgoing.isBound("sender.tld", "target.tld"))
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld"))
        self.assertEqual(1, len(self.delivered))

    def test_invalidKey(self):
        """
        A key its Authoritative Server denies is answered C{type='invalid'};
        nothing is bound and stanzas of the pair are rejected.
        """
        self.request()
        self.verifier.asked[0][1].callback(False)
        self.assertEqual([("sender.tld", "target.tld", "invalid", None)], self.results())
        self.assertEqual(0, len(self.tables.incoming))
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld", stanzaID="x"))
        self.assertEqual([], self.delivered)
        [bounce] = [e for e in self.xs.output if getattr(e, "name", None) == "message"]
        self.assertEqual(("not-authorized", None), stanzaErrorOf(bounce))

    def test_verificationFails(self):
        """
        When the Authoritative Server cannot be asked, the answer is a
        dialback error.
        """
        self.request()
        self.verifier.asked[0][1].errback(VerificationFailed("target.tld", "connection refused"))
        self.assertEqual([("sender.tld", "target.tld", "error", "remote-server-not-found")], self.results())

    def test_notHosted(self):
        """
        A target we do not host is a dialback error (XEP-0220 section 2.4).
        """
        self.request(target="other.tld")
        self.assertEqual([("other.tld", "target.tld", "error", "item-not-found")], self.results())
        self.assertEqual([], self.verifier.asked)

    def test_ourDomain(self):
        """
        A peer asserting one of our domains is refused.
        """
        self.request(sender="sender2.tld")
        self.assertEqual([("sender.tld", "sender2.tld", "error", "not-authorized")], self.results())

    def test_certificateShortcut(self):
        """
        XEP-0344: when the peer's certificate proves the domain, no
        Authoritative Server is asked.
        """
        self.proven.add("target.tld")
        self.request()
        self.assertEqual([], self.verifier.asked)
        self.assertEqual([("sender.tld", "target.tld", "valid", None)], self.results())

    def test_secondPairAdds(self):
        """
        A second C{<db:result/>} adds a pair: the first stays bound (wokkel
        replaced the stream's one authenticated domain).
        """
        self.request()
        self.verifier.asked[0][1].callback(True)
        self.request(sender="other.tld", key="k2")
        self.verifier.asked[1][1].callback(True)
        self.assertEqual(
            {("sender.tld", "target.tld"), ("sender.tld", "other.tld")},
            set(self.tables.incoming.pairs("s1")),
        )
        self.assertEqual({"target.tld", "other.tld"}, set(self.tables.connections.get("s1").delegatedNames))

    def test_coalesced(self):
        """
        A request repeated while the first is checked asks once.
        """
        self.request()
        self.request()
        self.assertEqual(1, len(self.verifier.asked))

    def test_noKey(self):
        """
        A request without a key is a dialback error.
        """
        self.request(key=None)
        self.assertEqual([("sender.tld", "target.tld", "error", "bad-request")], self.results())

    def test_streamEndCleans(self):
        """
        When the stream ends, its bindings go; a late verdict is dropped.
        """
        self.request()
        close(self.xs)
        self.verifier.asked[0][1].callback(True)
        self.assertEqual(0, len(self.tables.incoming))
        self.assertNotIn("s1", self.tables.connections)



class LegacyReceivingPKIXTests(LegacyAuthorizationMixin, SynchronousTestCase):
    """
    Under C{dna+pkix} the peer's certificate is the only proof.
    """

    level = FALLBACK_PKIX

    def test_noDialback(self):
        """
        A domain the certificate does not prove is refused without asking.
        """
        receive(self.xs, dialbackElement("result", "target.tld", "sender.tld", key="k1"))
        self.assertEqual([("sender.tld", "target.tld", "error", "not-authorized")], self.results())

    def test_certificate(self):
        """
        One it proves is accepted.
        """
        self.proven.add("target.tld")
        receive(self.xs, dialbackElement("result", "target.tld", "sender.tld", key="k1"))
        self.assertEqual([("sender.tld", "target.tld", "valid", None)], self.results())



class LegacyOriginatingTests(LegacyAuthorizationMixin, SynchronousTestCase):
    """
    L{LegacyAuthorization} on a stream we opened to target.tld.
    """

    initiating = True

    def test_authenticated(self):
        """
        The header's pair, once authenticated, is bound for sending only.
        """
        self.authorization.authenticated("sender.tld", "target.tld", "dialback")
        self.assertEqual("s1", self.tables.route("sender.tld", "target.tld"))
        self.assertEqual(0, len(self.tables.incoming))

    def test_authenticatedBidi(self):
        """
        On a bidirectional stream whose peer proved its domain, the pair is
        bound both ways; without the proof, only for sending.
        """
        self.authorization.bidi = True
        self.authorization.authenticated("sender.tld", "target.tld", "EXTERNAL")
        self.assertEqual(0, len(self.tables.incoming))
        self.proven.add("target.tld")
        self.authorization.authenticated("sender2.tld", "target.tld", "EXTERNAL")
        self.assertEqual([("sender2.tld", "target.tld")], list(self.tables.incoming.pairs("s1")))

    def test_piggyback(self):
        """
        Another sender is asked for with a keyed C{<db:result/>} for this
        stream; C{type='valid'} binds it.
        """
        d = self.authorization.request("sender2.tld", "target.tld")
        [result] = sent(self.xs, "result")
        self.assertEqual(
            ("sender2.tld", "target.tld", generateKey(SECRET, "target.tld", "sender2.tld", "s1")),
            (result["from"], result["to"], str(result)),
        )
        receive(self.xs, dialbackElement("result", "target.tld", "sender2.tld", elementType="valid"))
        self.successResultOf(d)
        self.assertEqual("s1", self.tables.route("sender2.tld", "target.tld"))

    def test_piggybackError(self):
        """
        A dialback error refuses the pair with its condition.
        """
        d = self.authorization.request("sender2.tld", "target.tld")
        receive(
            self.xs,
            dialbackElement(
                "result", "target.tld", "sender2.tld", elementType="error",
                stanzaError=error.StanzaError("not-authorized", type="auth"),
            ),
        )
        self.assertEqual("not-authorized", self.failureResultOf(d, AuthorizationRefused).value.condition)

    def test_piggybackTimeout(self):
        """
        A peer that never answers (Prosody with C{s2s_secure_auth}) times
        out.
        """
        d = self.authorization.request("sender2.tld", "target.tld")
        self.clock.advance(60)
        self.failureResultOf(d, RequestTimedOut)

    def test_onlyThePeersDomain(self):
        """
        A legacy stream carries no pair to another target.
        """
        self.failureResultOf(self.authorization.request("sender.tld", "other.tld"))
        self.assertEqual([], sent(self.xs, "result"))



class VerifierTests(SynchronousTestCase):
    """
    L{Verifier}: the Receiving Server asks Authoritative Servers.
    """

    def setUp(self):
        self.clock = Clock()
        self.opened = []
        self.verifier = Verifier(self.open, clock=self.clock, timeout=10)

    def open(self, local, remote):
        d = defer.Deferred()
        self.opened.append(((local, remote), d))
        return d

    def connect(self, index=0):
        xs = makeStream("v%d" % index, us="sender.tld", peer="target.tld")
        self.opened[index][1].callback(xs)
        return xs

    def answer(self, xs, streamID, answerType="valid"):
        receive(xs, dialbackElement("verify", "target.tld", "sender.tld", elementType=answerType, streamID=streamID))

    def test_sharedStream(self):
        """
        Requests between the same domains share one stream (not a TCP
        connection per key, as wokkel opens); each is answered by its id.
        """
        first = self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        second = self.verifier.verify("sender.tld", "target.tld", "s2", "k2")
        self.assertEqual([("sender.tld", "target.tld")], [pair for pair, d in self.opened])
        xs = self.connect()
        self.assertEqual(
            [("sender.tld", "target.tld", "s1", "k1"), ("sender.tld", "target.tld", "s2", "k2")],
            [(e["from"], e["to"], e["id"], str(e)) for e in sent(xs, "verify")],
        )
        self.answer(xs, "s2", "invalid")
        self.assertFalse(self.successResultOf(second))
        self.assertNoResult(first)
        self.answer(xs, "s1")
        self.assertTrue(self.successResultOf(first))
        third = self.verifier.verify("sender.tld", "target.tld", "s3", "k3")
        self.assertEqual(1, len(self.opened))
        self.answer(xs, "s3")
        self.assertTrue(self.successResultOf(third))

    def test_timeout(self):
        """
        An unanswered request fails after the timeout.
        """
        d = self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        self.connect()
        self.clock.advance(10)
        self.failureResultOf(d, VerificationFailed)

    def test_connectFails(self):
        """
        When the stream cannot be opened, requests fail and the next one
        tries again.
        """
        d = self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        self.opened[0][1].errback(ierror.ConnectionRefusedError())
        self.failureResultOf(d, VerificationFailed)
        self.verifier.verify("sender.tld", "target.tld", "s2", "k2")
        self.assertEqual(2, len(self.opened))

    def test_streamEnds(self):
        """
        A stream that ends fails its pending requests; the next request
        opens a new one.
        """
        d = self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        close(self.connect())
        self.failureResultOf(d, ConnectionLost)
        self.verifier.verify("sender.tld", "target.tld", "s2", "k2")
        self.assertEqual(2, len(self.opened))

    def test_conflictingKey(self):
        """
        Another key for a stream id being verified is refused.
        """
        self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        self.failureResultOf(self.verifier.verify("sender.tld", "target.tld", "s1", "k9"), VerificationFailed)

    def test_dialbackError(self):
        """
        A dialback error answer fails the request.
        """
        d = self.verifier.verify("sender.tld", "target.tld", "s1", "k1")
        xs = self.connect()
        receive(
            xs,
            dialbackElement(
                "verify", "target.tld", "sender.tld", elementType="error", streamID="s1",
                stanzaError=error.StanzaError("item-not-found", type="cancel"),
            ),
        )
        self.failureResultOf(d, VerificationFailed)



class CheckExternalAuthTests(SynchronousTestCase):
    """
    L{checkExternalAuth}: the authorization identity of XEP-0178.
    """

    def auth(self, text, mechanism="EXTERNAL"):
        element = domish.Element((NS_SASL, "auth"))
        element["mechanism"] = mechanism
        if text:
            element.addContent(text)
        return checkExternalAuth(element, "target.tld")

    def test_accepted(self):
        """
        An empty identity, C{=}, or the stream's 'from' are accepted.
        """
        for text in ["", "=", base64.b64encode(b"target.tld").decode(), base64.b64encode(b"Target.TLD").decode()]:
            self.assertIsNone(self.auth(text), text)

    def test_refused(self):
        """
        Another identity, bad base64 and other mechanisms are refused.
        """
        self.assertEqual("invalid-authzid", self.auth(base64.b64encode(b"other.tld").decode()))
        self.assertEqual("incorrect-encoding", self.auth("!!!"))
        self.assertEqual("invalid-mechanism", self.auth("=", mechanism="PLAIN"))



class TLSStringTransport(StringTransport):
    """
    A StringTransport that records C{startTLS}.
    """

    tlsStarted = None

    def startTLS(self, contextFactory):
        self.tlsStarted = contextFactory



class FakeContexts:
    def forDomain(self, domain):
        return ("context for", domain)


HEADER = (
    "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' from='{sender}' version='1.0'>"
)



class LegacyListenMixin:
    """
    L{DNAListenAuthenticator} with a L{LegacyListener}, in memory; the
    peer's certificate proves the domains in C{self.certified}.
    """

    level = FALLBACK_DIALBACK

    def setUp(self):
        self.certified = set()
        self.patch(legacyserver, "peerVerified", lambda transport, name: name in self.certified)
        self.keys = DialbackKeys(SECRET)
        self.verifier = FakeVerifier()
        self.tables = Tables()
        self.joined = []
        self.listener = LegacyListener(
            frozenset(["sender.tld"]), frozenset(["xmpp1.sender.tld"]), FallbackPolicy(self.level),
            AuthoritativeResponder(self.keys, frozenset(["sender.tld"])), FakeContexts(), self.join,
        )
        self.dna = []
        authenticator = DNAListenAuthenticator(
            frozenset(["xmpp1.sender.tld"]), object(), lambda *a: self.dna.append(a), legacy=self.listener
        )
        self.xs = RecordingXmlStream(authenticator)
        self.transport = TLSStringTransport()
        self.xs.makeConnection(self.transport)
        self.delivered = []
        self.xs.addObserver("/message", lambda e: e.handled or self.delivered.append(e), -1)

    def join(self, xs, local, remote, mechanism):
        policy = FallbackPolicy(self.level)
        authorization = LegacyAuthorization(
            xs, self.tables, frozenset(["sender.tld"]), FakeDelegationChecker(), False,
            bidi=xs.bidi, keys=self.keys, verifier=self.verifier if policy.dialback else None,
            policy=policy, peerProves=self.certified.__contains__, domain=remote,
            mechanism=mechanism, clock=Clock(),
        )
        if mechanism is not None:
            authorization.authenticated(local, remote, mechanism)
        self.joined.append((xs.sid, local, remote, mechanism))
        return authorization

    def header(self, to="sender.tld", sender="target.tld"):
        self.xs.dataReceived(HEADER.format(to=to, sender=sender).encode("utf-8"))

    def features(self):
        [features] = [e for e in self.xs.output if getattr(e, "name", None) == "features"]
        return {(c.uri, c.name) for c in features.elements()}

    def startTLS(self):
        """
        Start the stream, then TLS, then the stream again.

        @return: The features offered after TLS.
        """
        self.header()
        self.assertEqual({(NS_TLS, "starttls")}, self.features())
        self.xs.output[:] = []
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(("context for", "sender.tld"), self.transport.tlsStarted)
        self.xs.output[:] = []
        self.header()
        return self.features()



class LegacyListenTests(LegacyListenMixin, SynchronousTestCase):
    """
    Streams to a hosted domain, under C{dna+pkix+dialback}.
    """

    def test_startTLSFirst(self):
        """
        A stream to a hosted domain gets only a required C{<starttls/>},
        and TLS starts with the context for that domain (SNI may be
        missing).
        """
        self.startTLS()

    def test_unknownDomain(self):
        """
        A stream to a domain we neither host nor serve as a server name is
        refused with host-unknown.
        """
        self.header(to="other.tld")
        self.assertEqual(["host-unknown"], [e.condition for e in self.xs.streamErrors])

    def test_featuresWithCertificate(self):
        """
        After TLS, a peer whose certificate proves its domain is offered
        SASL EXTERNAL and dialback, with C{<dna/>} (no downgrade) and bidi.
        """
        self.certified.add("target.tld")
        self.assertEqual(
            {(NS_DNA, "dna"), (NS_BIDI_FEATURE, "bidi"), (NS_SASL, "mechanisms"), (NS_DIALBACK_FEATURE, "dialback")},
            self.startTLS(),
        )

    def test_featuresWithoutCertificate(self):
        """
        A peer whose certificate does not prove its domain is offered
        dialback alone.
        """
        self.assertEqual(
            {(NS_DNA, "dna"), (NS_BIDI_FEATURE, "bidi"), (NS_DIALBACK_FEATURE, "dialback")}, self.startTLS()
        )

    def test_external(self):
        """
        SASL EXTERNAL succeeds, the stream restarts with a new id, and the
        pair is bound for receiving; the peer's stanzas pass.
        """
        self.certified.add("target.tld")
        self.startTLS()
        firstID = self.xs.sid
        self.xs.dataReceived(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>dGFyZ2V0LnRsZA==</auth>"
        )
        self.assertEqual(1, len(sent(self.xs, "success", NS_SASL)))
        self.assertEqual([], self.joined)
        self.header()
        self.assertNotEqual(firstID, self.xs.sid)
        self.assertEqual([(self.xs.sid, "sender.tld", "target.tld", "EXTERNAL")], self.joined)
        self.assertTrue(self.tables.incoming.accepts(self.xs.sid, "sender.tld", "target.tld"))
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld"))
        self.assertEqual(1, len(self.delivered))

    def test_externalRefusedThenDialback(self):
        """
        An EXTERNAL request for another identity fails; dialback then
        authenticates the stream, checked with the Authoritative Server.
        """
        self.certified.add("target.tld")
        self.startTLS()
        self.xs.dataReceived(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>b3RoZXIudGxk</auth>"
        )
        [failure] = sent(self.xs, "failure", NS_SASL)
        self.assertEqual(["invalid-authzid"], [c.name for c in failure.elements()])
        self.certified.clear()
        receive(self.xs, dialbackElement("result", "target.tld", "sender.tld", key="k1"))
        self.assertEqual([(self.xs.sid, "sender.tld", "target.tld", None)], self.joined)
        [(question, d)] = self.verifier.asked
        self.assertEqual(("sender.tld", "target.tld", self.xs.sid, "k1"), question)
        d.callback(True)
        [result] = sent(self.xs, "result")
        self.assertEqual("valid", result["type"])
        self.assertTrue(self.tables.incoming.accepts(self.xs.sid, "sender.tld", "target.tld"))

    def test_verifyAnswered(self):
        """
        The peer's C{<db:verify/>} about our keys is answered on the legacy
        stream before any authentication (it is how Prosody checks the key
        we gave it).
        """
        self.startTLS()
        key = self.keys.key("target.tld", "sender.tld", "their-stream")
        receive(self.xs, dialbackElement("verify", "target.tld", "sender.tld", key=key, streamID="their-stream"))
        [answer] = sent(self.xs, "verify")
        self.assertEqual("valid", answer["type"])

    def test_stanzaBeforeAuthentication(self):
        """
        A stanza before any pair is authenticated closes the stream.
        """
        self.startTLS()
        receive(self.xs, stanza(sender="juliet@target.tld", to="romeo@sender.tld"))
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])
        self.assertEqual([], self.delivered)

    def test_restartKeepsAddresses(self):
        """
        A restarted stream may not change its 'from'.
        """
        self.header()
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.header(sender="other.tld")
        self.assertEqual(["improper-addressing"], [e.condition for e in self.xs.streamErrors])

    def test_serverNamesStayDNA(self):
        """
        A stream to a server name is DNA's, as before.
        """
        self.header(to="xmpp1.sender.tld", sender="xmpp1.target.tld")
        self.assertEqual(None, self.transport.tlsStarted)
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertNotEqual(("context for", "sender.tld"), self.transport.tlsStarted)



class LegacyListenPKIXTests(LegacyListenMixin, SynchronousTestCase):
    """
    Streams to a hosted domain under C{dna+pkix}: no dialback at all.
    """

    level = FALLBACK_PKIX

    def test_withoutCertificate(self):
        """
        A peer whose certificate does not prove its domain is refused.
        """
        self.header()
        self.xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.header()
        self.assertEqual(["not-authorized"], [e.condition for e in self.xs.streamErrors])

    def test_dialbackNeedsCertificate(self):
        """
        A C{<db:result/>} for a domain the certificate does not prove is
        refused without asking anyone (XEP-0344 is the only way).
        """
        self.certified.add("target.tld")
        self.startTLS()
        receive(self.xs, dialbackElement("result", "other.tld", "sender.tld", key="k1"))
        [result] = sent(self.xs, "result")
        self.assertEqual(("error", "not-authorized"), (result["type"], errorFromResult(result)[0]))
        self.assertEqual([], self.verifier.asked)



class FakeLegacyConnector:
    """
    Stands in for L{dna.legacy.originating.LegacyConnector}: the test completes each
    connection attempt.
    """

    def __init__(self, covered=()):
        self.attempts = []
        self.covered = set(covered)

    def certificateCovers(self, domain):
        return domain in self.covered

    def connect(self, sender, target):
        d = defer.Deferred()
        self.attempts.append(((sender, target), d))
        return d



class FallbackTests(SynchronousTestCase):
    """
    L{Fallback}: which legacy stream carries a pair.
    """

    def setUp(self):
        from twisted.internet.ssl import trustRootFromCertificates

        from dna.app.federation import Federation
        from dna.legacy.originating import Fallback
        from dna.testing.pki import CertificateAuthority

        self.clock = Clock()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.federation = Federation(
            ["sender.tld", "sender2.tld"], FakeDelegationChecker(), lambda stanza: None, clock=self.clock
        )
        ca = CertificateAuthority("Test CA")
        certificate = ca.issue("xmpp1.sender.tld", dnsNames=["xmpp1.sender.tld", "sender.tld"])
        self.fallback = Fallback(
            self.federation, FakeDelegationChecker(), None, FallbackPolicy(FALLBACK_DIALBACK),
            {"xmpp1.sender.tld": certificate.toPrivateCertificate()},
            trustRootFromCertificates([ca.toCertificate()]), "xmpp1.sender.tld",
            reactor=self.clock, memory=600,
        )
        self.connector = self.fallback.connector = FakeLegacyConnector(covered=["sender.tld"])

    def connect(self, index, mechanism="dialback", sid="p1"):
        """
        Complete connection attempt C{index} with a stream authenticated by
        C{mechanism} whose peer offers dialback.
        """
        (sender, target), d = self.connector.attempts[index]
        xs = makeStream(sid, us=sender, peer=target)
        xs.legacyMechanism = mechanism
        xs.features = features(feature(NS_DIALBACK_FEATURE, "dialback"))
        d.callback(xs)
        return xs

    def test_fallBackOnlyWhenLegacy(self):
        """
        A failure that does not point at a legacy peer is passed on; one
        that does opens a legacy stream, and is logged with its reason.
        """
        refused = Failure(AuthorizationRefused("sender.tld", "target.tld", "not-authorized"))
        self.assertIs(refused, self.fallback.fallBack(refused, "sender.tld", "target.tld"))
        self.assertEqual([], self.connector.attempts)
        d = self.fallback.fallBack(
            Failure(ConnectFailed("target.tld", [], [error.StreamError("host-unknown")])),
            "sender.tld", "target.tld",
        )
        self.assertEqual([("sender.tld", "target.tld")], [pair for pair, _ in self.connector.attempts])
        self.connect(0)
        authorization = self.successResultOf(d)
        self.assertEqual("p1", self.federation.tables.route("sender.tld", "target.tld"))
        self.assertEqual("target.tld", authorization.domain)
        [event] = [e for e in self.log if e.get("log_format", "").startswith("Falling back")]
        self.assertIn("host-unknown", event["why"])

    def test_boundPairReused(self):
        """
        A pair already bound on a legacy stream needs nothing new.
        """
        d = self.fallback.establish("sender.tld", "target.tld")
        self.connect(0)
        first = self.successResultOf(d)
        self.assertIs(first, self.successResultOf(self.fallback.establish("sender.tld", "target.tld")))
        self.assertEqual(1, len(self.connector.attempts))

    def test_oneStreamAtATime(self):
        """
        Pairs for a target wait for the stream being opened, then ride on
        it piggy-backed: one connection for both.
        """
        first = self.fallback.establish("sender.tld", "target.tld")
        second = self.fallback.establish("sender2.tld", "target.tld")
        self.assertEqual(1, len(self.connector.attempts))
        xs = self.connect(0)
        [result] = sent(xs, "result")
        self.assertEqual(("sender2.tld", "target.tld"), (result["from"], result["to"]))
        receive(xs, dialbackElement("result", "target.tld", "sender2.tld", elementType="valid"))
        self.assertIs(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(1, len(self.connector.attempts))
        self.assertEqual(
            {("sender.tld", "target.tld"), ("sender2.tld", "target.tld")},
            set(self.federation.tables.outgoing.pairs("p1")),
        )

    def test_externalStreamTakesCoveredSendersOnly(self):
        """
        On a stream SASL EXTERNAL authenticated, a sender our certificate
        does not cover gets a stream of its own.
        """
        self.fallback.establish("sender.tld", "target.tld")
        self.connect(0, mechanism="EXTERNAL")
        self.fallback.establish("sender2.tld", "target.tld")
        self.assertEqual(
            [("sender.tld", "target.tld"), ("sender2.tld", "target.tld")],
            [pair for pair, _ in self.connector.attempts],
        )

    def test_unansweredPiggybackOpensStream(self):
        """
        A piggy-backed request without answer (Prosody with
        C{s2s_secure_auth}) gives the pair its own stream.
        """
        self.fallback.establish("sender.tld", "target.tld")
        self.connect(0)
        d = self.fallback.establish("sender2.tld", "target.tld")
        self.clock.advance(60)
        self.assertEqual(2, len(self.connector.attempts))
        self.connect(1, sid="p2")
        self.assertEqual("p2", self.successResultOf(d).streamID)

    def test_refusedPiggybackIsFinal(self):
        """
        A piggy-backed pair the peer refuses is refused.
        """
        self.fallback.establish("sender.tld", "target.tld")
        xs = self.connect(0)
        d = self.fallback.establish("sender2.tld", "target.tld")
        receive(xs, dialbackElement("result", "target.tld", "sender2.tld", elementType="invalid"))
        self.failureResultOf(d, AuthorizationRefused)
        self.assertEqual(1, len(self.connector.attempts))

    def test_failedConnectionFailsWaiters(self):
        """
        When the stream cannot be opened, the pairs waiting for it fail
        too.
        """
        first = self.fallback.establish("sender.tld", "target.tld")
        second = self.fallback.establish("sender2.tld", "target.tld")
        self.connector.attempts[0][1].errback(DialbackFailed("sender.tld", "target.tld"))
        self.failureResultOf(first, DialbackFailed)
        self.failureResultOf(second, DialbackFailed)

    def test_cancelledWaiterWithdraws(self):
        """
        A pair that stops waiting for the stream being opened withdraws
        alone: the stream is still opened for the others.
        """
        first = self.fallback.establish("sender.tld", "target.tld")
        second = self.fallback.establish("sender2.tld", "target.tld")
        second.cancel()
        self.failureResultOf(second, defer.CancelledError)
        self.connect(0)
        self.assertEqual("p1", self.successResultOf(first).streamID)
        self.assertEqual(1, len(self.connector.attempts))

    def test_memory(self):
        """
        A domain reached by a legacy stream is remembered as legacy for a
        while, so that DNA is not tried first for its next pairs.
        """
        self.assertFalse(self.fallback.isKnownLegacy("target.tld"))
        self.fallback.establish("sender.tld", "target.tld")
        self.connect(0)
        self.assertTrue(self.fallback.isKnownLegacy("target.tld"))
        self.clock.advance(601)
        self.assertFalse(self.fallback.isKnownLegacy("target.tld"))

    def test_streamEndForgotten(self):
        """
        A legacy stream that ended carries nothing more.
        """
        self.fallback.establish("sender.tld", "target.tld")
        close(self.connect(0))
        self.fallback.establish("sender.tld", "target.tld")
        self.assertEqual(2, len(self.connector.attempts))



class LegacyConnectorTests(SynchronousTestCase):
    """
    L{dna.legacy.originating.LegacyConnector} before it connects.
    """

    def setUp(self):
        from twisted.internet.ssl import trustRootFromCertificates

        from dna.dns.addresses import AddressResolver
        from dna.testing.pki import CertificateAuthority

        ca = CertificateAuthority("Test CA")
        self.checker = FakeDelegationChecker({"target.tld": {"xmpp.target.tld"}})
        self.resolver = AddressResolver(hosts={"xmpp.target.tld": ("127.0.0.9", None)})
        self.certificates = {
            "xmpp1.sender.tld": ca.issue("xmpp1.sender.tld", dnsNames=["xmpp1.sender.tld"]).toPrivateCertificate()
        }
        self.trustRoot = trustRootFromCertificates([ca.toCertificate()])

    def connector(self, level):
        from dna.legacy.originating import LegacyConnector

        return LegacyConnector(
            self.checker, self.resolver, FallbackPolicy(level), DialbackKeys(SECRET),
            self.certificates, self.trustRoot, reactor=Clock(),
        )

    def test_addresses(self):
        """
        Legacy streams go to the domain's SRV targets, signed or not.
        """
        self.checker.insecure.add("target.tld")
        self.assertEqual(
            [("127.0.0.9", 5269)], self.successResultOf(self.connector(FALLBACK_PKIX).addresses("target.tld"))
        )

    def test_noAddressForBogus(self):
        """
        Bogus DNS data is not used.
        """
        self.checker.bogus.add("target.tld")
        self.failureResultOf(self.connector(FALLBACK_PKIX).addresses("target.tld"), NoLegacyRoute)

    def test_certificatesOnlyWithoutCertificate(self):
        """
        Under C{dna+pkix}, a sender no certificate of ours covers cannot be
        authenticated: nothing is tried.
        """
        failure = self.failureResultOf(
            self.connector(FALLBACK_PKIX).connect("sender.tld", "target.tld"), NoDialback
        )
        self.assertIn("sender.tld", failure.value.reason)
        self.assertEqual([], self.checker.checked)
