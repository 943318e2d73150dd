"""
The fallback for peers that do not speak DNA (draft-ietf-xmpp-dna-01 section
7, Backward Compatibility): streams between domains rather than server names,
authenticated by RFC 6120 PKIX certificates (SASL EXTERNAL, XEP-0178) or by
Server Dialback (XEP-0220), as the operator's policy allows. L{dna.legacy.policy}
holds the pure decisions and the policy's words and is cheap to import; the
stream machinery (originating, receiving, sasl, dialback, tls, authorization,
and dane: RFC 7673 for domains whose SRV targets publish TLSA records) is
loaded only when a fallback other than C{"dna"} is configured. It builds on
core, dns and channel, and imports nothing of the application.
"""
