"""
TLS for legacy streams: streams between domains rather than server names
(draft-ietf-xmpp-dna-01 section 7).

  - An Originating Server sends the target domain in SNI, presents a
    certificate covering its sending domain when it holds one (a
    certificate may cover hosted domains as well as server names:
    L{certificateFor}), and checks the peer's certificate against the
    target domain. Under the dialback policy a peer whose certificate does
    not verify is still accepted, on the strength of DNS as XEP-0220 does:
    L{legacyClientCreator} with C{verify=False} records the failure instead
    of aborting, and L{peerVerified} tells the stream layer.
  - A Receiving Server presents the certificate of the hosted domain the
    stream addresses, and accepts any client certificate, or none: whether
    it is valid for the stream's 'from' decides between SASL EXTERNAL and
    dialback, not the handshake (L{LegacyServerContexts}). Server names
    keep DNA's rules.
  - DANE (RFC 7673, L{dna.legacy.dane}): when the target domain's SRV
    target has secure TLSA records, they decide instead of PKIX, on both
    sides, and a certificate they authenticate proves the domains whose
    secure SRV records point at that target (L{noteDANE}), not the names it
    carries.
"""

import weakref

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from dna.channel.dane import usableRecords
from dna.channel.identity import verifyPeerName
from dna.channel.tls import (
    ServerContextFactory,
    clientContextFactory,
    daneIdentity,
    peerCertificate,
)
from dna.core.names import normalizeServerName
from dna.error import CertificateNameMismatch

# SSL.Connection -> [(depth, errno)] of the certificate errors let through.
_verificationErrors = weakref.WeakKeyDictionary()
# SSL.Connection -> frozenset of the domains DANE proved for its peer.
_daneProven = weakref.WeakKeyDictionary()


def certificateFor(domain, certificates):
    """
    Which of our certificates is valid for C{domain}.

    @param certificates: C{{key: PrivateCertificate}}, in order of
        preference.
    @return: The key of the first one valid for C{domain}, or L{None}.
    """
    for key, certificate in certificates.items():
        try:
            verifyPeerName(certificate, domain)
        except CertificateNameMismatch:
            continue
        return key
    return None


def _recordFailures(connection):
    """
    Make C{connection} record its peer's certificate errors in
    L{_verificationErrors} and let them through instead of aborting the
    handshake.

    @type connection: L{OpenSSL.SSL.Connection}
    @return: C{connection}.
    """
    errors = _verificationErrors[connection] = []

    def verify(connection, certificate, errno, depth, preverifyOK):
        if not preverifyOK:
            errors.append((depth, errno))
        return True

    connection.set_verify(SSL.VERIFY_PEER, verify)
    return connection


@implementer(IOpenSSLClientConnectionCreator)
class _AcceptingCreator:
    """
    Client connections that verify like another creator's, but record the
    failures instead of aborting the handshake.
    """

    def __init__(self, creator):
        self._creator = creator

    def clientConnectionForTLS(self, tlsProtocol):
        return _recordFailures(self._creator.clientConnectionForTLS(tlsProtocol))


@implementer(IOpenSSLClientConnectionCreator)
class _DomainSNICreator:
    """
    Client connections of another creator, made for the SRV target whose
    TLSA records decide, that send the domain in SNI: the name a legacy
    peer serves its certificate by.
    """

    def __init__(self, creator, domain):
        self._creator = creator
        self._domain = domain

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._creator.clientConnectionForTLS(tlsProtocol)
        connection.set_tlsext_host_name(self._domain.encode("ascii"))
        return connection


def legacyClientCreator(domain, trustRoot, certificate, chain=(), verify=True,
                        tlsa=(), serverName=None, port=None, clock=None):
    """
    TLS for an Originating Server's legacy stream to C{domain}: SNI
    C{domain}, our C{certificate}, the peer's certificate checked against
    C{domain}.

    @param verify: Whether a certificate that does not verify aborts the
        handshake; if not, L{peerVerified} says how it went.
    @param tlsa: The usable TLSA records (L{dna.channel.dane.TLSARecord})
        of C{serverName}, the SRV target connected to, on C{port}: when
        there are some, they decide instead of PKIX and a mismatch always
        aborts the handshake (L{dna.error.DANEMismatch}), whatever
        C{verify} says.
    @param clock: An L{IReactorTime}; required with C{tlsa}.
    @rtype: L{IOpenSSLClientConnectionCreator}
    """
    if usableRecords(tlsa):
        creator = clientContextFactory(serverName, trustRoot, certificate, chain=chain,
                                       tlsa=tlsa, clock=clock, tlsaPort=port)
        return _DomainSNICreator(creator, normalizeServerName(domain))
    creator = clientContextFactory(domain, trustRoot, certificate, chain=chain)
    if verify:
        return creator
    return _AcceptingCreator(creator)


def _handle(transport):
    try:
        return transport.getHandle()
    except (AttributeError, TypeError):
        # A transport without an OpenSSL connection under it (a fake).
        return None


def noteDANE(transport, domains):
    """
    Record that DANE authenticated the peer of a TLS connection for
    C{domains}, whose secure SRV records point at the server name its
    certificate matched the TLSA records of: L{peerVerified} then holds for
    them, and for no other name the certificate may carry.
    """
    _daneProven[transport.getHandle()] = frozenset(domains)


def chainVerified(transport):
    """
    Whether PKIX accepted the chain a peer presented on a legacy stream we
    accepted (names aside).
    """
    return (peerCertificate(transport) is not None
            and not _verificationErrors.get(transport.getHandle()))


def peerVerified(transport, name):
    """
    Whether the peer of a TLS connection presented a certificate whose chain
    verified and which is valid for C{name}.

    @param transport: A transport after the TLS handshake.
    @param name: The domain the peer should be.
    @rtype: L{bool}
    """
    handle = _handle(transport) if _daneProven else None
    proven = None if handle is None else _daneProven.get(handle)
    if proven is not None:
        return name in proven
    if daneIdentity(transport) is not None:
        # TLSA records, not PKIX, judged this chain: its names prove nothing.
        return False
    certificate = peerCertificate(transport)
    if certificate is None:
        return False
    if _verificationErrors.get(transport.getHandle()):
        return False
    try:
        verifyPeerName(certificate, name)
    except CertificateNameMismatch:
        return False
    return True


@implementer(IOpenSSLServerConnectionCreator)
class _AcceptingServerCreator:
    """
    Server connections of one L{ServerContextFactory} that record the
    client certificate's errors instead of failing the handshake, and take
    a client without any certificate.
    """

    def __init__(self, factory):
        self._factory = factory

    def serverConnectionForTLS(self, tlsProtocol):
        return _recordFailures(self._factory.serverConnectionForTLS(tlsProtocol))


class LegacyServerContexts:
    """
    The Receiving Server's TLS for legacy streams, chosen by the hosted
    domain the stream header addresses: Prosody, for one, sends no SNI with
    STARTTLS. The client's certificate is checked against our trust root
    but never fails the handshake: whether it is valid for the stream's
    'from' decides between SASL EXTERNAL and dialback (L{peerVerified}).
    DNA's own contexts are not touched.
    """

    def __init__(self, certificates, trustRoot, chains=None):
        """
        @param certificates: C{{hosted domain: PrivateCertificate}}: what
            to present for each (one that covers it, or the default).
        @param chains: Intermediates, keyed likewise.
        """
        self._certificates = {normalizeServerName(k): v for k, v in certificates.items()}
        self._chains = {normalizeServerName(k): v for k, v in (chains or {}).items()}
        self._trustRoot = trustRoot
        # domain -> creator, made on first use
        self._creators = {}

    def forDomain(self, domain):
        """
        The TLS connection creator for a stream addressed to C{domain}.

        @rtype: L{IOpenSSLServerConnectionCreator}
        @raise KeyError: When C{domain} is not one of ours.
        """
        name = normalizeServerName(domain)
        creator = self._creators.get(name)
        if creator is None:
            factory = ServerContextFactory(
                {name: self._certificates[name]}, self._trustRoot, name,
                chains={name: self._chains.get(name, ())},
            )
            creator = self._creators[name] = _AcceptingServerCreator(factory)
        return creator
