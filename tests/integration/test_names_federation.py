"""
One form for every domain name, end to end (issue 9 sections 1 and 5): two
DNA providers over real sockets and real mutual TLS, with knotd serving
DNSSEC-signed zones and a validating unbound (L{tests.integration.dnsenv}).

The Receiving provider M (C{xmpp1.receiving.example}) is securely delegated
C{fass.example}, C{βόλοσ.example} and C{क्ष.example}. IDNA2003 took C{faß},
C{βόλος} and C{क्‌ष} (with a ZWNJ) for those; IDNA2008 tells them apart, and
none of them is delegated to anyone. M, turned hostile on its stream, cannot
speak for them, and the Originating provider A never routes stanzas for them
to M.

And a server whose certificate names only C{*.receiving.example} is
delegated the SRV target C{xmpp1.receiving.example} (RFC 6125 section 6.4.3).
"""

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.words.xish import domish

from dna.app.delegation import makeDelegationChecker
from dna.core.names import normalizeDomain
from dna.dns.client import DNSClient
from dna.namespaces import NS_DIALBACK, NS_SERVER
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.providers import ProvidersMixin, message
from tests.integration.test_federation_dns import ORIGINATING, RECEIVING
from tests.unit.streams import stanzaErrorOf

#: (domain delegated to M, the name IDNA2003 confused with it).
PAIRS = [
    ("fass.example", "faß.example"),
    ("βόλοσ.example", "βόλος.example"),
    ("\u0915\u094d\u0937.example", "\u0915\u094d\u200c\u0937.example"),
]


class ElementTap:
    """
    Stand in front of a stream's stanza filter and hand every top-level
    element received to waiters first, even those the filter then drops.
    """

    def __init__(self, xs):
        self._filter = xs.stanzaFilter
        self._waiters = []
        xs.stanzaFilter = self

    def admit(self, element):
        for matches, d in list(self._waiters):
            if matches(element):
                self._waiters.remove((matches, d))
                d.callback(element)
        return self._filter.admit(element)

    def waitFor(self, matches, timeout=10.0):
        """
        A L{Deferred} firing with the next element for which C{matches} is
        true.
        """
        d = defer.Deferred()
        self._waiters.append((matches, d))
        d.addTimeout(timeout, reactor)
        return d


class NameFederationTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A (xmpp1.originating.example, hosting sender.example) and
    provider M (xmpp1.receiving.example, hosting the first name of each of
    L{PAIRS}).
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self)
        self.setUpPKI()

    @defer.inlineCallbacks
    def startReal(self, name, domains, certificate=None):
        """
        A provider listening where the test zones put C{name}, checking
        delegations through unbound's AD bit.
        """
        if certificate is None:
            certificate = self.ca.issue(name, dnsNames=[name])
        service, inbox, port = yield self.startProvider(
            domains, {name: certificate},
            makeDelegationChecker(reactor, [self.env.resolver], "ad"),
            client=DNSClient([self.env.resolver], reactor),
            interface=HOSTS[name], port=5269,
        )
        return service, inbox

    @defer.inlineCallbacks
    def startBoth(self):
        self.a, self.inboxA = yield self.startReal(ORIGINATING, ["sender.example"])
        self.m, self.inboxM = yield self.startReal(RECEIVING, [d for d, _ in PAIRS])

    @defer.inlineCallbacks
    def test_cannotSendAsOtherName(self):
        """
        On a stream where A granted M the pair (C{fass.example},
        C{sender.example}), A refuses M's C{<db:result/>} for C{faß.example}
        with C{<not-authorized/>} and does not deliver a stanza from
        C{ceo@faß.example}; the same for the sigma and ZWNJ pairs.
        """
        yield self.startBoth()
        for delegated, other in PAIRS:
            self.m.send(message(f"ceo@{delegated}", "romeo@sender.example", stanzaID=delegated))
        received = yield self.inboxA.waitFor(len(PAIRS))
        self.assertEqual({d for d, _ in PAIRS}, {s["id"] for s in received})
        [xs] = [a.xs for a in self.m.federation.streams.values() if a.initiating]
        tap = ElementTap(xs)

        for delegated, other in PAIRS:
            answer = tap.waitFor(
                lambda e: (e.uri, e.name) == (NS_DIALBACK, "result")
                and e.getAttribute("type") is not None)
            result = domish.Element((NS_DIALBACK, "result"))
            result["from"] = other
            result["to"] = "sender.example"
            xs.send(result)
            answer = yield answer
            self.assertEqual(("invalid", normalizeDomain(other)),
                             (answer["type"], answer["to"]))
            self.assertIn(b"not-authorized", answer.toXml().encode("utf-8"))

            bounced = tap.waitFor(
                lambda e: e.name == "message" and e.getAttribute("type") == "error")
            stanza = message(f"ceo@{other}", "romeo@sender.example", stanzaID=other,
                             uri=NS_SERVER)
            xs.send(stanza)
            bounced = yield bounced
            self.assertEqual((other, ("not-authorized", None)),
                             (bounced["id"], stanzaErrorOf(bounced)))

        self.assertEqual({d for d, _ in PAIRS}, {s["id"] for s in self.inboxA.stanzas})
        self.assertEqual(
            {("sender.example", normalizeDomain(d)) for d, _ in PAIRS},
            boundPairs(self.a.federation.tables, "incoming"))

    @defer.inlineCallbacks
    def test_notRoutedToOtherName(self):
        """
        A sends stanzas for C{bob@faß.example} (and the other names of the
        pairs) nowhere: they bounce with C{<remote-server-not-found/>} and M
        receives none; those for the delegated names reach M.
        """
        yield self.startBoth()
        for delegated, other in PAIRS:
            self.a.send(message("romeo@sender.example", f"bob@{delegated}", stanzaID=delegated))
            self.a.send(message("romeo@sender.example", f"bob@{other}", stanzaID=other))
        delivered = yield self.inboxM.waitFor(len(PAIRS))
        bounces = yield self.inboxA.waitFor(len(PAIRS))
        self.assertEqual({d for d, _ in PAIRS}, {s["id"] for s in delivered})
        self.assertEqual({o for _, o in PAIRS}, {s["id"] for s in bounces})
        self.assertEqual({("remote-server-not-found", None)},
                         {stanzaErrorOf(s) for s in bounces})
        # Nothing else arrives late.
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(PAIRS), len(self.inboxM.stanzas))
        self.assertEqual(
            {("sender.example", normalizeDomain(d)) for d, _ in PAIRS},
            boundPairs(self.a.federation.tables, "outgoing"))

    @defer.inlineCallbacks
    def test_wildcardCertificateDelegated(self):
        """
        M presents a certificate naming only C{*.receiving.example}: A
        authenticates its stream as C{xmpp1.receiving.example} and grants
        it C{target.example}, whose SRV target is C{xmpp1.receiving.example}.
        """
        self.a, self.inboxA = yield self.startReal(ORIGINATING, ["sender.example"])
        wildcard = self.ca.issue(None, dnsNames=["*.receiving.example"])
        self.m, self.inboxM = yield self.startReal(RECEIVING, ["target.example"], wildcard)
        self.m.send(message("juliet@target.example", "romeo@sender.example", stanzaID="w"))
        [received] = yield self.inboxA.waitFor(1)
        self.assertEqual("w", received["id"])
        self.assertNotEqual("error", received.getAttribute("type"))
        [row] = [self.a.federation.tables.connections.get(s)
                 for s in self.a.federation.tables.connections]
        self.assertEqual({"*.receiving.example"}, set(row.serverNames))
        self.assertEqual({"target.example"}, set(row.delegatedNames))


def boundPairs(tables, direction):
    """
    Every (local, remote) pair bound in one direction of C{tables}.
    """
    table = getattr(tables, direction)
    return set().union(*(table.pairs(streamID) for streamID in tables.connections))

