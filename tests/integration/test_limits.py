"""
The limits on unauthenticated connections over real loopback sockets: a
source that opens many connections and never finishes TLS is capped and
timed out, while an honest provider still federates (issue 9, "Connections
and buffers").
"""

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.trial import unittest

from dna.app.limits import Limits
from dna.testing.fakes import FakeDelegationChecker
from tests.integration.providers import ORIGINATING, RECEIVING, ProvidersMixin, message

#: Where the hostile connections come from (any 127/8 address is local).
HOSTILE_SOURCE = "127.0.0.3"


class _Stalling(protocol.Protocol):
    """
    Open a stream, ask for TLS, then never start it.
    """

    def __init__(self, closed):
        self.closed = closed
        self.received = b""

    def connectionMade(self):
        self.transport.write(
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' "
            b"to='" + RECEIVING.encode("ascii") + b"' from='" + ORIGINATING.encode("ascii")
            + b"' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        )

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self)


class UnauthenticatedConnectionsTests(ProvidersMixin, unittest.TestCase):
    """
    Twenty connections from one source that never finish TLS, against a
    Receiving Server with the default per-address cap (8) and a short
    deadline, while an honest provider sends a message.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_cappedAndTimedOutWhileHonestFederates(self):
        """
        Beyond 8, the source's connections are closed at once; the 8 get no
        further than STARTTLS and are closed at the deadline; meanwhile the
        honest provider federates; every refusal is counted.
        """
        self.setUpPKI()
        checker = FakeDelegationChecker(
            {"sender.tld": {ORIGINATING}, "target.tld": {RECEIVING}})
        limits = Limits(authTimeout=2.0)
        b, inboxB, portB = yield self.startProvider(
            ["target.tld"], {RECEIVING: self.certB}, checker, limits=limits)
        a, inboxA, portA = yield self.startProvider(
            ["sender.tld"], {ORIGINATING: self.certA}, checker,
            hosts={RECEIVING: ("127.0.0.1", portB)})

        endpoint = endpoints.TCP4ClientEndpoint(
            reactor, "127.0.0.1", portB, bindAddress=(HOSTILE_SOURCE, 0))
        hostile = []
        for _ in range(20):
            closed = defer.Deferred()
            started = reactor.seconds()
            yield endpoint.connect(protocol.Factory.forProtocol(lambda: _Stalling(closed)))
            hostile.append((closed, started))
        # One round trip, so that the server has read the header.
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(8, b.factory._gate.unauthenticated)
        self.assertEqual(12, b.federation.counters["unauthenticated-cap-address"])

        a.send(message("romeo@sender.tld", "juliet@target.tld", stanzaID="honest"))
        [received] = yield inboxB.waitFor(1)
        self.assertEqual("honest", received["id"])

        results = yield defer.gatherResults(
            [closed.addCallback(lambda p, s=started: (p, reactor.seconds() - s))
             for closed, started in hostile])
        # Refused before any byte of ours; the others got <proceed/>.
        refusedAtOnce = [p for p, elapsed in results if not p.received]
        timedOut = [p for p, elapsed in results if p.received]
        self.assertEqual((12, 8), (len(refusedAtOnce), len(timedOut)))
        for p, elapsed in results:
            if p.received:
                self.assertIn(b"<proceed", p.received)
                self.assertGreaterEqual(elapsed, 1.9)
        self.assertEqual(8, b.federation.counters["auth-timeout"])
        self.assertEqual(0, b.factory._gate.unauthenticated)

