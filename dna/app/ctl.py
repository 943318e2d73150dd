"""
C{dna-ctl}: talk to a running C{twistd dna} through its control API
(L{dna.app.control}) on the UNIX socket C{[control] socket} names::

    dna-ctl connections
    dna-ctl bindings [--local D] [--remote D] [--stream S]
    dna-ctl revoke LOCAL REMOTE
    dna-ctl close STREAM
    dna-ctl check DOMAIN
    dna-ctl status

Tables for people, or the API's JSON with C{--json}.

Exit status: 0 done; 1 nothing to act on or refused (no such stream or
pair, a domain not delegated, an error in the server); 2 usage error
(ours, or a request the server found malformed); 3 the server cannot be
reached (no socket, nobody listening, no C{[control]} in the
configuration).
"""

import json
import os
import sys
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.python import usage
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from dna.app.config import DEFAULT_CONTROL_SOCKET, loadControlSettings
from dna.app.script import runCommand
from dna.app.tabular import formatTable
from dna.error import ConfigurationError

#: Where C{dna-ctl} looks for the configuration without C{--config}.
DEFAULT_CONFIG = "/etc/dna/dna.toml"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class _Unreachable(Exception):
    """
    The control endpoint cannot be reached, for the reason given.
    """


@implementer(IAgentEndpointFactory)
class UNIXAgentEndpointFactory:
    """
    Connect every request of an L{Agent} to one UNIX socket, whatever the
    URL's host says.
    """

    def __init__(self, reactor, path):
        self._reactor = reactor
        self._path = path

    def endpointForURI(self, uri):
        from twisted.internet.endpoints import UNIXClientEndpoint

        return UNIXClientEndpoint(self._reactor, self._path)


@implementer(IBodyProducer)
class _BytesProducer:
    """
    A request body written at once (L{FileBodyProducer} would need a
    cooperator, and the body is small).
    """

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


def unixAgent(reactor, socketPath):
    """
    An L{Agent} whose every request goes to the UNIX socket C{socketPath}.
    """
    from twisted.web.client import Agent

    return Agent.usingEndpointFactory(reactor, UNIXAgentEndpointFactory(reactor, socketPath))


@defer.inlineCallbacks
def request(agent, method, path, body=None, query=None):
    """
    One request to the control API.

    @param agent: An L{IAgent}, such as L{unixAgent} gives.
    @param method: C{b"GET"} or C{b"POST"}.
    @param path: Such as C{"/v1/status"}.
    @param body: A JSON-able object to POST, or L{None}.
    @param query: A L{dict} of query arguments, or L{None}.
    @return: A L{Deferred} firing with C{(HTTP status, decoded JSON)}.
    @raise _Unreachable: When the endpoint cannot be connected to.
    """
    from twisted.internet.error import ConnectError
    from twisted.web.client import readBody
    from twisted.web.http_headers import Headers

    url = "http://localhost" + path
    if query:
        url += "?" + urlencode(query)
    producer = None
    headers = Headers({b"accept": [b"application/json"]})
    if body is not None:
        producer = _BytesProducer(json.dumps(body).encode("utf-8"))
        headers.addRawHeader(b"content-type", b"application/json")
    try:
        response = yield agent.request(method, url.encode("utf-8"), headers, producer)
    except ConnectError as e:
        reason = os.strerror(e.osError) if isinstance(e.osError, int) else str(e)
        raise _Unreachable(f"cannot connect: {reason}") from None
    data = yield readBody(response)
    try:
        answer = json.loads(data)
    except ValueError:
        answer = {"error": data.decode("utf-8", "replace")}
    return response.code, answer


def _seconds(value):
    if value is None:
        return "-"
    value = int(value)
    if value < 120:
        return f"{value}s"
    if value < 7200:
        return f"{value // 60}m{value % 60:02d}s"
    return f"{value // 3600}h{value % 3600 // 60:02d}m"


def _pairCounts(pairs):
    """
    The lines saying how many pairs go each way on a connection: a bidi
    stream the peer opened may carry our outgoing pairs too (piggybacking).
    """
    if pairs is None:
        return []
    return [f"pairs in {pairs.get('incoming', 0)}", f"pairs out {pairs.get('outgoing', 0)}"]


def connectionsTable(connections):
    """
    The table C{dna-ctl connections} prints.
    """
    rows = []
    for c in connections:
        tls = c.get("tls") or {}
        certificate = c.get("peerCertificate") or {}
        rows.append([
            c["stream"],
            [c["direction"], "bidi" if c["bidi"] else "one-way"] + _pairCounts(c.get("pairs")),
            c.get("peer") or "-",
            [f"us: {c.get('localServerName') or '-'}"] + c["remoteServerNames"],
            c["delegatedNames"] or ["-"],
            [c["kind"], c.get("authentication") or "-"],
            [tls.get("version") or "-", tls.get("cipher") or "-"],
            [certificate.get("commonName") or "-", certificate.get("notAfter", "-")[:10]],
            [f"age {_seconds(c.get('age'))}", f"idle {_seconds(c.get('idle'))}"],
            [f"in {c['stanzas']['in']}", f"out {c['stanzas']['out']}"],
            [f"in {c['bytes']['in']}", f"out {c['bytes']['out']}"],
        ])
    return formatTable(
        ["Connection", "Direction", "Peer", "Server Domain Names", "Delegated Domain Names",
         "Kind", "TLS", "Certificate", "Time", "Stanzas", "Bytes"], rows)


def bindingsTable(bindings):
    """
    The tables C{dna-ctl bindings} prints: one per direction, as the
    draft's section 4 draws them.
    """
    parts = []
    proofs = any("proofs" in b for b in bindings)
    headers = ["Local", "Remote", "Connections"]
    if proofs:
        headers += ["Proof expires", "Next check"]
    for direction in ("outgoing", "incoming"):
        rows = []
        for b in bindings:
            if b["direction"] != direction:
                continue
            row = [b["local"], b["remote"], ", ".join(b["streams"])]
            if proofs:
                row += [", ".join(p["expires"] or "-" for p in b["proofs"]),
                        ", ".join(p["nextCheck"] or "-" for p in b["proofs"])]
            rows.append(row)
        parts.append(f"{direction.capitalize()} binding table:\n"
                     + formatTable(headers, rows))
    return "\n\n".join(parts)


def statusText(status):
    """
    What C{dna-ctl status} prints.
    """
    lines = [
        f"version:        {status['version']}",
        f"uptime:         {_seconds(status['uptime'])}",
        f"connections:    {status['connections']}",
        f"bindings:       {status['bindings']['outgoing']} outgoing, "
        f"{status['bindings']['incoming']} incoming",
        f"hosted domains: {', '.join(status['hostedDomains'])}",
        f"server names:   {', '.join(status['serverNames'])}",
    ]
    configuration = status.get("configuration")
    if configuration:
        lines += [
            f"configuration:  {configuration['path']}",
            f"listen:         {configuration['listen']}",
            f"dns:            {configuration['dns']['mode']} via "
            f"{', '.join(configuration['dns']['resolvers'])}",
            f"policy:         {configuration['policy']['delegation']}, fallback "
            f"{configuration['policy']['fallback']}",
        ]
    for name, value in sorted((status.get("limits") or {}).items()):
        lines.append(f"{name + ':':<16}{value}")
    flow = status.get("flow")
    if flow:
        lines.append(
            f"flow:           {flow['pausedSources']} paused now; {flow['paused']} pauses, "
            f"{flow['resumed']} resumptions (high-water {flow['highWater']} bytes)")
    return "\n".join(lines)


class _Command(usage.Options):
    """
    A command of C{dna-ctl}; its positional C{arguments} are named.
    """

    arguments = ()

    def getSynopsis(self):
        return f"Usage: dna-ctl [options] {self.synopsis}"

    def parseArgs(self, *values):
        if len(values) != len(self.arguments):
            raise usage.UsageError(f"expected {' '.join(self.arguments).upper() or 'no arguments'}")
        self.update(zip(self.arguments, values))


class _Connections(_Command):
    synopsis = "connections"
    longdesc = "The open S2S connections (the connection table, with TLS and counters)."


class _Bindings(_Command):
    synopsis = "bindings [--local D] [--remote D] [--stream S] [--proofs]"
    longdesc = ("The binding tables, both directions; with --proofs, when each "
                "binding's proof expires and is checked again.")
    optFlags = [
        ["proofs", None, "Show each binding's proof expiry and next re-check."],
    ]
    optParameters = [
        ["local", None, None, "Only pairs with this local domain."],
        ["remote", None, None, "Only pairs with this remote domain."],
        ["stream", None, None, "Only pairs bound on this stream."],
    ]


class _Revoke(_Command):
    synopsis = "revoke LOCAL REMOTE"
    longdesc = ("Revoke the peer's authorization to send from REMOTE to LOCAL (one of "
                "ours) on every stream that holds it (<db:result type='invalid'/>).")
    arguments = ("local", "remote")


class _Close(_Command):
    synopsis = "close STREAM"
    longdesc = ("Close one connection cleanly; what the peer did not acknowledge "
                "is sent again or bounced, as on any loss.")
    arguments = ("stream",)


class _Check(_Command):
    synopsis = "check DOMAIN"
    longdesc = ("Check DOMAIN's delegation through the server's checker and cache; "
                "exit status 1 when it is not delegated.")
    arguments = ("domain",)


class _Status(_Command):
    synopsis = "status"
    longdesc = "Version, uptime, configuration summary and limits."


class Options(usage.Options):
    """
    Command line options of C{dna-ctl}.
    """

    synopsis = "Usage: dna-ctl [--socket PATH | --config FILE] [--json] COMMAND [args]"
    longdesc = ("Show and act on a running twistd dna through its control API. "
                "Exit status: 0 done, 1 not found or refused, 2 usage error, "
                "3 the server cannot be reached.")
    optParameters = [
        ["socket", "s", None, "The control socket (default: the one the configuration names)."],
        ["config", "c", None, f"The configuration naming the socket (default {DEFAULT_CONFIG})."],
    ]
    optFlags = [["json", "j", "Print the API's JSON answer."]]
    subCommands = [
        ["connections", None, _Connections, _Connections.longdesc],
        ["bindings", None, _Bindings, _Bindings.longdesc],
        ["revoke", None, _Revoke, _Revoke.longdesc],
        ["close", None, _Close, _Close.longdesc],
        ["check", None, _Check, _Check.longdesc],
        ["status", None, _Status, _Status.longdesc],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("name a command: " + ", ".join(c[0] for c in self.subCommands))
        if self["socket"] is not None and self["config"] is not None:
            raise usage.UsageError("give --socket or --config, not both")


def socketPath(options):
    """
    The control socket the options name, directly or through the
    configuration.

    @raise _Unreachable: When the configuration names none.
    """
    if options["socket"] is not None:
        return options["socket"]
    path = options["config"]
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG):
            return DEFAULT_CONTROL_SOCKET
        path = DEFAULT_CONFIG
    try:
        settings = loadControlSettings(path)
    except ConfigurationError as e:
        raise _Unreachable(str(e)) from None
    if settings is None:
        raise _Unreachable(f"{path}: no [control] section: the server has no control endpoint")
    return settings.socket


#: Command -> (HTTP method, path, how the arguments make the request).
_REQUESTS = {
    "connections": ("GET", "/v1/connections", lambda o: {}),
    "bindings": ("GET", "/v1/bindings", lambda o: {"query": dict(
        {k: o[k] for k in ("local", "remote", "stream") if o[k] is not None},
        **({"proofs": "1"} if o["proofs"] else {}))}),
    "revoke": ("POST", "/v1/revoke", lambda o: {"body": {"local": o["local"], "remote": o["remote"]}}),
    "close": ("POST", "/v1/close", lambda o: {"body": {"stream": o["stream"]}}),
    "check": ("POST", "/v1/check", lambda o: {"body": {"domain": o["domain"]}}),
    "status": ("GET", "/v1/status", lambda o: {}),
}


def render(command, answer, out):
    """
    Print a successful answer for people.

    @return: The exit status.
    """
    from dna.app.check import printReport

    write = lambda text: out.write(text + "\n")  # noqa: E731
    if command == "connections":
        write(connectionsTable(answer))
    elif command == "bindings":
        write(bindingsTable(answer))
    elif command == "revoke":
        write(f"revoked {answer['remote']} -> {answer['local']} on "
              f"{', '.join(answer['streams'])}")
    elif command == "close":
        write(f"closed {answer['stream']}")
    elif command == "check":
        return printReport(answer, out)
    else:
        write(statusText(answer))
    return EXIT_OK


@defer.inlineCallbacks
def run(reactor, options, out=None, err=None, agent=None):
    """
    Send the request of parsed L{Options} and print the answer.

    @param agent: The L{IAgent} to ask; by default L{unixAgent} of the
        socket the options name.
    @return: A L{Deferred} firing with the exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    command = options.subCommand
    method, path, arguments = _REQUESTS[command]
    where = ""
    try:
        if agent is None:
            socket = socketPath(options)
            where = f" ({socket})"
            agent = unixAgent(reactor, socket)
        code, answer = yield request(agent, method.encode("ascii"), path,
                                     **arguments(options.subOptions))
    except _Unreachable as e:
        err.write(f"dna-ctl: {e}{where}\n")
        return EXIT_UNREACHABLE
    if code >= 300:
        if options["json"]:
            out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
        err.write(f"dna-ctl: {answer.get('error', code)}\n")
        return EXIT_USAGE if code == 400 else EXIT_REFUSED
    if options["json"]:
        out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
        if command == "check":
            return EXIT_OK if answer["delegated"] else EXIT_REFUSED
        return EXIT_OK
    return render(command, answer, out)


def main(argv=None, _reactor=None):
    """
    The C{dna-ctl} console script: exits with the status of L{run}.
    """
    runCommand("dna-ctl", Options(), run, argv, _reactor)
