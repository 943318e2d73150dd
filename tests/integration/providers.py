"""
Two DNA providers on loopback for integration tests: real sockets, real
mutual TLS with a test CA, a delegation checker given by the test.

Provider A is xmpp1.originating.tld; provider B is xmpp1.receiving.tld.
"""

import time

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from dna.dns.addresses import AddressResolver
from dna.testing.fakes import chatMessage
from dna.testing.providers import ORIGINATING, RECEIVING, ProviderPKI, startProvider

#: A chat message between two JIDs (the tests' name for it).
message = chatMessage


class Inbox:
    """
    Stanzas handed to a provider's router, with waiting for a count.
    """

    def __init__(self):
        self.stanzas = []
        self._waiters = []

    def __call__(self, stanza):
        self.stanzas.append(stanza)
        for count, d in list(self._waiters):
            if len(self.stanzas) >= count:
                self._waiters.remove((count, d))
                d.callback(self.stanzas)

    def waitFor(self, count, timeout=10.0):
        """
        A L{Deferred} firing once C{count} stanzas arrived, failing with
        L{defer.TimeoutError} after C{timeout} seconds.
        """
        if len(self.stanzas) >= count:
            return defer.succeed(self.stanzas)
        d = defer.Deferred()
        self._waiters.append((count, d))
        d.addTimeout(timeout, reactor)
        return d


class ProvidersMixin:
    """
    Build providers A and B in a trial test; everything is stopped in
    cleanup.
    """

    def setUpPKI(self):
        pki = ProviderPKI("DNA Test CA")
        self.ca, self.trustRoot = pki.ca, pki.trustRoot
        self.certA = pki.certificates[ORIGINATING]
        self.certB = pki.certificates[RECEIVING]

    @defer.inlineCallbacks
    def startProvider(self, domains, certificates, checker, hosts=None,
                      trustRoot=None, interface="127.0.0.1", client=None, port=0, **kw):
        """
        Start one provider listening on C{interface} and C{port} (0: chosen
        by the system).

        @param certificates: C{{serverName: IssuedCertificate}}.
        @return: A L{Deferred} firing with (service, inbox, port number).
        """
        inbox = Inbox()
        service, port = yield startProvider(
            reactor, domains, certificates, trustRoot or self.trustRoot, checker,
            AddressResolver(client=client, hosts=hosts or {}), inbox,
            interface=interface, port=port, backlog=200, **kw,
        )
        self.addCleanup(service.stopService)
        return service, inbox, port.getHost().port

    @defer.inlineCallbacks
    def startOnTestZones(self, env, name, domains):
        """
        Start a provider where the test zones of C{env} (a
        L{tests.integration.dnsenv.DNSEnvironment}) put C{name}: port 5269
        of its address there, checking delegations and resolving SRV
        targets through C{env}'s validating resolver (its AD bit).

        @return: A L{Deferred} firing with (service, inbox).
        """
        from dna.app.delegation import makeDelegationChecker
        from dna.dns.client import DNSClient
        from tests.integration.dnsenv import HOSTS

        service, inbox, port = yield self.startProvider(
            domains, {name: self.ca.issue(name, dnsNames=[name])},
            makeDelegationChecker(reactor, [env.resolver], "ad"),
            client=DNSClient([env.resolver], reactor),
            interface=HOSTS[name], port=5269,
        )
        return service, inbox

    @defer.inlineCallbacks
    def until(self, condition, timeout, what):
        """
        Poll C{condition} every 0.1 s.

        @return: The seconds it took.
        """
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                self.fail(f"not within {timeout} s: {what}")
            yield deferLater(reactor, 0.1, lambda: None)
        return time.monotonic() - started
