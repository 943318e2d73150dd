"""
Property tests of the Receiving Server against random and mutated streams
(issue 9, "Safe to expose on the internet").

Each example starts from a valid incoming S2S stream as a hostile
Originating Server would write it: a stream header, C{<starttls/>}, the
header again over "TLS", C{<db:result/>} requests for some domain pairs
(delegated or not, hosted or not), stanzas on requested and unrequested
pairs, maybe the closing tag. It is then mutated (truncated, random bytes,
tags duplicated, removed or swapped, huge attributes, wrong namespaces,
entity references and a DOCTYPE of nested entities, deep nesting) and fed,
cut into random pieces, to the real receiving side: the protocol the
L{dna.app.service.DNAService}'s L{dna.channel.receiving.S2SServerFactory}
builds, over a L{StringTransport} whose C{startTLS} only records that TLS
started and which then presents the peer's certificate from
L{dna.testing.pki}. Like a real transport, it reads no more once told to
lose the connection; the connection is then lost.

Whatever the bytes:

  - nothing escapes C{dataReceived} and nothing is logged as a failure;
  - the tables are consistent after every piece, and nothing of the stream
    is left in them, in the service or in the reactor's timers once it
    closed;
  - only stanzas from a pair the server granted on that stream
    (C{<db:result type='valid'/>} sent and not revoked), for one of the
    delegated senders, reach the local router.
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address
from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from dna.app.service import DNAService
from dna.core.names import domainOf
from dna.dns.addresses import AddressResolver
from dna.error import InvalidAddress
from dna.namespaces import NS_DIALBACK, NS_TLS, STANZA_NAMES
from dna.testing import hostile
from dna.testing.fakes import FakeDelegationChecker
from dna.testing.pki import CertificateAuthority
from tests.unit import examples

US = "xmpp1.receiving.tld"
PEER = "xmpp1.originating.tld"
TARGETS = ("b1.tld", "b2.tld")
DELEGATED = ("a1.tld", "a2.tld")
#: Senders the peer may ask for: delegated, not delegated, and malformed.
SENDERS = DELEGATED + ("a3.tld", "a..b")
#: Targets: hosted, and not.
RECIPIENTS = TARGETS + ("elsewhere.tld",)

_CA = CertificateAuthority("DNA Hostile Streams Test CA")
_OURS = _CA.issue(US, dnsNames=[US])
_THEIRS = _CA.issue(PEER, dnsNames=[PEER])

HEADER = hostile.streamHeader(US, PEER).decode("utf-8")
STARTTLS = "<starttls xmlns='%s'/>" % (NS_TLS,)

#: Namespaces a mutation may put on an element.
WRONG_NAMESPACES = (
    "jabber:client",
    "jabber:component:accept",
    NS_DIALBACK,
    "http://etherx.jabber.org/streams",
    "urn:example:nothing",
    "",
)

#: Entity and character references a mutation may insert.
REFERENCES = ("&amp;", "&lt;", "&#65;", "&#x1F600;", "&#0;", "&#xD800;", "&undefined;", "&", "&l3;")


class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} on which STARTTLS "succeeds" at once: afterwards it
    presents the peer's certificate.
    """

    tlsStarted = None

    def __init__(self, peerCertificate):
        StringTransport.__init__(self)
        self._peerCertificate = peerCertificate

    def startTLS(self, contextFactory):
        self.tlsStarted = contextFactory

    def getPeerCertificate(self):
        if self.tlsStarted is None:
            return None
        return self._peerCertificate


# Valid streams


def _result(sender, target, resultType=None):
    typeAttribute = "" if resultType is None else " type='%s'" % (resultType,)
    return "<db:result from='%s' to='%s'%s/>" % (sender, target, typeAttribute)


def _stanza(kind, sender, target, number):
    addresses = "from='romeo@%s/r' to='juliet@%s' id='h%d'" % (sender, target, number)
    if kind == "message":
        return "<message %s><body>hi</body></message>" % (addresses,)
    if kind == "iq":
        return "<iq type='get' %s><query xmlns='jabber:iq:version'/></iq>" % (addresses,)
    return "<presence %s/>" % (addresses,)


_pairs = st.tuples(st.sampled_from(SENDERS), st.sampled_from(RECIPIENTS))

_bodyToken = st.one_of(
    _pairs.map(lambda pair: ("stanza", pair)),
    _pairs.map(lambda pair: ("request", pair)),
    st.tuples(_pairs, st.sampled_from(["valid", "invalid", "error", "bogus"])).map(
        lambda p: ("result", p)
    ),
    st.just(("raw", "<bidi xmlns='urn:xmpp:bidi'/>")),
    st.just(("raw", "<enable xmlns='urn:xmpp:sm:3'/>")),
    st.just(("raw", "<r xmlns='urn:xmpp:sm:3'/>")),
    st.just(("raw", "<db:verify from='a1.tld' to='b1.tld' id='x'>key</db:verify>")),
    st.just(("raw", STARTTLS)),
)


@st.composite
def validStreams(draw):
    """
    The tokens (L{str}) of a valid stream: header, STARTTLS, header,
    requests, stanzas, maybe the closing tag.
    """
    requests = draw(st.lists(_pairs, max_size=4))
    body = draw(st.lists(_bodyToken, max_size=8))
    kinds = st.sampled_from(sorted(STANZA_NAMES))
    tokens = [HEADER, STARTTLS, HEADER]
    tokens += [_result(sender, target) for sender, target in requests]
    number = 0
    for what, value in body:
        number += 1
        if what == "stanza":
            sender, target = value
            tokens.append(_stanza(draw(kinds), sender, target, number))
        elif what == "request":
            tokens.append(_result(*value))
        elif what == "result":
            (sender, target), resultType = value
            tokens.append(_result(sender, target, resultType))
        else:
            tokens.append(value)
    # Stanzas on the pairs requested first, which are likely bound.
    for sender, target in requests:
        number += 1
        tokens.append(_stanza(draw(kinds), sender, target, number))
    if draw(st.booleans()):
        tokens.append("</stream:stream>")
    return tokens


# Mutations


_TAG = re.compile(r"<([A-Za-z][\w:.-]*)")


def _withNamespace(token, namespace):
    """
    C{token} with an C{xmlns} on its first element.
    """
    return _TAG.sub(lambda m: "%s xmlns='%s'" % (m.group(0), namespace), token, count=1)


def _withReference(token, reference):
    """
    C{token} with a reference in its first attribute value or text.
    """
    if "'" in token:
        i = token.index("'") + 1
        return token[:i] + reference + token[i:]
    return token.replace(">", ">" + reference, 1)


_mutation = st.one_of(
    st.tuples(st.just("insertBytes"), st.integers(0, 99), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insertText"), st.integers(0, 99), st.text(max_size=8)),
    st.tuples(st.just("duplicate"), st.integers(0, 99)),
    st.tuples(st.just("remove"), st.integers(0, 99)),
    st.tuples(st.just("swap"), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(
        st.just("hugeAttribute"), st.integers(0, 99), st.sampled_from(DELEGATED),
        st.integers(1000, 300000),
    ),
    st.tuples(st.just("namespace"), st.integers(0, 99), st.sampled_from(WRONG_NAMESPACES)),
    st.tuples(st.just("reference"), st.integers(0, 99), st.sampled_from(REFERENCES)),
    st.tuples(st.just("doctype"), st.sampled_from([0, 2]), st.integers(1, 4)),
    st.tuples(
        st.just("deep"), st.integers(0, 99), st.sampled_from(DELEGATED),
        st.integers(10, 5000), st.booleans(),
    ),
)


def mutate(tokens, mutation):
    """
    Apply one mutation to a list of tokens, in place; indexes wrap around.
    """
    kind, index = mutation[0], mutation[1] % (len(tokens) + 1)
    if kind == "insertBytes":
        tokens.insert(index, mutation[2])
    elif kind == "insertText":
        tokens.insert(index, mutation[2])
    elif kind == "duplicate" and index < len(tokens):
        tokens.insert(index, tokens[index])
    elif kind == "remove" and index < len(tokens):
        del tokens[index]
    elif kind == "swap" and tokens:
        other = mutation[2] % len(tokens)
        index %= len(tokens)
        tokens[index], tokens[other] = tokens[other], tokens[index]
    elif kind == "hugeAttribute":
        tokens.insert(
            index,
            "<message from='romeo@%s/r' to='juliet@b1.tld' id='huge' a='%s'/>"
            % (mutation[2], "x" * mutation[3]),
        )
    elif kind == "namespace" and index < len(tokens) and isinstance(tokens[index], str):
        tokens[index] = _withNamespace(tokens[index], mutation[2])
    elif kind == "reference" and index < len(tokens) and isinstance(tokens[index], str):
        tokens[index] = _withReference(tokens[index], mutation[2])
    elif kind == "doctype":
        # Before the first header, or before the one after STARTTLS, which a
        # fresh parser reads: a small billion laughs, and references to it.
        levels = mutation[2]
        tokens.insert(min(mutation[1], len(tokens)), _doctype(levels))
        tokens.append(
            "<message from='romeo@a1.tld/r' to='juliet@b1.tld' id='lol'>"
            "<body>&l%d;</body></message>" % (levels,)
        )
    elif kind == "deep":
        depth, closed = mutation[3], mutation[4]
        tokens.insert(
            index,
            "<message from='romeo@%s/r' to='juliet@b1.tld' id='deep'>%s%s%s"
            % (mutation[2], "<a>" * depth, "</a>" * depth if closed else "",
               "</message>" if closed else ""),
        )


def _doctype(levels, fanout=10):
    """
    A DOCTYPE whose entity C{l<levels>} expands to C{3 * fanout ** levels}
    characters (at most 30,000 here, so the test stays quick).
    """
    payload = hostile.bomb(US, PEER, levels=levels + 1, fanout=fanout).data()
    return payload[: payload.index(b"]>") + 2]


def cut(data, sizes):
    """
    C{data} in pieces of the given sizes, the rest in one piece.
    """
    chunks = []
    for size in sizes:
        if not data:
            break
        chunks.append(data[:size])
        data = data[size:]
    if data:
        chunks.append(data)
    return chunks


def _encode(token):
    return token if isinstance(token, bytes) else token.encode("utf-8")


@st.composite
def hostileStreams(draw):
    """
    A mutated valid stream, cut into the pieces it arrives in.

    A peer that speaks TLS sends nothing after C{<starttls/>} before the
    handshake, so the bytes up to the first C{<starttls/>} usually arrive
    apart from the rest; sometimes not (STARTTLS command injection: the rest
    then reaches the parser of the stream before TLS).

    @return: A L{list} of L{bytes}.
    """
    tokens = draw(validStreams())
    for mutation in draw(st.lists(_mutation, max_size=4)):
        mutate(tokens, mutation)
    data = b"".join(_encode(t) for t in tokens)
    boundary = len(data)
    if STARTTLS in tokens and draw(st.integers(0, 9)):
        i = tokens.index(STARTTLS)
        boundary = len(b"".join(_encode(t) for t in tokens[: i + 1]))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    sizes = st.one_of(
        st.just([]),
        st.lists(st.integers(1, max(1, len(data))), max_size=12),
        st.just([1] * min(len(data), 400)),
    )
    return cut(data[:boundary], draw(sizes)) + cut(data[boundary:], draw(sizes))


# The receiving side


class Receiver:
    """
    A L{DNAService} with one incoming connection from C{PEER}, recording
    what it delivers and what it grants.

    @ivar violations: Every broken property, as text.
    """

    def __init__(self):
        self.reactor = MemoryReactorClock()
        self.violations = []
        self.delivered = []
        self.granted = set()
        self.service = DNAService(
            TARGETS,
            {US: _OURS.toPrivateCertificate()},
            trustRootFromCertificates([_CA.toCertificate()]),
            FakeDelegationChecker({domain: [PEER] for domain in DELEGATED}),
            AddressResolver(hosts={}),
            deliver=self._deliver,
            reactor=self.reactor,
        )
        self.federation = self.service.federation
        self.xs = self.service.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        send = self.xs.send

        def recordingSend(obj):
            if domish.IElement.providedBy(obj):
                self._sent(obj)
            send(obj)

        self.xs.send = recordingSend
        self.transport = TLSStringTransport(_THEIRS.toCertificate().original)
        self.sids = set()
        self.lost = False
        globalLogPublisher.addObserver(self._logged)
        self.xs.makeConnection(self.transport)

    def stop(self):
        globalLogPublisher.removeObserver(self._logged)

    def _logged(self, event):
        if "log_failure" in event:
            self.violations.append(
                "logged failure: %s" % (event["log_failure"].getTraceback(),)
            )

    def _sent(self, element):
        if (element.uri, element.name) != (NS_DIALBACK, "result"):
            return
        pair = (element.getAttribute("from"), element.getAttribute("to"))
        if element.getAttribute("type") == "valid":
            self.granted.add((self.xs.sid, pair))
        else:
            self.granted.discard((self.xs.sid, pair))

    def _deliver(self, stanza):
        self.delivered.append(stanza)
        sid = getattr(self.xs, "sid", None)
        try:
            local = domainOf(stanza.getAttribute("to"))
            remote = domainOf(stanza.getAttribute("from"))
        except InvalidAddress as e:
            self.violations.append(
                "delivered a stanza with a bad address %r: %s" % (e.address, stanza.toXml())
            )
            return
        if (sid, (local, remote)) not in self.granted:
            self.violations.append(
                "delivered %s -> %s on %s, never granted there" % (remote, local, sid)
            )
        if not self.federation.tables.incoming.accepts(sid, local, remote):
            self.violations.append(
                "delivered %s -> %s on %s, not bound there" % (remote, local, sid)
            )
        if remote not in DELEGATED:
            self.violations.append("delivered a stanza from %s" % (remote,))

    def feed(self, chunks):
        """
        Feed the pieces until the server drops the connection, checking the
        tables after each.
        """
        for chunk in chunks:
            if self.transport.disconnecting:
                break
            self.xs.dataReceived(chunk)
            if getattr(self.xs, "sid", None) is not None:
                self.sids.add(self.xs.sid)
            self.federation.tables.checkInvariants()

    def close(self):
        """
        Lose the connection, let every timer run, and check nothing is left.
        """
        self.xs.connectionLost(Failure(ierror.ConnectionDone()))
        self.reactor.advance(3600)
        self.federation.tables.checkInvariants()
        tables = self.federation.tables
        for sid in self.sids:
            if sid in tables.connections:
                self.violations.append("%s still in the connection table" % (sid,))
            if sid in tables.incoming.boundStreams() or sid in tables.outgoing.boundStreams():
                self.violations.append("%s still bound" % (sid,))
        if self.federation.streams:
            self.violations.append("streams left: %r" % (self.federation.streams,))
        if self.service._streams:
            self.violations.append("service streams left: %r" % (self.service._streams,))
        if self.reactor.getDelayedCalls():
            self.violations.append("timers left: %r" % (self.reactor.getDelayedCalls(),))


def run(chunks):
    """
    Feed C{chunks} to a fresh L{Receiver}, close the connection.

    @return: The L{Receiver}.
    """
    receiver = Receiver()
    try:
        receiver.feed(chunks)
        receiver.close()
    finally:
        receiver.stop()
    return receiver


_SETTINGS = settings(
    max_examples=examples(300),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class HostileStreamTests(SynchronousTestCase):
    """
    The receiving side against hostile streams.
    """

    def assertClean(self, receiver):
        self.assertEqual([], receiver.violations)
        self.assertEqual([], self.flushLoggedErrors())

    def test_validStreamDelivers(self):
        """
        The valid stream the properties start from authenticates, binds the
        delegated pair it asks for and delivers a stanza on it; the refused
        pair's stanza is not delivered.
        """
        tokens = [HEADER, STARTTLS, HEADER, _result("a1.tld", "b1.tld"),
                  _result("a3.tld", "b1.tld"), _stanza("message", "a1.tld", "b1.tld", 1),
                  _stanza("message", "a3.tld", "b1.tld", 2), "</stream:stream>"]
        receiver = run([(HEADER + STARTTLS).encode("utf-8"),
                        "".join(tokens[2:]).encode("utf-8")])
        self.assertEqual(["h1"], [s["id"] for s in receiver.delivered])
        self.assertEqual(1, len(receiver.granted))
        self.assertClean(receiver)

    @_SETTINGS
    @given(hostileStreams())
    def test_hostileStreams(self, chunks):
        """
        Whatever bytes arrive, in whatever pieces: no unhandled error, the
        tables stay consistent and forget the stream once it closed, and
        only granted pairs of delegated senders are delivered.
        """
        receiver = run(chunks)
        self.assertClean(receiver)
