"""
Peer identity: the server names an X.509 certificate presents, and whether
it is valid for a given one.

RFC 6125 as profiled for XMPP by RFC 6120 section 13.7 and RFC 7590: DNS-IDs
(with wildcards), SRV-IDs for C{_xmpp-server}, bare-domain XmppAddrs and, for
a certificate with none of those, the subject common name. Wildcard, IDNA and
SRV-ID matching is C{service_identity}'s; certificates are read with
C{cryptography}. Nothing here touches a TLS connection or checks a chain: the
handshake (L{dna.channel.tls}) did that, and hands over the certificate.

draft-ietf-xmpp-dna-01 section 5 uses these names on both sides: the
Originating Server requires the SRV target among the Receiving Server's
names (step 6); the Receiving Server checks the stream's C{from} against the
client certificate and records its names as the connection's server names.
"""

import ipaddress

import attr
import idna
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.x509.oid import ExtensionOID, NameOID
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import (
    DNS_ID,
    SRV_ID,
    DNSPattern,
    SRVPattern,
    URIPattern,
    verify_service_identity,
)
from twisted.logger import Logger

from dna.error import CertificateNameMismatch

_log = Logger()

#: The service label of SRV-IDs naming an XMPP server (RFC 6120 section
#: 13.7.1.2.1).
SRV_SERVICE = "xmpp-server"

#: RFC 6120 section 13.7.1.4: C{id-on-xmppAddr}, which C{service_identity}
#: does not read.
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")

_SRV_SERVICE_BYTES = SRV_SERVICE.encode("ascii")


def normalizeServerName(name):
    """
    Bring a server name into the form certificates and SNI use.

    @param name: A domain name in U-labels or A-labels, any case, with or
        without one trailing dot.
    @type name: L{str}

    @return: The name in lowercase A-labels without a trailing dot, such as
        C{"xn--bcher-kva.example"} for C{"Bücher.example."}.
    @rtype: L{str}

    @raise ValueError: If C{name} is not a domain name: empty, an IP address,
        an empty label, characters outside letters, digits, C{-} and C{_}
        (C{_} as C{service_identity} allows), or not valid IDNA.
    @raise TypeError: If C{name} is not text.
    """
    if not isinstance(name, str):
        raise TypeError(f"server names are text, not {type(name).__name__}")
    if name.endswith("."):
        name = name[:-1]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(f"{name!r} is an IP address, not a server name")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise ValueError(f"{name!r} is not a valid IDNA name: {e}") from e
    name = name.lower()
    labels = name.split(".")
    if not all(labels) or not all(
        label.replace("-", "").replace("_", "").isalnum() for label in labels
    ):
        raise ValueError(f"{name!r} is not a domain name")
    return name


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
        except ValueError:
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
    Normalize a DNS name pattern: a server name, possibly with C{*} for its
    whole leftmost label.

    @rtype: L{str}, or L{None} if C{pattern} is not such a pattern
    """
    wildcard, rest = "", pattern
    if pattern.startswith("*."):
        wildcard, rest = "*.", pattern[2:]
    try:
        return wildcard + normalizeServerName(rest)
    except ValueError:
        return None


def serverNamesFromCertificate(certificate):
    """
    The server names a certificate presents (draft-ietf-xmpp-dna-01 section 5
    step 6, "construct a list of all names that the certificate presents").

    Following RFC 6125 and RFC 6120 section 13.7.1.2.1, these are:

      - every subject alternative C{dNSName} (DNS-ID) that is a domain name,
        lowercase; a wildcard such as C{*.example.net} is kept as it is,
        because it names no single server: membership of a name in the result
        is exact, and L{verifyPeerName} is what matches wildcards;
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
    lowercase A-labels without a trailing dot.

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


def _matches(patterns, referenceIdentifier):
    """
    Whether C{service_identity} finds C{referenceIdentifier} among
    C{patterns}.
    """
    if not patterns:
        return False
    try:
        verify_service_identity(patterns, [referenceIdentifier], [])
    except VerificationError:
        return False
    return True


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

    These are exactly the names L{serverNamesFromCertificate} returns, with
    wildcards expanded.  The matching itself is C{service_identity}'s.

    The certificate's chain and dates are not checked here: the TLS handshake
    did that.

    @param certificate: The peer's certificate, or L{None} when it presented
        none (which is valid for no name).
    @type certificate: L{cryptography.x509.Certificate},
        L{OpenSSL.crypto.X509}, L{twisted.internet.ssl.Certificate} or
        L{None}

    @param name: The server name, such as a stream header's C{from} or the
        target of an SRV record, in U-labels or A-labels.  Anything that is
        not a domain name is valid for no certificate.
    @type name: L{str}

    @raise CertificateNameMismatch: If the certificate is not valid for
        C{name}.
    @raise TypeError: If C{name} is not text (a L{JID} is not a name).
    """
    if not isinstance(name, str):
        raise TypeError(f"server names are text, not {type(name).__name__}")
    identifiers = _presentedIdentifiers(certificate)
    try:
        reference = normalizeServerName(name)
        dnsID = DNS_ID(reference)
        srvID = SRV_ID(f"_{SRV_SERVICE}.{reference}")
    except ValueError:
        pass
    else:
        if (_matches(identifiers.patterns, dnsID)
                or _matches(identifiers.patterns, srvID)
                or reference in identifiers.xmppAddrs
                or _matches(identifiers.commonNames, dnsID)):
            return
    raise CertificateNameMismatch(name, serverNamesFromCertificate(certificate))
