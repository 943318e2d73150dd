"""
A throw-away X.509 certificate authority for tests and demonstrations.

DNA authenticates servers by the names in their certificates
(draft-ietf-xmpp-dna-01 section 5), so its tests need certificates naming
servers in every way RFC 6125 and RFC 7590 allow: DNS-IDs (C{dNSName}),
SRV-IDs (C{id-on-dnsSRV}), XmppAddrs (C{id-on-xmppAddr}) and, for the legacy
rules, nothing but a subject common name.  They also need bad certificates:
expired, not yet valid, from a certificate authority nobody trusts, without
the right extended key usage.

Everything is made in memory with C{cryptography} on ECDSA P-256 keys, which
takes well under a millisecond per certificate.  Nothing here is fit to
protect anything real.

Typical use::

    ca = CertificateAuthority("DNA Test Root CA")
    server = ca.issue("xmpp1.example.net", dnsNames=["xmpp1.example.net"])
    expired = ca.issue("old.example.net", dnsNames=["old.example.net"],
                       notAfter=datetime.now(timezone.utc) - timedelta(days=1))
    stranger = CertificateAuthority("Nobody Trusts Me").issue(
        "xmpp1.example.net", dnsNames=["xmpp1.example.net"])

    options = CertificateOptions(
        privateKey=server.toPrivateCertificate().privateKey.original,
        certificate=server.toPrivateCertificate().original,
        trustRoot=ca.toCertificate())
"""

import datetime
import hashlib
import os

import attr
from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import (
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
)
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.python.filepath import FilePath

#: RFC 6120 section 13.7.1.4: C{id-on-xmppAddr}, an C{otherName} holding a
#: C{UTF8String}.
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")

#: RFC 4985: C{id-on-dnsSRV}, an C{otherName} holding an C{IA5String} such as
#: C{_xmpp-server.example.com}.
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

_ONE_DAY = datetime.timedelta(days=1)


def _now():
    """
    The current time, timezone-aware, in UTC.
    """
    return datetime.datetime.now(datetime.timezone.utc)


def _validity(notBefore, notAfter, lifetime):
    """
    Fill in a validity period.

    Without C{notBefore}, a certificate becomes valid a day ago (allowing for
    clock skew), or C{lifetime} before C{notAfter} when that lies in the past,
    so an expired certificate needs nothing but C{notAfter}.  Without
    C{notAfter}, it stays valid C{lifetime} after C{notBefore}.

    @return: A 2-L{tuple} of timezone-aware L{datetime.datetime}.
    """
    if notBefore is None:
        notBefore = _now() - _ONE_DAY
        if notAfter is not None and notAfter <= notBefore:
            notBefore = notAfter - lifetime
    if notAfter is None:
        notAfter = notBefore + lifetime
    return notBefore, notAfter


def _pemCertificate(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def _keyUsage(**kw):
    usage = dict(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    usage.update(kw)
    return x509.KeyUsage(**usage)


def _extendedKeyUsage(serverAuth, clientAuth):
    """
    The extended key usage extension for the given purposes, or L{None} for
    none at all (a certificate without the extension is good for any purpose).
    """
    usages = []
    if serverAuth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if clientAuth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        return None
    return x509.ExtendedKeyUsage(usages)


@attr.s(frozen=True)
class IssuedCertificate:
    """
    A leaf certificate, its private key and the certificates between it and
    its root.

    @ivar certificate: The leaf certificate.
    @type certificate: L{cryptography.x509.Certificate}

    @ivar privateKey: Its private key.
    @type privateKey: L{cryptography.hazmat.primitives.asymmetric.ec.EllipticCurvePrivateKey}

    @ivar chain: The intermediate certificates from the issuer up to, but not
        including, the root; empty when a root issued it directly.
    @type chain: L{tuple} of L{cryptography.x509.Certificate}
    """

    certificate = attr.ib()
    privateKey = attr.ib(repr=False)
    chain = attr.ib(default=(), converter=tuple)

    @property
    def certificatePEM(self):
        """
        The leaf certificate alone, PEM-encoded (L{bytes}).
        """
        return _pemCertificate(self.certificate)

    @property
    def chainPEM(self):
        """
        The leaf certificate followed by its intermediates, PEM-encoded
        (L{bytes}): what a server sends and what Prosody's C{certificate}
        file holds.
        """
        return b"".join(
            _pemCertificate(c) for c in (self.certificate,) + self.chain)

    @property
    def keyPEM(self):
        """
        The private key, unencrypted PKCS#8, PEM-encoded (L{bytes}).
        """
        return self.privateKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def spkiSHA256(self):
        """
        The SHA-256 digest of the certificate's SubjectPublicKeyInfo, as used
        by TLSA records of type C{3 1 1} (RFC 6698).

        @rtype: L{str} (lowercase hexadecimal)
        """
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        return hashlib.sha256(spki).hexdigest()

    def toPrivateCertificate(self):
        """
        @return: The leaf certificate and its key for Twisted's TLS APIs.
        @rtype: L{twisted.internet.ssl.PrivateCertificate}
        """
        return PrivateCertificate.loadPEM(self.certificatePEM + self.keyPEM)

    def toCertificate(self):
        """
        @return: The leaf certificate, without its key.
        @rtype: L{twisted.internet.ssl.Certificate}
        """
        return Certificate.loadPEM(self.certificatePEM)

    def toChain(self):
        """
        @return: The intermediates, to be sent after the leaf certificate.
        @rtype: L{list} of L{twisted.internet.ssl.Certificate}
        """
        return [Certificate.loadPEM(_pemCertificate(c)) for c in self.chain]

    def writeTo(self, directory, basename):
        """
        Write C{<basename>.pem} (the leaf certificate and its intermediates)
        and C{<basename>.key} (the unencrypted private key) into C{directory}.

        The files are made readable by everyone (C{0644}): a Prosody started
        for a test runs as its own user and has to read them.  These are test
        keys; do not use this for anything else.

        @param directory: An existing directory.
        @type directory: L{FilePath} or L{str}

        @param basename: The file names without extension, such as
            C{"xmpp1.example.net"}.
        @type basename: L{str}

        @return: The certificate and key files.
        @rtype: 2-L{tuple} of L{FilePath}
        """
        if not isinstance(directory, FilePath):
            directory = FilePath(directory)
        certificateFile = directory.child(basename + ".pem")
        keyFile = directory.child(basename + ".key")
        certificateFile.setContent(self.chainPEM)
        keyFile.setContent(self.keyPEM)
        os.chmod(keyFile.path, 0o644)
        os.chmod(certificateFile.path, 0o644)
        return certificateFile, keyFile


class CertificateAuthority:
    """
    A certificate authority, root or intermediate, that issues server
    certificates.

    A certificate authority that nobody configured as a trust root is all it
    takes to make an untrusted certificate: create a second one.

    @ivar name: The common name of the authority.
    @type name: L{str}

    @ivar certificate: The authority's own certificate.
    @type certificate: L{cryptography.x509.Certificate}

    @ivar chain: The intermediates from this authority up to, not including,
        the root: empty for a root, C{(self.certificate, ...)} otherwise.
    @type chain: L{tuple} of L{cryptography.x509.Certificate}
    """

    def __init__(self, name, issuer=None, notBefore=None, notAfter=None,
                 serverAuth=None, clientAuth=None):
        """
        @param name: The common name, such as C{"DNA Test Root CA"}.
        @type name: L{str}

        @param issuer: The authority that signs this one, or L{None} for a
            self-signed root.
        @type issuer: L{CertificateAuthority} or L{None}

        @param notBefore: Start of validity; see L{issue}.
        @param notAfter: End of validity; by default ten years after the
            start.

        @param serverAuth: Whether to restrict this authority with an
            extended key usage extension that lists C{id-kp-serverAuth}
            (public CAs put serverAuth-only restrictions on their
            intermediates).  With both this and C{clientAuth} left at L{None}
            the authority carries no extended key usage and is unrestricted.
        @type serverAuth: L{bool} or L{None}

        @param clientAuth: Likewise for C{id-kp-clientAuth}.
        @type clientAuth: L{bool} or L{None}
        """
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        notBefore, notAfter = _validity(
            notBefore, notAfter, datetime.timedelta(days=3650))
        if issuer is None:
            issuerName, signingKey = subject, self._key
            pathLength = None
        else:
            issuerName, signingKey = issuer.certificate.subject, issuer._key
            pathLength = 0
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuerName)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=pathLength),
                critical=True)
            .add_extension(
                _keyUsage(digital_signature=True, key_cert_sign=True,
                          crl_sign=True),
                critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(
                    self._key.public_key()),
                critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    signingKey.public_key()),
                critical=False)
        )
        extendedKeyUsage = _extendedKeyUsage(serverAuth, clientAuth)
        if extendedKeyUsage is not None:
            builder = builder.add_extension(extendedKeyUsage, critical=False)
        self.certificate = builder.sign(signingKey, hashes.SHA256())
        if issuer is None:
            self.chain = ()
        else:
            self.chain = (self.certificate,) + issuer.chain

    @property
    def certificatePEM(self):
        """
        This authority's certificate, PEM-encoded (L{bytes}): the trust
        anchor file for a root.
        """
        return _pemCertificate(self.certificate)

    def toCertificate(self):
        """
        @return: This authority's certificate, usable as the C{trustRoot} of
            Twisted's TLS APIs.
        @rtype: L{twisted.internet.ssl.Certificate}
        """
        return Certificate.loadPEM(self.certificatePEM)

    def intermediate(self, name, **kw):
        """
        Create an intermediate authority signed by this one.

        @param name: Its common name.
        @param kw: Further keyword arguments for L{CertificateAuthority}.
        @rtype: L{CertificateAuthority}
        """
        return CertificateAuthority(name, issuer=self, **kw)

    def issue(self, commonName, dnsNames=(), srvNames=(), xmppAddrs=(),
              notBefore=None, notAfter=None, serverAuth=True,
              clientAuth=False):
        """
        Issue a leaf certificate.

        @param commonName: The subject common name, or L{None} for an empty
            subject.
        @type commonName: L{str} or L{None}

        @param dnsNames: C{dNSName} entries (DNS-IDs), such as
            C{"xmpp1.example.net"} or C{"*.example.net"}, in A-labels.
        @type dnsNames: iterable of L{str}

        @param srvNames: C{id-on-dnsSRV} entries (SRV-IDs), each the whole
            C{IA5String} such as C{"_xmpp-server.example.com"}.
        @type srvNames: iterable of L{str}

        @param xmppAddrs: C{id-on-xmppAddr} entries, each a JID such as
            C{"example.com"}; U-labels are allowed (it is a C{UTF8String}).
        @type xmppAddrs: iterable of L{str}

        @param notBefore: Start of validity, timezone-aware.  By default a day
            ago, or 90 days before C{notAfter} when C{notAfter} lies in the
            past.
        @type notBefore: L{datetime.datetime} or L{None}

        @param notAfter: End of validity, timezone-aware.  By default 90 days
            after C{notBefore}.  C{now - timedelta(days=1)} gives an expired
            certificate.
        @type notAfter: L{datetime.datetime} or L{None}

        @param serverAuth: Whether the extended key usage lists
            C{id-kp-serverAuth}.
        @param clientAuth: Whether it lists C{id-kp-clientAuth}.  With neither,
            the certificate has no extended key usage extension at all.

        @return: The certificate, its key and chain.
        @rtype: L{IssuedCertificate}
        """
        key = ec.generate_private_key(ec.SECP256R1())
        notBefore, notAfter = _validity(
            notBefore, notAfter, datetime.timedelta(days=90))
        attributes = []
        if commonName is not None:
            attributes.append(
                x509.NameAttribute(NameOID.COMMON_NAME, commonName))
        alternativeNames = (
            [x509.DNSName(name) for name in dnsNames]
            + [x509.OtherName(ID_ON_DNSSRV,
                              asn1.encode_der(asn1.IA5String(name)))
               for name in srvNames]
            + [x509.OtherName(ID_ON_XMPPADDR, asn1.encode_der(name))
               for name in xmppAddrs]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None),
                critical=True)
            .add_extension(
                _keyUsage(digital_signature=True, key_agreement=True),
                critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()),
                critical=False)
        )
        extendedKeyUsage = _extendedKeyUsage(serverAuth, clientAuth)
        if extendedKeyUsage is not None:
            builder = builder.add_extension(extendedKeyUsage, critical=False)
        if alternativeNames:
            # RFC 5280 section 4.2.1.6: critical when the subject is empty.
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternativeNames),
                critical=not attributes)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(certificate, key, self.chain)
