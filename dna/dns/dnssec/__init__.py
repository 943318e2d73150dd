"""
DNSSEC validation from trust anchors, done by DNA itself (RFC 4033 to 4035,
RFC 5155): L{dna.dns.dnssec.proofs} holds the pure proofs (signatures, DS
matching, NSEC and NSEC3 denial, trust anchors), L{dna.dns.dnssec.walker}
the Twisted walker that fetches the chain of trust from an anchor down to an
answer and checks it with them.
"""
