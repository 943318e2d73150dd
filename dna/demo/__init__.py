"""
The C{dna-demo} console script (also C{python -m dna.demo}): the scenario of
draft-ietf-xmpp-dna-01 sections 3 to 6 played in one process on loopback.
L{dna.demo.world} builds the federation (a DNSSEC-signed test TLD served
here, a test CA, two providers), L{dna.demo.scenario} sends the messages and
checks the outcome against the draft, and L{dna.demo.report} turns what
happened into the text and tables printed.
"""
