"""
Our certificates and keys, read from the operator's PEM files and checked at
start-up: each server name has a certificate that covers it
(draft-ietf-xmpp-dna-01 section 5: a server proves its server name with its
certificate), is valid now, comes first in its file followed by its chain,
and matches an unencrypted private key.

Problems are L{dna.app.schema.Invalid} with a message naming the file, to
which L{dna.app.config} adds the section and key.
"""

import attr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet.ssl import Certificate, KeyPair, PrivateCertificate

from dna.app.schema import Invalid, located
from dna.channel.identity import verifyPeerName
from dna.error import CertificateNameMismatch


@attr.s(frozen=True)
class ServerName:
    """
    One of our server names with the certificate we prove it with.

    @ivar name: The server name, normalised by
        L{dna.core.names.normalizeServerName}.
    @ivar certificate: The certificate and its key.
    @type certificate: L{twisted.internet.ssl.PrivateCertificate}
    @ivar chain: The intermediate certificates to send after it.
    @type chain: L{tuple} of L{twisted.internet.ssl.Certificate}
    @ivar certificatePath: The certificate file.
    @ivar keyPath: The key file.
    @ivar notAfter: When the certificate expires.
    @type notAfter: L{datetime.datetime}
    """

    name = attr.ib()
    certificate = attr.ib(repr=False)
    chain = attr.ib(converter=tuple, repr=False, default=())
    certificatePath = attr.ib(default=None)
    keyPath = attr.ib(default=None)
    notAfter = attr.ib(default=None)


def readCertificates(path, data):
    """
    All certificates of a PEM file, in order.

    @param path: The file, for messages.
    @param data: Its contents.
    @rtype: L{list} of L{cryptography.x509.Certificate}
    @raise Invalid: If it holds none.
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise Invalid(f"no PEM certificate in {path}")
    return certificates


def readPrivateKey(path, data):
    """
    The unencrypted private key of a PEM file.

    @raise Invalid: If there is none, or it is encrypted or of an unsupported
        kind.
    """
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise Invalid(
            f"the key in {path} is encrypted: give it unencrypted, as "
            f"nobody is there to type a passphrase") from None
    except UnsupportedAlgorithm:
        raise Invalid(f"unsupported kind of key in {path}") from None
    except ValueError:
        raise Invalid(f"no PEM private key in {path}") from None


def authorities(path, data):
    """
    The certificates of a PEM file of certificate authorities.

    @rtype: L{tuple} of L{twisted.internet.ssl.Certificate}
    """
    return tuple(twistedCertificate(c) for c in readCertificates(path, data))


def twistedCertificate(certificate):
    """
    A L{cryptography.x509.Certificate} as Twisted's
    L{twisted.internet.ssl.Certificate}.
    """
    return Certificate(crypto.X509.from_cryptography(certificate))


def _spki(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _dateText(when):
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def checkDates(certificate, what, path, now):
    """
    Refuse a certificate that is not valid at C{now}.

    @param what: The certificate, for messages (C{"the certificate"}).
    @param path: Its file, for messages.
    @raise Invalid: If it has expired or is not valid yet.
    """
    if certificate.not_valid_after_utc < now:
        raise Invalid(f"{what} in {path} expired on "
                      f"{_dateText(certificate.not_valid_after_utc)}")
    if certificate.not_valid_before_utc > now:
        raise Invalid(f"{what} in {path} is not valid before "
                      f"{_dateText(certificate.not_valid_before_utc)}")


def _presented(names):
    if not names:
        return "it presents no server name"
    return "it presents: " + ", ".join(sorted(names))


def buildServerName(where, name, certificatePath, certificateData, keyPath,
                    keyData, now):
    """
    Check a server name's certificate file (the certificate first, then its
    chain) and key file, and pair them.

    @param where: The configuration entry, for messages, such as
        C{"[[server.names]] #1"}.
    @param name: The normalised server name the certificate must cover.
    @param now: The time the certificates must be valid at.
    @rtype: L{ServerName}
    @raise Invalid: If anything is wrong, with C{where} in front.
    """
    with located(f"{where} certificate"):
        certificates = readCertificates(certificatePath, certificateData)
    with located(f"{where} key"):
        key = readPrivateKey(keyPath, keyData)

    spki = _spki(key.public_key())
    if _spki(certificates[0].public_key()) != spki:
        for number, other in enumerate(certificates[1:], 2):
            if _spki(other.public_key()) == spki:
                raise Invalid(
                    f"{where}: the key in {keyPath} belongs to certificate "
                    f"#{number} of {certificatePath}, not the first: put the "
                    f"server's own certificate first, then its chain")
        raise Invalid(f"{where}: the key in {keyPath} does not match the "
                      f"certificate in {certificatePath}")

    for number, certificate in enumerate(certificates, 1):
        what = "the certificate" if number == 1 else (
            f"chain certificate #{number} "
            f"({certificate.subject.rfc4514_string()})")
        with located(f"{where} certificate"):
            checkDates(certificate, what, certificatePath, now)

    try:
        verifyPeerName(certificates[0], name)
    except CertificateNameMismatch as e:
        raise Invalid(
            f"{where}: the certificate in {certificatePath} does not cover "
            f"{name} ({_presented(e.presentedNames)})") from None

    try:
        keyPair = KeyPair(crypto.PKey.from_cryptography_key(key))
    except TypeError:
        raise Invalid(f"{where} key: unsupported kind of key in {keyPath}") \
            from None
    return ServerName(
        name=name,
        certificate=PrivateCertificate.fromCertificateAndKeyPair(
            twistedCertificate(certificates[0]), keyPair),
        chain=[twistedCertificate(c) for c in certificates[1:]],
        certificatePath=certificatePath,
        keyPath=keyPath,
        notAfter=certificates[0].not_valid_after_utc,
    )
