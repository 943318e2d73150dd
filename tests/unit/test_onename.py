"""
One form for every domain name (issue 9 section 1): every place that reads a
domain or a server name (C{<db:result/>}, the stanza filter, routing, legacy
dialback and SASL, the delegation checker, the configuration, C{dna-check})
calls L{dna.core.names}, so two names IDNA2008 tells apart stay apart
everywhere, and a name it refuses is refused, never mapped to another.

The pairs: C{faß} / C{fass} (IDNA2003 mapped the sharp s to C{ss}), C{βόλος} /
C{βόλοσ} (it mapped the final sigma to the sigma), and a Devanagari name with
and without a ZWNJ that CONTEXTJ allows (it dropped joiners).
"""

import base64

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish
from zope.interface import implementer

from dna.app import check
from dna.app.federation import Federation
from dna.core.authorization import StreamAuthorization, errorFromResult
from dna.core.enforcement import StanzaFilter
from dna.core.names import normalizeDomain
from dna.core.tables import INCOMING, OUTGOING, Tables
from dna.dns.delegation import DelegationChecker
from dna.dns.verdict import INDETERMINATE, SECURE, DelegationResult, SRVRecord
from dna.interfaces import IDelegationLookup
from dna.legacy.dialback import AuthoritativeResponder, DialbackKeys
from dna.legacy.sasl import checkExternalAuth
from dna.namespaces import NS_DIALBACK, NS_SASL
from dna.testing.fakes import FakeDelegationChecker
from tests.unit.streams import makeStream, receive, stanza, stanzaErrorOf

#: (delegated name, the name IDNA2003 confused with it), both valid in
#: IDNA2008 and two names there.
PAIRS = [
    ("fass.tld", "faß.tld"),
    ("βόλοσ.tld", "βόλος.tld"),
    ("\u0915\u094d\u0937.tld", "\u0915\u094d\u200c\u0937.tld"),
]

#: Names IDNA2008 refuses: a ZWJ outside CONTEXTJ, a disallowed symbol, an
#: A-label that does not decode.
REFUSED = ["a\u200db.tld", "f\u2665.tld", "xn--a.tld"]


def results(xs):
    return [
        (e["from"], e["to"], e.getAttribute("type"), errorFromResult(e)[0])
        for e in xs.output
        if isinstance(e, domish.Element) and (e.uri, e.name) == (NS_DIALBACK, "result")
    ]


class AuthorizationTests(SynchronousTestCase):
    """
    The Receiving Server's C{<db:result/>} (L{StreamAuthorization}) on a
    stream whose peer is delegated the first name of each pair.
    """

    def setUp(self):
        self.tables = Tables()
        self.checker = FakeDelegationChecker(
            {delegated: {"xmpp1.originating.tld"} for delegated, _ in PAIRS})
        self.xs = makeStream("s1")
        self.delivered = []
        self.xs.addObserver("/message", self.delivered.append)
        StreamAuthorization(self.xs, self.tables, frozenset(["target.tld"]), self.checker,
                            initiating=False, serverNames=["xmpp1.originating.tld"],
                            clock=Clock())

    def test_otherNameRefused(self):
        """
        With the delegated name granted on the stream, a C{<db:result/>} for
        the other name of its pair is refused (C{<not-authorized/>}), and a
        stanza from that name is not delivered.
        """
        for delegated, other in PAIRS:
            receive(self.xs, f"<db:result from='{delegated}' to='target.tld'/>")
            receive(self.xs, f"<db:result from='{other}' to='target.tld'/>")
            receive(self.xs, stanza(sender=f"ceo@{other}", to="bob@target.tld"))
        self.assertEqual(
            [("target.tld", normalizeDomain(name), "valid" if name == delegated else "invalid",
              None if name == delegated else "not-authorized")
             for delegated, other in PAIRS for name in (delegated, other)],
            results(self.xs))
        self.assertEqual([], self.delivered)
        self.assertEqual({("target.tld", normalizeDomain(d)) for d, _ in PAIRS},
                         set(self.tables.incoming.pairs("s1")))

    def test_delegatedNameDelivered(self):
        """
        Any spelling of the delegated name itself is the same domain.
        """
        receive(self.xs, "<db:result from='fass.tld' to='target.tld'/>")
        receive(self.xs, stanza(sender="ceo@FASS.TLD.", to="bob@target.tld"))
        self.assertEqual(1, len(self.delivered))

    def test_refusedNames(self):
        """
        A C{<db:result/>} naming a domain IDNA2008 refuses takes the
        malformed-address path (C{<improper-addressing/>}).
        """
        for name in REFUSED:
            xs = makeStream("s-" + name)
            StreamAuthorization(xs, self.tables, frozenset(["target.tld"]), self.checker,
                                initiating=False, serverNames=["xmpp1.originating.tld"],
                                clock=Clock())
            receive(xs, f"<db:result from='{name}' to='target.tld'/>")
            self.assertEqual(["improper-addressing"], [e.condition for e in xs.streamErrors])
        self.assertEqual([], self.checker.checked)


class EnforcementTests(SynchronousTestCase):
    """
    L{StanzaFilter}: a pair bound for one name of each pair does not let
    stanzas from or to the other in.
    """

    def setUp(self):
        self.tables = Tables()
        self.tables.openConnection("s1", ["xmpp1.originating.tld"])
        self.xs = makeStream("s1")
        self.delivered = []
        self.xs.addObserver("/*", self.delivered.append)
        StanzaFilter(self.xs, "s1", self.tables.incoming).install()

    def test_distinct(self):
        """
        C{ceo@faß.tld} is not C{ceo@fass.tld}: refused with
        C{<not-authorized/>}; and likewise for the other pairs and for the
        target side.
        """
        for delegated, other in PAIRS:
            self.tables.bind(INCOMING, "target.tld", normalizeDomain(delegated), "s1")
            self.tables.bind(INCOMING, normalizeDomain(delegated), "sender.tld", "s1")
            receive(self.xs, stanza(sender=f"ceo@{other}", to="bob@target.tld"))
            receive(self.xs, stanza(sender="ceo@sender.tld", to=f"bob@{other}"))
        self.assertEqual([], self.delivered)
        self.assertEqual([("not-authorized", None)] * 2 * len(PAIRS),
                         [stanzaErrorOf(reply) for reply in self.xs.output])

    def test_sameDomain(self):
        """
        A spelling of the bound name is the bound name.
        """
        self.tables.bind(INCOMING, "target.tld", "xn--fa-hia.tld", "s1")
        receive(self.xs, stanza(sender="ceo@FAß.tld", to="bob@target.tld."))
        self.assertEqual(1, len(self.delivered))

    def test_refusedNames(self):
        """
        An address IDNA2008 refuses is answered with C{<jid-malformed/>}.
        """
        for name in REFUSED:
            receive(self.xs, stanza(sender=f"ceo@{name}", to="bob@target.tld"))
        self.assertEqual([("jid-malformed", None)] * len(REFUSED),
                         [stanzaErrorOf(reply) for reply in self.xs.output])


class RoutingTests(SynchronousTestCase):
    """
    L{Federation.send}: stanzas for the other name of a pair are not routed
    to the stream of the delegated name.
    """

    def setUp(self):
        self.delivered = []
        self.federation = Federation(["sender.tld"], FakeDelegationChecker(),
                                     self.delivered.append, clock=Clock())
        self.xs = makeStream("s1", us="xmpp1.originating.tld", peer="xmpp1.receiving.tld")
        self.federation.streamAuthenticated(self.xs, initiating=True,
                                            serverNames=["xmpp1.receiving.tld"])
        delegated = [normalizeDomain(d) for d, _ in PAIRS]
        self.federation.tables.connections.addDelegatedNames("s1", delegated)
        for name in delegated:
            self.federation.tables.bind(OUTGOING, "sender.tld", name, "s1")

    def test_notRouted(self):
        """
        C{bob@faß.tld} does not go to the stream of C{fass.tld}: no route,
        bounced with C{<remote-server-not-found/>}, nothing asked on the
        stream; C{bob@FASS.tld} does.
        """
        for delegated, other in PAIRS:
            self.federation.send(stanza(sender="romeo@sender.tld", to=f"bob@{other}",
                                        stanzaID=other))
            self.federation.send(stanza(sender="romeo@sender.tld",
                                        to=f"bob@{delegated.upper()}", stanzaID=delegated))
        self.assertEqual([d for d, _ in PAIRS],
                         [e["id"] for e in self.xs.output if isinstance(e, domish.Element)])
        self.assertEqual([("remote-server-not-found", None)] * len(PAIRS),
                         [stanzaErrorOf(bounce) for bounce in self.delivered])

    def test_refusedNames(self):
        """
        A stanza to an address IDNA2008 refuses bounces with
        C{<jid-malformed/>}.
        """
        for name in REFUSED:
            self.federation.send(stanza(sender="romeo@sender.tld", to=f"bob@{name}"))
        self.assertEqual([("jid-malformed", None)] * len(REFUSED),
                         [stanzaErrorOf(bounce) for bounce in self.delivered])


class LegacyTests(SynchronousTestCase):
    """
    The legacy fallback: the SASL EXTERNAL authorization identity and the
    dialback C{<db:verify/>} addresses.
    """

    def test_saslAuthzid(self):
        """
        An authorization identity is the stream's 'from' only when it names
        the same domain.
        """
        def auth(authzid, peer):
            element = domish.Element((NS_SASL, "auth"))
            element["mechanism"] = "EXTERNAL"
            element.addContent(base64.b64encode(authzid.encode("utf-8")).decode("ascii"))
            return checkExternalAuth(element, normalizeDomain(peer))

        for delegated, other in PAIRS:
            self.assertEqual("invalid-authzid", auth(other, delegated))
            self.assertEqual("invalid-authzid", auth(delegated, other))
            self.assertIsNone(auth(other, other))
        for name in REFUSED:
            self.assertEqual("invalid-authzid", auth(name, "fass.tld"))

    def test_dialbackVerify(self):
        """
        The Authoritative Server of C{fass.tld} does not vouch for C{faß.tld}:
        a C{<db:verify/>} for it is not ours (C{<item-not-found/>}); a name
        IDNA2008 refuses is C{<improper-addressing/>}.
        """
        keys = DialbackKeys(b"s" * 32)
        for delegated, other in PAIRS:
            xs = makeStream("s9", us=delegated, peer="target.tld")
            AuthoritativeResponder(keys, frozenset([normalizeDomain(delegated)])).install(xs)
            key = keys.key("target.tld", normalizeDomain(delegated), "s1")
            receive(xs, f"<db:verify xmlns:db='{NS_DIALBACK}' from='target.tld' "
                        f"to='{other}' id='s1'>{key}</db:verify>")
            [answer] = [e for e in xs.output if isinstance(e, domish.Element)]
            self.assertEqual(("error", "item-not-found"),
                             (answer["type"], errorFromResult(answer)[0]))
        xs = makeStream("s9", us="fass.tld", peer="target.tld")
        AuthoritativeResponder(keys, frozenset(["fass.tld"])).install(xs)
        receive(xs, f"<db:verify xmlns:db='{NS_DIALBACK}' from='target.tld' "
                    f"to='{REFUSED[0]}' id='s1'>00</db:verify>")
        self.assertEqual(["improper-addressing"], [e.condition for e in xs.streamErrors])


@implementer(IDelegationLookup)
class _RecordingLookup:
    """
    An L{IDelegationLookup} recording the names asked and answering with
    one SRV record to C{xmpp1.provider.tld}.
    """

    def __init__(self):
        self.asked = []

    def lookup(self, domain):
        self.asked.append(domain.to_text())
        normal = domain.to_text(omit_final_dot=True)
        return succeed(DelegationResult(
            normal, [SRVRecord(0, 0, 5269, "xmpp1.provider.tld")], SECURE, ttl=60))


class DelegationCheckerTests(SynchronousTestCase):
    """
    L{DelegationChecker} looks up the canonical name, and refuses the names
    IDNA2008 refuses without a query.
    """

    def setUp(self):
        self.lookup = _RecordingLookup()
        self.checker = DelegationChecker(self.lookup, Clock())

    def test_canonicalQueries(self):
        """
        C{faß.tld} is looked up as C{xn--fa-hia.tld}, never as C{fass.tld};
        spellings of one name share one lookup.
        """
        for delegated, other in PAIRS:
            for name in (delegated, other, other.upper() + "."):
                result = self.successResultOf(self.checker.check(name))
                self.assertEqual(normalizeDomain(name), result.domain)
        self.assertEqual([normalizeDomain(name) + "." for pair in PAIRS for name in pair],
                         self.lookup.asked)

    def test_refusedNames(self):
        """
        A name IDNA2008 refuses is indeterminate, with the reason, and asks
        nothing.
        """
        result = self.successResultOf(self.checker.check("a\u200db.tld"))
        self.assertEqual(INDETERMINATE, result.status)
        self.assertIn("U+200D", result.reason)
        for name in REFUSED + ["a.tld..", "_xmpp-server._tcp.a.tld"]:
            self.assertEqual(INDETERMINATE,
                             self.successResultOf(self.checker.check(name)).status)
            self.assertFalse(self.successResultOf(
                self.checker.isDelegated(name, ["xmpp1.provider.tld"])))
        self.assertEqual([], self.lookup.asked)


class CheckScriptTests(SynchronousTestCase):
    """
    C{dna-check}'s DOMAIN and C{--server-name}.
    """

    def parse(self, *argv):
        options = check.Options()
        options.parseOptions(list(argv))
        return options

    def test_canonical(self):
        """
        The domain and the server names are checked in their canonical form:
        C{faß.tld} is C{xn--fa-hia.tld}; a wildcard server name is a pattern.
        """
        options = self.parse("-s", "XMPP1.Faß.tld.", "-s", "*.Provider.tld", "Faß.tld")
        self.assertEqual("xn--fa-hia.tld", options["domain"])
        self.assertEqual(["xmpp1.xn--fa-hia.tld", "*.provider.tld"], options["serverNames"])

    def test_refused(self):
        """
        Names IDNA2008 refuses are usage errors that name the argument and
        say why.
        """
        error = self.assertRaises(usage.UsageError, self.parse, "a\u200db.tld")
        self.assertIn("DOMAIN", str(error))
        self.assertIn("U+200D", str(error))
        error = self.assertRaises(usage.UsageError, self.parse, "-s", "*.tld", "a.tld")
        self.assertIn("--server-name", str(error))


class ConfigurationTests(SynchronousTestCase):
    """
    The configuration file: domains and server names in their canonical
    form; a name IDNA2008 refuses is a configuration error naming the key.
    """

    def setUp(self):
        from tests.unit.test_config import ConfigurationFiles

        self.files = ConfigurationFiles(self)

    def load(self, old, new):
        from tests.unit.test_config import VALID, _replaced

        return self.files.load(_replaced(VALID, old, new))

    def test_pairsAreTwoDomains(self):
        """
        C{faß.tld} and C{fass.tld} are two hosted domains, not one listed
        twice; so are the other pairs.
        """
        for delegated, other in PAIRS:
            c = self.load('"Other.TLD."', f'"{delegated}", "{other}"')
            self.assertEqual({"sender.tld", normalizeDomain(delegated), normalizeDomain(other)},
                             set(c.domains))

    def test_refused(self):
        """
        A hosted domain, an C{allow-insecure} domain, a server name or a
        C{[hosts]} name that IDNA2008 refuses is a configuration error that
        names the key.
        """
        from dna.error import ConfigurationError

        for name in REFUSED:
            for old, new, where in [
                    ('"Other.TLD."', f'"{name}"', "[server] domains: "),
                    ('"Legacy.TLD"', f'"{name}"', "[policy] allow-insecure: "),
                    ('name = "xmpp1.originating.tld"', f'name = "{name}"',
                     "[[server.names]] #1 name: "),
                    ('"xmpp1.receiving.tld" =', f'"{name}" =', f"[hosts] {name!r}: ")]:
                error = self.assertRaises(ConfigurationError, self.load, old, new)
                self.assertTrue(error.message.startswith(where), error.message)
                self.assertIn(repr(name), error.message)
