"""
Tests for L{dna.app.embed}: dna as the S2S of a Wokkel-based server, built
from plain arguments or a configuration, as a L{Router}'s default route, its
state read from Python, and stopped cleanly with streams open. Streams are
L{S2SStream}s over L{StringTransport} (L{tests.unit.streams}); the reactor
is a L{MemoryReactorClock}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from wokkel.component import InternalComponent, Router
from wokkel.subprotocols import XMPPHandler

from dna.app.config import Configuration
from dna.app.embed import Monitor, configure, federate
from dna.app.service import DNAService
from dna.core.tables import INCOMING, OUTGOING
from dna.error import ConfigurationError
from dna.namespaces import NS_SM
from dna.testing.fakes import chatMessage
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import close, makeStream, receive, stanzaErrorOf

US = "xmpp1.example.net"
PEER = "xmpp1.peer.net"
_CA = CertificateAuthority("Embedding Test CA")
_OURS = _CA.issue(US, dnsNames=[US])


def _federate(router=None, **kw):
    """
    A service for example.org over a memory reactor, attached to a router.
    """
    router = Router() if router is None else router
    arguments = dict(
        domains=["example.org"], serverNames={US: _OURS.toPrivateCertificate()},
        ca=[_CA.toCertificate()], resolvers=["127.0.0.1:5300"], listen=None,
        fallback="dna", reactor=MemoryReactorClock())
    arguments.update(kw)
    return router, federate(router, **arguments)


def _incoming(s2s, sid="i1"):
    """
    An incoming stream from L{PEER}, authenticated, that may carry
    peer.net -> example.org.
    """
    xs = makeStream(sid=sid, us=US, peer=PEER)
    xs.thisEntity = jid.JID(US)
    s2s._streamConnected(xs)
    s2s.federation.streamAuthenticated(xs, initiating=False, serverNames=[PEER])
    s2s.federation.tables.bind(INCOMING, "example.org", "peer.net", sid)
    return xs


def _outgoing(s2s, sid="o1", acks=False):
    """
    An outgoing stream to L{PEER}, authenticated, that may carry
    example.org -> peer.net; with XEP-0198 acknowledgements if C{acks}.
    """
    xs = makeStream(sid=sid, us=US, peer=PEER)
    if acks:
        xs.features = {(NS_SM, "sm"): domish.Element((NS_SM, "sm"))}
    s2s._streamConnected(xs)
    s2s.federation.streamAuthenticated(xs, initiating=True, serverNames=[PEER])
    s2s.federation.tables.bind(OUTGOING, "example.org", "peer.net", sid)
    return xs


class _Inbox(XMPPHandler):
    """
    A Wokkel handler keeping the messages its component gets.
    """

    def __init__(self):
        XMPPHandler.__init__(self)
        self.received = []

    def connectionInitialized(self):
        self.xmlstream.addObserver("/message", self.received.append)


def _serving():
    """
    A started service for example.org, whose router has an
    L{InternalComponent} for example.org with an L{_Inbox}.

    @return: (component, service, inbox)
    """
    router, s2s = _federate()
    component = InternalComponent(router, "example.org")
    inbox = _Inbox()
    inbox.setHandlerParent(component)
    component.startService()
    s2s.startService()
    return component, s2s, inbox


class ConfigureTests(SynchronousTestCase):
    """
    L{configure}: plain arguments checked as the configuration file is.
    """

    def test_objects(self):
        """
        Certificates and authorities may be given as objects.
        """
        configuration = configure(
            ["Example.ORG"], {US: _OURS.toPrivateCertificate()}, [_CA.toCertificate()],
            resolvers=[("127.0.0.1", 5300)], dnsMode="validate", fallback="dna")
        self.assertIsInstance(configuration, Configuration)
        self.assertEqual(frozenset(["example.org"]), configuration.domains)
        self.assertEqual([US], [s.name for s in configuration.serverNames])
        self.assertEqual((("127.0.0.1", 5300),), configuration.resolvers)
        self.assertEqual(("validate", "dna"), (configuration.dnsMode, configuration.fallback))
        self.assertEqual("tcp:5269", configuration.listen)

    def test_files(self):
        """
        Or as PEM files: a certificate and key pair, or one file with both.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child("ca.pem").setContent(_CA.certificatePEM)
        _OURS.writeTo(directory, "xmpp1")
        configuration = configure(
            ["example.org"],
            {US: (directory.child("xmpp1.pem").path, directory.child("xmpp1.key").path)},
            directory.child("ca.pem").path, hosts={PEER: "127.0.0.2:5269"})
        self.assertEqual(directory.child("xmpp1.pem").path,
                         configuration.serverNames[0].certificatePath)
        self.assertEqual(directory.child("ca.pem").path, configuration.caPath)
        self.assertEqual({PEER: ("127.0.0.2", 5269)}, dict(configuration.hosts))

    def test_uncoveredName(self):
        """
        A certificate that does not cover its server name is refused in one
        line naming the argument.
        """
        e = self.assertRaises(
            ConfigurationError, configure, ["example.org"],
            {"xmpp2.example.net": _OURS.toPrivateCertificate()}, [_CA.toCertificate()])
        self.assertIn("serverNames['xmpp2.example.net']", str(e))
        self.assertIn("does not cover xmpp2.example.net", str(e))

    def test_badSetting(self):
        """
        A wrong setting is refused as the file's key would be.
        """
        e = self.assertRaises(
            ConfigurationError, configure, ["example.org"],
            {US: _OURS.toPrivateCertificate()}, [_CA.toCertificate()], dnsMode="trust-me")
        self.assertIn("[dns] mode", str(e))
        self.assertRaises(
            ConfigurationError, configure, ["example.org"],
            {US: _OURS.toPrivateCertificate()}, [_CA.toCertificate()],
            resolvers=["192.0.2.1"])


class FederateTests(SynchronousTestCase):
    """
    L{federate}: a L{DNAService} that is the router's default route.
    """

    def test_defaultRoute(self):
        """
        A stanza a local component sends to a remote domain goes out on the
        stream bound to its pair.
        """
        router, s2s = _federate()
        self.assertIsInstance(s2s, DNAService)
        self.assertIn(None, router.routes)
        xs = _outgoing(s2s)
        component = InternalComponent(router, "example.org")
        component.startService()
        component.send(chatMessage("admin@example.org", "juliet@peer.net"))
        self.assertEqual(["juliet@peer.net"],
                         [e["to"] for e in xs.output if e.name == "message"])

    def test_incomingToComponent(self):
        """
        What a peer sends to a hosted domain reaches the Wokkel handlers of
        the L{InternalComponent} serving it.
        """
        component, s2s, inbox = _serving()
        xs = _incoming(s2s)
        receive(xs, chatMessage("juliet@peer.net", "admin@example.org"))
        self.assertEqual(["juliet@peer.net"], [m["from"] for m in inbox.received])

    def test_configurationFile(self):
        """
        A configuration file's path, or a L{Configuration}, does as well;
        both that and plain settings is an error.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        directory.child("ca.pem").setContent(_CA.certificatePEM)
        _OURS.writeTo(directory, "xmpp1")
        path = directory.child("dna.toml")
        path.setContent(
            b'[server]\ndomains = ["example.org"]\nca = "ca.pem"\n'
            b'[[server.names]]\nname = "xmpp1.example.net"\n'
            b'certificate = "xmpp1.pem"\nkey = "xmpp1.key"\n')
        router = Router()
        s2s = federate(router, configuration=path.path, reactor=MemoryReactorClock())
        self.assertEqual(path.path, s2s.configuration.path)
        self.assertEqual(frozenset([US]), s2s.serverNames)
        self.assertRaises(TypeError, federate, router, configuration=path.path,
                          domains=["example.org"])
        self.assertRaises(TypeError, federate, router, domains=["example.org"])

    def test_noCompatibilityUnlessAsked(self):
        """
        L{federate} patches nothing unless asked (the subprocess tests of
        L{dna.app.wokkelcompat} check the patch itself).
        """
        from twisted.python import compat

        if "_PY3" in vars(compat):
            raise AssertionError("another test installed the wokkel patch")
        _federate()
        self.assertNotIn("_PY3", vars(compat))


class MonitorTests(SynchronousTestCase):
    """
    L{Monitor}: the control API's data, counters and stream events from
    Python.
    """

    def test_tablesCountersEvents(self):
        """
        Connections, bindings and status are the control API's; counters
        count refusals; observers hear of each stream's life.
        """
        router, s2s = _federate()
        monitor = Monitor(s2s, clock=s2s._reactor)
        events = []
        monitor.addObserver(events.append)
        xs = _incoming(s2s)
        receive(xs, chatMessage("juliet@other.net", "admin@example.org"))
        [connection] = monitor.connections()
        self.assertEqual(("i1", [PEER]), (connection["stream"], connection["remoteServerNames"]))
        self.assertEqual(
            [{"direction": INCOMING, "local": "example.org", "remote": "peer.net",
              "streams": ["i1"]}], monitor.bindings())
        self.assertEqual(["example.org"], monitor.status()["hostedDomains"])
        self.assertEqual(1, monitor.counters()["filter-rejected"])
        close(xs)
        self.assertEqual(
            [{"event": "connected", "stream": "i1"}, {"event": "authenticated", "stream": "i1"},
             {"event": "ended", "stream": "i1"}], events)
        self.assertEqual([], monitor.connections())


class StopTests(SynchronousTestCase):
    """
    Stopping an embedded service while streams are open.
    """

    def test_stopWithOpenStreams(self):
        """
        Every stream is closed; a stanza the peer has
        acknowledged is done, one it has not is bounced to its sender through
        the router (not sent again, not lost), and the tables are empty.
        """
        component, s2s, inbox = _serving()
        outgoing = _outgoing(s2s, acks=True)
        incoming = _incoming(s2s)

        component.send(chatMessage("admin@example.org", "juliet@peer.net", stanzaID="acked"))
        receive(outgoing, f"<a xmlns='{NS_SM}' h='1'/>")
        component.send(chatMessage("admin@example.org", "juliet@peer.net", stanzaID="inflight"))
        self.assertEqual(["acked", "inflight"],
                         [e["id"] for e in outgoing.output if e.name == "message"])

        stopped = s2s.stopService()
        for xs in (outgoing, incoming):
            self.assertTrue(xs.transport.disconnecting)
        self.assertNoResult(stopped)
        close(outgoing)
        close(incoming)
        self.successResultOf(stopped)

        [bounce] = inbox.received
        self.assertEqual(("inflight", "error", "admin@example.org"),
                         (bounce["id"], bounce["type"], bounce["to"]))
        self.assertEqual("remote-server-not-found", stanzaErrorOf(bounce)[0])
        self.assertEqual(["acked", "inflight"],
                         [e["id"] for e in outgoing.output if e.name == "message"])
        tables = s2s.federation.tables
        self.assertEqual((0, 0, 0), (len(tables.connections), len(tables.incoming),
                                     len(tables.outgoing)))
        self.assertEqual({}, s2s.federation.streams)
        self.assertEqual({}, s2s.meters)

    def test_stopBouncesWaiting(self):
        """
        A stanza still waiting for its pair to be authorized when the service
        stops is bounced, not kept.
        """
        component, s2s, inbox = _serving()
        lookups = []
        s2s.connector.delegation = lambda domain: lookups.append(domain) or Deferred()
        component.send(chatMessage("admin@example.org", "juliet@peer.net", stanzaID="w1"))
        self.assertEqual(["peer.net"], lookups)
        self.assertEqual([], inbox.received)
        self.successResultOf(s2s.stopService())
        self.assertEqual(["w1"], [m["id"] for m in inbox.received])
        self.assertEqual("error", inbox.received[0]["type"])


#: The marker of a literal block that quotes the example.
QUOTED = "(quoted from examples/wokkel_server.tac)::"


def quotedBlocks(text):
    """
    The literal blocks of reStructuredText C{text} introduced by a paragraph
    ending in L{QUOTED}, each dedented, as a L{list} of lines.
    """
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if not line.rstrip().endswith(QUOTED):
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[number + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        while block and not block[-1].strip():
            block.pop()
        while block and not block[0].strip():
            block.pop(0)
        margin = min(len(b) - len(b.lstrip()) for b in block if b.strip())
        blocks.append([b[margin:].rstrip() for b in block])
    return blocks


class DocumentationTests(SynchronousTestCase):
    """
    The embedding documentation quotes C{examples/wokkel_server.tac}, which
    the integration test runs: what it shows is what runs.
    """

    root = FilePath(__file__).parent().parent().parent()

    def assertQuoted(self, path, minimum=0):
        example = [line.rstrip() for line in
                   self.root.preauthChild("examples/wokkel_server.tac")
                   .getContent().decode("utf-8").splitlines()]
        blocks = quotedBlocks(self.root.preauthChild(path).getContent().decode("utf-8"))
        self.assertGreaterEqual(len(blocks), minimum, path)
        for block in blocks:
            self.assertTrue(
                any(example[i:i + len(block)] == block for i in range(len(example))),
                f"{path}: not the lines of examples/wokkel_server.tac:\n" + "\n".join(block))

    def test_guideQuotesExample(self):
        """
        Every block of docs/embedding.rst is contiguous lines of the example.
        """
        self.assertQuoted("docs/embedding.rst", minimum=3)

    def test_readmeQuotesExample(self):
        """
        So is every block of the README marked as quoting it.
        """
        self.assertQuoted("README.rst")

    def test_quotedBlocksFound(self):
        """
        The extraction finds an indented block after the marker and a
        changed line fails the comparison.
        """
        text = f"Intro {QUOTED}\n\n    router = QuietRouter()\n    x = 1\n\nAfter.\n"
        self.assertEqual([["router = QuietRouter()", "x = 1"]], quotedBlocks(text))

    def test_exampleCompiles(self):
        """
        The example is Python that compiles (the integration test runs it).
        """
        path = self.root.preauthChild("examples/wokkel_server.tac")
        compile(path.getContent(), path.path, "exec")

    def test_streamConnectedWhileStopping(self):
        """
        A stream that connects once the service is stopping (an attempt
        abandoned too late, or accepted before the port closed) is closed
        too.
        """
        component, s2s, inbox = _serving()
        stopped = s2s.stopService()
        xs = _outgoing(s2s, sid="late")
        self.assertTrue(xs.transport.disconnecting)
        self.successResultOf(stopped)
        close(xs)
        self.assertEqual(0, len(s2s.federation.tables.connections))
