"""
C{examples/wokkel_server.tac} as its users run it: C{twistd -ny}, a real
process hosting sender.example, whose XEP-0030, XEP-0092 and XEP-0199
services are Wokkel handlers; dna is its S2S. A second server (a
L{DNAService} in the test, hosting target.example) asks it over a DNA
connection: real DNSSEC-signed DNS (knotd + unbound,
L{tests.integration.dnsenv}) and mutual TLS over loopback.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.words.xish import domish

from dna.dns.client import DNSClient
from dna.dns.delegation import DelegationChecker
from dna.dns.lookup import ResolverLookup
from tests.integration import test_twistd
from tests.integration.dnsenv import HOSTS
from tests.integration.processes import CHECKOUT, startTwistdProcess, waitForPort
from tests.integration.providers import ProvidersMixin
from tests.integration.test_twistd import ORIGINATING, RECEIVING

TAC = os.path.join(CHECKOUT, "examples", "wokkel_server.tac")

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"


def iq(stanzaID, namespace, name="query"):
    """
    An C{<iq type='get'/>} from juliet@target.example to sender.example.
    """
    element = domish.Element(("jabber:server", "iq"))
    element["type"] = "get"
    element["id"] = stanzaID
    element["from"] = "juliet@target.example/balcony"
    element["to"] = "sender.example"
    element.addElement((namespace, name))
    return element


class WokkelServerTests(ProvidersMixin, unittest.TestCase):
    """
    The example under C{twistd -ny}, asked by a second dna server.
    """

    timeout = 120

    # The directory, CA, certificate and DNS of C{twistd dna}'s tests.
    setUp = test_twistd.TwistdTests.setUp

    def startExample(self):
        host, port = self.env.resolver
        environment = dict(
            os.environ,
            PYTHONPATH=CHECKOUT,
            WOKKEL_SERVER_DOMAIN="sender.example",
            WOKKEL_SERVER_NAME=ORIGINATING,
            WOKKEL_SERVER_CERTIFICATE=self.directory.child("xmpp1.pem").path,
            WOKKEL_SERVER_KEY=self.directory.child("xmpp1.key").path,
            WOKKEL_SERVER_CA=self.directory.child("ca.pem").path,
            WOKKEL_SERVER_RESOLVER=f"{host}:{port}",
            WOKKEL_SERVER_LISTEN=f"tcp:5269:interface={HOSTS[ORIGINATING]}",
        )
        self.logFile = self.directory.child("twistd.log").path
        return startTwistdProcess(self, ["-y", TAC], self.logFile,
                                  cwd=self.directory.path, env=environment)

    @defer.inlineCallbacks
    def test_discoVersionPing(self):
        """
        target.example pings sender.example and asks its disco#info and
        software version; the Wokkel handlers answer, over one DNA
        connection each way.
        """
        process = self.startExample()
        yield task.deferLater(reactor, 0, waitForPort, 5269, process, 30.0,
                             HOSTS[ORIGINATING])
        client = DNSClient([self.env.resolver], reactor)
        checker = DelegationChecker(ResolverLookup(client, reactor), reactor)
        peer, inbox, _ = yield self.startProvider(
            ["target.example"], {RECEIVING: self.ca.issue(RECEIVING, dnsNames=[RECEIVING])},
            checker, client=client, interface=HOSTS[RECEIVING], port=5269,
        )
        peer.send(iq("ping1", NS_PING, "ping"))
        peer.send(iq("disco1", NS_DISCO_INFO))
        peer.send(iq("version1", NS_VERSION))
        try:
            answers = yield inbox.waitFor(3, timeout=30)
        except defer.TimeoutError:
            with open(self.logFile) as f:
                raise AssertionError("no answers; twistd log:\n" + f.read()[-4000:])
        byID = {answer["id"]: answer for answer in answers}
        self.assertEqual({"ping1", "disco1", "version1"}, set(byID))
        for answer in answers:
            self.assertEqual(("result", "sender.example", "juliet@target.example/balcony"),
                             (answer["type"], answer["from"], answer["to"]))

        info = byID["disco1"].firstChildElement()
        self.assertEqual(NS_DISCO_INFO, info.uri)
        features = {e["var"] for e in info.elements(NS_DISCO_INFO, "feature")}
        self.assertTrue({NS_DISCO_INFO, NS_VERSION, NS_PING} <= features, features)
        identities = [(e["category"], e["type"]) for e in info.elements(NS_DISCO_INFO, "identity")]
        self.assertEqual([("server", "im")], identities)

        version = byID["version1"].firstChildElement()
        fields = {e.name: str(e) for e in version.elements(NS_VERSION)}
        self.assertEqual((NS_VERSION, {"name": "wokkel-server", "version": "1.0"}),
                         (version.uri, fields))
        # The answers came over DNA streams between the two server names.
        rows = [peer.federation.tables.connections.get(s)
                for s in peer.federation.tables.connections]
        self.assertTrue(rows)
        self.assertTrue(all(row.serverNames == {ORIGINATING} for row in rows))
