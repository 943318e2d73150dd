"""
Tests for L{dna.app.metrics}: the collector over a L{DNAService} with
in-memory streams, its HTTP resource, the checker's statistics, C{[metrics]}
and the decisions' log events.
"""

import collections

from OpenSSL import SSL
from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from dna.app import config, tap
from dna.app.metrics import metricsResource, serviceRegistry
from dna.app.service import DNAService
from dna.channel.receiving import REFUSED_TLS_REASONS, DNAListenAuthenticator
from dna.channel.stream import S2SStream
from dna.core.authorization import resultElement
from dna.dns.addresses import AddressResolver
from dna.dns.delegation import DelegationChecker
from dna.dns.verdict import INSECURE, SECURE, DelegationResult
from dna.error import ConfigurationError, DANEMismatch, DANEUnavailable
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.hostile import streamHeader
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import close, makeStream, receive, stanza
from tests.unit.test_config import MINIMAL, ConfigurationFiles
from tests.unit.test_hostile_streams import TLSStringTransport

US = "xmpp1.receiving.tld"
PEER = "xmpp1.originating.tld"
_CA = CertificateAuthority("Metrics Test CA")
_OURS = _CA.issue(US, dnsNames=[US])
_THEIRS = _CA.issue(PEER, dnsNames=[PEER])
_OTHER = _CA.issue("xmpp1.elsewhere.tld", dnsNames=["xmpp1.elsewhere.tld"])


def samples(registry):
    """
    The samples of C{registry} as its scraper sees them, parsed by
    C{prometheus_client}'s parser.

    @return: C{{(name, frozenset(labels.items())): value}}.
    """
    text = generate_latest(registry).decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(figures, name, **labels):
    return figures[(name, frozenset(labels.items()))]


class _Server:
    """
    A L{DNAService} hosting target.tld, with incoming streams from L{PEER}.
    """

    def __init__(self, checker=None):
        self.reactor = MemoryReactorClock()
        self.checker = checker or FakeDelegationChecker({"sender.tld": [PEER]})
        self.delivered = []
        self.service = DNAService(
            ["target.tld"], {US: _OURS.toPrivateCertificate()},
            trustRootFromCertificates([_CA.toCertificate()]), self.checker,
            AddressResolver(hosts={}), deliver=self.delivered.append,
            reactor=self.reactor)
        self.registry = serviceRegistry(self.service)

    def incoming(self, sid="s1"):
        xs = makeStream(sid=sid, us=US, peer=PEER)
        self.service._streamConnected(xs)
        self.service.federation.streamAuthenticated(
            xs, initiating=False, serverNames=[PEER])
        return xs


class CollectorTests(SynchronousTestCase):
    """
    L{ServiceCollector} reads the service's tables and counters when
    scraped.
    """

    def setUp(self):
        self.server = _Server()

    def test_idle(self):
        """
        A service without streams has every family, at zero.
        """
        figures = samples(self.server.registry)
        self.assertEqual(0, value(figures, "dna_connections", direction="incoming", kind="dna"))
        self.assertEqual(0, value(figures, "dna_bindings", direction="outgoing"))
        self.assertEqual(0, value(figures, "dna_stanzas_received_total"))
        self.assertEqual(0, value(figures, "dna_stanzas_refused_total", reason="limit"))
        self.assertEqual(0, value(figures, "dna_revocations_total", side="peer"))
        self.assertEqual(0, value(figures, "dna_fallbacks_total", reason="no-dna"))

    def test_traffic(self):
        """
        Connections, bindings, C{<db:result/>} answers and stanzas
        delivered and refused by reason are counted as they happen.
        """
        xs = self.server.incoming()
        receive(xs, resultElement("sender.tld", "target.tld"))
        receive(xs, resultElement("stranger.tld", "target.tld"))
        receive(xs, resultElement("sender.tld", "elsewhere.tld"))
        for _ in range(3):
            receive(xs, stanza())
        receive(xs, stanza(sender="eve@other.tld"))
        receive(xs, stanza(sender="@@@"))
        figures = samples(self.server.registry)
        self.assertEqual(1, value(figures, "dna_connections", direction="incoming", kind="dna"))
        self.assertEqual(1, value(figures, "dna_bindings", direction="incoming"))
        self.assertEqual(1, value(figures, "dna_db_results_total",
                                  role="receiving", condition="valid"))
        self.assertEqual(1, value(figures, "dna_db_results_total",
                                  role="receiving", condition="not-authorized"))
        self.assertEqual(1, value(figures, "dna_db_results_total",
                                  role="receiving", condition="item-not-found"))
        self.assertEqual(3, value(figures, "dna_stanzas_delivered_total"))
        self.assertEqual(5, value(figures, "dna_stanzas_received_total"))
        self.assertEqual(1, value(figures, "dna_stanzas_refused_total",
                                  reason="not-authorized"))
        self.assertEqual(1, value(figures, "dna_stanzas_refused_total", reason="malformed"))

    def test_streamEnded(self):
        """
        What a stream delivered is still counted once it has ended; its
        connection and bindings are not.
        """
        xs = self.server.incoming()
        receive(xs, resultElement("sender.tld", "target.tld"))
        receive(xs, stanza())
        close(xs)
        figures = samples(self.server.registry)
        self.assertEqual(1, value(figures, "dna_stanzas_delivered_total"))
        self.assertEqual(0, value(figures, "dna_connections", direction="incoming", kind="dna"))
        self.assertEqual(0, value(figures, "dna_bindings", direction="incoming"))

    def test_revocation(self):
        """
        A pair revoked here is counted on the local side.
        """
        xs = self.server.incoming()
        receive(xs, resultElement("sender.tld", "target.tld"))
        xs.output.clear()
        self.server.service.federation.streams["s1"].revoke("target.tld", "sender.tld")
        figures = samples(self.server.registry)
        self.assertEqual(1, value(figures, "dna_revocations_total", side="local"))
        self.assertEqual(0, value(figures, "dna_bindings", direction="incoming"))

    def test_bounced(self):
        """
        Outgoing stanzas bounced to their senders are counted by condition;
        undeliverable errors are dropped, not bounced.
        """
        federation = self.server.service.federation
        federation.send(stanza(sender="juliet@target.tld", to="@@@"))
        federation.send(stanza(sender="juliet@target.tld", to="@@@", stanzaType="error"))
        figures = samples(self.server.registry)
        self.assertEqual(1, value(figures, "dna_stanzas_bounced_total", condition="jid-malformed"))
        self.assertEqual(1, len(self.server.delivered))

    def test_limitRefusals(self):
        """
        The limits' refusals counted in L{Federation.counters} are
        reported by limit; a stanza over the size limit is a stanza refused
        for a limit.
        """
        counters = self.server.service.federation.counters
        counters["queue-limit"] += 2
        counters["stream-refused-policy-violation"] += 1
        figures = samples(self.server.registry)
        self.assertEqual(2, value(figures, "dna_limit_refusals_total", limit="queue-limit"))
        self.assertEqual(1, value(figures, "dna_stanzas_refused_total", reason="limit"))

    def test_tlsFailures(self):
        """
        TLS failures of outgoing connections are reported by reason, as
        L{tlsFailure} classifies them.
        """
        from OpenSSL import SSL
        from twisted.python.failure import Failure

        from dna.app.service import tlsFailure
        from dna.error import CertificateNameMismatch

        reasons = [
            tlsFailure(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))),
            tlsFailure(Failure(CertificateNameMismatch("a.example", ()))),
            tlsFailure(Failure(SSL.Error([("SSL routines", "", "wrong version number")]))),
            tlsFailure(Failure(ValueError("not TLS"))),
        ]
        self.assertEqual(["certificate", "name-mismatch", "handshake", None], reasons)
        counters = self.server.service.federation.counters
        for reason in reasons[:3]:
            counters["tls-failed-" + reason] += 1
        figures = samples(self.server.registry)
        self.assertEqual(1, value(figures, "dna_tls_failures_total", reason="name-mismatch"))

    def test_daneFailures(self):
        """
        Outgoing connections DANE refused, on DNA streams and legacy ones
        alike, are classified by L{tlsFailure} and exported with their own
        reasons.
        """
        from twisted.python.failure import Failure

        from dna.app.service import tlsFailure
        from dna.error import DANEMismatch, DANEUnavailable

        reasons = [
            tlsFailure(Failure(DANEMismatch("xmpp.b.example", "no record matched"))),
            tlsFailure(Failure(DANEUnavailable("xmpp.b.example", "SERVFAIL"))),
        ]
        self.assertEqual(["dane-mismatch", "dane-unavailable"], reasons)
        counters = self.server.service.federation.counters
        counters["tls-failed-dane-mismatch"] += 2
        counters["tls-failed-dane-unavailable"] += 1
        figures = samples(self.server.registry)
        self.assertEqual(2, value(figures, "dna_tls_failures_total", reason="dane-mismatch"))
        self.assertEqual(1, value(figures, "dna_tls_failures_total", reason="dane-unavailable"))

    def test_separateRegistries(self):
        """
        Two services in one process have registries of their own.
        """
        other = _Server()
        self.server.incoming()
        self.assertEqual(0, value(samples(other.registry), "dna_connections",
                                  direction="incoming", kind="dna"))

    def test_resource(self):
        """
        C{/metrics} serves the registry in Prometheus' text format.
        """
        root = metricsResource(self.server.registry)
        request = DummyRequest([b""])
        body = root.getChildWithDefault(b"metrics", request).render_GET(request)
        self.assertIn(b"dna_connections", body)
        self.assertIn(b"text/plain",
                      request.responseHeaders.getRawHeaders(b"content-type")[0])


class _Lookup:
    def __init__(self):
        self.waiting = []

    def lookup(self, name):
        d = Deferred()
        self.waiting.append(d)
        return d


class CheckStatisticsTests(SynchronousTestCase):
    """
    L{DelegationChecker.statistics}: checks by status, cache hits and
    lookup latency, as the collector reports them.
    """

    def test_checks(self):
        clock = Clock()
        lookup = _Lookup()
        checker = DelegationChecker(lookup, clock)
        server = _Server(checker)
        checker.check("sender.tld")
        clock.advance(0.3)
        lookup.waiting.pop().callback(
            DelegationResult("sender.tld", (), SECURE, ttl=60))
        checker.check("sender.tld")
        checker.check("other.tld")
        lookup.waiting.pop().callback(
            DelegationResult("other.tld", (), INSECURE, ttl=60))
        figures = samples(server.registry)
        self.assertEqual(2, value(figures, "dna_delegation_checks_total", status="secure"))
        self.assertEqual(1, value(figures, "dna_delegation_checks_total", status="insecure"))
        self.assertEqual(1, value(figures, "dna_delegation_cache_hits_total"))
        self.assertEqual(2, value(figures, "dna_delegation_lookup_seconds_count"))
        self.assertEqual(1, value(figures, "dna_delegation_lookup_seconds_bucket", le="0.1"))
        self.assertEqual(2, value(figures, "dna_delegation_lookup_seconds_bucket", le="0.5"))
        self.assertAlmostEqual(0.3, value(figures, "dna_delegation_lookup_seconds_sum"))


class MetricsConfigurationTests(SynchronousTestCase):
    """
    C{[metrics] listen}: off by default, loopback only.
    """

    def test_loopback(self):
        listen = "tcp:9469:interface=127.0.0.1"
        self.assertEqual(listen, config.checkMetricsListen(listen))
        self.assertEqual("tcp6:9469:interface=\\:\\:1",
                         config.checkMetricsListen("tcp6:9469:interface=\\:\\:1"))

    def test_offLoopback(self):
        for listen in ("tcp:9469", "tcp:9469:interface=192.0.2.1", "unix:/tmp/m.sock"):
            self.assertRaises(ValueError, config.checkMetricsListen, listen)


class MetricsServiceTests(SynchronousTestCase):
    """
    C{[metrics]} in a configuration file, and the listener
    L{dna.app.tap.makeService} adds for it.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)

    def test_offByDefault(self):
        """
        Without C{[metrics]}, no metrics are served.
        """
        options = tap.Options()
        options.parseOptions(["--config", self.files.write("dna.toml", MINIMAL)])
        self.assertIsNone(options["configuration"].metricsListen)
        root = tap.makeService(options)
        self.assertFalse(hasattr(root, "metrics"))

    def test_listener(self):
        """
        With C{[metrics] listen}, the root serves the service's own
        registry there.
        """
        from twisted.application.internet import StreamServerEndpointService

        path = self.files.write(
            "dna.toml", MINIMAL + '\n[metrics]\nlisten = "tcp:9469:interface=127.0.0.1"\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        root = tap.makeService(options)
        [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
        self.assertEqual((9469, "127.0.0.1"),
                         (listener.endpoint._port, listener.endpoint._interface))
        self.assertIsNot(REGISTRY, root.metrics)
        self.assertIn(b"dna_connections", generate_latest(root.metrics))

    def test_refusedOffLoopback(self):
        """
        A metrics listener off loopback is refused with the key at fault.
        """
        path = self.files.write("dna.toml", MINIMAL + '\n[metrics]\nlisten = "tcp:9469"\n')
        error = self.assertRaises(ConfigurationError, config.loadConfiguration, path)
        self.assertIn("[metrics] listen", str(error))
        self.assertIn("loopback", str(error))


class DecisionLogTests(SynchronousTestCase):
    """
    Every decision is one log event with stable fields.
    """

    def setUp(self):
        self.server = _Server()
        self.events = EventLoggingObserver.createWithCleanup(self, _globalPublisher())

    def _event(self, name):
        found = [e for e in self.events if e.get("event") == name]
        self.assertEqual(1, len(found), [e.get("event") for e in self.events])
        return found[0]

    def test_pairDecisions(self):
        """
        Grants and refusals of pairs, refused stanzas and revocations carry
        C{event}, C{streamID}, C{local}, C{remote}, C{condition} and
        C{reason} as they apply; a grant, routine, is at debug level.
        """
        from twisted.logger import LogLevel

        xs = self.server.incoming()
        receive(xs, resultElement("sender.tld", "target.tld"))
        granted = self._event("pair-granted")
        self.assertEqual(("s1", "target.tld", "sender.tld", LogLevel.debug),
                         (granted["streamID"], granted["local"], granted["remote"],
                          granted["log_level"]))
        receive(xs, resultElement("stranger.tld", "target.tld"))
        refused = self._event("pair-refused")
        self.assertEqual(("s1", "target.tld", "stranger.tld", "not-authorized"),
                         (refused["streamID"], refused["local"], refused["remote"],
                          refused["condition"]))
        self.assertIn("not securely delegated", refused["reason"])
        receive(xs, stanza(sender="eve@other.tld", body="secret words"))
        dropped = self._event("stanza-refused")
        self.assertEqual(("s1", "not-authorized"), (dropped["streamID"], dropped["condition"]))
        self.assertNotIn("secret words", repr(dropped))
        self.server.service.federation.streams["s1"].revoke("target.tld", "sender.tld")
        revoked = self._event("revoked")
        self.assertEqual(("s1", "target.tld", "sender.tld", "local"),
                         (revoked["streamID"], revoked["local"], revoked["remote"],
                          revoked["side"]))

    def test_routineNotMadeBelowLevel(self):
        """
        When the log writes nothing below info (L{setLeastLevel}, as
        C{twistd dna} sets it), a grant, routine, is counted but no event is
        made for it, nor for the delegation it rests on; a refusal is still
        logged.
        """
        from twisted.logger import LogLevel

        from dna.core import loglevel

        self.patch(loglevel, "_least", loglevel._least)
        loglevel.setLeastLevel(LogLevel.info)
        xs = self.server.incoming()
        receive(xs, resultElement("sender.tld", "target.tld"))
        self.assertEqual([], [e for e in self.events if e.get("event") == "pair-granted"])
        self.assertEqual([], [e for e in self.events if e.get("log_level") == LogLevel.debug])
        self.assertEqual(1, self.server.service.federation.counters["result-valid"])
        receive(xs, resultElement("stranger.tld", "target.tld"))
        self._event("pair-refused")

    def test_limitRefused(self):
        """
        A refusal counted and logged by L{ThrottledLog} is a
        C{limit-refused} event whose reason is the refusal's name.
        """
        from twisted.logger import Logger

        from dna.core.logthrottle import ThrottledLog

        ThrottledLog(Clock()).report("queue-limit", Logger(), "too many", streamID="s9")
        refused = self._event("limit-refused")
        self.assertEqual(("queue-limit", "s9"), (refused["reason"], refused["streamID"]))


def _globalPublisher():
    from twisted.logger import globalLogPublisher

    return globalLogPublisher


class IncomingTLSFailureTests(SynchronousTestCase):
    """
    The Receiving Server counts the TLS failures of incoming connections
    (L{DNAListenAuthenticator}) into C{dna_tls_failures_total} with
    reasons of their own, C{incoming-*}, beside the outgoing ones.
    """

    def setUp(self):
        self.server = _Server()

    def connect(self, certificate=_THEIRS):
        """
        An incoming connection to the service's factory, after STARTTLS.
        """
        xs = self.server.service.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        xs.makeConnection(TLSStringTransport(certificate.toCertificate().original))
        header = streamHeader(US, PEER)
        xs.dataReceived(header)
        xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertIsNotNone(xs.transport.tlsStarted)
        return xs

    def failures(self):
        figures = samples(self.server.registry)
        return {dict(labels)["reason"]: count
                for (name, labels), count in figures.items()
                if name == "dna_tls_failures_total"}

    def test_handshake(self):
        """
        A connection lost to an OpenSSL error before it authenticated
        counts as C{incoming-certificate} when the client certificate did
        not verify, C{incoming-handshake} for any other TLS error; the
        outgoing reasons stay at zero.
        """
        self.connect().connectionLost(Failure(SSL.Error(
            [("SSL routines", "tls_process_client_certificate", "certificate verify failed")])))
        self.connect().connectionLost(Failure(SSL.Error(
            [("SSL routines", "", "wrong version number")])))
        self.connect().connectionLost(Failure(ConnectionDone()))
        failures = self.failures()
        self.assertEqual(
            (1, 1, 0, 0, 0),
            (failures["incoming-certificate"], failures["incoming-handshake"],
             failures["incoming-name-mismatch"], failures["certificate"],
             failures["handshake"]))

    def test_nameMismatch(self):
        """
        A client certificate that does not cover the stream's 'from' is
        refused with C{<invalid-from/>} and counted as
        C{incoming-name-mismatch}; the connection then lost is not counted
        again.
        """
        xs = self.connect(certificate=_OTHER)
        xs.dataReceived(streamHeader(US, PEER))
        self.assertIn(b"invalid-from", xs.transport.value())
        xs.connectionLost(Failure(ConnectionDone()))
        failures = self.failures()
        self.assertEqual((1, 0), (failures["incoming-name-mismatch"],
                                  failures["incoming-handshake"]))

    def test_authenticated(self):
        """
        A connection that authenticated counts nothing, even if TLS fails
        on it later.
        """
        xs = self.connect()
        xs.dataReceived(streamHeader(US, PEER))
        self.assertIn(b"urn:xmpp:dna", xs.transport.value())
        xs.connectionLost(Failure(SSL.Error([("SSL routines", "", "bad record mac")])))
        self.assertEqual({0}, set(self.failures().values()))

    def test_dane(self):
        """
        DANE refusing the client certificate counts as
        C{incoming-dane-mismatch} or C{incoming-dane-unavailable}.
        """
        counters = collections.Counter()
        for refusal in [DANEMismatch(PEER, "no TLSA record matches"),
                        DANEUnavailable(PEER, "bogus TLSA records")]:
            authenticator = DNAListenAuthenticator(
                frozenset([US]), object(), lambda *a: None,
                dane=_RefusingDANE(refusal), counters=counters)
            xs = S2SStream(authenticator)
            xs.makeConnection(TLSStringTransport(_THEIRS.toCertificate().original))
            xs.dataReceived(streamHeader(US, PEER))
            xs.dataReceived(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            xs.dataReceived(streamHeader(US, PEER))
            self.assertIn(b"invalid-from", xs.transport.value())
        self.assertEqual({"tls-refused-dane-mismatch": 1, "tls-refused-dane-unavailable": 1},
                         dict(counters))
        self.assertEqual(set(REFUSED_TLS_REASONS),
                         {"certificate", "handshake", "name-mismatch", "dane-mismatch",
                          "dane-unavailable"})


class _RefusingDANE:
    """
    A DANE verifier that refuses every certificate with C{refusal}.
    """

    def __init__(self, refusal):
        self._refusal = refusal

    def verify(self, transport, name):
        return fail(self._refusal)
