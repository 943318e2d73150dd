"""
The Prometheus metrics of a real C{twistd dna} (provider A, with components
for sender.example and b.example) federating with provider B
(target.example, receiving.example) over real DNS and mutual TLS, scraped
over HTTP with L{twisted.web.client.Agent} and parsed with
C{prometheus_client}'s parser.
"""

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from tests.integration import test_twistd
from tests.integration.dnsenv import HOSTS
from tests.integration.processes import freePort, waitForPort
from tests.integration.providers import ProvidersMixin, message
from tests.integration.test_twistd import RECEIVING


class MetricsTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A is C{twistd dna} with C{[metrics] listen}; provider B runs in
    the test and sends to A.
    """

    timeout = 120

    setUpTwistd = test_twistd.TwistdTests.setUp
    startTwistd = test_twistd.TwistdTests.startTwistd
    connectComponent = test_twistd.TwistdTests.connectComponent

    def setUp(self):
        self.setUpTwistd()
        self.metricsPort = freePort()
        self.config.setContent(
            self.config.getContent()
            + ('\n[metrics]\nlisten = "tcp:%d:interface=127.0.0.1"\n'
               % (self.metricsPort,)).encode("utf-8"))

    @defer.inlineCallbacks
    def scrape(self):
        """
        @return: A L{Deferred} firing with C{{(name, frozenset(labels)):
            value}} of every sample A serves.
        """
        agent = Agent(reactor)
        response = yield agent.request(
            b"GET", b"http://127.0.0.1:%d/metrics" % (self.metricsPort,))
        self.assertEqual(200, response.code)
        body = yield readBody(response)
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples
        }

    @defer.inlineCallbacks
    def test_figuresMoveWithTraffic(self):
        """
        Before any traffic every figure is zero; once B has sent three
        stanzas for two pairs, A counts one incoming DNA connection, two
        incoming bindings, two grants, three stanzas delivered and the
        delegation checks it made.
        """
        process = self.startTwistd()
        yield task.deferLater(reactor, 0, waitForPort, self.metricsPort, process)
        before = yield self.scrape()
        self.assertEqual(
            (0, 0, 0),
            (before[("dna_connections", frozenset({("direction", "incoming"),
                                                   ("kind", "dna")}))],
             before[("dna_bindings", frozenset({("direction", "incoming")}))],
             before[("dna_stanzas_delivered_total", frozenset())]))

        client = DNSClient([self.env.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        b, _, _ = yield self.startProvider(
            ["target.example", "receiving.example"],
            {RECEIVING: self.ca.issue(RECEIVING, dnsNames=[RECEIVING])},
            checker, client=client, interface=HOSTS[RECEIVING], port=5269,
        )
        _, inboxSender = yield self.connectComponent("sender.example")
        _, inboxOther = yield self.connectComponent("b.example")
        b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="m1"))
        b.send(message("nurse@receiving.example", "friar@b.example", stanzaID="m2"))
        b.send(message("juliet@target.example", "romeo@sender.example", stanzaID="m3"))
        yield inboxSender.waitFor(2, timeout=20)
        yield inboxOther.waitFor(1, timeout=20)

        figures = {}

        @defer.inlineCallbacks
        def delivered():
            figures.update((yield self.scrape()))
            return figures[("dna_stanzas_delivered_total", frozenset())] == 3

        # The component's inbox may see a stanza before A's counters do.
        for _ in range(100):
            if (yield delivered()):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)

        def sample(name, **labels):
            return figures[(name, frozenset(labels.items()))]

        self.assertEqual(3, sample("dna_stanzas_delivered_total"))
        self.assertEqual(3, sample("dna_stanzas_received_total"))
        self.assertEqual(1, sample("dna_connections", direction="incoming", kind="dna"))
        self.assertEqual(2, sample("dna_bindings", direction="incoming"))
        self.assertEqual(2, sample("dna_db_results_total", role="receiving",
                                   condition="valid"))
        self.assertGreaterEqual(sample("dna_delegation_checks_total", status="secure"), 2)
        self.assertGreaterEqual(sample("dna_delegation_lookup_seconds_count"), 1)
        self.assertGreaterEqual(sample("dna_dns_queries_total"), 1)
        self.assertEqual(0, sample("dna_stanzas_refused_total", reason="not-authorized"))

        # A stanza B sends for a pair A never granted is refused and counted.
        [authorization] = list(b.federation.streams.values())
        b.federation._transmit(
            authorization, message("juliet@target.example", "eve@b.example",
                                   stanzaID="forged"), "target.example", "b.example")

        @defer.inlineCallbacks
        def refused():
            figures.update((yield self.scrape()))
            return sample("dna_stanzas_refused_total", reason="not-authorized") == 1

        for _ in range(100):
            if (yield refused()):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(1, sample("dna_stanzas_refused_total", reason="not-authorized"))
        self.assertEqual(4, sample("dna_stanzas_received_total"))

