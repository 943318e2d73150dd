"""
Server Dialback (XEP-0220) for peers that do not speak DNA, with the keys
of XEP-0185.

draft-ietf-xmpp-dna-10 section 4.3: a server whose certificate the peer
cannot verify asserts a domain with C{<db:result/>} carrying a key; the
Receiving Server asks the domain's Authoritative Server, over a connection of
its own, with C{<db:verify/>} whether the key is genuine. Section 4.4: more
domain pairs ride on an authenticated stream the same way.

Three roles, three classes:

  - Originating Server: L{OriginatingDialbackInitializer} sends the key for
    the stream's pair and waits for the verdict.
  - Authoritative Server: L{AuthoritativeResponder} answers C{<db:verify/>}
    about the keys L{DialbackKeys} made.
  - Receiving Server: L{Verifier} asks Authoritative Servers, sharing one
    stream per pair of domains between all requests instead of a connection
    per key.

Unlike L{wokkel.server}: the secret may be text or bytes; keys are compared
with L{hmac.compare_digest}; a second C{<db:result/>} adds a pair and never
replaces the first (L{dna.legacy.authorization}); dialback errors (XEP-0220 section 2.4)
are sent and understood.
"""

import hashlib
import hmac
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from twisted.words.xish import domish

from dna.core.authorization import DB_RESULT, dialbackElement, errorFromResult
from dna.core.names import normalizeDomain
from dna.error import (
    ConnectionLost,
    DialbackFailed,
    InvalidAddress,
    NoDialback,
    VerificationFailed,
)
from dna.namespaces import NS_DIALBACK, NS_DIALBACK_FEATURE

_log = Logger()

#: The XPath query for C{<db:verify/>} elements.
DB_VERIFY = "/verify[@xmlns='%s']" % (NS_DIALBACK,)

#: Seconds a Receiving Server waits for an Authoritative Server's verdict.
DEFAULT_VERIFY_TIMEOUT = 20.0


def generateKey(secret, receivingServer, originatingServer, streamID):
    """
    A dialback key (XEP-0185 section 3): the hex HMAC-SHA256, keyed with the
    hex SHA-256 of the secret, of "receiving originating streamID".

    @param secret: The Authoritative Server's secret, text or bytes.
    @type secret: L{str} or L{bytes}
    @rtype: L{str}
    """
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    hashedSecret = hashlib.sha256(secret).hexdigest().encode("ascii")
    message = " ".join([receivingServer, originatingServer, streamID])
    return hmac.new(hashedSecret, message.encode("utf-8"), hashlib.sha256).hexdigest()


class DialbackKeys:
    """
    The dialback keys of one Authoritative Server: all its domains share one
    secret, which its Originating Server uses too.
    """

    def __init__(self, secret=None):
        """
        @param secret: Text or bytes; a random one when L{None}. Servers
            that share the domains (a cluster) must share it.
        """
        if secret is None:
            secret = secrets.token_hex(32)
        if not isinstance(secret, (str, bytes)) or not secret:
            raise ValueError("a dialback secret is non-empty text or bytes")
        self._secret = secret

    def key(self, receivingServer, originatingServer, streamID):
        """
        The key for a stream from C{originatingServer} to
        C{receivingServer} with the given id.

        @rtype: L{str}
        """
        return generateKey(self._secret, receivingServer, originatingServer, streamID)

    def isValid(self, key, receivingServer, originatingServer, streamID):
        """
        Whether C{key} is the one we made for those names, in constant time.

        @rtype: L{bool}
        """
        expected = self.key(receivingServer, originatingServer, streamID)
        return hmac.compare_digest(key.strip().encode("utf-8"), expected.encode("ascii"))


def dialbackFeature():
    """
    The stream feature of XEP-0220 section 2.4: dialback, with errors.
    """
    feature = domish.Element((NS_DIALBACK_FEATURE, "dialback"))
    feature.addElement("errors")
    return feature


def offersDialback(xs):
    """
    Whether the Receiving Server of an initiating stream accepts dialback:
    it advertised the XEP-0220 feature, or declared the dialback namespace
    in its stream header as older servers do.
    """
    features = getattr(xs, "features", {})
    return (NS_DIALBACK_FEATURE, "dialback") in features or getattr(
        xs, "peerDeclaresDialback", False
    )


def _parseAddresses(element):
    """
    The normalised (from, to) of a dialback element.

    @raise InvalidAddress: When one is missing or malformed.
    """
    return (
        normalizeDomain(element.getAttribute("from")),
        normalizeDomain(element.getAttribute("to")),
    )


class AuthoritativeResponder:
    """
    Authoritative Server: answer C{<db:verify/>} requests about the keys of
    our domains (XEP-0220 section 2.1.2), on any stream they arrive on.
    """

    def __init__(self, keys, hostedDomains):
        """
        @param keys: Our L{DialbackKeys}.
        @param hostedDomains: A container of our normalised domains.
        """
        self._keys = keys
        self._hosted = hostedDomains

    def install(self, xs):
        """
        Answer the requests that arrive on C{xs}, from now on.
        """
        xs.addObserver(DB_VERIFY, self._onVerify, xs=xs)

    def _onVerify(self, element, xs):
        if element.getAttribute("type") is not None:
            # An answer: for a Verifier on this stream, if any.
            return
        element.handled = True
        streamID = element.getAttribute("id")
        try:
            receiving, originating = _parseAddresses(element)
        except InvalidAddress as e:
            _log.info("<db:verify/> with bad address {address!r}", address=e.address)
            xs.sendStreamError(error.StreamError("improper-addressing"))
            return
        if not streamID:
            xs.sendStreamError(error.StreamError("invalid-id"))
            return
        if originating not in self._hosted:
            _log.info(
                "Asked to verify a key of {originating}, not ours", originating=originating
            )
            xs.send(
                dialbackElement(
                    "verify", originating, receiving, elementType="error", streamID=streamID,
                    stanzaError=error.StanzaError("item-not-found", type="cancel"),
                )
            )
            return
        valid = self._keys.isValid(str(element), receiving, originating, streamID)
        _log.info(
            "Key of {originating} for {receiving} (stream {streamID}) is {verdict}",
            originating=originating,
            receiving=receiving,
            streamID=streamID,
            verdict="valid" if valid else "invalid",
        )
        xs.send(
            dialbackElement(
                "verify", originating, receiving, elementType="valid" if valid else "invalid",
                streamID=streamID,
            )
        )


class OriginatingDialbackInitializer:
    """
    Originating Server: authenticate an initiating stream's pair with a
    dialback key, unless SASL EXTERNAL already did (C{xs.legacyMechanism}).

    On success, C{xs.legacyMechanism} is C{"dialback"}.
    """

    def __init__(self, xs, sender, target, keys, allowed=True):
        """
        @param sender: Our domain, the stream's 'from'.
        @param target: The peer's domain, the stream's 'to'.
        @param keys: Our L{DialbackKeys}.
        @param allowed: Whether the policy allows dialback.
        """
        self.xmlstream = xs
        self._sender = sender
        self._target = target
        self._keys = keys
        self._allowed = allowed
        self._deferred = None

    def initialize(self):
        xs = self.xmlstream
        if xs.legacyMechanism is not None:
            return None
        if not self._allowed:
            raise NoDialback(self._target, "the policy does not allow dialback")
        if not offersDialback(xs):
            raise NoDialback(self._target, "the peer offers neither SASL EXTERNAL we can use nor dialback")
        self._deferred = defer.Deferred()
        xs.addObserver(DB_RESULT, self._onResult)
        xs.send(
            dialbackElement(
                "result", self._sender, self._target,
                key=self._keys.key(self._target, self._sender, xs.sid),
            )
        )
        return self._deferred

    def _onResult(self, element):
        try:
            sender, target = _parseAddresses(element)
        except InvalidAddress:
            return
        if (sender, target) != (self._target, self._sender):
            return
        resultType = element.getAttribute("type")
        if resultType not in ("valid", "invalid", "error"):
            return
        element.handled = True
        self.xmlstream.removeObserver(DB_RESULT, self._onResult)
        d, self._deferred = self._deferred, None
        if resultType == "valid":
            self.xmlstream.legacyMechanism = "dialback"
            d.callback(None)
            return
        condition, text = errorFromResult(element)
        d.errback(DialbackFailed(self._sender, self._target, condition, text))


class _VerificationStream:
    """
    One stream from a local domain to a remote one, carrying C{<db:verify/>}
    requests; requests wait while it connects.
    """

    def __init__(self, local, remote, clock, timeout, onGone):
        self.local = local
        self.remote = remote
        self._clock = clock
        self._timeout = timeout
        self._onGone = onGone
        self._xs = None
        self._gone = False
        # stream id -> (key, [Deferred], timer)
        self._waiting = {}

    def connected(self, xs):
        if self._gone:
            xs.transport.loseConnection()
            return
        self._xs = xs
        xs.addObserver(DB_VERIFY, self._onAnswer)
        xs.addOnetimeObserver(STREAM_END_EVENT, self._onEnd)
        for streamID, (key, waiters, timer) in list(self._waiting.items()):
            self._send(streamID, key)

    def failed(self, failure):
        self._end(VerificationFailed(self.remote, failure.getErrorMessage()))

    def ask(self, streamID, key):
        waiting = self._waiting.get(streamID)
        d = defer.Deferred()
        if waiting is not None:
            if not hmac.compare_digest(waiting[0].encode("utf-8"), key.encode("utf-8")):
                return defer.fail(
                    VerificationFailed(self.remote, "another key for stream {} is being verified".format(streamID))
                )
            waiting[1].append(d)
            return d
        timer = self._clock.callLater(self._timeout, self._timedOut, streamID)
        self._waiting[streamID] = (key, [d], timer)
        if self._xs is not None:
            self._send(streamID, key)
        return d

    def _send(self, streamID, key):
        self._xs.send(dialbackElement("verify", self.local, self.remote, key=key, streamID=streamID))

    def _answered(self, streamID, outcome):
        key, waiters, timer = self._waiting.pop(streamID, (None, (), None))
        if timer is not None and timer.active():
            timer.cancel()
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

    def _timedOut(self, streamID):
        self._answered(
            streamID,
            Failure(VerificationFailed(self.remote, "no answer in {}s".format(self._timeout))),
        )

    def _onAnswer(self, element):
        resultType = element.getAttribute("type")
        if resultType is None:
            return
        try:
            sender, target = _parseAddresses(element)
        except InvalidAddress:
            return
        streamID = element.getAttribute("id")
        if (sender, target) != (self.remote, self.local) or streamID not in self._waiting:
            return
        element.handled = True
        if resultType == "error":
            condition, text = errorFromResult(element)
            self._answered(
                streamID, Failure(VerificationFailed(self.remote, "dialback error {}".format(condition)))
            )
        else:
            self._answered(streamID, resultType == "valid")

    def _onEnd(self, reason):
        self._end(ConnectionLost(None, reason))

    def _end(self, reason):
        if self._gone:
            return
        self._gone = True
        self._onGone(self)
        for streamID in list(self._waiting):
            self._answered(streamID, Failure(reason))


class Verifier:
    """
    Receiving Server: ask Authoritative Servers whether dialback keys are
    theirs (XEP-0220 section 2.1.2), over streams kept open and shared by
    all requests between the same two domains.
    """

    def __init__(self, openStream, clock, timeout=DEFAULT_VERIFY_TIMEOUT):
        """
        @param openStream: (local domain, remote domain) -> L{Deferred}
            firing with a stream from one to the other, ready to carry
            C{<db:verify/>} (TLS done, no authentication needed); it closes
            when idle.
        @param clock: The L{IReactorTime} of verdict timeouts.
        @param timeout: Seconds to wait for each verdict.
        """
        self._open = openStream
        self._clock = clock
        self._timeout = timeout
        # (local, remote) -> _VerificationStream
        self._streams = {}

    def verify(self, local, remote, streamID, key):
        """
        Ask C{remote}'s Authoritative Server about a key it sent us on the
        stream C{streamID}.

        @param local: Our domain (the key's receiving domain).
        @param remote: The domain asserted (the originating domain).
        @return: A L{Deferred} firing with C{True} (valid) or C{False}
            (invalid), or failing with L{VerificationFailed} or
            L{ConnectionLost}.
        """
        pair = (local, remote)
        stream = self._streams.get(pair)
        if stream is not None:
            return stream.ask(streamID, key)
        stream = self._streams[pair] = _VerificationStream(
            local, remote, self._clock, self._timeout, self._gone
        )
        answer = stream.ask(streamID, key)
        opening = defer.maybeDeferred(self._open, local, remote)
        opening.addCallbacks(stream.connected, stream.failed)
        return answer

    def _gone(self, stream):
        if self._streams.get((stream.local, stream.remote)) is stream:
            del self._streams[(stream.local, stream.remote)]
