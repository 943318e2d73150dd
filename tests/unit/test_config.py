"""
Tests for L{dna.app.config}: the operator's TOML file.
"""

import datetime
import operator
import os

import attr
from cryptography.hazmat.primitives import serialization
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from dna.app import config
from dna.app.config import loadConfiguration, parseConfiguration
from dna.app.delegation import makeDelegationChecker
from dna.channel.tls import ServerContextFactory
from dna.dns.dnssec.proofs import ROOT_ANCHORS
from dna.error import ConfigurationError, DNAError
from dna.testing.pki import CertificateAuthority

CA = CertificateAuthority("DNA Test Root CA")
ORIGINATING = "xmpp1.originating.tld"
ORIGINATING2 = "xmpp2.originating.tld"

VALID = """\
[server]
listen = "tcp:5269:interface=127.0.0.1"
domains = ["sender.tld", "Other.TLD."]
ca = "ca.pem"
idle-timeout = 300
connect-timeout = 2.5
max-pending = 10
request-timeout = 20.0
queue-limit = 50

[[server.names]]
name = "xmpp1.originating.tld"
certificate = "xmpp1.pem"
key = "xmpp1.key"

[[server.names]]
name = "XMPP2.originating.tld."
certificate = "xmpp2.pem"
key = "xmpp2.key"

[dns]
mode = "validate"
resolvers = ["127.0.0.1:5300", "[::1]", "192.0.2.53"]
trust-anchors = "root-anchors.txt"
timeout = 3

[policy]
delegation = "require-secure"
allow-insecure = ["Legacy.TLD"]
srv-fallback = true
fallback = "dna+pkix"

[hosts]
"xmpp1.receiving.tld" = "127.0.0.2:5270"
"xmpp2.receiving.tld" = "[::1]"
"""

MINIMAL = """\
[server]
domains = ["sender.tld"]
ca = "ca.pem"

[[server.names]]
name = "xmpp1.originating.tld"
certificate = "xmpp1.pem"
key = "xmpp1.key"
"""


class ConfigurationFiles:
    """
    A directory holding a configuration file, the CA bundle, a certificate
    and key for C{xmpp1.originating.tld} and one for C{xmpp2...}, and the
    root trust anchors.

    @ivar directory: The directory.
    @type directory: L{FilePath}
    """

    def __init__(self, testCase):
        self.directory = FilePath(testCase.mktemp())
        self.directory.makedirs()
        self.directory.child("ca.pem").setContent(CA.certificatePEM)
        self.xmpp1 = CA.issue(ORIGINATING, dnsNames=[ORIGINATING])
        self.xmpp1.writeTo(self.directory, "xmpp1")
        self.xmpp2 = CA.issue(None, xmppAddrs=[ORIGINATING2])
        self.xmpp2.writeTo(self.directory, "xmpp2")
        self.directory.child("root-anchors.txt").setContent(
            ROOT_ANCHORS.encode("ascii"))

    def path(self, name):
        """
        @return: The path of a file in the directory.
        @rtype: L{str}
        """
        return self.directory.child(name).path

    def write(self, name, content):
        """
        Write a file into the directory.

        @param content: Its contents.
        @type content: L{bytes} or L{str}
        @return: Its path.
        @rtype: L{str}
        """
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.directory.child(name).setContent(content)
        return self.path(name)

    def load(self, text, **kw):
        """
        Write C{text} as C{dna.toml} and load it.

        @rtype: L{config.Configuration}
        """
        return loadConfiguration(self.write("dna.toml", text), **kw)


def _replaced(text, old, new):
    """
    C{text} with C{old} replaced by C{new}; C{old} must be there.
    """
    if old not in text:
        raise AssertionError(f"{old!r} is not in the text")
    return text.replace(old, new, 1)


class LoadTests(SynchronousTestCase):
    """
    L{loadConfiguration} on valid files.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)

    def test_everything(self):
        """
        Every key of a complete file ends up, normalised, in the
        L{config.Configuration}.
        """
        c = self.files.load(VALID)
        self.assertEqual(self.files.path("dna.toml"), c.path)
        self.assertEqual("tcp:5269:interface=127.0.0.1", c.listen)
        self.assertEqual(frozenset(["sender.tld", "other.tld"]), c.domains)
        self.assertEqual([ORIGINATING, ORIGINATING2],
                         [s.name for s in c.serverNames])
        self.assertEqual(self.files.path("ca.pem"), c.caPath)
        self.assertEqual([CA.toCertificate()], list(c.caCertificates))
        self.assertEqual(
            (300.0, 2.5, 10, 20.0, 50),
            (c.idleTimeout, c.connectTimeout, c.maxPending, c.requestTimeout,
             c.queueLimit))
        self.assertIsInstance(c.idleTimeout, float)
        self.assertEqual("validate", c.dnsMode)
        self.assertEqual(
            (("127.0.0.1", 5300), ("::1", 53), ("192.0.2.53", 53)),
            c.resolvers)
        self.assertEqual(self.files.path("root-anchors.txt"),
                         c.trustAnchorsPath)
        self.assertEqual(1, len(c.trustAnchors))
        self.assertFalse(c.trustedPath)
        self.assertEqual(3.0, c.dnsTimeout)
        self.assertEqual("require-secure", c.delegationPolicy)
        self.assertEqual(frozenset(["legacy.tld"]), c.allowInsecure)
        self.assertTrue(c.srvFallback)
        self.assertEqual("dna+pkix", c.fallback)
        self.assertEqual(
            {"xmpp1.receiving.tld": ("127.0.0.2", 5270),
             "xmpp2.receiving.tld": ("::1", None)},
            dict(c.hosts))

    def test_defaults(self):
        """
        A file with only the hosted domains, the CA and a server name gets
        the documented defaults for everything else.
        """
        c = self.files.load(MINIMAL)
        self.assertEqual("tcp:5269", c.listen)
        self.assertEqual(
            (600.0, 10.0, 100, 30.0, 1000),
            (c.idleTimeout, c.connectTimeout, c.maxPending, c.requestTimeout,
             c.queueLimit))
        self.assertEqual("ad", c.dnsMode)
        self.assertEqual((("127.0.0.1", 53),), c.resolvers)
        self.assertIsNone(c.trustAnchorsPath)
        self.assertIsNone(c.trustAnchors)
        self.assertFalse(c.trustedPath)
        self.assertEqual(5.0, c.dnsTimeout)
        self.assertEqual("require-secure", c.delegationPolicy)
        self.assertEqual(frozenset(), c.allowInsecure)
        self.assertFalse(c.srvFallback)
        # Issue 10: a fresh configuration federates with peers without DNA,
        # by certificates (RFC 6120), never by unauthenticated dialback.
        self.assertEqual("dna+pkix", c.fallback)
        self.assertIsNone(c.control)
        self.assertEqual("text", c.logFormat)
        self.assertEqual({}, dict(c.hosts))

    def test_defaultsMatchTheModules(self):
        """
        The defaults are those of the modules that use the settings.
        """
        from dna.app import federation, service
        from dna.channel import originating as connector
        from dna.core import authorization as dialback

        self.assertEqual(service.DEFAULT_IDLE_TIMEOUT,
                         config.DEFAULT_IDLE_TIMEOUT)
        self.assertEqual(connector.DEFAULT_CONNECT_TIMEOUT,
                         config.DEFAULT_CONNECT_TIMEOUT)
        c = self.files.load(MINIMAL)
        self.assertEqual(dialback.DEFAULT_MAX_PENDING, c.maxPending)
        self.assertEqual(dialback.DEFAULT_REQUEST_TIMEOUT, c.requestTimeout)
        self.assertEqual(federation.DEFAULT_QUEUE_LIMIT, c.queueLimit)

    def test_certificates(self):
        """
        Each server name comes with its certificate and key as a
        L{PrivateCertificate} and the file names they came from.
        """
        c = self.files.load(VALID)
        first = c.serverNames[0]
        self.assertIsInstance(first.certificate, PrivateCertificate)
        self.assertEqual(
            self.files.xmpp1.toPrivateCertificate(), first.certificate)
        self.assertEqual(
            self.files.xmpp1.keyPEM,
            first.certificate.privateKey.original.to_cryptography_key()
            .private_bytes(serialization.Encoding.PEM,
                           serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()))
        self.assertEqual((), first.chain)
        self.assertEqual(self.files.path("xmpp1.pem"), first.certificatePath)
        self.assertEqual(self.files.path("xmpp1.key"), first.keyPath)
        self.assertEqual(self.files.xmpp1.certificate.not_valid_after_utc,
                         first.notAfter)

    def test_chain(self):
        """
        The certificates after the first in a certificate file are its chain.
        """
        intermediate = CA.intermediate("DNA Test Intermediate")
        issued = intermediate.issue(ORIGINATING, dnsNames=[ORIGINATING])
        issued.writeTo(self.files.directory, "xmpp1")
        c = self.files.load(MINIMAL)
        self.assertEqual([intermediate.toCertificate()],
                         list(c.serverNames[0].chain))
        self.assertIsInstance(c.serverNames[0].chain[0], Certificate)

    def test_keyInCertificateFile(self):
        """
        Without C{key}, the key is read from the certificate file.
        """
        self.files.write("both.pem", self.files.xmpp1.chainPEM
                         + self.files.xmpp1.keyPEM)
        text = _replaced(MINIMAL, 'certificate = "xmpp1.pem"\nkey = "xmpp1.key"',
                         'certificate = "both.pem"')
        name = self.files.load(text).serverNames[0]
        self.assertEqual(self.files.xmpp1.toPrivateCertificate(),
                         name.certificate)
        self.assertEqual(self.files.path("both.pem"), name.keyPath)

    def test_relativePaths(self):
        """
        Relative file names are taken from the directory of the
        configuration file, not the working directory; absolute ones as they
        are.
        """
        sub = self.files.directory.child("etc")
        sub.makedirs()
        self.files.xmpp1.writeTo(sub, "xmpp1")
        text = _replaced(MINIMAL, 'ca = "ca.pem"',
                         f'ca = "{self.files.path("ca.pem")}"')
        text = _replaced(text, 'key = "xmpp1.key"', 'key = "../etc/xmpp1.key"')
        sub.child("dna.toml").setContent(text.encode("ascii"))
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.files.directory.parent().path)
        c = loadConfiguration(
            os.path.join(self.files.directory.basename(), "etc", "dna.toml"))
        self.assertEqual(self.files.path("ca.pem"), c.caPath)
        self.assertEqual(sub.child("xmpp1.pem").path,
                         c.serverNames[0].certificatePath)
        self.assertEqual(sub.child("xmpp1.key").path, c.serverNames[0].keyPath)

    def test_readyForTLS(self):
        """
        L{config.Configuration.certificates}, C{chains}, C{trustRoot} and
        C{defaultServerName} are what L{ServerContextFactory} takes; the
        first server name is the default.
        """
        c = self.files.load(VALID)
        self.assertEqual(ORIGINATING, c.defaultServerName)
        self.assertEqual([ORIGINATING, ORIGINATING2], list(c.certificates))
        self.assertEqual({ORIGINATING: [], ORIGINATING2: []}, c.chains)
        ServerContextFactory(c.certificates, c.trustRoot, c.defaultServerName,
                             chains=c.chains)

    def test_delegationChecker(self):
        """
        L{config.Configuration.delegationCheckerArguments} gives a
        L{DelegationChecker} the DNS settings and policy.
        """
        c = self.files.load(VALID)
        arguments = c.delegationCheckerArguments()
        self.assertEqual(
            dict(servers=[("127.0.0.1", 5300), ("::1", 53), ("192.0.2.53", 53)],
                 mode="validate", trustedPath=False, policy="require-secure",
                 domainPolicies={"legacy.tld": "allow-insecure"},
                 fallback=True, deadline=3.0),
            {k: v for k, v in arguments.items() if k != "anchors"})
        self.assertEqual(dict(c.trustAnchors), arguments["anchors"])
        checker = makeDelegationChecker(reactor=MemoryReactorClock(), **arguments)
        self.assertEqual("allow-insecure", checker.policyFor("legacy.tld"))
        self.assertEqual("require-secure", checker.policyFor("other.tld"))
        self.assertIsNone(
            self.files.load(MINIMAL).delegationCheckerArguments()["anchors"])

    def test_trustedPath(self):
        """
        With C{trusted-path = true}, mode C{ad} may use a resolver that is
        not on loopback.
        """
        c = self.files.load(MINIMAL + '[dns]\nresolvers = ["192.0.2.53"]\n'
                            'trusted-path = true\n')
        self.assertEqual((("192.0.2.53", 53),), c.resolvers)
        self.assertTrue(c.trustedPath)

    def test_immutable(self):
        """
        A L{config.Configuration} cannot be changed.
        """
        c = self.files.load(VALID)
        self.assertRaises(attr.exceptions.FrozenInstanceError,
                          setattr, c, "listen", "tcp:1")
        self.assertRaises(TypeError, operator.setitem, c.hosts, "a.tld",
                          ("::1", 1))
        self.assertRaises(TypeError, operator.setitem, c.trustAnchors, "a",
                          None)
        self.assertIsInstance(c.domains, frozenset)
        self.assertIsInstance(c.serverNames, tuple)


class ExampleTests(SynchronousTestCase):
    """
    C{examples/dna.toml} is valid.
    """

    def test_example(self):
        """
        With the files it names in place, the example loads.
        """
        example = FilePath(__file__).parent().parent().sibling("examples").child(
            "dna.toml")
        files = ConfigurationFiles(self)
        example.copyTo(files.directory.child("dna.toml"))
        CA.issue(ORIGINATING, dnsNames=[ORIGINATING]).writeTo(
            files.directory, ORIGINATING)
        c = loadConfiguration(files.path("dna.toml"))
        self.assertEqual(frozenset(["sender.tld", "other.tld"]), c.domains)
        self.assertEqual(ORIGINATING, c.defaultServerName)
        self.assertEqual({"xmpp1.receiving.tld": ("127.0.60.1", 5269)},
                         dict(c.hosts))


class ErrorTests(SynchronousTestCase):
    """
    Every mistake is one L{ConfigurationError} whose text is one line naming
    the file, the section, the key and the problem.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)
        self.path = self.files.path("dna.toml")

    def assertRefused(self, text, message, **kw):
        """
        Loading C{text} fails with C{message} after the file name.
        """
        error = self.assertRaises(ConfigurationError, self.files.load, text,
                                  **kw)
        self.assertEqual(self.path, error.path)
        self.assertEqual(message, error.message)
        self.assertEqual(f"{self.path}: {message}", str(error))
        self.assertNotIn("\n", str(error))
        return error

    def test_error(self):
        """
        L{ConfigurationError} is a L{DNAError} with C{path} and C{message}.
        """
        error = ConfigurationError("dna.toml", "[server] listen: wrong")
        self.assertIsInstance(error, DNAError)
        self.assertEqual("dna.toml: [server] listen: wrong", str(error))
        self.assertEqual(("dna.toml", "[server] listen: wrong"),
                         (error.path, error.message))

    def test_noFile(self):
        """
        A configuration file that is not there is named.
        """
        path = self.files.path("nothere.toml")
        error = self.assertRaises(ConfigurationError, loadConfiguration, path)
        self.assertEqual(f"{path}: no such file", str(error))

    def test_notUTF8(self):
        """
        A file that is not UTF-8 is refused.
        """
        path = self.files.write("dna.toml", b"# \xff\n")
        error = self.assertRaises(ConfigurationError, loadConfiguration, path)
        self.assertEqual(f"{path}: not UTF-8 text (byte 2)", str(error))

    def test_syntax(self):
        """
        A TOML syntax error gives its line and column.
        """
        self.assertRefused(
            _replaced(VALID, "max-pending = 10", "max-pending 10"),
            "TOML syntax error: Expected '=' after a key in a key/value pair "
            "(at line 7, column 13)")

    def test_duplicateKey(self):
        """
        A key given twice is a TOML error.
        """
        self.assertRefused(
            _replaced(VALID, "max-pending = 10", "max-pending = 10\n"
                                                 "max-pending = 11"),
            "TOML syntax error: Cannot overwrite a value (at line 8, "
            "column 17)")

    def test_unknownKey(self):
        """
        A misspelt key is refused, suggesting the nearest valid one.
        """
        self.assertRefused(
            _replaced(VALID, "idle-timeout", "idle-timout"),
            "[server] idle-timout: unknown key (did you mean 'idle-timeout'?)")

    def test_unknownKeyInNames(self):
        """
        Keys of C{[[server.names]]} entries are checked too.
        """
        self.assertRefused(
            _replaced(VALID, 'key = "xmpp2.key"', 'keys = "xmpp2.key"'),
            "[[server.names]] #2 keys: unknown key (did you mean 'key'?)")

    def test_keyInWrongSection(self):
        """
        A key of another section says where it belongs.
        """
        self.assertRefused(
            _replaced(VALID, "srv-fallback = true", "mode = \"ad\""),
            "[policy] mode: unknown key (it belongs in [dns])")

    def test_unknownKeyNothingClose(self):
        """
        An unknown key like no valid one is refused listing the valid ones.
        """
        self.assertRefused(
            MINIMAL + "[policy]\nzzz = 1\n",
            "[policy] zzz: unknown key (expected 'delegation', "
            "'allow-insecure', 'srv-fallback', 'fallback', 'delegation-proofs' or "
            "'identity-proofs')")

    def test_proofs(self):
        """
        C{[policy] delegation-proofs} and C{identity-proofs} name prooftypes
        in order; by default DNSSEC-signed SRV records, and DANE then PKIX.
        """
        default = self.files.load(MINIMAL)
        self.assertEqual(("dnssec-srv",), default.delegationProofs)
        self.assertEqual(("dane", "pkix"), default.identityProofs)
        chosen = self.files.load(MINIMAL + '[policy]\nidentity-proofs = ["pkix"]\n')
        self.assertEqual(("pkix",), chosen.identityProofs)
        self.assertRefused(
            MINIMAL + '[policy]\nidentity-proofs = ["dane", "ssh"]\n',
            "[policy] identity-proofs: unknown word 'ssh' (expected dane or pkix)")
        self.assertRefused(
            MINIMAL + '[policy]\nidentity-proofs = []\n',
            "[policy] identity-proofs: name at least one prooftype")
        # Issue 12: POSH decides delegations now.
        posh = self.files.load(MINIMAL + '[policy]\ndelegation-proofs = ["posh", "dnssec-srv"]\n')
        self.assertEqual(("posh", "dnssec-srv"), posh.delegationProofs)

    def test_keyOutsideSection(self):
        """
        A key before any section header is refused, saying where it belongs.
        """
        self.assertRefused(
            'listen = "tcp:5269"\n' + MINIMAL,
            "listen: unknown key outside any section (it belongs in [server])")

    def test_unknownSection(self):
        """
        A misspelt section is refused, suggesting the nearest valid one.
        """
        self.assertRefused(
            _replaced(VALID, "[policy]", "[polcy]"),
            "[polcy]: unknown section (did you mean 'policy'?)")

    def test_missingSection(self):
        """
        The C{[server]} section is required.
        """
        self.assertRefused("[dns]\nmode = \"ad\"\n",
                           "[server]: missing section")

    def test_sectionNotTable(self):
        """
        A section given as a value is refused.
        """
        self.assertRefused('dns = "ad"\n' + MINIMAL,
                           "[dns]: expected a table, got string 'ad'")

    def test_missingKey(self):
        """
        A required key is named when it is missing.
        """
        self.assertRefused(
            _replaced(MINIMAL, 'ca = "ca.pem"\n', ""),
            "[server] ca: required, but missing")

    def test_missingServerNames(self):
        """
        At least one server name is required.
        """
        text = MINIMAL.split("[[server.names]]")[0]
        self.assertRefused(
            text,
            "[[server.names]]: missing: name at least one server name with "
            "its certificate and key")
        self.assertRefused(
            text.replace("[server]\n", "[server]\nnames = []\n"),
            "[[server.names]]: none given: name at least one server name "
            "with its certificate and key")

    def test_serverNamesAsTable(self):
        """
        C{[server.names]} (one pair of brackets) is refused saying how to
        write it.
        """
        self.assertRefused(
            _replaced(MINIMAL, "[[server.names]]", "[server.names]"),
            "[server] names: expected an array of tables, written "
            "[[server.names]], got a table")

    def test_wrongType(self):
        """
        A value of the wrong type is refused, naming what was expected and
        what was given.
        """
        self.assertRefused(
            _replaced(VALID, "idle-timeout = 300", 'idle-timeout = "300"'),
            "[server] idle-timeout: expected a positive number of seconds, "
            "got string '300'")
        self.assertRefused(
            _replaced(VALID, "max-pending = 10", "max-pending = 10.5"),
            "[server] max-pending: expected a positive integer, got float 10.5")
        self.assertRefused(
            _replaced(VALID, "max-pending = 10", "max-pending = true"),
            "[server] max-pending: expected a positive integer, got boolean true")
        self.assertRefused(
            _replaced(VALID, "srv-fallback = true", 'srv-fallback = "yes"'),
            "[policy] srv-fallback: expected true or false, got string 'yes'")
        self.assertRefused(
            _replaced(VALID, 'domains = ["sender.tld", "Other.TLD."]',
                      'domains = "sender.tld"'),
            "[server] domains: expected an array of domains, got string "
            "'sender.tld'")
        self.assertRefused(
            _replaced(VALID, 'listen = "tcp:5269:interface=127.0.0.1"',
                      "listen = 5269"),
            "[server] listen: expected a string, got integer 5269")

    def test_notPositive(self):
        """
        Timeouts and limits must be positive and finite.
        """
        self.assertRefused(
            _replaced(VALID, "connect-timeout = 2.5", "connect-timeout = 0"),
            "[server] connect-timeout: expected a positive number of seconds, "
            "got integer 0")
        self.assertRefused(
            _replaced(VALID, "\ntimeout = 3", "\ntimeout = inf"),
            "[dns] timeout: expected a positive number of seconds, got float inf")
        self.assertRefused(
            _replaced(VALID, "queue-limit = 50", "queue-limit = -1"),
            "[server] queue-limit: expected a positive integer, got integer -1")

    def test_unknownWord(self):
        """
        A word outside a key's vocabulary is refused listing the valid ones.
        """
        self.assertRefused(
            _replaced(VALID, 'delegation = "require-secure"',
                      'delegation = "allow-unsigned"'),
            "[policy] delegation: unknown word 'allow-unsigned' (expected "
            "require-secure or allow-insecure)")
        self.assertRefused(
            _replaced(VALID, 'mode = "validate"', 'mode = "AD"'),
            "[dns] mode: unknown word 'AD' (expected ad or validate)")
        self.assertRefused(
            _replaced(VALID, 'fallback = "dna+pkix"', 'fallback = "dialback"'),
            "[policy] fallback: unknown word 'dialback' (expected dna, "
            "dna+pkix or dna+pkix+dialback)")

    def test_listen(self):
        """
        A listener description that Twisted cannot parse is refused.
        """
        self.assertRefused(
            _replaced(VALID, "tcp:5269:interface=127.0.0.1",
                      "tcp:5269:interfce=127.0.0.1"),
            "[server] listen: 'tcp:5269:interfce=127.0.0.1' is not a Twisted "
            "endpoint description such as 'tcp:5269:interface=127.0.0.1' "
            "(_parseTCP() got an unexpected keyword argument 'interfce')")
        self.assertRefused(
            _replaced(VALID, "tcp:5269:interface=127.0.0.1", "5269"),
            "[server] listen: '5269' is not a Twisted endpoint description "
            "such as 'tcp:5269:interface=127.0.0.1' (Unknown endpoint type: "
            "'5269')")
        self.assertRefused(
            _replaced(VALID, "tcp:5269:interface=127.0.0.1", "ssl:5269"),
            "[server] listen: 'ssl:5269' would start TLS before XMPP does: the "
            "server starts it with STARTTLS and the certificates of "
            "[[server.names]], so listen with tcp: or tcp6:")

    def test_domains(self):
        """
        Hosted domains must be domains, at least one, each once.
        """
        self.assertRefused(
            _replaced(VALID, '"Other.TLD."', '"a..b"'),
            "[server] domains: 'a..b' is not a valid domain")
        self.assertRefused(
            _replaced(VALID, '"Other.TLD."', '"Sender.TLD"'),
            "[server] domains: 'Sender.TLD' is listed twice (as 'sender.tld' "
            "before)")
        self.assertRefused(
            _replaced(VALID, '["sender.tld", "Other.TLD."]', "[]"),
            "[server] domains: empty: name at least one hosted domain")
        self.assertRefused(
            _replaced(VALID, '"Other.TLD."', "3"),
            "[server] domains: expected a string, got integer 3")

    def test_allowInsecure(self):
        """
        The domains of C{allow-insecure} must be domains.
        """
        self.assertRefused(
            _replaced(VALID, '"Legacy.TLD"', '"legacy@tld"'),
            "[policy] allow-insecure: 'legacy@tld' is not a valid domain")

    def test_keyFileMissing(self):
        """
        A file that is not there is named with its full path.
        """
        self.files.directory.child("xmpp1.key").remove()
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 key: no such file "
            f"{self.files.path('xmpp1.key')}")

    def test_fileUnreadable(self):
        """
        A file that cannot be read says why.
        """
        self.files.directory.child("xmpp2.pem").remove()
        self.files.directory.child("xmpp2.pem").makedirs()
        self.assertRefused(
            VALID,
            f"[[server.names]] #2 certificate: cannot read "
            f"{self.files.path('xmpp2.pem')}: Is a directory")

    def test_emptyFileName(self):
        """
        An empty file name is refused.
        """
        self.assertRefused(
            _replaced(VALID, 'ca = "ca.pem"', 'ca = ""'),
            "[server] ca: expected a file name, got an empty string")

    def test_notCertificate(self):
        """
        A certificate file without a PEM certificate is refused.
        """
        self.files.write("xmpp1.pem", self.files.xmpp1.keyPEM)
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 certificate: no PEM certificate in "
            f"{self.files.path('xmpp1.pem')}")

    def test_notKey(self):
        """
        A key file without a PEM private key is refused.
        """
        self.files.write("xmpp1.key", self.files.xmpp1.chainPEM)
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 key: no PEM private key in "
            f"{self.files.path('xmpp1.key')}")

    def test_encryptedKey(self):
        """
        An encrypted key is refused: nobody is there to type a passphrase.
        """
        self.files.write(
            "xmpp1.key",
            self.files.xmpp1.privateKey.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret")))
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 key: the key in "
            f"{self.files.path('xmpp1.key')} is encrypted: give it "
            f"unencrypted, as nobody is there to type a passphrase")

    def test_keyMismatch(self):
        """
        A key that is not the certificate's is refused.
        """
        self.files.write("xmpp1.key", self.files.xmpp2.keyPEM)
        self.assertRefused(
            VALID,
            f"[[server.names]] #1: the key in {self.files.path('xmpp1.key')} "
            f"does not match the certificate in "
            f"{self.files.path('xmpp1.pem')}")

    def test_chainOrder(self):
        """
        A certificate file with the chain before the server's own
        certificate is refused saying so.
        """
        intermediate = CA.intermediate("DNA Test Intermediate")
        issued = intermediate.issue(ORIGINATING, dnsNames=[ORIGINATING])
        issued.writeTo(self.files.directory, "xmpp1")
        self.files.write("xmpp1.pem", intermediate.certificatePEM
                         + issued.certificatePEM)
        self.assertRefused(
            VALID,
            f"[[server.names]] #1: the key in {self.files.path('xmpp1.key')} "
            f"belongs to certificate #2 of {self.files.path('xmpp1.pem')}, "
            f"not the first: put the server's own certificate first, then "
            f"its chain")

    def test_nameNotCovered(self):
        """
        A certificate that does not cover its server name is refused, with
        the names it presents.
        """
        other = CA.issue("x", dnsNames=["xmpp9.originating.tld", "b.tld"],
                         srvNames=["_xmpp-server.c.tld"])
        other.writeTo(self.files.directory, "xmpp1")
        self.assertRefused(
            VALID,
            f"[[server.names]] #1: the certificate in "
            f"{self.files.path('xmpp1.pem')} does not cover "
            f"xmpp1.originating.tld (it presents: b.tld, c.tld, "
            f"xmpp9.originating.tld)")

    def test_nameNotCoveredNoNames(self):
        """
        A certificate presenting no server name says so.
        """
        CA.issue(None, serverAuth=True).writeTo(self.files.directory, "xmpp2")
        self.assertRefused(
            VALID,
            f"[[server.names]] #2: the certificate in "
            f"{self.files.path('xmpp2.pem')} does not cover "
            f"xmpp2.originating.tld (it presents no server name)")

    def test_expired(self):
        """
        An expired certificate is refused with its expiry date.
        """
        expired = CA.issue(
            ORIGINATING, dnsNames=[ORIGINATING],
            notAfter=datetime.datetime(2020, 1, 2, 3, 4, 5,
                                       tzinfo=datetime.timezone.utc))
        expired.writeTo(self.files.directory, "xmpp1")
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 certificate: the certificate in "
            f"{self.files.path('xmpp1.pem')} expired on 2020-01-02 03:04:05 UTC")

    def test_expiredAt(self):
        """
        Expiry is judged at the C{now} given.
        """
        later = self.files.xmpp1.certificate.not_valid_after_utc \
            + datetime.timedelta(seconds=1)
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 certificate: the certificate in "
            f"{self.files.path('xmpp1.pem')} expired on "
            f"{self.files.xmpp1.certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
            now=later)

    def test_notYetValid(self):
        """
        A certificate that is not valid yet is refused with its start date.
        """
        future = CA.issue(
            ORIGINATING, dnsNames=[ORIGINATING],
            notBefore=datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc))
        future.writeTo(self.files.directory, "xmpp1")
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 certificate: the certificate in "
            f"{self.files.path('xmpp1.pem')} is not valid before "
            f"2100-01-01 00:00:00 UTC")

    def test_expiredIntermediate(self):
        """
        An expired certificate of the chain is refused, naming it.
        """
        old = CA.intermediate(
            "Old Intermediate",
            notAfter=datetime.datetime(2021, 6, 1, tzinfo=datetime.timezone.utc))
        old.issue(ORIGINATING, dnsNames=[ORIGINATING]).writeTo(
            self.files.directory, "xmpp1")
        self.assertRefused(
            VALID,
            f"[[server.names]] #1 certificate: chain certificate #2 "
            f"(CN=Old Intermediate) in {self.files.path('xmpp1.pem')} expired "
            f"on 2021-06-01 00:00:00 UTC")

    def test_serverName(self):
        """
        A server name must be a domain name, given once.
        """
        self.assertRefused(
            _replaced(VALID, 'name = "xmpp1.originating.tld"',
                      'name = "127.0.0.1"'),
            "[[server.names]] #1 name: '127.0.0.1' is not a server name")
        self.assertRefused(
            _replaced(VALID, 'name = "XMPP2.originating.tld."',
                      'name = "xmpp1.originating.tld"'),
            "[[server.names]] #2 name: xmpp1.originating.tld is already "
            "[[server.names]] #1")

    def test_ca(self):
        """
        The CA bundle must hold at least one certificate.
        """
        self.files.write("ca.pem", b"")
        self.assertRefused(
            VALID,
            f"[server] ca: no PEM certificate in {self.files.path('ca.pem')}")

    def test_resolvers(self):
        """
        Resolvers are IP addresses with an optional port.
        """
        for bad in ["resolver.example", "127.0.0.1:0", "[127.0.0.1]:53",
                    "[::1]53", "::1:53:x"]:
            self.assertRefused(
                _replaced(VALID, '"192.0.2.53"', f'"{bad}"'),
                f"[dns] resolvers: {bad!r} is not an IP address with an "
                f"optional port, such as 127.0.0.1:53 or [::1]:53")
        self.assertRefused(
            _replaced(VALID, '"192.0.2.53"', '"[::1]:53"'),
            "[dns] resolvers: '[::1]:53' is listed twice (as '[::1]' before)")
        self.assertRefused(
            _replaced(VALID, 'resolvers = ["127.0.0.1:5300", "[::1]", '
                             '"192.0.2.53"]', "resolvers = []"),
            "[dns] resolvers: empty: name at least one resolver")

    def test_adOffLoopback(self):
        """
        Mode C{ad} with a resolver off loopback is refused unless the path
        is trusted (RFC 4033 section 4.9.3).
        """
        self.assertRefused(
            _replaced(VALID, 'mode = "validate"', 'mode = "ad"'),
            "[dns] resolvers: mode 'ad' trusts the AD bit of the resolver, "
            "which anyone on the path can set, and 192.0.2.53:53 is not on "
            "loopback: run a validating resolver on loopback, use mode "
            "'validate', or set trusted-path = true if the path is secured "
            "(RFC 4033 section 4.9.3)")

    def test_trustAnchors(self):
        """
        A trust anchor file must hold DS or DNSKEY records.
        """
        self.files.write("root-anchors.txt",
                         "example. 3600 IN A 192.0.2.1\n")
        self.assertRefused(
            VALID,
            f"[dns] trust-anchors: invalid trust anchor: example. A is "
            f"neither DS nor DNSKEY (in {self.files.path('root-anchors.txt')})")

    def test_hosts(self):
        """
        Static addresses are IP addresses of server names; a name with dots
        must be quoted.
        """
        self.assertRefused(
            _replaced(VALID, '"xmpp2.receiving.tld" = "[::1]"',
                      '"xmpp2.receiving.tld" = "localhost"'),
            "[hosts] 'xmpp2.receiving.tld': 'localhost' is not an IP address "
            "with an optional port, such as 127.0.0.1:5269 or [::1]:5269")
        self.assertRefused(
            _replaced(VALID, '"xmpp2.receiving.tld"', "xmpp2.receiving.tld"),
            "[hosts] 'xmpp2': expected an address string, got a table (quote "
            "names with dots: \"xmpp1.example.net\" = \"192.0.2.1:5269\")")
        self.assertRefused(
            _replaced(VALID, '"xmpp2.receiving.tld"', '"XMPP1.receiving.tld"'),
            "[hosts] 'XMPP1.receiving.tld': the same server name as "
            "'xmpp1.receiving.tld'")
        self.assertRefused(
            _replaced(VALID, '"xmpp2.receiving.tld"', '"a..b"'),
            "[hosts] 'a..b': 'a..b' is not a server name")


class OverrideTests(SynchronousTestCase):
    """
    L{config.Configuration.override} changes settings as the command line
    does, checking them as the file's are.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)
        self.configuration = self.files.load(VALID)
        self.path = self.files.path("dna.toml")

    def test_override(self):
        """
        The values, given as the file would give them, are checked,
        normalised and replace the file's; the original is unchanged.
        """
        changed = self.configuration.override(
            listen="tcp:5270", domains=["New.TLD"], resolvers=["127.0.0.1"],
            dnsMode="ad", delegationPolicy="allow-insecure", idleTimeout=60,
            maxPending=5, requestTimeout=1, queueLimit=7)
        self.assertEqual(
            ("tcp:5270", frozenset(["new.tld"]), (("127.0.0.1", 53),), "ad",
             "allow-insecure", 60.0, 5, 1.0, 7),
            (changed.listen, changed.domains, changed.resolvers,
             changed.dnsMode, changed.delegationPolicy, changed.idleTimeout,
             changed.maxPending, changed.requestTimeout, changed.queueLimit))
        self.assertEqual(self.configuration.serverNames, changed.serverNames)
        self.assertEqual(frozenset(["sender.tld", "other.tld"]),
                         self.configuration.domains)

    def test_nothing(self):
        """
        Without changes, the result equals the original.
        """
        self.assertEqual(self.configuration, self.configuration.override())

    def test_badValue(self):
        """
        A wrong value names the key it overrides.
        """
        error = self.assertRaises(ConfigurationError,
                                  self.configuration.override,
                                  domains=["a..b"])
        self.assertEqual(
            f"{self.path}: [server] domains (overridden): 'a..b' is not a "
            f"valid domain", str(error))

    def test_together(self):
        """
        The rules that tie settings together are checked on the result.
        """
        error = self.assertRaises(ConfigurationError,
                                  self.configuration.override, dnsMode="ad")
        self.assertIn("[dns] resolvers: mode 'ad' trusts the AD bit",
                      str(error))
        self.configuration.override(dnsMode="ad", resolvers=["::1"])
        self.configuration.override(dnsMode="ad", trustedPath=True)

    def test_notOverridable(self):
        """
        Settings that name files cannot be overridden.
        """
        self.assertRaises(TypeError, self.configuration.override,
                          serverNames=())
        self.assertRaises(TypeError, self.configuration.override, nonsense=1)


class ParseAddressTests(SynchronousTestCase):
    """
    L{config.parseAddress}.
    """

    def test_forms(self):
        """
        IPv4 and IPv6 addresses with and without ports.
        """
        for text, expected in [
            ("127.0.0.1", ("127.0.0.1", 53)),
            ("127.0.0.1:5300", ("127.0.0.1", 5300)),
            ("::1", ("::1", 53)),
            ("0:0::1", ("::1", 53)),
            ("[::1]", ("::1", 53)),
            ("[::1]:5300", ("::1", 5300)),
        ]:
            self.assertEqual(expected, config.parseAddress(text, 53), text)

    def test_defaultPortNone(self):
        """
        The default port may be L{None}.
        """
        self.assertEqual(("192.0.2.1", None),
                         config.parseAddress("192.0.2.1", None))

    def test_bad(self):
        """
        Anything else is a L{ValueError}.
        """
        for bad in ["", "host", "1.2.3.4:", "1.2.3.4:65536", "[::1", "[]:53",
                    "1.2.3.4:+53", "1.2.3.4: 53", "1.2.3.4:٥٣"]:
            self.assertRaises(ValueError, config.parseAddress, bad, 53)


class ParseConfigurationTests(SynchronousTestCase):
    """
    L{parseConfiguration} reads text.
    """

    def test_text(self):
        """
        The text is read as if it were the file at C{path}.
        """
        files = ConfigurationFiles(self)
        c = parseConfiguration(MINIMAL, files.path("dna.toml"))
        self.assertEqual(files.path("ca.pem"), c.caPath)


class InteropSettingsTests(SynchronousTestCase):
    """
    The settings for servers without DNA and for local components.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)
        CA.issue("sender.tld", dnsNames=["sender.tld"]).writeTo(self.files.directory, "sender")

    def test_domainCertificatesAndSecret(self):
        """
        C{[[server.domain-certificates]]} and C{[server] dialback-secret}
        are read and checked like server names.
        """
        text = _replaced(
            MINIMAL, 'ca = "ca.pem"\n',
            'ca = "ca.pem"\ndialback-secret = "0123456789abcdef0123"\n',
        ) + (
            '\n[[server.domain-certificates]]\nname = "sender.tld"\n'
            'certificate = "sender.pem"\nkey = "sender.key"\n'
        )
        c = self.files.load(text)
        self.assertEqual(["sender.tld"], [d.name for d in c.domainCertificates])
        self.assertEqual("0123456789abcdef0123", c.dialbackSecret)

    def test_domainCertificateForForeignDomain(self):
        """
        A domain certificate for a domain not hosted here is refused.
        """
        text = MINIMAL.replace('domains = ["sender.tld"]', 'domains = ["other.tld"]') + (
            '\n[[server.domain-certificates]]\nname = "sender.tld"\n'
            'certificate = "sender.pem"\nkey = "sender.key"\n'
        )
        e = self.assertRaises(ConfigurationError, self.files.load, text)
        self.assertIn("[[server.domain-certificates]] #1 name: sender.tld is not one of [server] domains", str(e))

    def test_domainCertificateMustCover(self):
        """
        A domain certificate must cover its domain.
        """
        text = MINIMAL.replace('domains = ["sender.tld"]', 'domains = ["sender.tld", "other.tld"]') + (
            '\n[[server.domain-certificates]]\nname = "other.tld"\n'
            'certificate = "sender.pem"\nkey = "sender.key"\n'
        )
        e = self.assertRaises(ConfigurationError, self.files.load, text)
        self.assertIn("does not cover other.tld", str(e))

    def test_shortSecret(self):
        """
        A short dialback secret is refused.
        """
        text = _replaced(MINIMAL, 'ca = "ca.pem"\n', 'ca = "ca.pem"\ndialback-secret = "short"\n')
        e = self.assertRaises(ConfigurationError, self.files.load, text)
        self.assertIn("[server] dialback-secret: too short", str(e))

    def test_components(self):
        """
        C{[components]} needs a secret with its listener.
        """
        c = self.files.load(MINIMAL + '\n[components]\nlisten = "tcp:5347"\nsecret = "x"\n')
        self.assertEqual(("tcp:5347", "x"), (c.componentListen, c.componentSecret))
        e = self.assertRaises(
            ConfigurationError, self.files.load, MINIMAL + '\n[components]\nlisten = "tcp:5347"\n'
        )
        self.assertIn("[components] secret: missing", str(e))


class LimitsTests(SynchronousTestCase):
    """
    The C{[limits]} section.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)

    def test_defaults(self):
        """
        Without C{[limits]}, every limit has the default of the module that
        enforces it.
        """
        from dna.app.limits import Limits

        c = self.files.load(MINIMAL)
        self.assertEqual(Limits(), c.limits)
        self.assertEqual(
            (30.0, 8, 256, 511, 512 * 1024, 16 * 1024, 64, 5000, 8 * 1024 * 1024, 30.0, 10000,
             256 * 1024),
            attr.astuple(c.limits),
        )

    def test_values(self):
        """
        Every key is read.
        """
        c = self.files.load(MINIMAL + (
            "\n[limits]\nauth-timeout = 5\nmax-unauthenticated-per-address = 2\n"
            "max-unauthenticated = 20\nlisten-backlog = 1024\nmax-stanza-size = 131072\n"
            "max-stanza-size-unauthenticated = 8192\nmax-depth = 32\nmax-unacked = 100\n"
            "max-unacked-bytes = 65536\nack-timeout = 10\nmax-waiting = 500\n"
            "high-water = 32768\n"))
        self.assertEqual(
            (5.0, 2, 20, 1024, 131072, 8192, 32, 100, 65536, 10.0, 500, 32768),
            attr.astuple(c.limits))

    def test_revalidationGrace(self):
        """
        C{revalidation-grace} is read into the configuration (not into
        L{Limits}), zero by default, and reaches the service's
        re-validation.
        """
        from dna.app.service import DNAService

        self.assertEqual(0.0, self.files.load(MINIMAL).revalidationGrace)
        c = self.files.load(MINIMAL + "\n[limits]\nrevalidation-grace = 30\n")
        self.assertEqual(30.0, c.revalidationGrace)
        service = DNAService.fromConfiguration(c, deliver=lambda stanza: None,
                                               reactor=MemoryReactorClock())
        self.assertEqual(30.0, service.federation.revalidator.grace)

    def test_errors(self):
        """
        Wrong values are refused with their key; a smaller limit after
        authentication than before is refused.
        """
        for text, message in [
            ("max-depth = 0", "[limits] max-depth: expected a positive integer, got integer 0"),
            ("auth-timeout = \"30\"", "[limits] auth-timeout: expected a positive number"),
            ("max-stanza-size = 1000", "max-stanza-size-unauthenticated: 16384 is more than"),
            ("max-stanzasize = 1", "[limits] max-stanzasize: unknown key (did you mean "
                                   "'max-stanza-size'?)"),
        ]:
            e = self.assertRaises(
                ConfigurationError, self.files.load, MINIMAL + "\n[limits]\n" + text + "\n")
            self.assertIn(message, str(e))

    def test_keyInWrongSection(self):
        """
        A limit in C{[server]} is pointed to C{[limits]}.
        """
        e = self.assertRaises(
            ConfigurationError, self.files.load,
            _replaced(MINIMAL, 'ca = "ca.pem"\n', 'ca = "ca.pem"\nmax-depth = 3\n'))
        self.assertIn("(it belongs in [limits])", str(e))
