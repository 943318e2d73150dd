"""
Tests for L{dna.core.names}.
"""

from twisted.trial.unittest import SynchronousTestCase

from dna.core.names import domainOf, normalizeDomain
from dna.error import InvalidAddress


class DomainOfTests(SynchronousTestCase):
    """
    Tests for L{domainOf}.
    """

    def test_parts(self):
        """
        The domain of a bare, full or domain-only JID, lower-cased.
        """
        self.assertEqual("sender.tld", domainOf("romeo@Sender.TLD/orchard@night"))
        self.assertEqual("sender.tld", domainOf("sender.tld"))
        self.assertEqual("sender.tld", domainOf("sender.tld/resource"))

    def test_aLabels(self):
        """
        Internationalised domains come out in A-labels, whichever form came
        in.
        """
        self.assertEqual("xn--caf-dma.tld", domainOf("x@café.tld"))
        self.assertEqual("xn--caf-dma.tld", domainOf("x@xn--caf-dma.tld"))

    def test_invalid(self):
        """
        Malformed addresses raise L{InvalidAddress}, including those Twisted's
        parser lets through or crashes on.
        """
        for bad in ["", None, "@sender.tld", "romeo@", "sender.tld/", "a b.tld",
                    "a..b", ".", "x@" + "a" * 64 + ".tld", "a." * 600 + "tld", 42]:
            self.assertRaises(InvalidAddress, domainOf, bad)


class NormalizeDomainTests(SynchronousTestCase):
    """
    Tests for L{normalizeDomain}.
    """

    def test_trailingDot(self):
        """
        A trailing dot and case do not matter.
        """
        self.assertEqual("sender.tld", normalizeDomain("Sender.TLD."))

    def test_notADomain(self):
        """
        A JID with a localpart or resource is not a domain.
        """
        for bad in ["romeo@sender.tld", "sender.tld/r", "", None, "a..b"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)
