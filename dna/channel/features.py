"""
The stream features of DNA: advertised by the Receiving Server, detected by
the Originating Server.

draft-ietf-xmpp-dna-01 section 5 leaves the feature that signals support open
("TODO: Add a stream feature"); this project uses C{<dna xmlns='urn:xmpp:dna:1'/>}
(L{NS_DNA}). Section 5 recommends bidirectional streams (XEP-0288): the
Receiving Server offers C{<bidi xmlns='urn:xmpp:features:bidi'/>}, and the
Originating Server that wants it sends C{<bidi xmlns='urn:xmpp:bidi'/>} before
authenticating.
"""

from twisted.internet import defer
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from dna.namespaces import NS_BIDI, NS_BIDI_FEATURE, NS_DNA, NS_SM

#: XPath query of the Originating Server's request for bidi.
BIDI_REQUEST = "/bidi[@xmlns='%s']" % (NS_BIDI,)


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


def advertise(features, bidi=True):
    """
    Add the DNA features to a C{<stream:features/>} element being built by a
    Receiving Server: DNA, bidi, and acknowledgements (L{dna.channel.acks}).

    @param features: The C{<stream:features/>} element.
    @param bidi: Whether to offer XEP-0288 too.
    @return: C{features}.
    """
    features.addChild(dnaFeature())
    if bidi:
        features.addChild(bidiFeature())
    features.addChild(domish.Element((NS_SM, "sm")))
    return features


def peerOffersDNA(xs):
    """
    Whether the Receiving Server advertised the DNA feature on C{xs}.
    """
    return (NS_DNA, "dna") in xs.features


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
