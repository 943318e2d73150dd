"""
Tests for the pure part of L{dna.dns.posh} (RFC 7711).
"""

import base64
import hashlib
import json

from twisted.trial.unittest import SynchronousTestCase

from dna.dns.posh import POSHInvalid, fingerprint, matches, parseDocument, poshURL
from dna.testing.pki import CertificateAuthority

CA = CertificateAuthority("POSH Unit CA")
CERT = CA.issue("xmpp.hosting.example", dnsNames=["xmpp.hosting.example"])


class ParseDocumentTests(SynchronousTestCase):
    """
    L{parseDocument} reads fingerprints, redirects and expiry, and refuses
    what it cannot use.
    """

    def test_url(self):
        """
        The well-known URL of the server service.
        """
        self.assertEqual(b"https://a.example/.well-known/posh/xmpp-server.json",
                         poshURL("a.example"))

    def test_fingerprints(self):
        """
        sha-256 and sha-512 fingerprints are read; other algorithms skipped.
        """
        body = json.dumps({"fingerprints": [
            {"sha-256": fingerprint(CERT.certificate)},
            {"sha-512": fingerprint(CERT.certificate, "sha-512"), "md5": "AAAA"}],
            "expires": 60}).encode()
        document = parseDocument(body)
        self.assertEqual(60, document.expires)
        self.assertEqual(["sha-256", "sha-512"], [a for a, _ in document.fingerprints])
        self.assertTrue(matches(document, CERT.certificate))
        self.assertFalse(matches(document, CA.issue("x").certificate))

    def test_fingerprintIsOfTheCertificate(self):
        """
        The fingerprint is the base64 digest of the DER certificate.
        """
        from cryptography.hazmat.primitives.serialization import Encoding

        der = CERT.certificate.public_bytes(Encoding.DER)
        self.assertEqual(base64.b64encode(hashlib.sha256(der).digest()).decode(),
                         fingerprint(CERT.certificate))

    def test_redirect(self):
        """
        A C{url} document is a redirect.
        """
        document = parseDocument(b'{"url": "https://h.example/.well-known/posh/'
                                 b'xmpp-server.json", "expires": 5}')
        self.assertEqual("https://h.example/.well-known/posh/xmpp-server.json", document.url)

    def test_invalid(self):
        """
        Documents that cannot be used are refused with a reason.
        """
        for body in [b"[]", b"{", b'{"expires": 1}', b'{"fingerprints": []}',
                     b'{"fingerprints": [{"sha-256": "!!"}]}',
                     b'{"fingerprints": [{"md5": "AAAA"}]}',
                     b'{"url": "http://h.example/x"}',
                     b'{"url": "https://h.example/x", "expires": -1}',
                     b'{"fingerprints": ["x"]}']:
            self.assertRaises(POSHInvalid, parseDocument, body)
