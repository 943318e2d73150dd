"""
The server name our streams come from, in memory: a provider with two server
names opens the stream for a sender domain from the name that domain is
delegated to (its stream header's 'from' and its client certificate), and
reuses only streams from that name; the first name is used when the
delegation names none of ours.
"""

from twisted.internet.ssl import trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from dna.app.service import DNAService
from dna.channel import originating
from dna.dns.addresses import AddressResolver
from dna.testing.fakes import FakeDelegationChecker, chatMessage
from dna.testing.pki import CertificateAuthority
from tests.unit.streams import makeStream

FIRST = "xmpp1.originating.tld"
SECOND = "xmpp2.originating.tld"
PEER = "xmpp1.receiving.tld"
_CA = CertificateAuthority("Origin Name Test CA")
_CERTIFICATES = {name: _CA.issue(name, dnsNames=[name]) for name in (FIRST, SECOND)}
_TRUST = trustRootFromCertificates([_CA.toCertificate()])

DELEGATIONS = {
    "sender.tld": [FIRST],
    "second.tld": [SECOND],
    "both.tld": [FIRST, SECOND],
    "elsewhere.tld": ["xmpp.elsewhere.tld"],
    "target.tld": [PEER],
}


class OriginNameTests(SynchronousTestCase):
    """
    L{DNAService} picks the local name of a stream by the sender domain's
    delegation.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.checker = FakeDelegationChecker(dict(DELEGATIONS))
        self.contexts = []

        def recordContext(serverName, trustRoot, certificate, **kw):
            self.contexts.append((serverName, certificate, kw.get("chain")))
            return object()

        self.patch(originating, "clientContextFactory", recordContext)
        self.service = DNAService(
            ["sender.tld", "second.tld", "both.tld", "other.tld"],
            {name: _CERTIFICATES[name].toPrivateCertificate() for name in (FIRST, SECOND)},
            _TRUST,
            self.checker,
            AddressResolver(hosts={PEER: ("127.0.0.12", 5269)}),
            deliver=lambda stanza: None,
            chains={SECOND: [_CA.toCertificate()]},
            reactor=self.reactor,
        )
        self.federation = self.service.federation

    def opened(self):
        """
        The 'from' of the stream header of each connection attempt so far.
        """
        names = []
        for host, port, factory, timeout, bind in self.reactor.tcpClients:
            protocol = factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            header = transport.value().decode("utf-8")
            names.append(header.split(" from='", 1)[1].split("'", 1)[0])
        return names

    def send(self, sender, id="m1"):
        self.service.send(chatMessage(f"romeo@{sender}", "juliet@target.tld", id))

    def test_localNameFor(self):
        """
        A sender delegated to our second name gets it; one delegated to
        both, to none of ours, or not at all, or whose delegation is bogus
        or indeterminate, gets the first.
        """
        self.checker.delegations["bogus.tld"] = [SECOND]
        self.checker.bogus.add("bogus.tld")
        self.checker.delegations["lost.tld"] = [SECOND]
        self.checker.indeterminate.add("lost.tld")
        for sender, expected in [("second.tld", SECOND), ("sender.tld", FIRST),
                                 ("both.tld", FIRST), ("elsewhere.tld", FIRST),
                                 ("other.tld", FIRST), ("bogus.tld", FIRST),
                                 ("lost.tld", FIRST)]:
            self.assertEqual(expected, self.successResultOf(self.service.localNameFor(sender)),
                             sender)

    def test_insecureDelegationNamesOurs(self):
        """
        A provably unsigned delegation still names the server the peer will
        compare the sender with: the stream comes from it.
        """
        self.checker.insecure.add("second.tld")
        self.assertEqual(SECOND, self.successResultOf(self.service.localNameFor("second.tld")))

    def test_streamFromSecondName(self):
        """
        The stream for a sender delegated to our second name comes from it:
        its header's 'from', and its client certificate and chain.
        """
        self.send("second.tld")
        self.assertEqual([SECOND], self.opened())
        [(serverName, certificate, chain)] = self.contexts
        self.assertEqual(PEER, serverName)
        self.assertEqual(SECOND, certificate.getSubject().commonName.decode("ascii"))
        self.assertEqual([_CA.toCertificate().digest()], [c.digest() for c in chain])

    def test_streamFromFirstName(self):
        """
        A sender delegated to none of our names sends from the first, with
        its certificate, as one delegated to the first does.
        """
        self.send("other.tld")
        self.assertEqual([FIRST], self.opened())
        [(serverName, certificate, chain)] = self.contexts
        self.assertEqual(FIRST, certificate.getSubject().commonName.decode("ascii"))
        self.assertEqual((), tuple(chain))

    def test_attemptsPerLocalName(self):
        """
        Concurrent attempts to one peer share a connection only when they
        come from one name: senders of both names open one each.
        """
        self.send("sender.tld", "a")
        self.send("other.tld", "b")
        self.send("second.tld", "c")
        self.assertEqual([FIRST, SECOND], self.opened())

    def test_targetCheckedOncePerLocalName(self):
        """
        While the way to a target is being found (its delegation checked,
        a stream to it reused or opened), the pairs of that target from
        senders of one name share the search: the target's delegation is
        checked once per name, not once per pair.
        """
        from twisted.internet.defer import Deferred

        held = []
        check = self.checker.check

        def holdTarget(domain, after=None):
            # The target's records come when the test says.
            answer = check(domain, after)
            if domain != "target.tld":
                return answer
            waiting = Deferred()
            answer.addCallback(lambda result: held.append((waiting, result)))
            return waiting

        self.checker.check = holdTarget
        self.send("sender.tld", "a")
        self.send("other.tld", "b")
        self.send("sender.tld", "c")
        self.send("second.tld", "d")
        self.assertEqual(2, self.checker.checked.count("target.tld"))
        for waiting, result in held:
            waiting.callback(result)
        # Each search checked the target's SRV records, then its verdict.
        self.assertEqual(4, self.checker.checked.count("target.tld"))
        # The connections are still being opened: a new pair waits for its
        # name's, without a check or an attempt of its own.
        self.send("other.tld", "e")
        self.assertEqual(4, self.checker.checked.count("target.tld"))
        self.assertEqual([FIRST, SECOND], self.opened())

    def authenticated(self, sid, localName):
        """
        An initiating stream to the peer, authenticated as if the
        connector opened it from C{localName}.
        """
        xs = makeStream(sid, us=localName, peer=PEER)
        self.service._streamConnected(xs)
        authorization = self.federation.streamAuthenticated(
            xs, initiating=True, serverNames=[PEER], bidi=False)
        authorization.localName = localName
        return xs

    def requests(self, xs):
        return [(e.getAttribute("from"), e.getAttribute("to"))
                for e in xs.output if getattr(e, "name", None) == "result"]

    def test_reusesOnlyStreamFromItsName(self):
        """
        With a stream from our first name open to the peer, a sender
        delegated to the second opens another from the second; its pair is
        not asked for on the first.
        """
        first = self.authenticated("s1", FIRST)
        self.send("second.tld")
        self.assertEqual([], self.requests(first))
        self.assertEqual([SECOND], self.opened())

    def test_reusesStreamFromItsName(self):
        """
        A stream from our second name carries the pairs of the senders
        delegated to it, and only them: the others go on the first name's.
        """
        first = self.authenticated("s1", FIRST)
        second = self.authenticated("s2", SECOND)
        self.send("second.tld", "a")
        self.send("sender.tld", "b")
        self.send("other.tld", "c")
        self.assertEqual([("second.tld", "target.tld")], self.requests(second))
        self.assertEqual([("sender.tld", "target.tld"), ("other.tld", "target.tld")],
                         self.requests(first))
        self.assertEqual([], self.reactor.tcpClients)

    def test_incomingBidiStreamByNameReached(self):
        """
        A bidi stream the peer opened carries the pairs of senders
        delegated to the name it reached.
        """
        xs = makeStream("in1", us=SECOND, peer=PEER)
        self.service._streamConnected(xs)
        self.service._incomingAuthenticated(xs, frozenset([PEER]), SECOND)
        self.federation.streams["in1"].bidi = True
        self.send("sender.tld", "a")
        self.send("second.tld", "b")
        self.assertEqual([("second.tld", "target.tld")], self.requests(xs))
        self.assertEqual([FIRST], self.opened())
