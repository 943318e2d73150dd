"""
The stream features of DNA: advertised by the Receiving Server, detected by
the Originating Server.

draft-ietf-xmpp-dna-01 section 5 leaves the feature that signals support open
("TODO: Add a stream feature"); this project uses C{<dna xmlns='urn:xmpp:dna:1'/>}
(L{NS_DNA}). Section 5 recommends bidirectional streams (XEP-0288): the
Receiving Server offers C{<bidi xmlns='urn:xmpp:features:bidi'/>}, and the
Originating Server that wants it sends C{<bidi xmlns='urn:xmpp:bidi'/>} before
authenticating.

Every stream, DNA's and legacy, starts with a required STARTTLS (RFC 6120
section 5.3.1, RFC 7590), and nothing else is done in plaintext. The
features before TLS are the only ones a man in the middle can change, so
C{<dna/>} and C{<bidi/>} are offered only after TLS; a missing
C{<starttls/>} fails the stream (L{StartTLSInitializer}) instead of passing
for a legacy peer, and a Receiving Server refuses anything but
C{<starttls/>} before TLS (L{requireStartTLS}).

With them, the Receiving Server advertises the limits it enforces on the
authenticated stream (XEP-0478 Stream Limits Advertisement, section 3: a
C{<limits xmlns='urn:xmpp:stream-limits:0'/>} in the stream features, with
C{<max-bytes/>} and C{<idle-seconds/>}); the Originating Server reads them
into L{PeerLimits}.
"""

import attr
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

from dna.error import StartTLSStripped
from dna.namespaces import (
    NS_BIDI,
    NS_BIDI_FEATURE,
    NS_DELIVERY,
    NS_DNA,
    NS_SM,
    NS_STREAM_LIMITS,
    NS_TLS,
)

_log = Logger()

#: XPath query of the Originating Server's request for bidi.
BIDI_REQUEST = "/bidi[@xmlns='%s']" % (NS_BIDI,)

#: Priority of the observer that guards a stream before TLS: above every
#: other observer, so that nothing else sees a plaintext element.
_PLAINTEXT_GUARD_PRIORITY = 100


def dnaFeature():
    """
    The DNA stream feature element.
    """
    return domish.Element((NS_DNA, "dna"))


def bidiFeature():
    """
    The XEP-0288 stream feature element.
    """
    return domish.Element((NS_BIDI_FEATURE, "bidi"))


def limitsFeature(maxBytes, idleSeconds=None):
    """
    The XEP-0478 element advertising the limits of a stream.

    @param maxBytes: The most bytes a top-level element may take.
    @param idleSeconds: Seconds of silence after which the stream may be
        closed, or L{None}.
    """
    limits = domish.Element((NS_STREAM_LIMITS, "limits"))
    limits.addElement("max-bytes", content=str(int(maxBytes)))
    if idleSeconds is not None:
        limits.addElement("idle-seconds", content=str(int(idleSeconds)))
    return limits


@attr.s(frozen=True)
class PeerLimits:
    """
    What a peer advertised of the limits it enforces (XEP-0478); either may
    be L{None} when it said nothing or nonsense.

    @ivar maxBytes: The most bytes it accepts in a top-level element.
    @ivar idleSeconds: Seconds of silence after which it may close.
    """

    maxBytes = attr.ib(default=None)
    idleSeconds = attr.ib(default=None)


def _positiveInteger(element, name):
    for child in element.elements(NS_STREAM_LIMITS, name):
        text = str(child).strip()
        if text.isascii() and text.isdigit() and len(text) <= 12 and int(text) > 0:
            return int(text)
        return None
    return None


def peerLimits(xs):
    """
    The limits the Receiving Server advertised on C{xs}, or L{None} when it
    advertised none.

    @rtype: L{PeerLimits} or L{None}
    """
    element = (getattr(xs, "features", None) or {}).get((NS_STREAM_LIMITS, "limits"))
    if element is None:
        return None
    return PeerLimits(
        maxBytes=_positiveInteger(element, "max-bytes"),
        idleSeconds=_positiveInteger(element, "idle-seconds"),
    )


def advertise(features, bidi=True, maxBytes=None, idleSeconds=None):
    """
    Add the DNA features to a C{<stream:features/>} element being built by a
    Receiving Server: DNA, bidi, acknowledgements and the resumption of
    pairs' delivery (L{dna.channel.acks}) and the stream's limits.

    @param features: The C{<stream:features/>} element.
    @param bidi: Whether to offer XEP-0288 too.
    @param maxBytes: The stanza size limit to advertise (XEP-0478), or
        L{None} to advertise no limits.
    @param idleSeconds: The idle time-out to advertise with it, or L{None}.
    @return: C{features}.
    """
    features.addChild(dnaFeature())
    if bidi:
        features.addChild(bidiFeature())
    sm = features.addChild(domish.Element((NS_SM, "sm")))
    sm.addChild(deliveryFeature())
    if maxBytes is not None:
        features.addChild(limitsFeature(maxBytes, idleSeconds))
    return features


def peerOffersDNA(xs):
    """
    Whether the Receiving Server advertised the DNA feature on C{xs}.
    """
    return (NS_DNA, "dna") in xs.features


def deliveryFeature():
    """
    The feature saying that C{<db:result/>} requests may carry an epoch and
    grants a delivery count (L{dna.channel.acks}). It needs
    acknowledgements, so it is advertised inside their C{<sm/>} feature,
    where peers that do not know it ignore it.
    """
    return domish.Element((NS_DELIVERY, "delivery"))


def peerOffersDelivery(xs):
    """
    Whether the Receiving Server advertised L{deliveryFeature} on C{xs}.
    """
    sm = (getattr(xs, "features", None) or {}).get((NS_SM, "sm"))
    return sm is not None and any(
        (child.uri, child.name) == (NS_DELIVERY, "delivery") for child in sm.elements()
    )


def peerOffersBidi(xs):
    """
    Whether the Receiving Server advertised XEP-0288 on C{xs}.
    """
    return (NS_BIDI_FEATURE, "bidi") in xs.features


class BidiInitializer(xmlstream.BaseFeatureInitiatingInitializer):
    """
    Originating Server: ask for a bidirectional stream when it is offered.

    After it ran, C{xs.bidi} tells whether the stream is bidirectional.
    """

    feature = (NS_BIDI_FEATURE, "bidi")

    def initialize(self):
        self.xmlstream.bidi = False
        return xmlstream.BaseFeatureInitiatingInitializer.initialize(self)

    def start(self):
        self.xmlstream.send(domish.Element((NS_BIDI, "bidi")))
        self.xmlstream.bidi = True
        return defer.succeed(None)


def watchBidiRequest(xs):
    """
    Receiving Server: mark C{xs.bidi} when the Originating Server asks for
    XEP-0288. Call before the stream features are sent.
    """
    xs.bidi = False

    def onBidi(element):
        element.handled = True
        xs.bidi = True

    xs.addOnetimeObserver(BIDI_REQUEST, onBidi)


class StartTLSInitializer(xmlstream.TLSInitiatingInitializer):
    """
    Originating Server: STARTTLS, always required.

    Twisted's initializer fails with C{FeatureNotAdvertized} when the
    features lack C{<starttls/>}, the very failure a missing C{<dna/>}
    gives; this one fails with L{StartTLSStripped}, so that a stream whose
    plaintext features were stripped is never taken for a legacy peer.

    @ivar encrypted: Whether the peer said C{<proceed/>} and TLS started:
        until then, everything received was plaintext.
    """

    encrypted = False

    def __init__(self, xs, configurationForTLS):
        """
        @param configurationForTLS: The L{IOpenSSLClientConnectionCreator}
            that verifies the peer.
        """
        xmlstream.TLSInitiatingInitializer.__init__(
            self, xs, required=True, configurationForTLS=configurationForTLS
        )

    def initialize(self):
        if self.feature not in self.xmlstream.features:
            raise StartTLSStripped(self.xmlstream.otherEntity.host)
        return self.start()

    def onProceed(self, obj):
        self.encrypted = True
        xmlstream.TLSInitiatingInitializer.onProceed(self, obj)


def requireStartTLS(xs, onStartTLS):
    """
    Receiving Server, before TLS: call C{onStartTLS} with the peer's
    C{<starttls/>}, and close the stream with C{<not-authorized/>} (RFC
    6120 section 4.9.3.12) on any other element, such as a C{<db:result/>}
    or a stanza: nothing received in plaintext is processed, including
    what follows in the same read.
    """
    refused = []

    def guard(element):
        if refused:
            element.handled = True
            return
        if element.uri == NS_TLS and element.name == "starttls":
            xs.removeObserver("/*", guard)
            onStartTLS(element)
            return
        element.handled = True
        refused.append(element.name)
        _log.info(
            "Stream {streamID}: <{name}/> before STARTTLS: closing",
            event="stream-refused",
            condition="not-authorized",
            reason="STARTTLS first",
            streamID=xs.sid,
            name=element.name,
        )
        xs.sendStreamError(error.StreamError("not-authorized", text="STARTTLS first"))

    xs.addObserver("/*", guard, _PLAINTEXT_GUARD_PRIORITY)
