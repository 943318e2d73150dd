"""
The Receiving Server's side of legacy streams: streams addressed to one of
our hosted domains instead of a server name, from peers that do not speak
DNA (draft-ietf-xmpp-dna-01 section 7; RFC 6120, XEP-0178, XEP-0220).

STARTTLS comes first and is required. Then the peer authenticates its
domain, the stream's 'from': with SASL EXTERNAL when its certificate is
valid for it (and the policy allows PKIX), or with Server Dialback, whose
keys are checked with the Authoritative Server of its domain, or by its
certificate (XEP-0344). The features also carry C{<dna/>}, so that a DNA
server that fell back to a legacy stream by mistake, or because an attacker
refused its first stream, learns it should not have.

With DANE (RFC 7673, L{dna.legacy.dane}), a client certificate that PKIX
does not accept for the stream's 'from' is checked against the TLSA records
of that domain's secure SRV targets before the features are sent: a match
certifies it as PKIX would; a mismatch, or a TLSA lookup that failed, closes
the stream (C{<not-authorized/>}), logged and counted
(C{"tls-refused-dane-mismatch"}, C{"tls-refused-dane-unavailable"}); where
DANE does not apply, the policy decides as without it.

The stream joins the service's tables only once a pair is authenticated
(after SASL EXTERNAL, which restarts the stream and so gives it its final
id) or about to be (its first C{<db:result/>}); from then on the
L{dna.legacy.authorization.LegacyAuthorization} enforces that stanzas travel only for
the pairs authenticated on it.
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import STREAM_END_EVENT
from twisted.words.xish import domish

from dna.channel.features import bidiFeature, dnaFeature, watchBidiRequest
from dna.channel.receiving import acceptHeader, offerStartTLS
from dna.core.authorization import DB_RESULT
from dna.core.names import normalizeDomain
from dna.error import DANEMismatch, DANEUnavailable, InvalidAddress
from dna.legacy.dialback import dialbackFeature
from dna.legacy.sasl import SASL_AUTH, checkExternalAuth, mechanismsFeature, saslElement
from dna.legacy.tls import chainVerified, noteDANE, peerVerified
from dna.namespaces import NS_SERVER, NS_STREAMS, NS_TLS, STANZA_NAMES

_log = Logger()


class LegacyListener:
    """
    Decide which incoming streams are legacy, and negotiate them.
    """

    def __init__(self, hostedDomains, serverNames, policy, responder, contexts, onAuthenticated,
                 dane=None, counters=None):
        """
        @param hostedDomains: Our normalised domains.
        @param serverNames: Our server names: streams to them are DNA's.
        @param policy: The L{dna.legacy.policy.FallbackPolicy}.
        @param responder: The L{dna.legacy.dialback.AuthoritativeResponder}
            for C{<db:verify/>} on these streams.
        @param contexts: The L{dna.legacy.tls.LegacyServerContexts}.
        @param onAuthenticated: Called with (xs, local domain, remote
            domain, mechanism) when the stream joins the tables; returns its
            L{dna.legacy.authorization.LegacyAuthorization}.
        @param dane: A L{dna.legacy.dane.LegacyDANE} checking the client
            certificates PKIX does not accept, or L{None} for no DANE.
        @param counters: A L{collections.Counter} for the streams DANE
            refused, or L{None}.
        """
        self.dane = dane
        self.counters = counters
        self.hostedDomains = hostedDomains
        self._serverNames = serverNames
        self.policy = policy
        self.responder = responder
        self.contexts = contexts
        self.onAuthenticated = onAuthenticated

    def accepts(self, rootElement):
        """
        Whether a stream header addresses one of our domains that is not a
        server name.
        """
        try:
            to = normalizeDomain(rootElement.getAttribute("to"))
        except InvalidAddress:
            return False
        return to in self.hostedDomains and to not in self._serverNames

    def negotiate(self, xs):
        """
        Take over the negotiation of C{xs}.

        @rtype: L{LegacyNegotiation}
        """
        return LegacyNegotiation(self, xs)


class LegacyNegotiation:
    """
    The negotiation of one incoming legacy stream.

    @ivar authorization: The stream's L{dna.legacy.authorization.LegacyAuthorization}
        once it joined the tables.
    """

    def __init__(self, listener, xs):
        self._listener = listener
        self.xs = xs
        self._tls = False
        self._externalDone = False
        self._offered = False
        self._header = None
        self.authorization = None

    def streamStarted(self, rootElement):
        """
        A stream header: answer it with our features.
        """
        xs = self.xs
        names = acceptHeader(xs, rootElement, self._checkHeader)
        if names is None:
            return
        local, remote = names
        xs.sendHeader()
        if not self._tls:
            offerStartTLS(xs, self._onStartTLS)
            return
        if self._externalDone:
            xs.send(domish.Element((NS_STREAMS, "features")))
            self._join("EXTERNAL")
            return
        policy = self._listener.policy
        certified = policy.pkix and peerVerified(xs.transport, remote)
        dane = self._listener.dane
        if certified or not policy.pkix or dane is None or self._offered:
            self._offer(remote, certified)
            return
        ended = []
        xs.addOnetimeObserver(STREAM_END_EVENT, ended.append)
        d = dane.verifyClient(xs.transport, remote, chainVerified(xs.transport))

        def verified(target):
            if ended:
                return
            if target is not None:
                noteDANE(xs.transport, [remote])
            self._offer(remote, target is not None)

        def refused(failure):
            failure.trap(DANEMismatch, DANEUnavailable)
            if ended:
                return
            label = "dane-mismatch" if failure.check(DANEMismatch) else "dane-unavailable"
            if self._listener.counters is not None:
                self._listener.counters["tls-refused-" + label] += 1
            _log.info(
                "Refused legacy stream from {remote}: {reason}",
                event="stream-refused",
                condition=label,
                reason=failure.getErrorMessage(),
                remote=remote,
            )
            xs.sendStreamError(
                error.StreamError("not-authorized", text="DANE refuses the certificate"))

        def unexpected(failure):
            _log.failure("While checking the certificate of {remote} by DANE", failure,
                         remote=remote)
            if not ended:
                xs.sendStreamError(error.StreamError("internal-server-error"))

        d.addCallbacks(verified, refused).addErrback(unexpected)

    def _offer(self, remote, certified):
        """
        Send the features once the peer's certificate is judged.

        @param certified: Whether it proves C{remote} (PKIX or DANE).
        """
        xs = self.xs
        policy = self._listener.policy
        features = domish.Element((NS_STREAMS, "features"))
        if not certified and not policy.dialback:
            _log.info(
                "Refused legacy stream from {remote}: its certificate is not valid "
                "for it, and the policy ({policy}) does not accept dialback",
                event="stream-refused",
                reason="certificate not valid and no dialback",
                remote=remote,
                policy=policy.level,
            )
            xs.sendStreamError(
                error.StreamError("not-authorized", text="certificate not valid for 'from'")
            )
            return
        features.addChild(dnaFeature())
        features.addChild(bidiFeature())
        if certified:
            features.addChild(mechanismsFeature())
        features.addChild(dialbackFeature())
        if not self._offered:
            # Once, even if the peer restarts the stream for no reason.
            self._offered = True
            watchBidiRequest(xs)
            if certified:
                xs.addObserver(SASL_AUTH, self._onAuth)
            self._listener.responder.install(xs)
            xs.addObserver(DB_RESULT, self._onFirstResult)
            xs.addObserver("/*", self._beforeAuthentication, 1)
        xs.send(features)

    def _checkHeader(self, rootElement):
        """
        The (local, remote) domains of a header; a restarted stream must keep
        those of the first.

        @raise error.StreamError: When the header is not one we serve.
        """
        if rootElement.uri != NS_STREAMS or rootElement.defaultUri != NS_SERVER:
            raise error.StreamError("invalid-namespace")
        try:
            local = normalizeDomain(rootElement.getAttribute("to"))
        except InvalidAddress:
            raise error.StreamError("host-unknown")
        if local not in self._listener.hostedDomains:
            raise error.StreamError("host-unknown")
        try:
            remote = normalizeDomain(rootElement.getAttribute("from"))
        except InvalidAddress:
            raise error.StreamError("invalid-from", text="a domain is required in 'from'")
        if remote in self._listener.hostedDomains:
            raise error.StreamError("invalid-from", text="that domain is ours")
        if self._header is None:
            self._header = (local, remote)
        elif self._header != (local, remote):
            raise error.StreamError(
                "improper-addressing", text="a restarted stream keeps its 'to' and 'from'"
            )
        return local, remote

    def _onStartTLS(self, element):
        element.handled = True
        xs = self.xs
        xs.send(domish.Element((NS_TLS, "proceed")))
        xs.transport.startTLS(self._listener.contexts.forDomain(self._header[0]))
        self._tls = True
        xs.reset()

    def _beforeAuthentication(self, element):
        if element.name in STANZA_NAMES and self.authorization is None:
            element.handled = True
            _log.info(
                "Legacy stream {streamID}: {name} before authentication: closing",
                event="stream-refused",
                condition="not-authorized",
                reason="stanza before authentication",
                streamID=self.xs.sid,
                name=element.name,
            )
            self.xs.sendStreamError(error.StreamError("not-authorized"))

    def _onAuth(self, element):
        """
        SASL EXTERNAL (XEP-0178 section 3 step 7), offered only because the
        certificate is valid for the stream's 'from'.
        """
        element.handled = True
        xs = self.xs
        local, remote = self._header
        condition = "not-authorized" if self.authorization is not None else None
        condition = condition or checkExternalAuth(element, remote)
        if condition is not None:
            _log.info(
                "Legacy stream {streamID}: SASL EXTERNAL from {remote} refused: {condition}",
                event="pair-refused",
                local=local,
                reason="SASL EXTERNAL refused",
                streamID=xs.sid,
                remote=remote,
                condition=condition,
            )
            xs.send(saslElement("failure", condition))
            return
        xs.removeObserver(SASL_AUTH, self._onAuth)
        xs.removeObserver(DB_RESULT, self._onFirstResult)
        xs.removeObserver("/*", self._beforeAuthentication)
        xs.send(saslElement("success"))
        self._externalDone = True
        xs.reset()

    def _onFirstResult(self, element):
        """
        The first C{<db:result/>}: the stream joins the tables, and its
        authorization checks the request.
        """
        xs = self.xs
        xs.removeObserver(DB_RESULT, self._onFirstResult)
        xs.removeObserver(SASL_AUTH, self._onAuth)
        self._join(None)
        self.authorization.received(element)

    def _join(self, mechanism):
        xs = self.xs
        xs.removeObserver("/*", self._beforeAuthentication)
        local, remote = self._header
        self.authorization = self._listener.onAuthenticated(xs, local, remote, mechanism)
