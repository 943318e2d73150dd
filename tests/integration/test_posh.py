"""
POSH (RFC 7711) against a real HTTPS server on loopback: L{dna.dns.posh.POSHFetcher}
with Twisted's HTTP client, verifying the server under PKIX for each
domain with a test CA.
"""

import json

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web import resource, server

from dna.dns import posh
from dna.testing.https import listenHTTPS, loopbackAgent
from dna.testing.pki import CertificateAuthority

CA = CertificateAuthority("POSH Test CA")
OTHER_CA = CertificateAuthority("POSH Untrusted CA")
#: The certificate the XMPP hosting server presents.
XMPP = CA.issue("xmpp.hosting.example", dnsNames=["xmpp.hosting.example"])
WRONG = CA.issue("xmpp.hosting.example", dnsNames=["xmpp.hosting.example"])

DOMAINS = ["valid.example", "sha512.example", "redirect.example", "hosting.example",
           "expiring.example", "oversize.example", "streamed.example", "slow.example",
           "missing.example", "double.example", "garbage.example"]


def _document(*certificates, expires=3600, algorithm="sha-256"):
    return json.dumps({"fingerprints": [{algorithm: posh.fingerprint(c.certificate, algorithm)}
                                        for c in certificates],
                       "expires": expires}).encode()


class _Documents(resource.Resource):
    """
    Serve each domain's POSH document by the Host header.
    """

    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.hits = {}
        self.pending = []

    def render_GET(self, request):
        host = request.getRequestHostname().decode()
        self.hits[host] = self.hits.get(host, 0) + 1
        if request.path != b"/.well-known/posh/xmpp-server.json":
            request.setResponseCode(404)
            return b"not found"
        request.setHeader(b"content-type", b"application/json")
        if host == "valid.example":
            return _document(XMPP)
        if host == "sha512.example":
            return _document(XMPP, algorithm="sha-512")
        if host == "redirect.example":
            return json.dumps({"url": "https://hosting.example/.well-known/posh/"
                               "xmpp-server.json", "expires": 600}).encode()
        if host == "double.example":
            return json.dumps({"url": "https://redirect.example/.well-known/posh/"
                               "xmpp-server.json"}).encode()
        if host == "hosting.example":
            return _document(XMPP, expires=86400)
        if host == "expiring.example":
            return _document(XMPP, expires=1)
        if host == "oversize.example":
            return b" " * 2000 + _document(XMPP)
        if host == "streamed.example":
            for _ in range(20):
                request.write(b" " * 100)
            request.finish()
            return server.NOT_DONE_YET
        if host == "slow.example":
            self.pending.append(request)
            return server.NOT_DONE_YET
        if host == "garbage.example":
            return b"{not json"
        request.setResponseCode(404)
        return b"no POSH here"


class POSHFetcherTests(unittest.TestCase):
    """
    L{posh.POSHFetcher} over real HTTPS.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.documents = _Documents()
        self.site = server.Site(self.documents)
        https = CA.issue("posh", dnsNames=DOMAINS)
        self.port = yield listenHTTPS(reactor, self.site, https)
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self._finishPending)

    def _finishPending(self):
        for request in self.documents.pending:
            if not request.finished and not request._disconnected:
                request.finish()

    def fetcher(self, trusted=CA, **kw):
        agent = loopbackAgent(reactor, self.port.getHost().port, trusted.toCertificate())
        return posh.POSHFetcher(agent, reactor, **kw)

    @defer.inlineCallbacks
    def test_valid(self):
        """
        A document's fingerprint matches the hosting server's certificate,
        not another one (a wrong fingerprint).
        """
        result = yield self.fetcher().fetch("valid.example")
        self.assertIsNotNone(result.document, result.reason)
        self.assertTrue(posh.matches(result.document, XMPP.certificate))
        self.assertFalse(posh.matches(result.document, WRONG.certificate))
        self.assertEqual(3600, result.ttl)

    @defer.inlineCallbacks
    def test_sha512(self):
        """
        sha-512 fingerprints match too.
        """
        result = yield self.fetcher().fetch("sha512.example")
        self.assertTrue(posh.matches(result.document, XMPP.certificate))

    @defer.inlineCallbacks
    def test_redirect(self):
        """
        A C{url} document redirects once: the fingerprints come from its
        target, cached for the shorter of both C{expires}; a second redirect
        is no POSH.
        """
        fetcher = self.fetcher()
        result = yield fetcher.fetch("redirect.example")
        self.assertTrue(posh.matches(result.document, XMPP.certificate), result.reason)
        self.assertEqual(600, result.ttl)
        self.assertIn("via https://redirect.example/", result.reason)
        double = yield fetcher.fetch("double.example")
        self.assertIsNone(double.document)
        self.assertIn("redirects again", double.reason)

    @defer.inlineCallbacks
    def test_cachedUntilExpired(self):
        """
        A document is cached for its C{expires}, then fetched again.
        """
        fetcher = self.fetcher()
        yield fetcher.fetch("expiring.example")
        yield fetcher.fetch("expiring.example")
        self.assertEqual(1, self.documents.hits["expiring.example"])
        yield task.deferLater(reactor, 1.1, lambda: None)
        result = yield fetcher.fetch("expiring.example")
        self.assertEqual(2, self.documents.hits["expiring.example"])
        self.assertTrue(posh.matches(result.document, XMPP.certificate))

    @defer.inlineCallbacks
    def test_cacheCapped(self):
        """
        C{expires} is capped.
        """
        result = yield self.fetcher(maxCache=10).fetch("hosting.example")
        self.assertEqual(86400, result.ttl)
        fetcher = self.fetcher(maxCache=0)
        yield fetcher.fetch("hosting.example")
        yield fetcher.fetch("hosting.example")
        self.assertEqual(3, self.documents.hits["hosting.example"])

    @defer.inlineCallbacks
    def test_oversize(self):
        """
        A document larger than the limit is no POSH, with or without a
        Content-Length.
        """
        fetcher = self.fetcher(maxSize=1000)
        for domain in ("oversize.example", "streamed.example"):
            result = yield fetcher.fetch(domain)
            self.assertIsNone(result.document, domain)
            self.assertIn("1000", result.reason)

    @defer.inlineCallbacks
    def test_slow(self):
        """
        A server that does not answer within the deadline gives no POSH.
        """
        result = yield self.fetcher(deadline=0.3).fetch("slow.example")
        self.assertIsNone(result.document)
        self.assertIn("within 0.3 s", result.reason)

    @defer.inlineCallbacks
    def test_failures(self):
        """
        No document, a broken one, or an HTTPS server PKIX refuses: no POSH,
        never a failure.
        """
        for domain, fetcher, text in [
                ("missing.example", self.fetcher(), "HTTP 404"),
                ("garbage.example", self.fetcher(), "not JSON"),
                ("valid.example", self.fetcher(trusted=OTHER_CA), "no POSH")]:
            result = yield fetcher.fetch(domain)
            self.assertIsNone(result.document, domain)
            self.assertIn(text, result.reason)

