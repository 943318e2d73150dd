"""
Test support shared by the tests, the benchmarks and the demo: in-memory
fakes of DNA's collaborators (L{dna.testing.fakes}), a throw-away test PKI
(L{dna.testing.pki}), an authoritative server for DNSSEC-signed zones on
loopback (L{dna.testing.zoneserver}) and the two providers built on them
(L{dna.testing.providers}). None of it is fit for production, and the server
itself (everything else under L{dna}) never imports it.
"""
