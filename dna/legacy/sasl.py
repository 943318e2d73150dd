"""
SASL EXTERNAL between servers (XEP-0178, RFC 6120 section 6), for peers
that do not speak DNA: a server whose TLS certificate is valid for its
domain authenticates the stream's 'from' with it (draft-ietf-xmpp-dna-01
section 7, "presenting the certificate for the Remote Domain").

The Receiving Server offers EXTERNAL only when the certificate already
checked out for the stream's 'from'; the Originating Server uses it only
when the certificate it presented covers its domain. Either side then
restarts the stream (RFC 6120 section 6.4.6).
"""

import base64
import binascii

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmlstream import Reset
from twisted.words.xish import domish

from dna.core.names import normalizeDomain
from dna.error import InvalidAddress, SASLFailed
from dna.namespaces import NS_SASL

_log = Logger()

EXTERNAL = "EXTERNAL"

#: XPath queries of the Receiving Server's answers and the Originating
#: Server's request.
SASL_SUCCESS = "/success[@xmlns='%s']" % (NS_SASL,)
SASL_FAILURE = "/failure[@xmlns='%s']" % (NS_SASL,)
SASL_AUTH = "/auth[@xmlns='%s']" % (NS_SASL,)


def mechanismsFeature():
    """
    The C{<mechanisms/>} stream feature offering EXTERNAL alone.
    """
    mechanisms = domish.Element((NS_SASL, "mechanisms"))
    mechanisms.addElement("mechanism", content=EXTERNAL)
    return mechanisms


def offersExternal(xs):
    """
    Whether the Receiving Server offered EXTERNAL on an initiating stream.
    """
    mechanisms = getattr(xs, "features", {}).get((NS_SASL, "mechanisms"))
    if mechanisms is None:
        return False
    return any(str(m).strip() == EXTERNAL for m in mechanisms.elements(NS_SASL, "mechanism"))


def saslElement(name, condition=None):
    """
    A C{<success/>} or C{<failure/>} with a condition.
    """
    element = domish.Element((NS_SASL, name))
    if condition is not None:
        element.addElement(condition)
    return element


def checkExternalAuth(element, peerDomain):
    """
    The Receiving Server's check of an C{<auth/>} request, once the peer's
    certificate is known to be valid for C{peerDomain}.

    XEP-0178 section 3: the authorization identity is empty (C{=}) or the
    stream's 'from'.

    @param element: The C{<auth/>} element.
    @param peerDomain: The stream's normalised 'from'.
    @return: L{None} when it succeeds, else the SASL failure condition.
    @rtype: L{str} or L{None}
    """
    if element.getAttribute("mechanism") != EXTERNAL:
        return "invalid-mechanism"
    text = str(element).strip()
    if text in ("", "="):
        return None
    try:
        authzid = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "incorrect-encoding"
    if not authzid:
        return None
    try:
        if normalizeDomain(authzid) == peerDomain:
            return None
    except InvalidAddress:
        pass
    return "invalid-authzid"


class SASLExternalInitializer:
    """
    Originating Server: authenticate with SASL EXTERNAL when the peer offers
    it and our certificate covers our domain. On success the stream restarts
    and C{xs.legacyMechanism} is C{"EXTERNAL"}; on refusal, dialback may
    follow on the same stream (XEP-0178 section 3 step 9).
    """

    def __init__(self, xs, identity, usable, fallback):
        """
        @param identity: Our domain, the stream's 'from'.
        @param usable: Whether the certificate we presented is valid for it
            and the policy allows PKIX.
        @param fallback: Whether a refusal leaves the stream to dialback
            (else it fails the stream).
        """
        self.xmlstream = xs
        self._identity = identity
        self._usable = usable
        self._fallback = fallback
        self._deferred = None

    def initialize(self):
        xs = self.xmlstream
        if not self._usable or not offersExternal(xs):
            return None
        self._deferred = defer.Deferred()
        xs.addOnetimeObserver(SASL_SUCCESS, self._onSuccess)
        xs.addOnetimeObserver(SASL_FAILURE, self._onFailure)
        auth = domish.Element((NS_SASL, "auth"))
        auth["mechanism"] = EXTERNAL
        auth.addContent(base64.b64encode(self._identity.encode("utf-8")).decode("ascii"))
        xs.send(auth)
        return self._deferred

    def _onSuccess(self, element):
        xs = self.xmlstream
        xs.removeObserver(SASL_FAILURE, self._onFailure)
        xs.legacyMechanism = EXTERNAL
        xs.reset()
        xs.sendHeader()
        self._deferred.callback(Reset)

    def _onFailure(self, element):
        xs = self.xmlstream
        xs.removeObserver(SASL_SUCCESS, self._onSuccess)
        condition = None
        for child in element.elements():
            if child.name != "text":
                condition = child.name
                break
        _log.info(
            "SASL EXTERNAL as {identity} refused: {condition}{next}",
            identity=self._identity,
            condition=condition,
            next="; trying dialback" if self._fallback else "",
        )
        if self._fallback:
            self._deferred.callback(None)
        else:
            self._deferred.errback(SASLFailed(self._identity, condition))
