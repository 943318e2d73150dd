"""
Peer identity: the server names an X.509 certificate presents, and whether
it is valid for a given one.

RFC 6125 as profiled for XMPP by RFC 6120 section 13.7 and RFC 7590: DNS-IDs
(with wildcards), SRV-IDs for C{_xmpp-server}, bare-domain XmppAddrs and, for
a certificate with none of those, the subject common name. Certificates are
read by C{service_identity} and C{cryptography}; names are normalised and
matched, wildcards included, by L{dna.core.names}, the same way the
delegation checks match them. Nothing here touches a TLS connection or checks a chain: the
handshake (L{dna.channel.tls}) did that, and hands over the certificate.

draft-ietf-xmpp-dna-01 section 5 uses these names on both sides: the
Originating Server requires the SRV target among the Receiving Server's
names (step 6); the Receiving Server checks the stream's C{from} against the
client certificate and records its names as the connection's server names.
"""

import attr
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import ExtensionOID, NameOID
from service_identity import CertificateError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import DNSPattern, SRVPattern, URIPattern
from twisted.logger import Logger

from dna.core.names import (
    coversServerName,
    normalizeServerName,
    normalizeServerPattern,
)
from dna.error import CertificateNameMismatch, InvalidAddress

_log = Logger()

#: The service label of SRV-IDs naming an XMPP server (RFC 6120 section
#: 13.7.1.2.1).
SRV_SERVICE = "xmpp-server"

#: RFC 6120 section 13.7.1.4: C{id-on-xmppAddr}, which C{service_identity}
#: does not read.
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")

_SRV_SERVICE_BYTES = SRV_SERVICE.encode("ascii")


def _toCryptography(certificate):
    """
    Accept the certificate types of the three libraries involved.

    @param certificate: A L{cryptography.x509.Certificate}, an
        L{OpenSSL.crypto.X509} or a L{twisted.internet.ssl.Certificate}
        (read by their methods, so that this module imports neither).

    @rtype: L{cryptography.x509.Certificate}
    """
    if isinstance(certificate, x509.Certificate):
        return certificate
    # twisted.internet.ssl.Certificate wraps an OpenSSL.crypto.X509.
    certificate = getattr(certificate, "original", certificate)
    return certificate.to_cryptography()


@attr.s(frozen=True)
class _PresentedIdentifiers:
    """
    What a certificate says about its subject's names, parsed once.

    @ivar patterns: The C{service_identity} patterns of the subject
        alternative names (DNS, SRV, URI, IP).
    @ivar xmppAddrs: The C{id-on-xmppAddr} entries that are bare domains,
        normalized with L{normalizeServerName}.
    @ivar commonNames: The subject common name as a single
        C{service_identity} DNS pattern when RFC 6125 section 6.4.4 lets it
        count, or empty.
    """

    patterns = attr.ib(default=())
    xmppAddrs = attr.ib(default=frozenset())
    commonNames = attr.ib(default=())


def _xmppAddrs(certificate):
    """
    The C{id-on-xmppAddr} values of a certificate.

    @rtype: L{list} of L{str}

    @raise ValueError: If one of them is not a DER C{UTF8String}.
    """
    try:
        san = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        )
    except x509.ExtensionNotFound:
        return []
    return [
        asn1.decode_der(str, other.value)
        for other in san.value.get_values_for_type(x509.OtherName)
        if other.type_id == ID_ON_XMPPADDR
    ]


def _presentedIdentifiers(certificate):
    """
    Parse the identifiers of a certificate.

    A certificate whose subject alternative names cannot be parsed (a
    malformed SRV-ID or XmppAddr, an invalid wildcard) presents nothing at
    all, rather than whatever parsed: a CA that issued garbage is not trusted
    for the rest.

    @rtype: L{_PresentedIdentifiers}
    """
    if certificate is None:
        return _PresentedIdentifiers()
    certificate = _toCryptography(certificate)
    try:
        patterns = tuple(extract_patterns(certificate))
        xmppAddrValues = _xmppAddrs(certificate)
    except (CertificateError, ValueError, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType) as e:
        _log.info(
            "Ignoring the names of a malformed certificate ({subject}): {error}",
            subject=certificate.subject.rfc4514_string(),
            error=e,
        )
        return _PresentedIdentifiers()

    xmppAddrs = set()
    for value in xmppAddrValues:
        # Server certificates name a domain (RFC 6120 section 13.7.1.4); a
        # JID with a localpart or resourcepart names something else.
        if "@" in value or "/" in value:
            continue
        try:
            xmppAddrs.add(normalizeServerName(value))
        except InvalidAddress:
            continue

    commonNames = ()
    hasApplicationIdentifiers = xmppAddrValues or any(
        isinstance(p, (DNSPattern, SRVPattern, URIPattern)) for p in patterns
    )
    if not hasApplicationIdentifiers:
        commonNames = _commonNamePatterns(certificate)
    return _PresentedIdentifiers(patterns, frozenset(xmppAddrs), commonNames)


def _commonNamePatterns(certificate):
    """
    The most specific (last) subject common name as a DNS pattern, when it is
    a domain name, possibly with a wildcard.

    @rtype: L{tuple} of zero or one L{DNSPattern}
    """
    attributes = certificate.subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)
    if not attributes:
        return ()
    commonName = attributes[-1].value
    if isinstance(commonName, bytes):
        return ()
    normalized = _normalizePattern(commonName)
    if normalized is None:
        return ()
    try:
        return (DNSPattern.from_bytes(normalized.encode("ascii")),)
    except CertificateError:
        return ()


def _normalizePattern(pattern):
    """
    L{normalizeServerPattern}, or L{None} for a pattern that is no server
    name (it presents nothing).
    """
    try:
        return normalizeServerPattern(pattern)
    except InvalidAddress:
        return None


def serverNamesFromCertificate(certificate):
    """
    The server names a certificate presents (draft-ietf-xmpp-dna-01 section 5
    step 6, "construct a list of all names that the certificate presents").

    Following RFC 6125 and RFC 6120 section 13.7.1.2.1, these are:

      - every subject alternative C{dNSName} (DNS-ID) that is a domain name,
        or a wildcard such as C{*.example.net} that RFC 6125 section 6.4.3
        allows (L{dna.core.names.normalizeServerPattern}), kept as a
        pattern because it names no single server: compare a name with the
        result by L{dna.core.names.coversServerName}, never by membership;
      - the domain of every C{id-on-dnsSRV} (SRV-ID) for the service
        C{_xmpp-server}, so C{_xmpp-server.example.com} gives
        C{example.com}; SRV-IDs of other services (C{_xmpp-client}) give
        nothing;
      - every C{id-on-xmppAddr} that is a bare domain, normalized to
        A-labels; XmppAddrs with a localpart or resource give nothing;
      - the last subject common name, only when the certificate has no
        DNS-ID, SRV-ID, URI-ID or XmppAddr at all (RFC 6125 section 6.4.4)
        and the common name is a domain name.

    IP address entries and URI-IDs give nothing.  A certificate whose
    subject alternative names are malformed presents nothing.  All names are
    in the canonical form of L{dna.core.names} (lower-case A-labels without a
    trailing dot).

    The certificate's validity (chain, dates, purpose) is not checked here:
    the TLS handshake did that.

    @param certificate: A certificate, or L{None} for a peer that presented
        none.
    @type certificate: L{cryptography.x509.Certificate},
        L{OpenSSL.crypto.X509}, L{twisted.internet.ssl.Certificate} or
        L{None}

    @rtype: L{frozenset} of L{str}
    """
    identifiers = _presentedIdentifiers(certificate)
    names = set(identifiers.xmppAddrs)
    for pattern in identifiers.patterns + identifiers.commonNames:
        if isinstance(pattern, DNSPattern):
            name = _normalizePattern(pattern.pattern.decode("ascii"))
        elif (isinstance(pattern, SRVPattern)
              and pattern.name_pattern == _SRV_SERVICE_BYTES):
            name = _normalizePattern(
                pattern.dns_pattern.pattern.decode("ascii"))
        else:
            name = None
        if name is not None:
            names.add(name)
    return frozenset(names)


def verifyPeerName(certificate, name):
    """
    Check that a certificate is valid for a server name.

    The certificate is valid for C{name} when one of these holds:

      - a DNS-ID matches C{name} (wildcards as RFC 6125 section 6.4.3 allows);
      - an SRV-ID C{_xmpp-server.<name>} matches;
      - an XmppAddr is the bare domain C{name};
      - the certificate has none of those nor any URI-ID, and its last
        subject common name matches C{name} as a DNS-ID would (RFC 6125
        section 6.4.4).

    That is: C{name} is covered (L{dna.core.names.coversServerName}) by the
    names L{serverNamesFromCertificate} returns, by the same rule as the
    delegation checks compare SRV targets with (L{dna.dns.verdict.delegates}).

    The certificate's chain and dates are not checked here: the TLS handshake
    did that.

    @param certificate: The peer's certificate, or L{None} when it presented
        none (which is valid for no name).
    @type certificate: L{cryptography.x509.Certificate},
        L{OpenSSL.crypto.X509}, L{twisted.internet.ssl.Certificate} or
        L{None}

    @param name: The server name, such as a stream header's C{from} or the
        target of an SRV record, in U-labels or A-labels.  Anything that
        L{dna.core.names.normalizeServerName} refuses is valid for no
        certificate.
    @type name: L{str}

    @raise CertificateNameMismatch: If the certificate is not valid for
        C{name}.
    @raise TypeError: If C{name} is not text (a L{JID} is not a name).
    """
    if not isinstance(name, str):
        raise TypeError(f"server names are text, not {type(name).__name__}")
    presented = serverNamesFromCertificate(certificate)
    try:
        reference = normalizeServerName(name)
    except InvalidAddress:
        pass
    else:
        if coversServerName(presented, reference):
            return
    raise CertificateNameMismatch(name, presented)
