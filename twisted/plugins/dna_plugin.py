from twisted.application.service import ServiceMaker

dna = ServiceMaker(
    "DNA XMPP server-to-server federation",
    "dna.app.tap",
    "Secure, multiplexed XMPP S2S for hosted domains (Domain Name Associations)",
    "dna",
)
