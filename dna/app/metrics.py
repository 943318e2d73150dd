"""
Prometheus metrics of a running server (C{[metrics] listen}).

Nothing here runs per stanza: L{ServiceCollector} reads, at scrape time,
the tables and the counters the service keeps anyway (L{Federation.counters},
the streams' own counts, the checker's L{CheckStatistics}, the DNS
client's and the connectors' counters). Each service has its own
L{CollectorRegistry}, so that two services, or the tests, in one process do
not mix their figures; it is served by C{prometheus_client}'s Twisted
resource (L{MetricsResource}) at C{/metrics}.

Names follow Prometheus' conventions: a C{dna_} prefix, C{_total} for
counters, base units (seconds).
"""

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource

from dna.app.control import authentication
from dna.channel.receiving import REFUSED_TLS_REASONS
from dna.channel.tls import FAILED_TLS_REASONS
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.delegation import LATENCY_BUCKETS
from dna.dns.verdict import BOGUS, INDETERMINATE, INSECURE, SECURE

#: The kinds of connection: DNA, or legacy by how it authenticated.
KINDS = ("dna", "legacy-external", "legacy-dialback")

#: Why incoming stanzas are refused (the filter's reasons, and the limits).
REFUSAL_REASONS = ("not-authorized", "invalid-connection", "malformed", "limit")

#: The refusals of L{Federation.counters} that are limits at work
#: (L{dna.app.limits}): refused streams and connections, paused or closed
#: streams, bounced stanzas.
LIMIT_PREFIXES = ("stream-refused-",)
LIMIT_NAMES = (
    "queue-limit", "waiting-limit", "acks-full", "ack-timeout", "pending-limit",
    "unauthenticated-cap", "unauthenticated-cap-address", "auth-timeout",
)

#: The stream refusals that are a stanza refused for a limit (its size or
#: depth).
_STANZA_LIMIT = "stream-refused-policy-violation"

_STATUSES = (SECURE, INSECURE, BOGUS, INDETERMINATE)


def _kind(authorization):
    how = authentication(authorization)
    if how == "dna":
        return "dna"
    return "legacy-dialback" if (how or "").lower() == "dialback" else "legacy-external"


def _prefixed(counters, prefix):
    """
    The counts of C{counters} whose names start with C{prefix}, by the rest
    of the name.
    """
    return {name[len(prefix):]: count for name, count in counters.items()
            if name.startswith(prefix)}


class ServiceCollector:
    """
    A C{prometheus_client} collector of one L{dna.app.service.DNAService}.
    """

    def __init__(self, s2s):
        """
        @param s2s: The L{dna.app.service.DNAService}.
        """
        self._s2s = s2s

    def describe(self):
        # No description ahead of time: the families are read when scraped.
        return []

    def collect(self):
        """
        The figures of the service now.

        @return: An iterable of C{prometheus_client} metric families.
        """
        s2s = self._s2s
        federation = s2s.federation
        counters = federation.counters
        streams = list(federation.streams.values())
        yield from self._connections(federation, streams)
        yield from self._stanzas(counters, streams)
        yield from self._decisions(counters)
        yield from self._delegation(getattr(s2s.checker, "statistics", None))
        yield from self._dns(getattr(s2s, "dnsClient", None))
        yield from self._fallback(s2s)
        yield from self._tls(counters)

    @staticmethod
    def _connections(federation, streams):
        connections = GaugeMetricFamily(
            "dna_connections", "Open authenticated S2S connections.",
            labels=["direction", "kind"])
        counts = {(d, k): 0 for d in (INCOMING, OUTGOING) for k in KINDS}
        for authorization in streams:
            direction = OUTGOING if authorization.initiating else INCOMING
            counts[(direction, _kind(authorization))] += 1
        for (direction, kind), count in counts.items():
            connections.add_metric([direction, kind], count)
        yield connections
        bindings = GaugeMetricFamily(
            "dna_bindings", "Domain pairs bound to a connection (the binding "
            "tables of draft-ietf-xmpp-dna section 4).", labels=["direction"])
        tables = federation.tables
        for direction, table in ((INCOMING, tables.incoming), (OUTGOING, tables.outgoing)):
            bindings.add_metric([direction], len(table))
        yield bindings
        yield GaugeMetricFamily(
            "dna_waiting_stanzas", "Outgoing stanzas waiting for their domain pair.",
            value=federation.waitingCount)

    @staticmethod
    def _stanzas(counters, streams):
        delivered = counters["stanzas-delivered"]
        sent = counters["stanzas-sent"]
        for authorization in streams:
            delivered += authorization.delivered
            sent += authorization.sent
        refusals = {reason: counters["stanza-refused-" + reason]
                    for reason in REFUSAL_REASONS}
        refusals["limit"] += counters[_STANZA_LIMIT]
        yield CounterMetricFamily(
            "dna_stanzas_received", "Stanzas received on authenticated connections.",
            value=delivered + sum(refusals.values()))
        yield CounterMetricFamily(
            "dna_stanzas_delivered", "Received stanzas that passed the filter.",
            value=delivered)
        refused = CounterMetricFamily(
            "dna_stanzas_refused", "Received stanzas refused, by reason.",
            labels=["reason"])
        for reason, count in refusals.items():
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily("dna_stanzas_sent", "Stanzas sent to peers.", value=sent)
        bounced = CounterMetricFamily(
            "dna_stanzas_bounced", "Outgoing stanzas bounced, by stanza error condition.",
            labels=["condition"])
        for condition, count in sorted(_prefixed(counters, "bounced-").items()):
            bounced.add_metric([condition], count)
        yield bounced
        yield CounterMetricFamily(
            "dna_acks_resent_stanzas",
            "Unacknowledged stanzas of ended connections sent again (XEP-0198).",
            value=counters["acks-resent"])

    @staticmethod
    def _decisions(counters):
        results = CounterMetricFamily(
            "dna_db_results",
            "<db:result/> outcomes: our answers to peers' requests (role "
            "receiving) and peers' answers to ours (role originating), by "
            "condition ('valid' when granted).",
            labels=["role", "condition"])
        for role, prefix in (("receiving", "result-"), ("originating", "answer-")):
            for condition, count in sorted(_prefixed(counters, prefix).items()):
                results.add_metric([role, condition], count)
        yield results
        revocations = CounterMetricFamily(
            "dna_revocations", "Domain pairs revoked (draft-ietf-xmpp-dna section 6), "
            "by the side that revoked.", labels=["side"])
        for side in ("local", "peer"):
            revocations.add_metric([side], counters["revoked-" + side])
        yield revocations
        limits = CounterMetricFamily(
            "dna_limit_refusals", "Refusals of the limits of connections, streams "
            "and buffers, by limit.", labels=["limit"])
        for name, count in sorted(counters.items()):
            if name in LIMIT_NAMES or name.startswith(LIMIT_PREFIXES):
                limits.add_metric([name], count)
        yield limits

    @staticmethod
    def _delegation(statistics):
        if statistics is None:
            return
        checks = CounterMetricFamily(
            "dna_delegation_checks", "Delegation checks, cache hits included, "
            "by DNSSEC status.", labels=["status"])
        for status in _STATUSES:
            checks.add_metric([status], statistics.checks[status])
        yield checks
        yield CounterMetricFamily(
            "dna_delegation_cache_hits", "Delegation checks answered from the cache.",
            value=statistics.cacheHits)
        cumulative, buckets = 0, []
        for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), statistics.buckets):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "dna_delegation_lookup_seconds", "Time of delegation lookups (cache misses).",
            buckets=buckets, sum_value=statistics.latencySum)

    @staticmethod
    def _dns(client):
        counters = getattr(client, "counters", None)
        if counters is None:
            return
        for name, what in (("queries", "DNS queries sent"),
                           ("timeouts", "DNS queries that timed out"),
                           ("truncations", "Truncated UDP replies (retried over TCP)")):
            yield CounterMetricFamily(f"dna_dns_{name}", what + ".", value=counters[name])

    @staticmethod
    def _fallback(s2s):
        downgrades = CounterMetricFamily(
            "dna_downgrade_attempts", "Downgrade attempts refused (a feature stripped "
            "or forged before TLS), by kind of connection and feature.",
            labels=["kind", "feature"])
        legacy = s2s.legacy
        sources = [("dna", s2s.connector.downgrades)]
        if legacy is not None:
            sources.append(("legacy", legacy.connector.downgrades))
        for kind, counts in sources:
            for feature, count in sorted(counts.items()):
                downgrades.add_metric([kind, feature], count)
        yield downgrades
        fallbacks = CounterMetricFamily(
            "dna_fallbacks", "Fallbacks to legacy streams (RFC 6120 section 7), by reason.",
            labels=["reason"])
        for reason in ("not-delegated", "no-dna"):
            fallbacks.add_metric([reason], 0 if legacy is None else legacy.counters[reason])
        yield fallbacks

    @staticmethod
    def _tls(counters):
        failures = CounterMetricFamily(
            "dna_tls_failures",
            "Connections that failed in TLS, by reason: outgoing ones as certificate, "
            "name-mismatch, dane-mismatch, dane-unavailable, handshake; incoming ones as incoming-certificate, "
            "incoming-handshake, incoming-name-mismatch (the client certificate does "
            "not cover the stream's 'from'), incoming-dane-mismatch, "
            "incoming-dane-unavailable.",
            labels=["reason"])
        for reason in FAILED_TLS_REASONS:
            failures.add_metric([reason], counters["tls-failed-" + reason])
        for reason in REFUSED_TLS_REASONS:
            failures.add_metric(["incoming-" + reason], counters["tls-refused-" + reason])
        yield failures


def serviceRegistry(s2s):
    """
    A registry of its own with the collector of C{s2s}.

    @rtype: L{CollectorRegistry}
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(s2s))
    return registry


class MetricsResource(Resource):
    """
    C{registry} in Prometheus' text format (or OpenMetrics, when the
    scraper asks for it), rendered in the reactor thread.

    C{prometheus_client.twisted.MetricsResource} is a WSGI resource: it
    collects in the reactor's thread pool, where reading the tables the
    reactor thread changes would race ("dictionary changed size during
    iteration"), and it binds the global reactor when imported. Collecting
    here takes a few dictionary walks, and never waits.
    """

    isLeaf = True

    def __init__(self, registry):
        Resource.__init__(self)
        self._registry = registry

    def render_GET(self, request):
        accept = (request.getHeader("accept") or "")
        encoder, contentType = choose_encoder(accept)
        request.setHeader(b"content-type", contentType.encode("ascii"))
        return encoder(self._registry)


def metricsResource(registry):
    """
    The web resource tree serving C{registry} at C{/metrics}.
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    return root


def metricsService(s2s, listen, reactor):
    """
    The listener serving the metrics of C{s2s} on C{listen}.

    @param listen: A loopback TCP endpoint description (C{[metrics] listen}).
    @param reactor: The reactor to listen with.
    @return: The C{strports} service; its C{registry} is the service's
        L{CollectorRegistry}.
    """
    from twisted.application import strports
    from twisted.web.server import Site

    registry = serviceRegistry(s2s)
    site = Site(metricsResource(registry))
    site.noisy = False
    listener = strports.service(listen, site, reactor=reactor)
    listener.registry = registry
    return listener
