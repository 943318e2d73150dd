"""
Tests for L{dna.tap} and the C{twistd} dropin.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dna import tap


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


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{tap.Options}.
    """

    def test_domains(self):
        """
        C{--domain} is repeatable and normalises each domain.
        """
        options = tap.Options()
        options.parseOptions(["--domain", "Sender.TLD", "--domain", "other.tld."])
        self.assertEqual({"sender.tld", "other.tld"}, options["domains"])

    def test_defaults(self):
        """
        The limits default to the ones the protocol modules define.
        """
        options = tap.Options()
        options.parseOptions(["--domain", "a.tld"])
        self.assertEqual(100, options["max-pending"])
        self.assertEqual(30.0, options["request-timeout"])

    def test_noDomain(self):
        """
        Without a hosted domain the options are refused with a message that
        says what to add.
        """
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, [])
        self.assertIn("--domain", str(error))

    def test_badDomain(self):
        """
        An invalid domain is refused naming it.
        """
        error = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions, ["--domain", "a..b"]
        )
        self.assertIn("a..b", str(error))

    def test_badLimit(self):
        """
        A limit that is not a positive number is refused.
        """
        for bad in ("0", "-1", "many"):
            self.assertRaises(
                usage.UsageError,
                tap.Options().parseOptions,
                ["--domain", "a.tld", "--max-pending", bad],
            )

    def test_makeService(self):
        """
        L{tap.makeService} returns a named service carrying the options.
        """
        options = tap.Options()
        options.parseOptions(["--domain", "a.tld"])
        service = tap.makeService(options)
        self.assertEqual("dna", service.name)
        self.assertIs(options, service.options)
