"""
Tests for L{dna.channel.features}.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.channel.features import (
    BidiInitializer,
    advertise,
    peerOffersBidi,
    peerOffersDNA,
    watchBidiRequest,
)
from dna.namespaces import NS_BIDI, NS_BIDI_FEATURE, NS_DNA, NS_SM, NS_STREAMS
from tests.unit.streams import makeStream, receive


class FeaturesTests(SynchronousTestCase):
    """
    The Receiving Server advertises, the Originating Server detects.
    """

    def test_advertise(self):
        """
        L{advertise} adds DNA, bidi and acknowledgements.
        """
        features = advertise(domish.Element((NS_STREAMS, "features")))
        self.assertEqual(
            [(NS_DNA, "dna"), (NS_BIDI_FEATURE, "bidi"), (NS_SM, "sm")],
            [(e.uri, e.name) for e in features.elements()],
        )

    def test_advertiseWithoutBidi(self):
        """
        Bidi can be left out.
        """
        features = advertise(domish.Element((NS_STREAMS, "features")), bidi=False)
        self.assertNotIn(NS_BIDI_FEATURE, [e.uri for e in features.elements()])

    def test_detect(self):
        """
        The initiating side reads the features the stream received.
        """
        xs = makeStream()
        self.assertFalse(peerOffersDNA(xs))
        xs.features = {(NS_DNA, "dna"): None, (NS_BIDI_FEATURE, "bidi"): None}
        self.assertTrue(peerOffersDNA(xs))
        self.assertTrue(peerOffersBidi(xs))

    def test_bidiInitializer(self):
        """
        When bidi is offered, the initializer asks for it and marks the
        stream.
        """
        xs = makeStream()
        xs.features = {(NS_BIDI_FEATURE, "bidi"): None}
        BidiInitializer(xs).initialize()
        self.assertTrue(xs.bidi)
        self.assertEqual([(NS_BIDI, "bidi")], [(e.uri, e.name) for e in xs.output])

    def test_bidiNotOffered(self):
        """
        When bidi is not offered, nothing is sent and the stream stays
        one-way.
        """
        xs = makeStream()
        xs.features = {}
        BidiInitializer(xs).initialize()
        self.assertFalse(xs.bidi)
        self.assertEqual([], xs.output)

    def test_watchBidiRequest(self):
        """
        The Receiving Server marks the stream when the request arrives.
        """
        xs = makeStream()
        watchBidiRequest(xs)
        self.assertFalse(xs.bidi)
        receive(xs, "<bidi xmlns='urn:xmpp:bidi'/>")
        self.assertTrue(xs.bidi)
