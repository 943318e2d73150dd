"""
DNS for DNA: where a domain's XMPP service is delegated and whether that is
secure (draft-ietf-xmpp-dna-01 section 5 steps 1-3). L{dna.dns.client} asks
DNS servers keeping the DNSSEC bits, L{dna.dns.verdict} holds the pure
decisions on SRV records and resolver answers, L{dna.dns.lookup} the two
strategies to learn them (trust a validating resolver, or validate here with
L{dna.dns.dnssec}), L{dna.dns.delegation} the caching checker, and
L{dna.dns.addresses} the addresses of SRV targets, L{dna.dns.tlsa} their
TLSA records for DANE (RFC 7673) and L{dna.dns.posh} POSH documents (RFC
7711). It builds on
L{dna.core} only.
"""
