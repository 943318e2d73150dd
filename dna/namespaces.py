"""
XML namespaces and names used by DNA.

draft-ietf-xmpp-dna-01 leaves two names open: the stream feature that signals
support for the protocol (section 5, "TODO: Add a stream feature") and the
namespace of the C{<invalid-connection/>} stanza error condition (section 10,
"Define invalid-connection error element"). This project fixes them here; every
other module refers to these constants, never to the literal strings.
"""

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_SERVER = "jabber:server"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XMPP_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"

#: XEP-0220 Server Dialback: C{<db:result/>} and C{<db:verify/>}.
NS_DIALBACK = "jabber:server:dialback"
#: XEP-0220 section 2.4: the C{<dialback/>} stream feature and its C{<errors/>}.
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"

#: XEP-0288 Bidirectional Server-to-Server Connections.
NS_BIDI = "urn:xmpp:bidi"
#: XEP-0288 stream feature namespace.
NS_BIDI_FEATURE = "urn:xmpp:features:bidi"

#: XEP-0198 Stream Management (acknowledgements only, see L{dna.channel.acks}).
NS_SM = "urn:xmpp:sm:3"

#: Resumption of a domain pair's delivery on a new stream (our own, see
#: L{dna.channel.acks}): the C{<delivery/>} stream feature, and the C{epoch}
#: and C{count} attributes of C{<db:result/>}.
NS_DELIVERY = "urn:xmpp:dna:delivery:0"

#: XEP-0478 Stream Limits Advertisement (see L{dna.channel.features}).
NS_STREAM_LIMITS = "urn:xmpp:stream-limits:0"

#: The DNA stream feature, C{<dna xmlns='urn:xmpp:dna:1'/>}, advertised by a
#: Receiving Server that accepts streams between server names and
#: C{<db:result/>} requests for delegated domain pairs on them.
NS_DNA = "urn:xmpp:dna:1"
#: Namespace of DNA-specific stanza error conditions, as an application-specific
#: condition (RFC 6120 section 8.3.4) next to a defined one:
#: C{<invalid-connection xmlns='urn:xmpp:dna:errors:1'/>}.
NS_DNA_ERRORS = "urn:xmpp:dna:errors:1"

#: The three stanza kinds of RFC 6120 section 8.
STANZA_NAMES = frozenset(["message", "presence", "iq"])
