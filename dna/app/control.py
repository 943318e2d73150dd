"""
The control API: a running server's tables, and the operator's actions on
them, as JSON over HTTP (C{twisted.web}).

Served on a UNIX socket of mode 0600 (C{[control] socket}) and, when asked,
on a loopback TCP port that wants a bearer token (C{[control] listen},
C{token-file}). Paths are versioned; C{dna-ctl} (L{dna.app.ctl}) speaks it::

    GET  /v1/connections         the connection table (draft-ietf-xmpp-dna-01
                                 section 4), with TLS, counters and times
    GET  /v1/bindings            both binding tables; ?local= ?remote= ?stream=;
                                 ?proofs=1: each binding's proof expiry and
                                 next re-check (issue 11)
    POST /v1/revoke              {"local": D, "remote": D}: section 6
                                 revocation on every stream holding the pair
    POST /v1/close               {"stream": ID}: close one connection cleanly
    POST /v1/check               {"domain": D}: a delegation check through the
                                 server's checker and cache, as dna-check shows it
    GET  /v1/status              version, uptime, configuration summary, limits

Answers are JSON objects. A bad request is a 4xx answer
C{{"error": "...", "field": "..."}} naming the field at fault; nothing here
blocks the reactor (a check answers when its L{Deferred} fires).
"""

import datetime
import hmac
import json

from cryptography.x509.oid import NameOID
from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.web import resource, server

import dna
from dna.channel.tls import peerCertificate
from dna.core.names import normalizeDomain
from dna.core.tables import INCOMING, OUTGOING
from dna.dns.verdict import ALLOW_INSECURE
from dna.error import InvalidAddress

_log = Logger()

#: The path segment of this version of the API.
API_VERSION = b"v1"

#: Most bytes of a request body.
MAX_BODY = 64 * 1024


class _RequestError(Exception):
    """
    A request the API refuses: HTTP C{code}, naming C{field} when one is at
    fault.
    """

    def __init__(self, code, message, field=None):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.field = field

    def asJSON(self):
        answer = {"error": self.message}
        if self.field is not None:
            answer["field"] = self.field
        return answer


def _domain(value, field):
    """
    A domain given in a request, normalised.

    @raise _RequestError: 400 if it is not a domain.
    """
    if not isinstance(value, str) or not value:
        raise _RequestError(400, f"{field}: expected a domain", field)
    try:
        return normalizeDomain(value)
    except InvalidAddress:
        raise _RequestError(400, f"{field}: {value!r} is not a domain", field) from None


def _certificateSummary(transport):
    """
    Subject and expiry of the peer's certificate, or L{None}.
    """
    try:
        certificate = peerCertificate(transport)
    except Exception:
        return None
    if certificate is None:
        return None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "subject": certificate.subject.rfc4514_string(),
        "commonName": names[0].value if names else None,
        "notAfter": certificate.not_valid_after_utc.isoformat(),
    }


def _tlsSummary(transport):
    """
    Protocol version and cipher of a TLS connection, or L{None}.
    """
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    connection = transport.getHandle()
    try:
        return {
            "version": connection.get_protocol_version_name(),
            "cipher": connection.get_cipher_name(),
        }
    except AttributeError:
        return None


def _isoTime(seconds):
    """
    Seconds since the epoch as ISO 8601 in UTC, or L{None}.
    """
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _proofSummary(streamID, proof):
    """
    When a binding's proof expires and is checked again
    (L{dna.core.proofs.Proof}).
    """
    return {
        "stream": streamID,
        "expires": _isoTime(proof.expires if proof is not None else None),
        "nextCheck": _isoTime(proof.nextCheck if proof is not None else None),
    }


def authentication(authorization):
    """
    How the peer of a stream authenticated: C{"dna"}, or the legacy
    mechanism (C{"dialback"}, C{"EXTERNAL"}; L{None} while unknown).
    """
    if not getattr(authorization, "legacy", False):
        return "dna"
    return (getattr(authorization, "mechanism", None)
            or getattr(authorization.xs, "legacyMechanism", None))


class Control:
    """
    The operations of the control API on a running L{DNAService}: plain
    data in and out, no HTTP.
    """

    def __init__(self, s2s, configuration, clock):
        """
        @param s2s: The L{dna.app.service.DNAService}.
        @param configuration: Its L{dna.app.config.Configuration}, or L{None}
            (the status then says less).
        @param clock: An L{IReactorTime}: uptime, ages, idle times.
        """
        self._s2s = s2s
        self._configuration = configuration
        self._clock = clock
        self._started = clock.seconds()

    @property
    def _federation(self):
        return self._s2s.federation

    def connections(self):
        """
        @return: One L{dict} per open, authenticated stream, in the order
            they opened.
        """
        now = self._clock.seconds()
        meters = self._s2s.meters
        answer = []
        tables = self._federation.tables
        for streamID in tables.connections:
            authorization = self._federation.streams.get(streamID)
            if authorization is None:
                continue
            row = tables.connections.get(streamID)
            xs = authorization.xs
            transport = xs.transport
            meter = meters.get(xs)
            how = authentication(authorization)
            peer = transport.getPeer() if transport is not None else None
            answer.append({
                "stream": streamID,
                "direction": OUTGOING if authorization.initiating else INCOMING,
                "peer": (f"{peer.host}:{peer.port}"
                         if getattr(peer, "host", None) is not None else None),
                "localServerName": (xs.thisEntity.full()
                                    if xs.thisEntity is not None else None),
                "remoteServerNames": sorted(row.serverNames),
                "delegatedNames": sorted(row.delegatedNames),
                "kind": "dna" if how == "dna" else "legacy",
                "authentication": how,
                "tls": _tlsSummary(transport),
                "peerCertificate": _certificateSummary(transport),
                "identityProofExpires": _isoTime(
                    self._federation.revalidator.identityProofExpires(streamID)),
                "bidi": bool(authorization.bidi),
                # Which way its pairs go: a bidi stream carries both
                # (draft-ietf-xmpp-dna-10 section 4.4, piggybacking).
                "pairs": {INCOMING: len(tables.incoming.pairs(streamID)),
                          OUTGOING: len(tables.outgoing.pairs(streamID))},
                "age": None if meter is None else round(now - meter.opened, 3),
                "idle": None if meter is None else round(now - meter.last, 3),
                "stanzas": {
                    "in": authorization.delivered + authorization.filter.rejected,
                    "refused": authorization.filter.rejected,
                    "out": authorization.sent,
                },
                "bytes": {
                    "in": None if meter is None else meter.bytesIn,
                    "out": None if meter is None else meter.bytesOut,
                },
            })
        return answer

    def bindings(self, local=None, remote=None, stream=None, proofs=False):
        """
        The binding tables, both directions, filtered.

        @param proofs: Whether to say, for each stream of each binding, when
            its proof expires and when it is checked again (issue 11).
        @return: A L{list} of C{{"direction", "local", "remote", "streams"}},
            sorted by direction, local and remote; with C{proofs}, each has
            C{"proofs"} too: one C{{"stream", "expires", "nextCheck"}} per
            stream, ISO 8601 times in UTC or L{None} when unknown.
        """
        tables = self._federation.tables
        revalidator = self._federation.revalidator
        answer = []
        for direction, table in ((INCOMING, tables.incoming), (OUTGOING, tables.outgoing)):
            pairs = set()
            for streamID in ([stream] if stream is not None else table.boundStreams()):
                pairs.update(table.pairs(streamID))
            for pairLocal, pairRemote in sorted(pairs):
                if local is not None and pairLocal != local:
                    continue
                if remote is not None and pairRemote != remote:
                    continue
                streams = list(table.streams(pairLocal, pairRemote))
                row = {
                    "direction": direction,
                    "local": pairLocal,
                    "remote": pairRemote,
                    "streams": streams,
                }
                if proofs:
                    row["proofs"] = [
                        _proofSummary(streamID, revalidator.proofOf(
                            direction, pairLocal, pairRemote, streamID))
                        for streamID in streams]
                answer.append(row)
        return answer

    def revoke(self, local, remote):
        """
        Revoke the peer's authorization to send from C{remote} to C{local}
        on every stream that holds it (section 6): each gets
        C{<db:result type='invalid'/>}, and the pair is unbound here.

        @return: C{{"local", "remote", "streams"}}: the streams it was
            revoked on.
        @raise _RequestError: 404 when no stream holds the pair.
        """
        revoked = []
        for streamID in self._federation.tables.incoming.streams(local, remote):
            authorization = self._federation.streams.get(streamID)
            if authorization is not None and authorization.revoke(local, remote):
                revoked.append(streamID)
        if not revoked:
            raise _RequestError(
                404, f"no stream carries {remote} -> {local} (incoming pairs "
                     f"only: the receiving side revokes)")
        _log.info(
            "Operator revoked {remote} -> {local} on {streams}",
            event="revoke", local=local, remote=remote, streams=revoked,
            reason="operator",
        )
        return {"local": local, "remote": remote, "streams": revoked}

    def close(self, streamID):
        """
        Close one stream cleanly.

        @return: A L{Deferred} firing with C{{"stream": streamID,
            "closed": True}} once it is closed.
        @raise _RequestError: 404 when no such stream is open.
        """
        closing = self._s2s.closeStream(streamID)
        if closing is None:
            raise _RequestError(404, f"no open stream {streamID!r}", "stream")
        return closing.addCallback(lambda ignored: {"stream": streamID, "closed": True})

    def check(self, domain):
        """
        Check C{domain}'s delegation through the server's checker (and its
        cache), and whether it is delegated to the server names of the
        streams open to it.

        @return: A L{Deferred} firing with L{dna.app.check.reportData}'s
            L{dict}.
        """
        from dna.app.check import reportData

        checker = self._s2s.checker
        allowInsecure = checker.policyFor(domain) == ALLOW_INSECURE

        def report(result):
            return reportData(result, [], allowInsecure)

        return defer.maybeDeferred(checker.check, domain).addCallback(report)

    def status(self):
        """
        @return: Version, uptime, counts and the configuration's summary (no
            secrets, no key contents).
        """
        federation = self._federation
        tables = federation.tables
        answer = {
            "version": dna.__version__,
            "uptime": round(self._clock.seconds() - self._started, 3),
            "connections": len(tables.connections),
            "bindings": {INCOMING: len(tables.incoming), OUTGOING: len(tables.outgoing)},
            "hostedDomains": sorted(federation.hostedDomains),
            "serverNames": sorted(self._s2s.serverNames),
        }
        c = self._configuration
        if c is not None:
            answer["configuration"] = {
                "path": c.path,
                "listen": c.listen,
                "serverNames": [{"name": s.name, "certificate": s.certificatePath,
                                 "notAfter": str(s.notAfter)} for s in c.serverNames],
                "ca": c.caPath,
                "dns": {"mode": c.dnsMode,
                        "resolvers": [f"{host}:{port}" for host, port in c.resolvers],
                        "trustAnchors": c.trustAnchorsPath,
                        "trustedPath": c.trustedPath,
                        "timeout": c.dnsTimeout},
                "policy": {"delegation": c.delegationPolicy,
                           "allowInsecure": sorted(c.allowInsecure),
                           "srvFallback": c.srvFallback,
                           "fallback": c.fallback},
                "components": c.componentListen,
                "control": None if c.control is None else {
                    "socket": c.control.socket, "listen": c.control.listen},
            }
            answer["limits"] = {
                "idleTimeout": c.idleTimeout,
                "connectTimeout": c.connectTimeout,
                "maxPending": c.maxPending,
                "requestTimeout": c.requestTimeout,
                "queueLimit": c.queueLimit,
                "highWater": c.limits.highWater,
            }
        flow = self._s2s.flow
        answer["flow"] = {
            "highWater": flow.highWater,
            "pausedSources": flow.pausedSources,
            "paused": federation.counters["flow-paused"],
            "resumed": federation.counters["flow-resumed"],
        }
        return answer


class _Endpoint(resource.Resource):
    """
    One path of the API: a handler per HTTP method, called with the query
    arguments (GET) or the JSON body (POST) and answering data or a
    L{Deferred} of data, written as JSON.
    """

    isLeaf = True

    def __init__(self, **handlers):
        resource.Resource.__init__(self)
        self._handlers = {method.encode("ascii"): h for method, h in handlers.items()}

    def render(self, request):
        handler = self._handlers.get(request.method)
        if handler is None:
            request.setHeader(b"allow", b", ".join(sorted(self._handlers)))
            return _answer(request, 405, {"error": "method not allowed"})
        try:
            if request.method == b"POST":
                result = handler(_body(request))
            else:
                result = handler(_query(request))
        except _RequestError as e:
            return _answer(request, e.code, e.asJSON())
        if not isinstance(result, defer.Deferred):
            return _answer(request, 200, result)
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def write(data, code=200):
            if not finished:
                request.write(_answer(request, code, data))
                request.finish()

        def failed(failure):
            if failure.check(_RequestError):
                write(failure.value.asJSON(), failure.value.code)
                return
            _log.failure("Control request {path} failed", failure, path=request.path)
            write({"error": failure.getErrorMessage() or "internal error"}, 500)

        result.addCallbacks(write, failed)
        return server.NOT_DONE_YET


def _answer(request, code, data):
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(data, sort_keys=True).encode("utf-8") + b"\n"


def _query(request):
    """
    The query arguments, each given at most once, as text.

    @raise _RequestError: 400 for an argument given twice.
    """
    arguments = {}
    for name, values in (request.args or {}).items():
        field = name.decode("utf-8", "replace")
        if len(values) != 1:
            raise _RequestError(400, f"{field}: give it once", field)
        arguments[field] = values[0].decode("utf-8", "replace")
    return arguments


def _body(request):
    """
    The request body, a JSON object.

    @raise _RequestError: 400 or 413 when it is not.
    """
    request.content.seek(0)
    data = request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise _RequestError(413, f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(data or b"{}")
    except ValueError as e:
        raise _RequestError(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise _RequestError(400, "the body must be a JSON object")
    return body


def _fields(arguments, required, optional=()):
    """
    Refuse unknown and missing fields.

    @raise _RequestError: 400 naming the field.
    """
    for name in arguments:
        if name not in required and name not in optional:
            raise _RequestError(400, f"{name}: unknown field", name)
    for name in required:
        if name not in arguments:
            raise _RequestError(400, f"{name}: required", name)


class _BearerGuard(resource.Resource):
    """
    Let through only requests with C{Authorization: Bearer <token>}.
    """

    def __init__(self, wrapped, token):
        resource.Resource.__init__(self)
        self._wrapped = wrapped
        self._token = token.encode("ascii")

    def _allowed(self, request):
        header = request.getHeader(b"authorization") or b""
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)

    def getChildWithDefault(self, name, request):
        if not self._allowed(request):
            return _Refused()
        return self._wrapped.getChildWithDefault(name, request)

    def render(self, request):
        if not self._allowed(request):
            return _Refused().render(request)
        return self._wrapped.render(request)


class _Refused(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"www-authenticate", b'Bearer realm="dna"')
        return _answer(request, 401, {"error": "a valid bearer token is required"})


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        return _answer(request, 404, {"error": f"no such path {request.path.decode('utf-8', 'replace')}"})


class _Tree(resource.Resource):
    """
    A directory of the API: unknown children are JSON 404s.
    """

    def getChild(self, name, request):
        return _NotFound()

    def render(self, request):
        return _NotFound().render(request)


def controlResource(control, token=None):
    """
    The resource tree of the API.

    @param control: A L{Control}.
    @param token: A bearer token every request must carry, or L{None}.
    @rtype: L{resource.IResource}
    """

    def bindings(arguments):
        _fields(arguments, (), ("local", "remote", "stream", "proofs"))
        local = arguments.get("local")
        remote = arguments.get("remote")
        proofs = arguments.get("proofs", "0")
        if proofs not in ("0", "1"):
            raise _RequestError(400, "proofs: expected 0 or 1", "proofs")
        return control.bindings(
            local=None if local is None else _domain(local, "local"),
            remote=None if remote is None else _domain(remote, "remote"),
            stream=arguments.get("stream"),
            proofs=proofs == "1",
        )

    def noArguments(answer):
        def handle(arguments):
            _fields(arguments, ())
            return answer()
        return handle

    def revoke(body):
        _fields(body, ("local", "remote"))
        return control.revoke(_domain(body["local"], "local"), _domain(body["remote"], "remote"))

    def close(body):
        _fields(body, ("stream",))
        if not isinstance(body["stream"], str) or not body["stream"]:
            raise _RequestError(400, "stream: expected a stream id", "stream")
        return control.close(body["stream"])

    def check(body):
        _fields(body, ("domain",))
        return control.check(_domain(body["domain"], "domain"))

    version = _Tree()
    version.putChild(b"connections", _Endpoint(GET=noArguments(control.connections)))
    version.putChild(b"bindings", _Endpoint(GET=bindings))
    version.putChild(b"revoke", _Endpoint(POST=revoke))
    version.putChild(b"close", _Endpoint(POST=close))
    version.putChild(b"check", _Endpoint(POST=check))
    version.putChild(b"status", _Endpoint(GET=noArguments(control.status)))
    root = _Tree()
    root.putChild(API_VERSION, version)
    if token is not None:
        return _BearerGuard(root, token)
    return root


def controlServices(control, settings, reactor):
    """
    The listeners of the control API that C{[control]} asks for.

    @param control: A L{Control}.
    @param settings: The L{dna.app.config.ControlSettings}.
    @return: A L{list} of L{twisted.application.service.IService}.
    """
    from twisted.application.internet import StreamServerEndpointService
    from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString

    site = server.Site(controlResource(control))
    site.displayTracebacks = False
    unix = StreamServerEndpointService(
        UNIXServerEndpoint(reactor, settings.socket, mode=0o600, wantPID=True), site)
    unix._raiseSynchronously = True
    services = [unix]
    if settings.listen is not None:
        guarded = server.Site(controlResource(control, token=settings.token))
        guarded.displayTracebacks = False
        tcp = StreamServerEndpointService(serverFromString(reactor, settings.listen), guarded)
        tcp._raiseSynchronously = True
        services.append(tcp)
    return services
