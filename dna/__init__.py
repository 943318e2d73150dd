"""
DNA: Domain Name Associations for XMPP server-to-server federation.

Secure, multiplexed S2S for hosted domains (draft-ietf-xmpp-dna-01): delegation
proven by DNSSEC-signed SRV records, servers authenticated by their own names
over mutual TLS, and many domain pairs bound onto one stream with
C{<db:result/>}.
"""

__version__ = "0.1.0.dev0"
