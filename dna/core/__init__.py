"""
The DNA core: pure data and decisions, no I/O and no reactor.

The connection and binding tables of draft-ietf-xmpp-dna-01 section 4
(L{dna.core.tables}), the authorization of domain pairs with
C{<db:result/>} on one stream (L{dna.core.authorization}, section 6), the
enforcement of the binding table on incoming stanzas
(L{dna.core.enforcement}), domain names and JIDs in their one canonical form
(L{dna.core.names}), and the small helpers every other part shares
(L{dna.core.coalesce}). Everything here is driven by its callers: clocks are
injected, and nothing opens a socket.
"""
