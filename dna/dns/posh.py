"""
POSH, PKIX over Secure HTTP (RFC 7711): a domain without DNSSEC delegates
its XMPP service by publishing, over HTTPS it serves under PKIX, the
fingerprints of the certificates its hosting server presents
(draft-ietf-xmpp-dna-10 section 5.2).

L{parseDocument} and L{matches} are the pure part; L{POSHFetcher} fetches
C{https://DOMAIN/.well-known/posh/xmpp-server.json} with Twisted's HTTP
client, follows the one C{url} redirect a document may hold (RFC 7711
section 3.3), bounds the size and the time, and caches by C{expires}, capped.
A fetch that fails in any way is "no POSH" (L{POSHResult.document} is
L{None}, with a reason), never an error.
"""

import base64
import hashlib
import hmac
import json

import attr
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from dna.core.coalesce import Coalescer

_log = Logger()

#: The POSH service name of server-to-server XMPP (RFC 7711 section 3.1).
SERVICE = "xmpp-server"

#: Largest POSH document read, in bytes.
MAX_SIZE = 64 * 1024

#: Seconds a fetch (both hops) may take.
DEFAULT_DEADLINE = 5.0

#: Seconds a document is cached at most, whatever its C{expires} says.
MAX_CACHE_SECONDS = 86400

#: Seconds "no POSH" is remembered.
NEGATIVE_CACHE_SECONDS = 60

_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


class POSHInvalid(ValueError):
    """
    A POSH document that cannot be used.
    """


@attr.s(frozen=True, slots=True)
class POSHDocument:
    """
    A parsed POSH document (RFC 7711 section 3.2).

    @ivar fingerprints: C{((algorithm, digest bytes), ...)}.
    @ivar url: The C{url} of a redirecting document, or L{None}.
    @ivar expires: Seconds it may be cached.
    """

    fingerprints = attr.ib(converter=tuple, default=())
    url = attr.ib(default=None)
    expires = attr.ib(default=0)


@attr.s(frozen=True, slots=True)
class POSHResult:
    """
    The outcome of fetching a domain's POSH document.

    @ivar document: The fingerprints' L{POSHDocument} (after a redirect),
        or L{None}: no POSH.
    @ivar reason: Why there is none, or where the document came from.
    @ivar ttl: Seconds the outcome is kept.
    @ivar expires: When the outcome stops being valid (seconds since the
        epoch): set by L{POSHFetcher} when it is fetched, the C{expires} of
        the document capped by the fetcher's C{maxCache}. A delegation
        proven by this document lasts until then (L{dna.core.proofs}).
    """

    domain = attr.ib()
    document = attr.ib(default=None)
    reason = attr.ib(default="")
    ttl = attr.ib(default=0)
    expires = attr.ib(default=None)


def poshURL(domain, service=SERVICE):
    """
    The well-known URL of a domain's POSH document (RFC 7711 section 3.1).

    @param domain: The domain, normalised (A-labels).
    @rtype: C{bytes}
    """
    return f"https://{domain}/.well-known/posh/{service}.json".encode("ascii")


def parseDocument(body):
    """
    Parse a POSH document.

    @param body: The JSON text (C{bytes}).
    @rtype: L{POSHDocument}
    @raise POSHInvalid: When it is no usable POSH document: not a JSON
        object, neither fingerprints nor a C{url}, an C{expires} that is no
        non-negative integer, a fingerprint that is not base64.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise POSHInvalid(f"not JSON: {e}")
    if not isinstance(document, dict):
        raise POSHInvalid("not a JSON object")
    expires = document.get("expires", 0)
    if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
        raise POSHInvalid(f"expires is not a number of seconds: {expires!r}")
    url = document.get("url")
    if url is not None:
        if not isinstance(url, str) or not url.startswith("https://"):
            raise POSHInvalid(f"url is not an https URL: {url!r}")
        return POSHDocument((), url, expires)
    entries = document.get("fingerprints")
    if not isinstance(entries, list) or not entries:
        raise POSHInvalid("neither fingerprints nor url")
    fingerprints = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise POSHInvalid(f"a fingerprint is not an object: {entry!r}")
        for algorithm, value in entry.items():
            if algorithm not in _DIGESTS:
                continue
            try:
                digest = base64.b64decode(value, validate=True)
            except (TypeError, ValueError):
                raise POSHInvalid(f"{algorithm} fingerprint is not base64: {value!r}")
            fingerprints.append((algorithm, digest))
    if not fingerprints:
        raise POSHInvalid("no sha-256 or sha-512 fingerprint")
    return POSHDocument(fingerprints, None, expires)


# What a fingerprint is computed over: the whole certificate, DER-encoded,
# not its SubjectPublicKeyInfo (unlike DANE selector 1).
# draft-ietf-xmpp-dna-10 section 5.2 item 3: the client's verification
# material is "a hash of the PKIX certificate" fetched at the well-known URI;
# RFC 7711 section 3.1 lists those fingerprints (by "Hash Function Textual
# Names") in the "fingerprints" array, section 3.2 the "url" redirect. The
# deployed implementations agree (Prosody's mod_s2s_auth_posh hashes
# pem2der(certificate), Conversations the encoded certificate, xmpp-proxy's
# contrib/posh.sh the DER file). So a document stops matching when the
# certificate is renewed, even with the same key: publish the next one's
# fingerprint before the rollover.


def fingerprint(certificate, algorithm="sha-256"):
    """
    The POSH fingerprint of a certificate: the digest of its whole DER
    encoding, base64 (RFC 7711 section 3.1; see above).

    @type certificate: L{cryptography.x509.Certificate}
    @rtype: C{str}
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(_DIGESTS[algorithm](der).digest()).decode("ascii")


def matches(document, certificate):
    """
    Whether a certificate has one of a POSH document's fingerprints.

    @type document: L{POSHDocument}
    @type certificate: L{cryptography.x509.Certificate}
    @rtype: C{bool}
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    return any(hmac.compare_digest(_DIGESTS[algorithm](der).digest(), digest)
               for algorithm, digest in document.fingerprints)


class _BoundedBody(protocol.Protocol):
    """
    Collect a response body up to C{maxSize} bytes; abort beyond.
    """

    def __init__(self, finished, maxSize):
        self._finished = finished
        self._maxSize = maxSize
        self._chunks = []
        self._size = 0

    def dataReceived(self, data):
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._maxSize:
            self._finished.errback(POSHInvalid(f"larger than {self._maxSize} bytes"))
            self.transport.stopProducing()
            return
        self._chunks.append(data)

    def connectionLost(self, reason):
        if not self._finished.called:
            self._finished.callback(b"".join(self._chunks))


class POSHFetcher:
    """
    Fetch and cache POSH documents over HTTPS.
    """

    def __init__(self, agent, clock, maxSize=MAX_SIZE, deadline=DEFAULT_DEADLINE,
                 maxCache=MAX_CACHE_SECONDS, negativeCache=NEGATIVE_CACHE_SECONDS):
        """
        @param agent: An L{twisted.web.iweb.IAgent} verifying servers under
            PKIX for the URL's host, such as
            C{Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot))}.
        @param clock: An L{IReactorTime}.
        @param maxSize: Largest document read, in bytes.
        @param deadline: Seconds a fetch may take, redirect included.
        @param maxCache: Seconds a document is cached at most.
        @param negativeCache: Seconds "no POSH" is cached.
        """
        self._agent = agent
        self._clock = clock
        self._maxSize = maxSize
        self._deadline = deadline
        self._maxCache = maxCache
        self._negativeCache = negativeCache
        self._cache = {}
        self._inFlight = Coalescer()

    def fetch(self, domain, after=None):
        """
        The POSH document of C{domain}.

        @param domain: The domain, normalised (A-labels).
        @param after: When given, a cached outcome that expires at or before
            this time is not used (re-validation asks for a proof that
            outlasts the one it has, like
            L{dna.dns.delegation.DelegationChecker.check}).
        @return: A L{Deferred} firing with a L{POSHResult}; it does not fail.
        """
        cached = self._cache.get(domain)
        if cached is not None:
            until, result = cached
            now = self._clock.seconds()
            if until > (now if after is None else max(now, after)):
                return defer.succeed(result)
            del self._cache[domain]
        return self._inFlight.wait(domain, self._fetchAndRemember, domain)

    def _fetchAndRemember(self, domain):
        d = self._fetch(domain)
        timedOut = []

        def timeOut():
            timedOut.append(True)
            d.cancel()

        timer = self._clock.callLater(self._deadline, timeOut)

        def cancelTimer(result):
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(cancelTimer)

        def failed(failure):
            if timedOut:
                reason = f"no POSH document within {self._deadline:g} s"
            else:
                reason = failure.getErrorMessage() or failure.type.__name__
            return POSHResult(domain, None, f"no POSH for {domain}: {reason}",
                              self._negativeCache)

        def remember(result):
            ttl = max(0, min(result.ttl, self._maxCache))
            result = attr.evolve(result, expires=self._clock.seconds() + ttl)
            if ttl > 0:
                self._cache[domain] = (self._clock.seconds() + ttl, result)
            _log.debug("POSH for {domain}: {reason}", domain=domain, reason=result.reason)
            return result

        return d.addErrback(failed).addCallback(remember)

    @defer.inlineCallbacks
    def _fetch(self, domain):
        url = poshURL(domain)
        document = yield self._get(url)
        if document.url is not None:
            redirect = document.url.encode("ascii")
            target = yield self._get(redirect)
            if target.url is not None:
                raise POSHInvalid(f"{redirect.decode()} redirects again")
            expires = min(document.expires, target.expires)
            return POSHResult(domain, target, f"{len(target.fingerprints)} fingerprint(s) "
                              f"from {redirect.decode()} (via {url.decode()})", expires)
        return POSHResult(domain, document, f"{len(document.fingerprints)} fingerprint(s) "
                          f"from {url.decode()}", document.expires)

    @defer.inlineCallbacks
    def _get(self, url):
        response = yield self._agent.request(
            b"GET", url, Headers({b"Accept": [b"application/json"]}))
        if response.code != 200:
            response.deliverBody(protocol.Protocol())
            raise POSHInvalid(f"{url.decode()} answered HTTP {response.code}")
        length = response.length
        if isinstance(length, int) and length > self._maxSize:
            response.deliverBody(protocol.Protocol())
            raise POSHInvalid(f"{url.decode()} is {length} bytes, more than {self._maxSize}")
        finished = defer.Deferred()
        response.deliverBody(_BoundedBody(finished, self._maxSize))
        body = yield finished
        return parseDocument(body)
