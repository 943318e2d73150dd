"""
The channel: server-to-server XML streams between server names
(draft-ietf-xmpp-dna-01 section 5). L{stream} is the one stream class every
connection uses, with the stanza filter in front of its observers;
L{originating} opens authenticated streams to a domain's SRV targets,
L{receiving} accepts them; L{tls} is the mutual TLS and L{identity} the
server names certificates present (RFC 6125); L{dane} decides whether TLSA
records authenticate a certificate chain (RFC 7671, RFC 7673); L{features} and L{acks} are
the DNA, bidi (XEP-0288) and acknowledgement (XEP-0198) stream features.
The channel carries streams and knows nothing of the application or of the
legacy fallback that build on it: it imports only L{dna.core}.
"""
