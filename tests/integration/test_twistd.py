"""
C{twistd -n dna --config FILE} as an operator runs it: a real process, a
real DNSSEC-signed DNS tree (knotd + unbound, L{tests.integration.dnsenv}), a local
service attached as an XEP-0114 component, and a second provider
federating with it over mutual TLS.
"""

from twisted.internet import defer, reactor, task
from twisted.python.filepath import FilePath
from twisted.trial import unittest
from twisted.words.protocols.jabber import component, xmlstream

from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from tests.integration.dnsenv import HOSTS, startDNSEnvironment
from tests.integration.processes import freePort, startTwistdProcess, waitForPort
from tests.integration.providers import Inbox, ProvidersMixin, message

ORIGINATING = "xmpp1.originating.example"
RECEIVING = "xmpp1.receiving.example"
SECRET = "component secret"


class TwistdTests(ProvidersMixin, unittest.TestCase):
    """
    Provider A is C{twistd dna}; provider B runs in the test.
    """

    timeout = 60

    def setUp(self):
        self.env = startDNSEnvironment(self)
        self.setUpPKI()
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.directory.child("ca.pem").setContent(self.ca.certificatePEM)
        self.ca.issue(ORIGINATING, dnsNames=[ORIGINATING]).writeTo(self.directory, "xmpp1")
        self.componentPort = freePort()
        host, port = self.env.resolver
        self.config = self.directory.child("dna.toml")
        self.config.setContent(
            (
                '[server]\n'
                'listen = "tcp:5269:interface=%s"\n'
                'domains = ["sender.example", "b.example"]\n'
                'ca = "ca.pem"\n\n'
                '[[server.names]]\n'
                'name = "%s"\n'
                'certificate = "xmpp1.pem"\n'
                'key = "xmpp1.key"\n\n'
                '[dns]\nmode = "ad"\nresolvers = ["%s:%d"]\n\n'
                '[components]\nlisten = "tcp:%d:interface=127.0.0.1"\nsecret = "%s"\n'
                % (HOSTS[ORIGINATING], ORIGINATING, host, port, self.componentPort, SECRET)
            ).encode("utf-8")
        )

    def startTwistd(self, *extra):
        return startTwistdProcess(
            self, ["dna", "--config", self.config.path] + list(extra),
            self.directory.child("twistd.log").path)

    @defer.inlineCallbacks
    def connectComponent(self, domain):
        """
        Attach a local service for C{domain} as an XEP-0114 component.

        @return: A L{Deferred} firing with (stream, inbox).
        """
        factory = component.componentFactory(domain, SECRET)
        inbox = Inbox()
        authenticated = defer.Deferred()

        def onAuthenticated(xs):
            xs.addObserver("/message", inbox)
            authenticated.callback(xs)

        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, onAuthenticated)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, authenticated.errback)
        connector = reactor.connectTCP("127.0.0.1", self.componentPort, factory)
        self.addCleanup(factory.stopTrying)
        self.addCleanup(connector.disconnect)
        xs = yield authenticated
        return xs, inbox

    @defer.inlineCallbacks
    def test_federatesThroughComponent(self):
        """
        A message from a component of sender.example reaches the provider of
        target.example through C{twistd dna}, and the reply comes back to
        the component over the same S2S connection.
        """
        process = self.startTwistd()
        yield task.deferLater(reactor, 0, waitForPort, self.componentPort, process)
        client = DNSClient([self.env.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        b, inboxB, port = yield self.startProvider(
            ["target.example"], {RECEIVING: self.ca.issue(RECEIVING, dnsNames=[RECEIVING])},
            checker, client=client, interface=HOSTS[RECEIVING], port=5269,
        )
        xs, inboxComponent = yield self.connectComponent("sender.example")
        xs.send(message("romeo@sender.example/orchard", "juliet@target.example", stanzaID="m1"))
        [received] = yield inboxB.waitFor(1, timeout=20)
        self.assertEqual(("m1", "romeo@sender.example/orchard"), (received["id"], received["from"]))
        b.send(message("juliet@target.example", "romeo@sender.example/orchard", body="ho", stanzaID="r1"))
        [reply] = yield inboxComponent.waitFor(1, timeout=20)
        self.assertEqual("r1", reply["id"])
        self.assertEqual(1, len(b.federation.tables.connections))

    def test_badConfigurationOneLine(self):
        """
        A configuration mistake stops start-up with one line saying what and
        where.
        """
        self.config.setContent(self.config.getContent().replace(b'mode = "ad"', b'mode = "trust-me"'))
        process = self.startTwistd()
        output, _ = process.communicate(timeout=30)
        self.assertNotEqual(0, process.returncode)
        self.assertIn(b"[dns] mode: unknown word 'trust-me'", output)
