"""
Domain pairs on legacy streams: streams between domains, with peers that do
not speak DNA (draft-ietf-xmpp-dna-01 section 7).

A legacy stream is authenticated for the pair of its header, by SASL
EXTERNAL or Server Dialback (L{dna.legacy.sasl}, L{dna.legacy.dialback}); more pairs
may ride on it with C{<db:result/>} carrying a dialback key
(draft-ietf-xmpp-dna-10 section 4.4, XEP-0220 section 2.5). Each
authenticated pair goes into the same binding tables as DNA's, so routing and
the enforcement filter (L{dna.core.enforcement}) treat both kinds of streams alike:
a legacy stream carries exactly the pairs authenticated on it.

L{LegacyAuthorization} is the L{StreamAuthorization} of such a stream; only
the checks differ. The peer's C{<db:result/>} is verified with the
Authoritative Server of its domain, or by its certificate (XEP-0344), instead
of a delegation; ours carry keys, and dialback errors (XEP-0220 section 2.4)
are understood. A second C{<db:result/>} adds a pair: nothing replaces the
pairs already bound.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error

from dna.channel.stream import provenStream
from dna.core.authorization import (
    StreamAuthorization,
    dialbackElement,
    errorFromResult,
    resultElement,
)
from dna.core.names import normalizeDomain
from dna.core.tables import INCOMING, OUTGOING
from dna.error import (
    AuthorizationRefused,
    CannotCarry,
    ConnectionLost,
    DNAError,
    InvalidAddress,
)

_log = Logger()


class LegacyAuthorization(StreamAuthorization):
    """
    The C{<db:result/>} exchange and the enforcement of one legacy stream.

    @ivar domain: The peer's domain on the stream header.
    @ivar mechanism: How the header's pair was authenticated: C{"EXTERNAL"}
        or C{"dialback"}.
    @ivar offersDialback: Whether the peer takes C{<db:result/>} with keys
        on this stream (a stream we opened).
    """

    legacy = True
    # XEP-0220: a refusal may be a bare type='invalid'.
    refusalsCarryErrors = False

    def __init__(self, xs, tables, hostedDomains, checker, initiating,
                 serverNames=(), bidi=False, keys=None, verifier=None,
                 policy=None, peerProves=None, domain=None, mechanism=None,
                 offersDialback=False, **kw):
        """
        @param keys: Our L{dna.legacy.dialback.DialbackKeys}.
        @param verifier: A L{dna.legacy.dialback.Verifier} for the peer's
            keys, or L{None} when the policy refuses dialback.
        @param policy: The L{dna.legacy.policy.FallbackPolicy}.
        @param peerProves: Called with a domain: whether the peer's TLS
            certificate verified and is valid for it.
        @param domain: The peer's domain on the stream header.
        @param mechanism: How the header's pair was authenticated.
        @param offersDialback: See the instance variable.
        @param kw: The rest of L{StreamAuthorization}'s arguments.
        """
        StreamAuthorization.__init__(
            self, xs, tables, hostedDomains, checker, initiating,
            serverNames=serverNames, bidi=bidi, **kw
        )
        self._keys = keys
        self._verifier = verifier
        self._policy = policy
        self._peerProves = peerProves or (lambda domain: False)
        self.domain = domain
        self.mechanism = mechanism
        self.offersDialback = offersDialback

    def authenticated(self, local, remote, how):
        """
        Bind a pair the stream authenticated: for what we send on a stream we
        opened, what we receive on one the peer opened; and, on a
        bidirectional stream (XEP-0288), the other way too when the peer has
        proved C{remote} (it always has on a stream it opened).

        @param local: Our domain.
        @param remote: The peer's.
        @param how: What authenticated it, for the log.
        """
        self._tables.connections.addDelegatedNames(self.streamID, [remote])
        if self.initiating:
            self._tables.bind(OUTGOING, local, remote, self.streamID)
            reverse = INCOMING if self.bidi and self._peerProves(remote) else None
        else:
            self._tables.bind(INCOMING, local, remote, self.streamID)
            provenStream(self.xs)
            reverse = OUTGOING if self.bidi else None
        if reverse is not None:
            self._tables.bind(reverse, local, remote, self.streamID)
        _log.info(
            "Legacy stream {streamID}: {local} <-> {remote} authenticated by {how}"
            "{both}",
            event="pair-granted",
            reason=how,
            streamID=self.streamID,
            local=local,
            remote=remote,
            how=how,
            both=" (both ways)" if reverse is not None else "",
        )

    # Originating role

    def request(self, sender, target):
        """
        Piggy-back C{sender} -> C{target} on this stream with a keyed
        C{<db:result/>} (draft-ietf-xmpp-dna-10 section 4.4.1). Only the
        peer's own domain, on a stream we opened.

        @return: See L{StreamAuthorization.request}; refusals and dialback
            errors fail with L{AuthorizationRefused}.
        """
        if self._closed:
            return defer.fail(ConnectionLost(self.streamID))
        if self._tables.outgoing.accepts(self.streamID, sender, target):
            return defer.succeed(None)
        if not self.initiating or target != self.domain or not self.offersDialback:
            return defer.fail(
                CannotCarry(self.streamID, sender, target)
            )
        return self._ask(
            (sender, target),
            lambda: dialbackElement(
                "result", sender, target, key=self._keys.key(target, sender, self.streamID)
            ),
        )

    def _onResult(self, result):
        if result.getAttribute("type") != "error":
            StreamAuthorization._onResult(self, result)
            return
        result.handled = True
        try:
            pair = (normalizeDomain(result.getAttribute("to")),
                    normalizeDomain(result.getAttribute("from")))
        except InvalidAddress:
            return
        if pair not in self._asked:
            return
        condition, text = errorFromResult(result)
        _log.info(
            "Legacy stream {streamID}: dialback error for {sender} -> {target}: {condition}",
            event="pair-refused-by-peer",
            local=pair[0],
            remote=pair[1],
            reason=text,
            streamID=self.streamID,
            sender=pair[0],
            target=pair[1],
            condition=condition,
        )
        self._adapt(False, condition)
        self._answered(pair, Failure(AuthorizationRefused(pair[0], pair[1], condition, text)))

    def _onValid(self, sender, target):
        asked = (sender, target) in self._asked
        StreamAuthorization._onValid(self, sender, target)
        if not asked:
            return
        _log.info(
            "Legacy stream {streamID}: piggy-backed {sender} -> {target} accepted",
            streamID=self.streamID,
            sender=sender,
            target=target,
        )
        if self.bidi and self._peerProves(target):
            self._tables.bind(INCOMING, sender, target, self.streamID)

    # Receiving role

    def received(self, result):
        """
        Handle a C{<db:result/>} that arrived before this object watched the
        stream: the one that made the stream need it.
        """
        self._onResult(result)

    def _checkRequest(self, sender, target, result):
        """
        The peer asserts C{sender} for stanzas to C{target} (XEP-0220
        section 2.1.1): check its certificate or its key. (The checks every
        stream makes first are L{StreamAuthorization._admitRequest}'s.)
        """
        pair = (target, sender)
        if sender in self._hosted:
            self._refuse(sender, target, "not-authorized", "auth", "that domain is ours")
            return
        if self._policy.pkix and self._peerProves(sender):
            # XEP-0344: the certificate already proves the name.
            self._grant(sender, target, "certificate (XEP-0344)")
            return
        if self._verifier is None:
            self._refuse(
                sender, target, "not-authorized", "auth",
                "the certificate is not valid for it, and dialback is not accepted",
            )
            return
        key = str(result).strip()
        if not key:
            self._refuse(sender, target, "bad-request", "modify", "no dialback key")
            return
        self._checking.add(pair)
        d = self._verifier.verify(target, sender, self.streamID, key)

        def verified(valid):
            if self._closed:
                return
            if valid:
                self._grant(sender, target, "dialback")
                return
            _log.info(
                "Legacy stream {streamID}: the Authoritative Server of {sender} "
                "denied the key for {target}",
                event="pair-refused",
                local=target,
                remote=sender,
                condition="not-authorized",
                reason="dialback key denied",
                streamID=self.streamID,
                sender=sender,
                target=target,
            )
            self.xs.send(dialbackElement("result", target, sender, elementType="invalid"))

        def failed(failure):
            if self._closed:
                return
            if not failure.check(DNAError):
                _log.failure(
                    "Legacy stream {streamID}: verifying {sender} failed",
                    failure,
                    streamID=self.streamID,
                    sender=sender,
                )
            self._refuse(
                sender, target, "remote-server-not-found", "cancel",
                "could not ask the Authoritative Server: {}".format(failure.getErrorMessage()),
            )

        def done(ignored):
            self._checking.discard(pair)

        d.addCallbacks(verified, failed)
        d.addBoth(done)

    def _grant(self, sender, target, how):
        self.authenticated(target, sender, how)
        self.xs.send(resultElement(target, sender, "valid"))

    def _refusal(self, sender, target, condition, errorType, why):
        """
        A dialback error (XEP-0220 section 2.4).
        """
        return dialbackElement(
            "result", target, sender, elementType="error",
            stanzaError=error.StanzaError(condition, type=errorType, text=why),
        )

