"""
The application: what an operator runs. L{dna.app.config} reads and checks
the TOML configuration (with the value parsers of L{dna.app.schema} and the
certificate checks of L{dna.app.certificates}), L{dna.app.service} builds the
DNA server-to-server service from it around the cross-stream state of
L{dna.app.federation}, L{dna.app.tap} is C{twistd dna}, and
L{dna.app.check} is the C{dna-check} console script. The application may use
every other part of the package; no other part imports it.
"""
