"""
TLS for DNA: servers authenticate as themselves over mutual TLS.

draft-ietf-xmpp-dna-01 section 5 has both ends of a server-to-server stream
prove their own server names with X.509 certificates:

  - The Originating Server connects to the target of a DNSSEC-secured SRV
    record, sends that name in SNI, verifies the chain of the certificate it
    gets, and requires the target name among the names the certificate
    presents (section 5 steps 5-7).  L{clientContextFactory} does all of this
    inside the handshake and fails closed.

  - The Receiving Server requires a client certificate and verifies its chain
    (section 5, receiving steps 2-3).  L{ServerContextFactory} does that and
    picks our own certificate by SNI.  The certificate's names are not known to
    match anything until the stream header arrives: the stream layer then
    checks the header's C{from} with
    L{dna.channel.identity.verifyPeerName} on L{peerCertificate}, and records L{peerServerNames} as the connection's
    server names.

Which names a certificate presents, and whether it is valid for one, is
L{dna.channel.identity}'s business; this module is the OpenSSL glue around
it.

Certificates of initiating servers are server certificates: the Receiving
Server verifies the client's chain for the TLS server purpose (C{serverAuth}),
not OpenSSL's default client purpose, because public CAs stopped putting
C{clientAuth} into server certificates in 2026.  See
L{ServerContextFactory}.

These contexts say nothing about the TCP connection under them.  The stream
layer should call C{transport.setTcpNoDelay(True)} on every server-to-server
connection: with Nagle's algorithm on, the first small writes after a TLS
handshake wait for a delayed acknowledgement, about 40 ms per new connection.
"""

import weakref

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dna.channel.dane import DANEVerdict, TLSARecord, usableRecords, verifyChain
from dna.channel.identity import serverNamesFromCertificate, verifyPeerName
from dna.core.names import normalizeServerName
from dna.error import (
    CertificateNameMismatch,
    DANEMismatch,
    DANEUnavailable,
    InvalidAddress,
)

_log = Logger()

#: The ALPN protocol name of server-to-server XMPP over TLS (XEP-0368).
#: Prosody always offers it, and a Twisted server that does not accept it
#: aborts the handshake with an C{internal_error} alert.
ALPN_XMPP_SERVER = b"xmpp-server"

#: The port of the TLSA records of a server name when none is said: the
#: server-to-server port.
DEFAULT_TLSA_PORT = 5269


#: Every answer of L{tlsFailure}: why an outgoing connection failed in TLS.
FAILED_TLS_REASONS = (
    "certificate", "name-mismatch", "dane-mismatch", "dane-unavailable", "handshake",
)


def tlsFailure(failure):
    """
    Why TLS failed on a connection, for the metrics: C{"certificate"} (the
    peer's certificate did not verify), C{"name-mismatch"} (it does not
    name the server), C{"dane-mismatch"} (it matches none of the TLSA
    records), C{"dane-unavailable"} (the TLSA records could not be learnt
    securely), C{"handshake"} (any other TLS error); L{None} when C{failure}
    is not about TLS.
    """
    if failure.check(DANEMismatch):
        return "dane-mismatch"
    if failure.check(DANEUnavailable):
        return "dane-unavailable"
    if failure.check(CertificateNameMismatch):
        return "name-mismatch"
    if failure.check(SSL.Error):
        if "certificate verify failed" in str(failure.value):
            return "certificate"
        return "handshake"
    return None


def peerCertificate(transport):
    """
    The certificate the peer presented in the TLS handshake.

    @param transport: A transport after a completed TLS handshake, such as
        an C{XmlStream}'s transport after STARTTLS.
    @type transport: L{twisted.internet.interfaces.ISSLTransport}

    @return: The peer's certificate, or L{None} when it presented none.
    @rtype: L{cryptography.x509.Certificate} or L{None}
    """
    certificate = transport.getPeerCertificate()
    if certificate is None:
        return None
    return certificate.to_cryptography()


#: Connection -> C{(server name, port)} DANE authenticated it for, by the
#: TLSA records of C{_PORT._tcp.<server name>}: its only name then,
#: whatever the certificate says (DANE-EE does not look at names).
_daneAuthenticated = weakref.WeakKeyDictionary()


def daneIdentity(transport):
    """
    Whether TLSA records proved the identity of the peer of a TLS
    connection (RFC 7673), and which.

    @param transport: A transport after a completed TLS handshake.
    @return: C{(server name, port)} of the TLSA records that authenticated
        the peer, or L{None} when PKIX did (or there is no TLS).
    """
    try:
        return _daneAuthenticated.get(transport.getHandle())
    except (AttributeError, TypeError):
        # A transport without an OpenSSL connection under it (a fake).
        return None


def peerChain(transport):
    """
    The certificates the peer of a TLS connection presented, leaf first, as
    L{dna.channel.dane.verifyChain} takes them.

    @param transport: A transport after a completed TLS handshake.
    @rtype: L{list} of L{cryptography.x509.Certificate}; empty when the
        peer presented none.
    """
    leaf = peerCertificate(transport)
    if leaf is None:
        return []
    presented = transport.getHandle().get_peer_cert_chain() or []
    return [leaf] + [certificate for certificate in
                     (c.to_cryptography() for c in presented) if certificate != leaf]


def peerServerNames(transport):
    """
    The server names of the peer of a TLS connection: the Receiving Server's
    C{server names} for an incoming connection (draft-ietf-xmpp-dna-01
    section 5, "the list of names from the client certificate ..., if
    present.  Otherwise, empty").

    Before trusting a stream header's C{from}, check it with
    C{verifyPeerName(peerCertificate(transport), from)}.

    @param transport: A transport after a completed TLS handshake.
    @type transport: L{twisted.internet.interfaces.ISSLTransport}

    When TLSA records authenticated the peer (RFC 7673), its one server
    name is the one they were looked up for.

    @rtype: L{frozenset} of L{str}
    """
    identity = daneIdentity(transport)
    if identity is not None:
        return frozenset([identity[0]])
    return serverNamesFromCertificate(peerCertificate(transport))


def _certificateOptions(trustRoot, certificate=None, chain=(), **kw):
    """
    The options both ends share: verify the peer against C{trustRoot},
    present C{certificate} and its chain, accept ALPN C{xmpp-server}.

    @param certificate: Our certificate and key.
    @type certificate: L{twisted.internet.ssl.PrivateCertificate} or L{None}

    @param chain: Intermediates to send after it.
    @type chain: iterable of L{twisted.internet.ssl.Certificate}

    @rtype: L{CertificateOptions}
    """
    if certificate is not None:
        kw.update(
            privateKey=certificate.privateKey.original,
            certificate=certificate.original,
            extraCertChain=[c.original for c in chain] or None,
        )
    return CertificateOptions(
        trustRoot=trustRoot,
        acceptableProtocols=[ALPN_XMPP_SERVER],
        **kw,
    )


@implementer(IOpenSSLClientConnectionCreator)
class _ServerNameVerifyingCreator:
    """
    Client connections that send a server name in SNI and accept only a
    certificate valid for it, by L{verifyPeerName}.

    Twisted's own L{twisted.internet.ssl.optionsForClientTLS} accepts only
    DNS-IDs and, in Twisted 26.10, lets the handshake succeed when the
    certificate has no subject alternative name at all (its verify callback
    only logs C{service_identity.CertificateError}).  This one accepts SRV-IDs
    and XmppAddrs too and fails closed on every error.
    """

    def __init__(self, certificateOptions, serverName, tlsa=(), clock=None,
                 port=DEFAULT_TLSA_PORT):
        """
        @param certificateOptions: Options that verify the chain.
        @type certificateOptions: L{CertificateOptions}

        @param serverName: The server name to expect, normalized.
        @type serverName: L{str}

        @param tlsa: The secure TLSA records of C{serverName}; when some are
            usable, they decide instead of PKIX (L{verifyChain}).
        @type tlsa: sequence of L{dna.channel.dane.TLSARecord}

        @param clock: An L{IReactorTime}, for the dates of DANE-TA chains;
            required with C{tlsa}.

        @param port: The port of C{tlsa}'s owner name, C{_PORT._tcp}.
        """
        self._port = port
        self._certificateOptions = certificateOptions
        self._serverName = serverName
        self._tlsa = usableRecords(tlsa)
        self._clock = clock

    def clientConnectionForTLS(self, tlsProtocol):
        """
        Create a connection for C{tlsProtocol}.

        @param tlsProtocol: The TLS protocol initiating the connection.
        @type tlsProtocol: L{twisted.protocols.tls.TLSMemoryBIOProtocol}

        @rtype: L{OpenSSL.SSL.Connection}
        """
        connection = self._certificateOptions.clientConnectionForTLS(
            tlsProtocol)
        connection.set_tlsext_host_name(self._serverName.encode("ascii"))
        if self._tlsa:
            callback = self._daneVerifyCallback(tlsProtocol)
        else:
            callback = self._verifyCallback(tlsProtocol)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, callback)
        return connection

    def _verifyCallback(self, tlsProtocol):
        """
        Make an OpenSSL verify callback that adds the name check to the chain
        verification.

        OpenSSL calls it once for every certificate of the chain, root first,
        with C{preverifyOK} saying whether OpenSSL accepted that certificate;
        the leaf comes last, at depth 0.  The callback never raises: an
        exception escaping into OpenSSL would be lost or be reported far from
        here.

        @param tlsProtocol: The protocol to fail with the reason.
        """
        serverName = self._serverName
        protocolRef = [tlsProtocol]

        def verifyCallback(connection, certificate, errno, depth, preverifyOK):
            if depth != 0:
                return bool(preverifyOK)
            # The leaf: the last call that needs the protocol.  Drop it, to
            # break the cycle of protocol, connection and this callback.
            tlsProtocol = protocolRef.pop() if protocolRef else None
            if not preverifyOK:
                return False
            try:
                verifyPeerName(certificate, serverName)
            except BaseException:
                reason = Failure()
                if not reason.check(CertificateNameMismatch):
                    _log.failure("While verifying the certificate of {name}",
                                 reason, name=serverName)
                if tlsProtocol is not None:
                    tlsProtocol.failVerification(reason)
                return False
            return True

        return verifyCallback

    def _daneVerifyCallback(self, tlsProtocol):
        """
        Make an OpenSSL verify callback that lets the TLSA records decide
        (RFC 7671): PKIX errors are noted but do not stop the handshake, and
        at the leaf L{verifyChain} judges the whole presented chain.  OpenSSL
        may call the leaf more than once (once per error, then once more):
        the verdict is made once.

        @param tlsProtocol: The protocol to fail with the reason.
        """
        serverName = self._serverName
        records = self._tlsa
        clock = self._clock
        port = self._port
        protocolRef = [tlsProtocol]
        state = {"pkix": True, "verdict": None}

        def verifyCallback(connection, certificate, errno, depth, preverifyOK):
            if not preverifyOK:
                state["pkix"] = False
            if depth != 0:
                return True
            tlsProtocol = protocolRef.pop() if protocolRef else None
            verdict = state["verdict"]
            if verdict is None:
                try:
                    chain = connection.get_peer_cert_chain() or [certificate]
                    verdict = verifyChain(records, chain, serverName, clock.seconds())
                except BaseException:
                    _log.failure("While matching the certificate of {name} with TLSA",
                                 name=serverName)
                    verdict = DANEVerdict(False, reason="internal error")
                state["verdict"] = verdict
                _log.debug("DANE for {name}: {reason}", name=serverName,
                           reason=verdict.reason)
                if verdict.authenticated:
                    _daneAuthenticated[connection] = (serverName, port)
                elif tlsProtocol is not None:
                    tlsProtocol.failVerification(
                        Failure(DANEMismatch(serverName, verdict.reason)))
            if not verdict.authenticated:
                return False
            return not verdict.needsPKIX or state["pkix"]

        return verifyCallback


def clientContextFactory(serverName, trustRoot, clientCertificate,
                         chain=(), tlsa=(), clock=None, tlsaPort=None):
    """
    TLS for an Originating Server connecting to a Receiving Server
    (draft-ietf-xmpp-dna-01 section 5 steps 5-7).

    The connection sends C{serverName} in SNI, offers ALPN C{xmpp-server},
    presents C{clientCertificate}, verifies the peer's chain against
    C{trustRoot} and requires the peer's certificate to be valid for
    C{serverName} by L{verifyPeerName}: DNS-ID, SRV-ID for C{_xmpp-server} or
    XmppAddr.  Any failure aborts the handshake; the application protocol's
    C{connectionLost} then gets the reason, a L{CertificateNameMismatch} for a
    wrong name.

    Pass the result as C{configurationForTLS} of a
    L{twisted.words.protocols.jabber.xmlstream.TLSInitiatingInitializer}, or
    to C{startTLS}.  Set C{TCP_NODELAY} on the transport (see the module
    docstring).

    @param serverName: The name to expect: the SRV target (DNA) or the
        domain.  U-labels are converted.
    @type serverName: L{str}

    @param trustRoot: The certificate authorities to accept, such as
        L{twisted.internet.ssl.platformTrust}C{()} or a single CA
        certificate.
    @type trustRoot: L{twisted.internet.ssl.IOpenSSLTrustRoot} or
        L{twisted.internet.ssl.Certificate}

    @param clientCertificate: Our certificate and key, naming the server
        name we put in the stream header's C{from}; L{None} presents none,
        which a DNA Receiving Server refuses.
    @type clientCertificate: L{twisted.internet.ssl.PrivateCertificate} or
        L{None}

    @param chain: Intermediate certificates to send after ours.
    @type chain: iterable of L{twisted.internet.ssl.Certificate}

    @param tlsa: The secure TLSA records of C{serverName} (RFC 7673): when
        one is usable, the peer's certificate must match one of them, and
        PKIX no longer decides (DANE-EE ignores names and dates, DANE-TA
        needs no trusted root); a mismatch fails with L{DANEMismatch}.
    @type tlsa: sequence of L{dna.channel.dane.TLSARecord}

    @param clock: An L{IReactorTime}; required with C{tlsa}.

    @param tlsaPort: The port of C{tlsa}'s owner name (the SRV port), for
        L{daneIdentity}; 5269 if L{None}.

    @rtype: L{IOpenSSLClientConnectionCreator}

    @raise InvalidAddress: If C{serverName} is not a server name.
    """
    if tlsa and clock is None:
        raise ValueError("TLSA records need a clock")
    return _ServerNameVerifyingCreator(
        _certificateOptions(trustRoot, clientCertificate, chain),
        normalizeServerName(serverName), tlsa, clock,
        DEFAULT_TLSA_PORT if tlsaPort is None else tlsaPort,
    )


def _verifyPeerAsServer(context):
    """
    Make C{context} verify the peer's certificate chain for the TLS server
    purpose.

    OpenSSL verifies a client's chain for C{X509_PURPOSE_SSL_CLIENT}: the
    leaf's extended key usage, when present, must list C{clientAuth}, and so
    must that of every CA certificate with one.  A server certificate issued
    for C{serverAuth} alone fails with C{X509_V_ERR_INVALID_PURPOSE}.
    OpenSSL takes the purpose from the verification store when one is set
    there (C{X509_STORE_CTX_set_default} only fills in a purpose that is still
    unset), so setting C{X509_PURPOSE_SSL_SERVER} on the context's store makes
    it verify the client's chain exactly as a client verifies a server's:
    chain, dates, basic constraints and key usage as before, and
    C{serverAuth} instead of C{clientAuth}.  A certificate for C{clientAuth}
    alone, which names no server, is refused.

    pyOpenSSL has no call for this; C{cryptography}'s bindings have
    C{X509_STORE_set_purpose}, reached through the store's pointer.  It must
    run before the context makes its first connection.

    @type context: L{OpenSSL.SSL.Context}
    """
    lib = Binding.lib
    store = context.get_cert_store()
    if lib.X509_STORE_set_purpose(store._store,
                                  lib.X509_PURPOSE_SSL_SERVER) != 1:
        raise RuntimeError("X509_STORE_set_purpose failed")


@implementer(IOpenSSLServerConnectionCreator)
class ServerContextFactory:
    """
    TLS for a Receiving Server (draft-ietf-xmpp-dna-01 section 5, receiving
    steps 2-3).

    A connection presents the certificate of the server name the client asks
    for in SNI, or the default one when it asks for none or for a name we do
    not have.  It requires a client certificate, verifies its chain against
    the trust root for the TLS I{server} purpose (see
    L{_verifyPeerAsServer}), and accepts ALPN C{xmpp-server} (a Twisted
    server that accepts no protocol aborts the handshakes of clients that
    offer one, and Prosody always does).

    Which server names the client's certificate presents is for the stream
    layer to check once the stream header names one: see L{verifyPeerName},
    L{peerCertificate} and L{peerServerNames}.  Set C{TCP_NODELAY} on the
    transport (see the module docstring).

    Pass it to C{startTLS} when the peer sends C{<starttls/>}.
    """

    def __init__(self, certificates, trustRoot, defaultName, chains=None, dane=False):
        """
        @param certificates: Our certificate for each of our server names,
            such as C{{"xmpp1.example.net": cert}}.  One certificate may serve
            several names.
        @type certificates: L{dict} of L{str} to
            L{twisted.internet.ssl.PrivateCertificate}

        @param trustRoot: The certificate authorities whose certificates we
            accept from initiating servers.
        @type trustRoot: L{twisted.internet.ssl.IOpenSSLTrustRoot} or
            L{twisted.internet.ssl.Certificate}

        @param defaultName: The key of C{certificates} to present when SNI
            names nothing we have.
        @type defaultName: L{str}

        @param chains: Intermediate certificates to send after each name's
            certificate, keyed like C{certificates}.
        @type chains: L{dict} of L{str} to iterable of
            L{twisted.internet.ssl.Certificate}, or L{None}

        @param dane: Whether a client certificate that PKIX refuses is let
            through the handshake, for the stream layer to check by DANE
            once the stream header names the peer (L{DANEPeerVerifier});
            L{pkixVerified} then says whether PKIX accepted it.

        @raise InvalidAddress: If a name is not a server name.
        @raise ValueError: If C{defaultName} is not among them.
        """
        # The connections whose client chain PKIX refused (dane only).
        self._pkixRefused = weakref.WeakKeyDictionary()
        chains = {normalizeServerName(name): chain
                  for name, chain in (chains or {}).items()}
        self._contexts = {}
        self._options = {}
        for name, certificate in certificates.items():
            name = normalizeServerName(name)
            options = _certificateOptions(
                trustRoot, certificate, chains.get(name, ()),
                contextForServerName=self._contextForServerName,
            )
            context = options.getContext()
            _verifyPeerAsServer(context)
            if dane:
                context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                                   self._noteVerification)
            self._options[name] = options
            self._contexts[name] = context
        defaultName = normalizeServerName(defaultName)
        if defaultName not in self._options:
            raise ValueError(
                f"no certificate for the default name {defaultName!r}")
        self._defaultOptions = self._options[defaultName]

    def _noteVerification(self, connection, certificate, errno, depth, preverifyOK):
        """
        The verify callback with C{dane}: note a PKIX refusal, go on.
        """
        if not preverifyOK:
            self._pkixRefused[connection] = errno
        return True

    def pkixVerified(self, transport):
        """
        Whether PKIX accepted the client certificate of a connection.

        @param transport: A transport after a completed TLS handshake.
        @rtype: L{bool}
        """
        return transport.getHandle() not in self._pkixRefused

    def _contextForServerName(self, serverName):
        """
        Choose our certificate by the client's SNI.

        @param serverName: The SNI host name, or L{None}.
        @type serverName: L{bytes} or L{None}

        @return: The context to switch to, or L{None} to stay with the
            default.
        @rtype: L{OpenSSL.SSL.Context} or L{None}
        """
        if serverName is None:
            return None
        try:
            name = normalizeServerName(serverName.decode("ascii"))
        except (UnicodeDecodeError, InvalidAddress):
            name = None
        context = self._contexts.get(name)
        if context is None:
            _log.debug("No certificate for SNI {serverName!r}; "
                       "presenting the default one", serverName=serverName)
        return context

    def serverConnectionForTLS(self, tlsProtocol):
        """
        Create a connection for C{tlsProtocol}.

        @param tlsProtocol: The TLS protocol accepting the connection.
        @type tlsProtocol: L{twisted.protocols.tls.TLSMemoryBIOProtocol}

        @rtype: L{OpenSSL.SSL.Connection}
        """
        return self._defaultOptions.serverConnectionForTLS(tlsProtocol)


class DANEPeerVerifier:
    """
    The Receiving Server's check of a peer's client certificate once the
    stream header names its server name (RFC 7673 on the receiving side):
    the TLSA records of C{_5269._tcp.<server name>} decide when there are
    usable ones; otherwise PKIX, with the name check of L{verifyPeerName}.
    A failed TLSA lookup refuses the peer (no downgrade to PKIX).
    """

    def __init__(self, tlsaLookup, contextFactory, clock, port=DEFAULT_TLSA_PORT, pkix=True):
        """
        @param tlsaLookup: A L{dna.dns.tlsa.TLSALookup}.
        @param contextFactory: The L{ServerContextFactory}, made with
            C{dane=True}, that accepted the connections.
        @param clock: An L{IReactorTime}, for the dates of DANE-TA chains.
        @param port: The port of the TLSA records of peers' server names.
        @param pkix: Whether PKIX decides for a peer without TLSA records;
            if not, such a peer is refused.
        """
        self._pkix = pkix
        self._tlsa = tlsaLookup
        self._contextFactory = contextFactory
        self._clock = clock
        self._port = port

    def verify(self, transport, peerName):
        """
        Check the peer's certificate for C{peerName}.

        @return: A L{Deferred} firing with C{"dane"} or C{"pkix"}, the
            proof that authenticated the peer, or failing with
            L{DANEMismatch}, L{DANEUnavailable} or
            L{CertificateNameMismatch}.
        """
        pkix = self._contextFactory.pkixVerified(transport)
        leaf = peerCertificate(transport)

        def decide(result):
            if result.failed:
                raise DANEUnavailable(peerName, result.reason)
            records = usableRecords(
                [TLSARecord.fromRdata(rdata) for rdata in result.records])
            if not records:
                if not self._pkix:
                    raise DANEMismatch(peerName, f"{result.reason}, and PKIX is not an "
                                       f"accepted identity proof")
                if not pkix:
                    raise DANEMismatch(peerName, f"PKIX refuses the certificate and "
                                       f"DANE does not apply ({result.reason})")
                verifyPeerName(leaf, peerName)
                return "pkix"
            verdict = verifyChain(records, peerChain(transport), peerName,
                                  self._clock.seconds())
            if not verdict.authenticated:
                raise DANEMismatch(peerName, verdict.reason)
            if verdict.needsPKIX and not pkix:
                raise DANEMismatch(peerName, f"{verdict.reason}, but PKIX refuses it")
            _daneAuthenticated[transport.getHandle()] = (peerName, self._port)
            return "dane"

        return self._tlsa.lookup(peerName, self._port).addCallback(decide)
