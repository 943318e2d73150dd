"""
Tests for L{dna.app.control} (the control API) and L{dna.app.ctl}
(C{dna-ctl}): a L{DNAService} with in-memory streams, asked through a real
L{twisted.web.client.Agent} connected to the API's L{Site} over L{iosim}.
"""

import io
import json
import os
import signal

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.server import Site
from twisted.words.protocols.jabber import jid
from twisted.words.xish import domish
from zope.interface import implementer

import dna
from dna.app import ctl
from dna.app.control import Control, controlResource
from dna.app.service import DNAService
from dna.core.authorization import resultElement
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.addresses import AddressResolver
from dna.namespaces import NS_DIALBACK
from dna.testing.fakes import FakeDelegationChecker, chatMessage
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import makeStream, receive

US = "xmpp1.receiving.tld"
PEER = "xmpp1.originating.tld"
_CA = CertificateAuthority("Control Test CA")
_OURS = _CA.issue(US, dnsNames=[US])


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """
    Connect a client protocol to a new protocol of C{site}, in memory.
    """

    def __init__(self, site, pumps):
        self._site = site
        self._pumps = pumps

    def connect(self, factory):
        server = self._site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
        self._pumps.append(iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
            greet=False))
        return succeed(client)


@implementer(IAgentEndpointFactory)
class _MemoryEndpoints:
    def __init__(self, site):
        self.pumps = []
        self._site = site

    def endpointForURI(self, uri):
        return _MemoryEndpoint(self._site, self.pumps)


class _Server:
    """
    A L{DNAService} hosting target.tld and receiving.tld, with the control
    API on an in-memory agent.
    """

    def __init__(self, token=None):
        self.reactor = MemoryReactorClock()
        self.checker = FakeDelegationChecker(
            {"sender.tld": [PEER], "other.tld": [PEER]})
        self.delivered = []
        self.service = DNAService(
            ["target.tld", "receiving.tld"], {US: _OURS.toPrivateCertificate()},
            trustRootFromCertificates([_CA.toCertificate()]), self.checker,
            AddressResolver(hosts={}), deliver=self.delivered.append,
            reactor=self.reactor, dialbackSecret="a secret of sixteen or more")
        self.control = Control(self.service, None, self.reactor)
        self.site = Site(controlResource(self.control, token=token), reactor=self.reactor)
        self.endpoints = _MemoryEndpoints(self.site)
        self.agent = Agent.usingEndpointFactory(self.reactor, self.endpoints)

    def incoming(self, sid="s1"):
        """
        An authenticated incoming stream from L{PEER}.
        """
        xs = makeStream(sid=sid, us=US, peer=PEER)
        xs.thisEntity = jid.JID(US)
        self.service._streamConnected(xs)
        self.service.federation.streamAuthenticated(
            xs, initiating=False, serverNames=[PEER])
        return xs

    def grant(self, xs, sender, target):
        receive(xs, resultElement(sender, target))

    def flush(self):
        for _ in range(10):
            for pump in self.endpoints.pumps:
                pump.flush()


class ControlAPITests(SynchronousTestCase):
    """
    The control API's endpoints, through a real HTTP client.
    """

    def setUp(self):
        self.server = _Server()

    def call(self, method, path, body=None, query=None, headers=None):
        """
        @return: (HTTP status, decoded JSON) of one request.
        """
        d = ctl.request(self.server.agent, method, path, body=body, query=query)
        self.server.flush()
        return self.successResultOf(d)

    def test_connections(self):
        """
        C{GET /v1/connections} lists each authenticated stream: its id,
        direction, names both sides, delegated names, kind, bidi, times, and
        stanzas and bytes each way.
        """
        xs = self.server.incoming("s1")
        self.server.grant(xs, "sender.tld", "target.tld")
        self.server.reactor.advance(5)
        receive(xs, chatMessage("romeo@sender.tld", "juliet@target.tld"))
        self.server.reactor.advance(2)
        code, [connection] = self.call(b"GET", "/v1/connections")
        self.assertEqual(200, code)
        self.assertEqual(
            ("s1", "incoming", [PEER], ["sender.tld"], "dna", "dna", False),
            (connection["stream"], connection["direction"],
             connection["remoteServerNames"], connection["delegatedNames"],
             connection["kind"], connection["authentication"], connection["bidi"]))
        self.assertEqual({"in": 1, "refused": 0, "out": 0}, connection["stanzas"])
        self.assertGreater(connection["bytes"]["in"], 0)
        self.assertGreater(connection["bytes"]["out"], 0)
        self.assertEqual((7.0, 2.0), (connection["age"], connection["idle"]))
        self.assertEqual(US, connection["localServerName"])

    def test_identityProofExpires(self):
        """
        Each connection says when the TLSA proof of a peer DANE
        authenticated expires (ISO 8601, UTC), and L{None} for a peer PKIX
        authenticated.
        """
        self.server.incoming("s1")
        self.server.incoming("s2")
        revalidator = self.server.service.federation.revalidator
        self.patch(revalidator, "identityProofExpires",
                   lambda streamID: 1800000000.0 if streamID == "s2" else None)
        code, connections = self.call(b"GET", "/v1/connections")
        self.assertEqual(
            {"s1": None, "s2": "2027-01-15T08:00:00+00:00"},
            {c["stream"]: c["identityProofExpires"] for c in connections})

    def test_outgoingStanzasCounted(self):
        """
        Stanzas sent on a stream are counted on it.
        """
        xs = makeStream(sid="o1", us=US, peer=PEER)
        self.server.service._streamConnected(xs)
        federation = self.server.service.federation
        federation.streamAuthenticated(xs, initiating=True, serverNames=[PEER])
        federation.tables.bind(OUTGOING, "target.tld", "sender.tld", "o1")
        federation.send(chatMessage("juliet@target.tld", "romeo@sender.tld"))
        code, [connection] = self.call(b"GET", "/v1/connections")
        self.assertEqual(("outgoing", 1), (connection["direction"], connection["stanzas"]["out"]))

    def test_bindingsFiltered(self):
        """
        C{GET /v1/bindings} answers both directions; C{local}, C{remote} and
        C{stream} filter them.
        """
        xs1 = self.server.incoming("s1")
        xs2 = self.server.incoming("s2")
        self.server.grant(xs1, "sender.tld", "target.tld")
        self.server.grant(xs2, "other.tld", "receiving.tld")
        self.server.service.federation.tables.bind(OUTGOING, "target.tld", "sender.tld", "s1")
        code, answer = self.call(b"GET", "/v1/bindings")
        self.assertEqual(200, code)
        self.assertEqual(
            [("incoming", "receiving.tld", "other.tld", ["s2"]),
             ("incoming", "target.tld", "sender.tld", ["s1"]),
             ("outgoing", "target.tld", "sender.tld", ["s1"])],
            [(b["direction"], b["local"], b["remote"], b["streams"]) for b in answer])
        _, answer = self.call(b"GET", "/v1/bindings", query={"remote": "Other.TLD"})
        self.assertEqual([("receiving.tld", "other.tld")],
                         [(b["local"], b["remote"]) for b in answer])
        _, answer = self.call(b"GET", "/v1/bindings", query={"stream": "s1"})
        self.assertEqual({"s1"}, {s for b in answer for s in b["streams"]})
        _, answer = self.call(b"GET", "/v1/bindings", query={"local": "target.tld"})
        self.assertEqual(2, len(answer))

    def test_bindingsProofs(self):
        """
        With C{proofs=1}, C{GET /v1/bindings} says when each binding's proof
        expires and when it is checked again (the fake's TTL is 60 s).
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        code, [binding] = self.call(b"GET", "/v1/bindings", query={"proofs": "1"})
        self.assertEqual(200, code)
        [proof] = binding["proofs"]
        self.assertEqual("s1", proof["stream"])
        self.assertEqual("1970-01-01T00:01:00+00:00", proof["expires"])
        self.assertLessEqual(proof["nextCheck"], proof["expires"])
        self.assertEqual((400, "proofs"),
                         self.errorOf(b"GET", "/v1/bindings", query={"proofs": "yes"}))

    def test_bindingsBadFilter(self):
        """
        A filter that is not a domain, or an unknown one, is a 400 naming it.
        """
        self.assertEqual((400, "local"), self.errorOf(b"GET", "/v1/bindings", query={"local": "a..b"}))
        self.assertEqual((400, "color"), self.errorOf(b"GET", "/v1/bindings", query={"color": "x"}))

    def errorOf(self, method, path, **kw):
        code, answer = self.call(method, path, **kw)
        self.assertIn("error", answer)
        return code, answer.get("field")

    def test_revoke(self):
        """
        C{POST /v1/revoke} sends C{<db:result type='invalid'/>} for the pair
        on every stream that holds it, unbinds it, and answers where; other
        pairs stay.
        """
        xs1 = self.server.incoming("s1")
        xs2 = self.server.incoming("s2")
        for xs in (xs1, xs2):
            self.server.grant(xs, "sender.tld", "target.tld")
        self.server.grant(xs1, "other.tld", "target.tld")
        tables = self.server.service.federation.tables
        code, answer = self.call(b"POST", "/v1/revoke",
                                 body={"local": "target.tld", "remote": "sender.tld"})
        self.assertEqual(200, code)
        self.assertEqual({"local": "target.tld", "remote": "sender.tld",
                          "streams": ["s1", "s2"]}, answer)
        for xs in (xs1, xs2):
            [revocation] = [e for e in xs.output if isinstance(e, domish.Element)
                            and e.uri == NS_DIALBACK and e.getAttribute("type") == "invalid"]
            self.assertEqual(("target.tld", "sender.tld"), (revocation["from"], revocation["to"]))
        self.assertFalse(tables.isBound(INCOMING, "target.tld", "sender.tld"))
        self.assertTrue(tables.isBound(INCOMING, "target.tld", "other.tld"))
        receive(xs1, chatMessage("romeo@sender.tld", "juliet@target.tld", stanzaID="late"))
        receive(xs1, chatMessage("iago@other.tld", "juliet@target.tld", stanzaID="fine"))
        self.assertEqual(["fine"], [s["id"] for s in self.server.delivered])

    def test_revokeUnknownPair(self):
        """
        Revoking a pair no stream holds is a 404; a missing field a 400
        naming it.
        """
        self.assertEqual((404, None), self.errorOf(
            b"POST", "/v1/revoke", body={"local": "target.tld", "remote": "sender.tld"}))
        self.assertEqual((400, "remote"), self.errorOf(
            b"POST", "/v1/revoke", body={"local": "target.tld"}))

    def test_close(self):
        """
        C{POST /v1/close} closes the stream cleanly and answers once it
        ended.
        """
        xs = self.server.incoming("s1")
        d = ctl.request(self.server.agent, b"POST", "/v1/close", body={"stream": "s1"})
        self.server.flush()
        self.assertNoResult(d)
        self.assertTrue(xs.transport.disconnecting)
        xs.connectionLost(Failure(Exception("closed")))
        self.server.flush()
        self.assertEqual((200, {"stream": "s1", "closed": True}), self.successResultOf(d))
        self.assertEqual(0, len(self.server.service.federation.tables.connections))

    def test_closeUnknown(self):
        """
        Closing a stream that is not open is a 404 naming C{stream}.
        """
        self.assertEqual((404, "stream"), self.errorOf(b"POST", "/v1/close", body={"stream": "nope"}))
        self.assertEqual((400, "stream"), self.errorOf(b"POST", "/v1/close", body={"stream": 3}))

    def test_check(self):
        """
        C{POST /v1/check} answers through the server's checker, once it
        answers, with the report data of C{dna-check}.
        """
        self.server.checker.paused = True
        d = ctl.request(self.server.agent, b"POST", "/v1/check", body={"domain": "Sender.TLD"})
        self.server.flush()
        self.assertNoResult(d)
        self.server.checker.release()
        self.server.flush()
        code, answer = self.successResultOf(d)
        self.assertEqual(200, code)
        self.assertEqual(("sender.tld", "secure", True, [PEER]),
                         (answer["domain"], answer["status"], answer["delegated"],
                          [r["target"] for r in answer["records"]]))
        self.assertEqual(["sender.tld"], self.server.checker.checked)

    def test_checkBadDomain(self):
        """
        A check of something that is not a domain is a 400 naming
        C{domain}.
        """
        self.assertEqual((400, "domain"), self.errorOf(b"POST", "/v1/check", body={"domain": ""}))
        self.assertEqual((400, "domain"), self.errorOf(b"POST", "/v1/check", body={}))

    def test_status(self):
        """
        C{GET /v1/status}: version, uptime and counts, and no secret.
        """
        self.server.reactor.advance(90)
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        d = ctl.request(self.server.agent, b"GET", "/v1/status")
        self.server.flush()
        code, answer = self.successResultOf(d)
        self.assertEqual(
            (200, dna.__version__, 90.0, 1, {"incoming": 1, "outgoing": 0}),
            (code, answer["version"], answer["uptime"], answer["connections"],
             answer["bindings"]))
        self.assertNotIn("sixteen", json.dumps(answer))

    def test_badRequests(self):
        """
        A wrong method is a 405, an unknown path a 404, a body that is not a
        JSON object a 400: each a JSON error.
        """
        self.assertEqual(405, self.call(b"POST", "/v1/status", body={})[0])
        self.assertEqual(404, self.call(b"GET", "/v1/nothing")[0])
        self.assertEqual(404, self.call(b"GET", "/v2/status")[0])
        self.assertEqual(400, self.call(b"POST", "/v1/close", body=["s1"])[0])

    def test_token(self):
        """
        With a token, requests without it get a 401 and those with it pass.
        """
        self.server = _Server(token="0123456789abcdef")
        self.assertEqual(401, self.call(b"GET", "/v1/status")[0])
        from twisted.web.http_headers import Headers

        d = self.server.agent.request(
            b"GET", b"http://localhost/v1/status",
            Headers({b"authorization": [b"Bearer 0123456789abcdef"]}))
        self.server.flush()
        self.assertEqual(200, self.successResultOf(d).code)


class CtlTests(SynchronousTestCase):
    """
    C{dna-ctl}: options, tables, exit statuses, against the in-memory API.
    """

    def setUp(self):
        self.server = _Server()

    def ctl(self, *argv):
        options = ctl.Options()
        options.parseOptions(list(argv))
        out, err = io.StringIO(), io.StringIO()
        d = ctl.run(self.server.reactor, options, out, err, agent=self.server.agent)
        self.server.flush()
        return self.successResultOf(d), out.getvalue(), err.getvalue()

    def test_usage(self):
        """
        A command is required; unknown ones and missing arguments are usage
        errors.
        """
        from twisted.python import usage

        for argv in ([], ["frobnicate"], ["revoke", "target.tld"],
                     ["--socket", "a", "--config", "b", "status"]):
            self.assertRaises(usage.UsageError, ctl.Options().parseOptions, argv)

    def test_connectionsTable(self):
        """
        C{dna-ctl connections} draws the connection table.
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        status, out, err = self.ctl("connections")
        self.assertEqual(0, status)
        self.assertIn("| Connection |", out)
        self.assertIn("| s1 ", out)
        self.assertIn("sender.tld", out)
        self.assertIn(PEER, out)

    def test_bindingsJSON(self):
        """
        C{--json} prints the API's answer.
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        status, out, err = self.ctl("--json", "bindings", "--remote", "sender.tld")
        self.assertEqual(0, status)
        self.assertEqual([{"direction": "incoming", "local": "target.tld",
                           "remote": "sender.tld", "streams": ["s1"]}], json.loads(out))

    def test_bindingsTable(self):
        """
        C{dna-ctl bindings} draws one table per direction.
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        status, out, err = self.ctl("bindings")
        self.assertIn("Incoming binding table:", out)
        self.assertIn("| target.tld | sender.tld | s1          |", out)

    def test_bindingsTableProofs(self):
        """
        C{dna-ctl bindings --proofs} adds each binding's proof expiry and
        next re-check.
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        status, out, err = self.ctl("bindings", "--proofs")
        self.assertEqual(0, status)
        self.assertIn("Proof expires", out)
        self.assertIn("1970-01-01T00:01:00+00:00", out)

    def test_revokeExitStatus(self):
        """
        C{dna-ctl revoke} exits 0 when it revoked, 1 when nothing held the
        pair, 2 when the server calls the request malformed.
        """
        self.server.grant(self.server.incoming("s1"), "sender.tld", "target.tld")
        self.assertEqual(0, self.ctl("revoke", "target.tld", "sender.tld")[0])
        status, out, err = self.ctl("revoke", "target.tld", "sender.tld")
        self.assertEqual(1, status)
        self.assertIn("no stream carries", err)
        self.assertEqual(2, self.ctl("revoke", "target..tld", "sender.tld")[0])

    def test_check(self):
        """
        C{dna-ctl check} prints as C{dna-check} does, exiting 1 when the
        domain is not delegated.
        """
        status, out, err = self.ctl("check", "sender.tld")
        self.assertEqual(0, status)
        self.assertIn("status: secure", out)
        self.assertIn("result: securely delegated", out)
        self.assertEqual(1, self.ctl("check", "nowhere.tld")[0])

    def test_status(self):
        """
        C{dna-ctl status} prints the version.
        """
        status, out, err = self.ctl("status")
        self.assertEqual(0, status)
        self.assertIn(dna.__version__, out)

    def test_unreachable(self):
        """
        A configuration without C{[control]} names no socket: exit 3.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[server]\ndomains = ["target.tld"]\n')
        options = ctl.Options()
        options.parseOptions(["--config", path, "status"])
        out, err = io.StringIO(), io.StringIO()
        d = ctl.run(self.server.reactor, options, out, err)
        self.assertEqual(3, self.successResultOf(d))
        self.assertIn("no [control] section", err.getvalue())

    def test_socketFromConfiguration(self):
        """
        Without C{--socket}, the socket is the one C{[control] socket} of the
        configuration names, relative to its directory.
        """
        import os

        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        with open(os.path.join(path, "dna.toml"), "w") as f:
            f.write('[control]\nsocket = "run/control.sock"\n')
        options = ctl.Options()
        options.parseOptions(["--config", os.path.join(path, "dna.toml"), "status"])
        self.assertEqual(os.path.join(path, "run", "control.sock"), ctl.socketPath(options))
        options = ctl.Options()
        options.parseOptions(["--socket", "/x/y.sock", "status"])
        self.assertEqual("/x/y.sock", ctl.socketPath(options))


class ControlConfigurationTests(SynchronousTestCase):
    """
    C{[control]} and C{[log]} in the configuration, and what C{twistd dna}
    makes of them.
    """

    def setUp(self):
        from dna.core import loglevel
        from tests.unit.test_config import ConfigurationFiles

        self.files = ConfigurationFiles(self)
        # twistd's observer sets the process's least level: restored after.
        self.patch(loglevel, "_least", loglevel._least)

    def load(self, extra):
        from dna.app.config import loadConfiguration
        from tests.unit.test_config import MINIMAL

        return loadConfiguration(self.files.write("dna.toml", MINIMAL + extra))

    def refused(self, extra):
        from dna.error import ConfigurationError

        return str(self.assertRaises(ConfigurationError, self.load, extra))

    def test_defaults(self):
        """
        An empty C{[control]} serves the API on C{/run/dna/control.sock}
        only; without the section there is no control endpoint.
        """
        self.assertIsNone(self.load("").control)
        control = self.load("\n[control]\n").control
        self.assertEqual(("/run/dna/control.sock", None, None),
                         (control.socket, control.listen, control.token))

    def test_relativeSocket(self):
        """
        A relative socket is taken from the configuration's directory.
        """
        control = self.load('\n[control]\nsocket = "control.sock"\n').control
        self.assertEqual(self.files.path("control.sock"), control.socket)

    def test_tcpNeedsToken(self):
        """
        A TCP listener needs a token file; with one, the token is read.
        """
        self.assertIn("[control] token-file: missing", self.refused(
            '\n[control]\nlisten = "tcp:8080:interface=127.0.0.1"\n'))
        self.files.write("token", "0123456789abcdef0123\n")
        control = self.load('\n[control]\nlisten = "tcp:8080:interface=127.0.0.1"\n'
                            'token-file = "token"\n').control
        self.assertEqual("0123456789abcdef0123", control.token)

    def test_tcpOffLoopbackRefused(self):
        """
        A TCP listener on every interface, or one off loopback, is refused.
        """
        self.files.write("token", "0123456789abcdef0123\n")
        for listen in ("tcp:8080", "tcp:8080:interface=192.0.2.1", "unix:/tmp/x"):
            message = self.refused(f'\n[control]\nlisten = "{listen}"\ntoken-file = "token"\n')
            self.assertIn("[control] listen:", message)

    def test_shortToken(self):
        """
        A token under 16 characters is refused.
        """
        self.files.write("token", "short\n")
        self.assertIn("[control] token-file:", self.refused(
            '\n[control]\nlisten = "tcp:8080:interface=127.0.0.1"\ntoken-file = "token"\n'))

    def test_logFormat(self):
        """
        C{[log] format} is C{text} or C{json}.
        """
        self.assertEqual("json", self.load('\n[log]\nformat = "json"\n').logFormat)
        self.assertIn("[log] format: unknown word", self.refused('\n[log]\nformat = "xml"\n'))

    def test_makeServiceServesControl(self):
        """
        With C{[control]}, C{makeService} adds a listener on the UNIX
        socket, mode 0600.
        """
        from twisted.application.internet import StreamServerEndpointService
        from twisted.internet.endpoints import UNIXServerEndpoint

        from dna.app import tap
        from tests.unit.test_config import MINIMAL

        path = self.files.write("dna.toml", MINIMAL + '\n[control]\nsocket = "c.sock"\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        root = tap.makeService(options)
        [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
        self.assertIsInstance(listener.endpoint, UNIXServerEndpoint)
        self.assertEqual((self.files.path("c.sock"), 0o600),
                         (listener.endpoint._address, listener.endpoint._mode))
        self.assertIs(root.s2s, root.control._s2s)

    def test_logFormatOption(self):
        """
        C{twistd dna --log-format json} has twistd log through the JSON
        observer (unless C{--logger} chose one), writing where twistd
        would.
        """
        from twisted.scripts.twistd import ServerOptions

        from dna.app import tap
        from tests.unit.test_config import MINIMAL

        path = self.files.write("dna.toml", MINIMAL)
        logfile = self.files.path("twistd.log")
        self.patch(tap, "_twistdLog", tap._twistdLog)
        options = ServerOptions()
        options.parseOptions(["--logfile", logfile, "dna", "--config", path,
                              "--log-format", "json"])
        self.assertIs(tap.twistdLogObserver, options["logger"])
        observer = options["logger"]()
        from twisted.logger import Logger

        Logger(observer=observer).info("Stream {streamID}: hello", streamID="s1",
                                       event="test")
        observer.output.close()
        [line] = open(logfile).read().splitlines()
        event = json.loads(line)
        self.assertEqual(("s1", "test", "Stream {streamID}: hello"),
                         (event["streamID"], event["event"], event["log_format"]))

    def loggedLines(self, *arguments, config="", events=()):
        """
        The lines twistd's logger writes, as C{twistd dna} with
        C{arguments} sets it up, for an event at each level, then for
        C{events}.
        """
        from twisted.logger import Logger, LogLevel
        from twisted.scripts.twistd import ServerOptions

        from dna.app import tap
        from tests.unit.test_config import MINIMAL

        path = self.files.write("dna.toml", MINIMAL + config)
        logfile = self.files.path("twistd.log")
        if os.path.exists(logfile):
            os.remove(logfile)
        self.patch(tap, "_twistdLog", tap._twistdLog)
        options = ServerOptions()
        options.parseOptions(["--logfile", logfile, "dna", "--config", path, *arguments])
        self.assertIs(tap.twistdLogObserver, options["logger"])
        self.patch(signal, "signal", lambda *args: None)
        observer = options["logger"]()
        log = Logger(observer=observer)
        for level in LogLevel.iterconstants():
            log.emit(level, "at {name}", name=level.name)
        observer({"log_format": "no level", "log_time": 0})
        for event in events:
            observer(dict(event))
        observer.output.close()
        return open(logfile).read().splitlines()

    def test_logLevelDefault(self):
        """
        By default twistd writes the events at info and above, as text:
        routine ones at debug, such as each pair granted, are not written.
        Events without a level (none of ours) are.
        """
        from twisted.logger import LogLevel

        from dna.core.loglevel import wanted

        lines = self.loggedLines()
        self.assertEqual(["at info", "at warn", "at error", "at critical", "no level"],
                         [line.split("] ", 1)[1] for line in lines])
        # Nor are they made where that would cost (one per pair).
        self.assertEqual((False, True), (wanted(LogLevel.debug), wanted(LogLevel.info)))

    def test_logLevelDebug(self):
        """
        C{[log] level = "debug"} writes the debug events too; C{--log-level}
        overrides it.
        """
        from twisted.logger import LogLevel

        from dna.core.loglevel import wanted

        lines = self.loggedLines(config='\n[log]\nlevel = "debug"\n')
        self.assertEqual("at debug", lines[0].split("] ", 1)[1])
        self.assertEqual(6, len(lines))
        self.assertTrue(wanted(LogLevel.debug))
        lines = self.loggedLines("--log-level", "error", config='\n[log]\nlevel = "debug"\n')
        self.assertEqual(["at error", "at critical", "no level"],
                         [line.split("] ", 1)[1] for line in lines])

    def test_queryPortLines(self):
        """
        The two lines Twisted writes at info for the UDP port of each DNS
        query (as L{twisted.python.log.msg} hands them to
        L{twisted.logger}) are not written at info; at debug they are.
        """
        from twisted.logger import LogLevel

        events = [
            {"message": (text,), "isError": 0, "system": "-", "log_namespace": "log_legacy",
             "log_level": LogLevel.info, "log_format": "{log_text}", "log_text": text,
             "log_time": 0}
            for text in ("_UDPTry starting on 40001", "(UDP Port 40001 Closed)")]

        def lines(config=""):
            return [line.split("] ", 1)[1]
                    for line in self.loggedLines(config=config, events=events)
                    if "UDP" in line]

        self.assertEqual([], lines())
        self.assertEqual(["_UDPTry starting on 40001", "(UDP Port 40001 Closed)"],
                         lines(config='\n[log]\nlevel = "debug"\n'))

    def test_logLevelWord(self):
        """
        C{[log] level} is one of twisted.logger's level names.
        """
        self.assertEqual("info", self.load("").logLevel)
        self.assertEqual("warn", self.load('\n[log]\nlevel = "warn"\n').logLevel)
        self.assertIn("[log] level: unknown word", self.refused('\n[log]\nlevel = "loud"\n'))

    def test_logRotatesOnSIGUSR1(self):
        """
        Writing to a file, the observer has twistd's C{SIGUSR1} reopen it,
        unless the signal is handled already.
        """
        from twisted.scripts.twistd import ServerOptions

        from dna.app import tap
        from tests.unit.test_config import MINIMAL

        path = self.files.write("dna.toml", MINIMAL)
        self.patch(tap, "_twistdLog", tap._twistdLog)
        options = ServerOptions()
        options.parseOptions(["--logfile", self.files.path("twistd.log"), "dna",
                              "--config", path])
        installed = []
        self.patch(signal, "getsignal", lambda number: None)
        self.patch(signal, "signal", lambda number, handler: installed.append(number))
        observer = options["logger"]()
        observer.output.close()
        self.assertEqual([signal.SIGUSR1], installed)
        self.patch(signal, "getsignal", lambda number: signal.default_int_handler)
        del installed[:]
        options["logger"]().output.close()
        self.assertEqual([], installed)

    def test_logTwistdChoiceWins(self):
        """
        twistd's own C{--logger} or C{--syslog} win: twistd logs as it
        does.
        """
        from twisted.scripts.twistd import ServerOptions

        from dna.app import tap
        from tests.unit.test_config import MINIMAL

        path = self.files.write("dna.toml", MINIMAL)
        self.patch(tap, "_twistdLog", tap._twistdLog)
        options = ServerOptions()
        options.parseOptions(["--logger", "twisted.logger.globalLogPublisher", "dna",
                              "--config", path])
        from twisted.logger import globalLogPublisher

        self.assertIs(globalLogPublisher, options["logger"])
        options = ServerOptions()
        options.parseOptions(["--syslog", "dna", "--config", path])
        self.assertIsNone(options["logger"])
