"""
Tests for L{dna.app.tap} and the C{twistd} dropin.
"""

import configparser
import os

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dna.app import tap
from dna.app.config import Configuration, loadConfiguration
from dna.error import ConfigurationError
from tests.unit.test_config import MINIMAL, ConfigurationFiles

#: The directory holding setup.cfg, dna/ and twisted/plugins/.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PluginTests(SynchronousTestCase):
    """
    The dropin in C{twisted/plugins} makes C{twistd dna}.
    """

    def test_found(self):
        """
        L{getPlugins} finds a service maker whose tapname is C{dna} and which
        provides L{IServiceMaker}.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "dna"]
        self.assertEqual(1, len(makers))
        self.assertTrue(verifyObject(IServiceMaker, makers[0]))
        self.assertIs(tap.Options, makers[0].options)

    def test_packaging(self):
        """
        The dropin is a module of Twisted's C{twisted.plugins} package, not a
        package of its own, and setup.cfg maps the packages to the project
        directory itself, so that an editable install puts that directory on
        C{sys.path} (where C{twisted.plugins.__path__} looks for dropins)
        rather than installing an import hook that Twisted's plugin search
        does not see.
        """
        self.assertFalse(os.path.exists(os.path.join(CHECKOUT, "twisted", "__init__.py")))
        self.assertFalse(
            os.path.exists(os.path.join(CHECKOUT, "twisted", "plugins", "__init__.py")))
        parser = configparser.ConfigParser()
        parser.read(os.path.join(CHECKOUT, "setup.cfg"))
        options = parser["options"]
        packages = options["packages"].split()
        self.assertIn("twisted.plugins", packages)
        mapping = [line.split("=") for line in options["package_dir"].splitlines() if line.strip()]
        self.assertEqual([["", "."]], [[k.strip(), v.strip()] for k, v in mapping])

    def test_everyPackageReleased(self):
        """
        setup.cfg lists every package of C{dna}, so that none is left out of
        an install.
        """
        parser = configparser.ConfigParser()
        parser.read(os.path.join(CHECKOUT, "setup.cfg"))
        listed = set(parser["options"]["packages"].split())
        found = {
            os.path.relpath(directory, CHECKOUT).replace(os.sep, ".")
            for directory, _, files in os.walk(os.path.join(CHECKOUT, "dna"))
            if "__init__.py" in files
        }
        self.assertEqual(set(), found - listed)

    def test_twistdPrintsOneLine(self):
        """
        C{twistd dna --config FILE} with a mistake in the file fails with the
        one line of the L{ConfigurationError}.
        """
        files = ConfigurationFiles(self)
        path = files.write("dna.toml", MINIMAL + "[dns]\nmode = \"AD\"\n")
        error = self.assertRaises(usage.UsageError,
                                  ServerOptions().parseOptions,
                                  ["dna", "--config", path])
        self.assertEqual(
            f"{path}: [dns] mode: unknown word 'AD' (expected ad or validate)",
            str(error))


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{tap.Options}.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)
        self.path = self.files.write("dna.toml", MINIMAL)

    def parse(self, *arguments):
        """
        Parse C{--config} for the test's file and C{arguments}.

        @return: The options.
        @rtype: L{tap.Options}
        """
        options = tap.Options()
        options.parseOptions(["--config", self.path] + list(arguments))
        return options

    def assertUsageError(self, arguments, message):
        """
        Parsing C{--config} for the test's file and C{arguments} fails with
        C{message}.
        """
        error = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions,
            ["--config", self.path] + list(arguments))
        self.assertEqual(message, str(error))

    def test_configuration(self):
        """
        With only C{--config}, the configuration is the file's.
        """
        options = self.parse()
        self.assertIsInstance(options["configuration"], Configuration)
        self.assertEqual(loadConfiguration(self.path), options["configuration"])

    def test_noConfiguration(self):
        """
        Without C{--config} the options are refused with a message that says
        what to add.
        """
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                                  ["--domain", "a.tld"])
        self.assertEqual(
            "Name the configuration file with --config (see "
            "docs/configuration.rst and examples/dna.toml).", str(error))

    def test_badConfiguration(self):
        """
        A L{ConfigurationError} becomes a L{usage.UsageError} with the same
        one line.
        """
        self.files.write("dna.toml", MINIMAL.replace('ca = "ca.pem"',
                                                     'ca = "nothere.pem"'))
        self.assertUsageError(
            [], f"{self.path}: [server] ca: no such file "
                f"{self.files.path('nothere.pem')}")
        error = self.assertRaises(ConfigurationError, loadConfiguration,
                                  self.path)
        self.assertUsageError([], str(error))

    def test_domains(self):
        """
        C{--domain} is repeatable, normalises each domain and replaces the
        file's domains.
        """
        options = self.parse("--domain", "Sender.TLD", "--domain", "other.tld.")
        self.assertEqual({"sender.tld", "other.tld"}, options["domains"])
        self.assertEqual(frozenset(["sender.tld", "other.tld"]),
                         options["configuration"].domains)

    def test_badDomain(self):
        """
        An invalid domain is refused naming it.
        """
        self.assertUsageError(["--domain", "a..b"],
                              "--domain: 'a..b' is not a valid domain")

    def test_resolvers(self):
        """
        C{--resolver} is repeatable, keeps the order and replaces the file's
        resolvers.
        """
        options = self.parse("--resolver", "[::1]:5300", "--resolver",
                             "127.0.0.1")
        self.assertEqual((("::1", 5300), ("127.0.0.1", 53)),
                         options["configuration"].resolvers)

    def test_badResolver(self):
        """
        A resolver that is not an IP address is refused naming it.
        """
        self.assertUsageError(
            ["--resolver", "dns.example"],
            "--resolver: 'dns.example' is not an IP address with an optional "
            "port, such as 127.0.0.1:53 or [::1]:53")

    def test_together(self):
        """
        Overrides are checked together with the file: mode C{ad} with a
        resolver off loopback is refused.
        """
        error = self.assertRaises(
            usage.UsageError, self.parse, "--resolver", "192.0.2.53")
        self.assertTrue(str(error).startswith(
            f"{self.path}: [dns] resolvers: mode 'ad' trusts the AD bit"))
        options = self.parse("--resolver", "192.0.2.53", "--mode", "validate")
        self.assertEqual("validate", options["configuration"].dnsMode)

    def test_modeAndPolicy(self):
        """
        C{--mode} and C{--policy} override the file.
        """
        configuration = self.parse(
            "--mode", "validate", "--policy", "allow-insecure")["configuration"]
        self.assertEqual("validate", configuration.dnsMode)
        self.assertEqual("allow-insecure", configuration.delegationPolicy)

    def test_badWords(self):
        """
        A mode or policy that is not one is refused listing the valid ones.
        """
        self.assertUsageError(
            ["--mode", "dnssec"],
            "--mode: unknown word 'dnssec' (expected ad or validate)")
        self.assertUsageError(
            ["--policy", "allow-unsigned"],
            "--policy: unknown word 'allow-unsigned' (expected require-secure "
            "or allow-insecure)")

    def test_listen(self):
        """
        C{--listen} overrides the file's listener, and must parse.
        """
        self.assertEqual(
            "tcp:5270:interface=127.0.0.2",
            self.parse("--listen", "tcp:5270:interface=127.0.0.2")["configuration"].listen)
        self.assertUsageError(
            ["--listen", "tcp:nope"],
            "--listen: 'tcp:nope' is not a Twisted endpoint description such as "
            "'tcp:5269:interface=127.0.0.1' (invalid literal for int() with "
            "base 10: 'nope')")

    def test_limits(self):
        """
        The timeouts and limits override the file's.
        """
        configuration = self.parse(
            "--idle-timeout", "5", "--max-pending", "3", "--request-timeout",
            "2.5", "--queue-limit", "9")["configuration"]
        self.assertEqual(
            (5.0, 3, 2.5, 9),
            (configuration.idleTimeout, configuration.maxPending,
             configuration.requestTimeout, configuration.queueLimit))

    def test_defaults(self):
        """
        Without options, the limits are the file's, here its defaults: those
        the protocol modules define.
        """
        configuration = self.parse()["configuration"]
        self.assertEqual(100, configuration.maxPending)
        self.assertEqual(30.0, configuration.requestTimeout)

    def test_badLimit(self):
        """
        A limit that is not a positive number is refused.
        """
        for bad in ("0", "-1", "many"):
            self.assertRaises(
                usage.UsageError,
                tap.Options().parseOptions,
                ["--config", self.path, "--max-pending", bad],
            )

    def test_makeService(self):
        """
        L{tap.makeService} returns a named service carrying the
        configuration.
        """
        options = self.parse()
        service = tap.makeService(options)
        self.assertEqual("dna", service.name)
        self.assertIs(options["configuration"], service.configuration)


class MakeServiceTests(SynchronousTestCase):
    """
    Tests for what L{tap.makeService} builds.
    """

    def setUp(self):
        self.files = ConfigurationFiles(self)
        self.path = self.files.write(
            "dna.toml",
            MINIMAL + '\n[components]\nlisten = "tcp:5347:interface=127.0.0.1"\nsecret = "s3cret"\n',
        )

    def test_s2sService(self):
        """
        The root holds the DNA S2S service, default route of the router,
        with the configured hosted domains.
        """
        options = tap.Options()
        options.parseOptions(["--config", self.path])
        root = tap.makeService(options)
        self.assertIn(root.s2s, list(root))
        self.assertEqual(options["configuration"].domains, root.s2s.federation.hostedDomains)
        self.assertIn(None, root.router.routes)

    def test_componentListener(self):
        """
        With C{[components] listen}, a listener for XEP-0114 components is
        part of the root service.
        """
        options = tap.Options()
        options.parseOptions(["--config", self.path])
        root = tap.makeService(options)
        from twisted.application.internet import StreamServerEndpointService

        [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
        self.assertEqual(5347, listener.endpoint._port)
        self.assertEqual("127.0.0.1", listener.endpoint._interface)

    def test_componentListenerBacklog(self):
        """
        The components' listener has the default backlog too.
        """
        options = tap.Options()
        options.parseOptions(["--config", self.path])
        root = tap.makeService(options)
        from twisted.application.internet import StreamServerEndpointService

        [listener] = [c for c in root if isinstance(c, StreamServerEndpointService)]
        self.assertEqual(511, listener.endpoint._backlog)

    def test_heapFrozenLast(self):
        """
        The root's last child is a L{tap.HeapFreeze}: it starts after the
        S2S service and the listeners.
        """
        options = tap.Options()
        options.parseOptions(["--config", self.path])
        root = tap.makeService(options)
        self.assertIsInstance(list(root)[-1], tap.HeapFreeze)

    def test_heapFreezeOnStart(self):
        """
        L{tap.HeapFreeze} freezes the heap when it starts, not before.
        """
        calls = []
        freeze = tap.HeapFreeze(freeze=lambda: calls.append("freeze"))
        self.assertEqual([], calls)
        freeze.startService()
        self.assertEqual(["freeze"], calls)
        self.assertTrue(freeze.running)

    def test_quietRouter(self):
        """
        The router logs no stanza: it is a L{dna.app.router.QuietRouter},
        and the service delivers through L{dna.app.router.route}.
        """
        from dna.app.router import QuietRouter

        options = tap.Options()
        options.parseOptions(["--config", self.path])
        root = tap.makeService(options)
        self.assertIsInstance(root.router, QuietRouter)
        self.assertEqual((root.router,), root.s2s._deliver.args)

    def test_limitsReachService(self):
        """
        The configuration's C{[limits]} reach the service, its listener's
        streams and its federation.
        """
        path = self.files.write(
            "limits.toml", MINIMAL + "\n[limits]\nmax-stanza-size = 131072\nmax-waiting = 7\n")
        options = tap.Options()
        options.parseOptions(["--config", path])
        root = tap.makeService(options)
        self.assertEqual(131072, root.s2s.limits.maxStanzaSize)
        self.assertEqual(7, root.s2s.federation._waitingLimit)
        xs = root.s2s.factory.buildProtocol(None)
        self.assertEqual(131072, xs.maxStanzaSize)
        # End it: the deadline's timer is on the global reactor.
        from tests.unit.streams import close

        close(xs)
