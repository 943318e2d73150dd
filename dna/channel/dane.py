"""
The pure decision of DANE for server names (RFC 6698, RFC 7671, RFC 7673):
given the TLSA records of C{_PORT._tcp.TARGET} and the certificate chain a
peer presented, is the peer authenticated?  No I/O and no reactor: the
records come from L{dna.dns.tlsa}, the chain from the TLS handshake
(L{dna.channel.tls}).

  - DANE-EE (usage 3): the leaf matches; its names and validity dates do not
    matter (RFC 7671 section 5.1).
  - DANE-TA (usage 2): a certificate of the presented chain matches, the
    leaf chains up to it by signature, every certificate on the way is
    within its dates, and the leaf is valid for the reference name, the SRV
    target (RFC 7671 section 5.2, RFC 7673 section 4).
  - PKIX-TA and PKIX-EE (usages 0 and 1): a match counts only on top of
    PKIX validation and the name check (RFC 6698 section 2.1.1, RFC 7671
    section 5.4).
  - Selectors 0 (full certificate) and 1 (SubjectPublicKeyInfo), matching
    types 0 (exact), 1 (SHA-256), 2 (SHA-512).  Records of other values are
    unusable and ignored; when none is usable, DANE does not apply and PKIX
    decides (RFC 6698 section 4.1).  Several records, as during a key
    rollover, authenticate a peer when any one of them matches (RFC 7671
    section 8).
"""

import datetime
import hashlib
import hmac

import attr
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from dna.channel.identity import verifyPeerName
from dna.error import CertificateNameMismatch

PKIX_TA = 0
PKIX_EE = 1
DANE_TA = 2
DANE_EE = 3

SELECTOR_CERT = 0
SELECTOR_SPKI = 1

MATCH_FULL = 0
MATCH_SHA256 = 1
MATCH_SHA512 = 2

_USAGES = {PKIX_TA: "PKIX-TA", PKIX_EE: "PKIX-EE", DANE_TA: "DANE-TA", DANE_EE: "DANE-EE"}
_DIGESTS = {MATCH_FULL: None, MATCH_SHA256: hashlib.sha256, MATCH_SHA512: hashlib.sha512}


@attr.s(frozen=True, slots=True)
class TLSARecord:
    """
    One TLSA record (RFC 6698 section 2.1).

    @ivar data: The certificate association data (C{bytes}).
    """

    usage = attr.ib()
    selector = attr.ib()
    matchingType = attr.ib()
    data = attr.ib(repr=lambda data: data.hex())

    @classmethod
    def fromRdata(cls, rdata):
        """
        @param rdata: A dnspython TLSA rdata.
        @rtype: L{TLSARecord}
        """
        return cls(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))

    @property
    def usable(self):
        """
        Whether this implementation can use the record (RFC 6698 section 4.1).
        """
        return (self.usage in _USAGES and self.selector in (SELECTOR_CERT, SELECTOR_SPKI)
                and self.matchingType in _DIGESTS)

    def __str__(self):
        return f"{self.usage} {self.selector} {self.matchingType} {self.data.hex()}"


@attr.s(frozen=True, slots=True)
class DANEVerdict:
    """
    The outcome of L{verifyChain}.

    @ivar authenticated: Whether DANE authenticates the peer.
    @ivar record: The matching L{TLSARecord}, or L{None}.
    @ivar reason: Why not, or how (C{str}), for logs and refusals.
    @ivar needsPKIX: Whether the match counts only if PKIX validation of
        the chain succeeded too (usages 0 and 1).
    """

    authenticated = attr.ib()
    record = attr.ib(default=None)
    reason = attr.ib(default="")
    needsPKIX = attr.ib(default=False)


def usableRecords(records):
    """
    The records L{verifyChain} can use, in order.
    """
    return [record for record in records if record.usable]


def _cryptography(certificate):
    if isinstance(certificate, x509.Certificate):
        return certificate
    if hasattr(certificate, "to_cryptography"):
        return certificate.to_cryptography()
    return certificate.original.to_cryptography()


def associationData(certificate, selector, matchingType):
    """
    The certificate association data of C{certificate} for a selector and
    matching type: what a TLSA record for it holds.

    @type certificate: L{cryptography.x509.Certificate}
    @rtype: C{bytes}
    """
    if selector == SELECTOR_CERT:
        content = certificate.public_bytes(serialization.Encoding.DER)
    else:
        content = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = _DIGESTS[matchingType]
    return content if digest is None else digest(content).digest()


def matches(record, certificate):
    """
    Whether C{certificate} matches a usable TLSA record's association data.
    """
    return hmac.compare_digest(
        associationData(certificate, record.selector, record.matchingType), record.data)


def _withinDates(certificate, now):
    when = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return certificate.not_valid_before_utc <= when <= certificate.not_valid_after_utc


def _chainsTo(chain, anchorIndex, now):
    """
    Whether C{chain[0]} chains by signature to C{chain[anchorIndex]}, each
    certificate issued by the next, all within their dates.
    """
    for index in range(anchorIndex):
        child, issuer = chain[index], chain[index + 1]
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return False
    return all(_withinDates(certificate, now) for certificate in chain[:anchorIndex + 1])


def _nameOK(leaf, serverName):
    try:
        verifyPeerName(leaf, serverName)
    except CertificateNameMismatch:
        return False
    return True


def verifyChain(records, chain, serverName, now):
    """
    Whether the TLSA records authenticate a peer that presented C{chain}.

    @param records: The TLSA records (L{TLSARecord}) of the peer's SRV
        target, from a DNSSEC-secure answer.
    @param chain: The presented certificates, leaf first
        (L{cryptography.x509.Certificate}, L{OpenSSL.crypto.X509} or
        L{twisted.internet.ssl.Certificate}).
    @param serverName: The reference identifier: the SRV target.
    @param now: Seconds since the epoch, for the dates of DANE-TA chains.
    @rtype: L{DANEVerdict}; with no usable record, not authenticated and
        C{record} L{None}: the caller falls back to PKIX.
    """
    usable = usableRecords(records)
    if not usable:
        return DANEVerdict(False, reason="no usable TLSA record")
    chain = [_cryptography(certificate) for certificate in chain]
    if not chain:
        return DANEVerdict(False, reason="no certificate presented")
    leaf = chain[0]
    tried = []
    for record in usable:
        name = _USAGES[record.usage]
        if record.usage in (DANE_EE, PKIX_EE):
            if not matches(record, leaf):
                tried.append(f"{name} {record}: the certificate does not match")
                continue
            if record.usage == DANE_EE:
                return DANEVerdict(True, record, f"{name} {record} matches the certificate")
            if _nameOK(leaf, serverName):
                return DANEVerdict(True, record, f"{name} {record} matches", needsPKIX=True)
            tried.append(f"{name} {record}: matches, but not valid for {serverName}")
            continue
        for index, certificate in enumerate(chain[1:], 1):
            if matches(record, certificate):
                break
        else:
            tried.append(f"{name} {record}: no issuer certificate of the chain matches")
            continue
        if not _chainsTo(chain, index, now):
            tried.append(f"{name} {record}: the certificate does not chain to the "
                         f"matching one within its dates")
        elif not _nameOK(leaf, serverName):
            tried.append(f"{name} {record}: the certificate is not valid for {serverName}")
        else:
            return DANEVerdict(True, record, f"{name} {record} matches the issuer",
                               needsPKIX=record.usage == PKIX_TA)
    return DANEVerdict(False, reason="; ".join(tried))
