"""
The XML stream of every server-to-server connection, DNA's and legacy, in
both directions.

Twisted's L{xmlstream.XmlStream} leaves room for whatever a protocol wants to
hang on a stream; this subclass declares what DNA hangs on it (whether the
stream is bidirectional, how a legacy stream was authenticated, the stanza
filter), so that every factory builds the same kind of stream and nothing is
set on it that is not written down here.

The stanza filter runs in L{S2SStream.onElement}: the parser hands every
top-level element to that method, before any observer sees it, and keeps
doing so after the stream restarts (STARTTLS, SASL), because a restart makes
a new parser bound to the same method.
"""

from twisted.words.protocols.jabber import xmlstream


class S2SStream(xmlstream.XmlStream):
    """
    A server-to-server XML stream (RFC 6120), Receiving or Originating.
    """

    bidi = False
    """
    Whether the stream carries stanzas both ways (XEP-0288): set by
    L{dna.channel.features.BidiInitializer} on the Originating side, by
    L{dna.channel.features.watchBidiRequest} on the Receiving side.
    """

    stanzaFilter = None
    """
    L{None} until the stream is authenticated; then the object that decides
    which incoming stanzas the stream's observers may see, such as a
    L{dna.core.enforcement.StanzaFilter}. Its C{admit(element)} is called
    with every top-level element before dispatch and returns whether to
    dispatch it; an element it refuses it has dealt with already (answered,
    or the stream closed).
    """

    legacyMechanism = None
    """
    How an Originating Server's legacy stream authenticated its domain pair
    (draft-ietf-xmpp-dna-01 section 7): L{None} (a DNA stream, or not
    authenticated yet), C{"EXTERNAL"} (SASL EXTERNAL, XEP-0178) or
    C{"dialback"} (XEP-0220).
    """

    peerVerified = False
    """
    On an Originating Server's legacy stream: whether the peer's certificate
    verified and is valid for the target domain (set after TLS by
    L{dna.legacy.originating.PeerCheckInitializer}).
    """

    peerDeclaresDialback = False
    """
    On an Originating Server's legacy stream: whether the peer's stream
    header declares the dialback namespace, as servers that predate the
    dialback stream feature do.
    """

    @property
    def headerSent(self):
        """
        Whether our stream header has gone out on the current stream (a
        restart clears it): only then may a footer follow.
        """
        return self._headerSent

    def onElement(self, element):
        """
        Dispatch a top-level element to the observers, unless the stanza
        filter refuses it.
        """
        stanzaFilter = self.stanzaFilter
        if stanzaFilter is None or stanzaFilter.admit(element):
            self.dispatch(element)
