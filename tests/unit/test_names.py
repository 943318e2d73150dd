"""
Tests for L{dna.core.names}.
"""

from twisted.trial.unittest import SynchronousTestCase

from dna.core.names import (
    _normalizeDomain,
    coversServerName,
    domainOf,
    normalizeDomain,
    normalizeServerName,
    normalizeServerPattern,
    sameDomain,
    splitJID,
)
from dna.error import InvalidAddress

#: Devanagari KA, VIRAMA, SSA: a joiner after the virama passes CONTEXTJ.
_KSSA = "\u0915\u094d\u0937"

#: Persian "mi-khaham": a ZWNJ between two joining letters passes CONTEXTJ.
_PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"


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

    def test_remembered(self):
        """
        Addresses asked for again give the same domain, and an invalid one is
        refused again; what is remembered is bounded.
        """
        import functools

        from dna.core import names

        remembered = functools.lru_cache(maxsize=3)(names._splitJIDText)
        self.patch(names, "_splitJID", remembered)
        for _ in range(2):
            for n in range(5):
                self.assertEqual("t%d.tld" % (n,), domainOf("u@T%d.tld/r" % (n,)))
            self.assertRaises(InvalidAddress, domainOf, "romeo@")
            self.assertLessEqual(remembered.cache_info().currsize, 3)

    def test_longAddressesNotRemembered(self):
        """
        Long addresses are answered but not remembered: a peer sending
        distinct ones of thousands of octets cannot fill the memory with
        them.
        """
        from dna.core import names

        names._splitJID.cache_clear()
        address = "romeo@sender.tld/" + "r" * 1000
        self.assertEqual("sender.tld", domainOf(address))
        self.assertEqual(("romeo", "sender.tld", "r" * 1000), splitJID(address))
        self.assertEqual(0, names._splitJID.cache_info().currsize)
        self.assertEqual("sender.tld", domainOf("romeo@sender.tld/r"))
        self.assertEqual(1, names._splitJID.cache_info().currsize)

    def test_sameAsNormalizeDomain(self):
        """
        The domainpart of a JID is the domain L{normalizeDomain} gives for it
        alone, in every spelling.
        """
        for domain in ["Sender.TLD.", "faß.example", "ＥＸＡＭＰＬＥ．ｃｏｍ",
                       "xn--fa-hia.example", _KSSA[:2] + "\u200c" + _KSSA[2:]]:
            for address in [domain, "romeo@" + domain, domain + "/r",
                            "romeo@" + domain + "/r@s/t"]:
                self.assertEqual(normalizeDomain(domain), domainOf(address))

    def test_sharpS(self):
        """
        The owner of C{fass.example} does not get C{faß.example}: IDNA2008
        keeps the sharp s (IDNA2003's nameprep made it C{ss}).
        """
        self.assertEqual("xn--fa-hia.example", domainOf("ceo@faß.example"))
        self.assertEqual("xn--fa-hia.example", domainOf("ceo@FAẞ.example/r"))
        self.assertEqual("fass.example", domainOf("bob@FASS.example"))

    def test_domainRefusals(self):
        """
        A JID whose domainpart L{normalizeDomain} refuses is refused, and the
        error names the whole address.
        """
        for bad in ["romeo@a\u200db.example", "romeo@[::1]/r", "romeo@127.0.0.1",
                    "romeo@_xmpp-server._tcp.example", "romeo@xn--.example",
                    "romeo@a@b.example"]:
            error = self.assertRaises(InvalidAddress, domainOf, bad)
            self.assertEqual(bad, error.address)
            self.assertIsNot(None, error.__cause__)


class SplitJIDTests(SynchronousTestCase):
    """
    Tests for L{splitJID}.
    """

    def test_parts(self):
        """
        The first C{'/'} ends the bare JID; C{'@'} and C{'/'} may appear in
        the resourcepart; absent parts are L{None}.
        """
        self.assertEqual(("romeo", "sender.tld", "orchard@night/x"),
                         splitJID("Romeo@Sender.TLD/orchard@night/x"))
        self.assertEqual((None, "sender.tld", None), splitJID("sender.tld."))
        self.assertEqual((None, "sender.tld", "r"), splitJID("sender.tld/r"))
        self.assertEqual(("romeo", "sender.tld", None), splitJID("romeo@sender.tld"))

    def test_localpart(self):
        """
        Localparts are case-folded by nodeprep, 1 to 1023 octets, without the
        characters RFC 7622 section 3.3.1 forbids.
        """
        self.assertEqual("ω", splitJID("Ω@sender.tld")[0])
        self.assertEqual("é" * 511, splitJID("é" * 511 + "@sender.tld")[0])
        for bad in ['a"b', "a&b", "a'b", "a:b", "a<b", "a>b", "a@b",
                    "a b", "\u00ad", "é" * 512, "a" * 1024, "a\x00b"]:
            self.assertRaises(InvalidAddress, splitJID, bad + "@sender.tld")

    def test_resourcepart(self):
        """
        Resourceparts are 1 to 1023 octets after resourceprep, with no
        control characters.
        """
        self.assertEqual("Orchard Night", splitJID("sender.tld/Orchard Night")[2])
        self.assertEqual("é" * 511, splitJID("sender.tld/" + "é" * 511)[2])
        for bad in ["", "\u00ad", "é" * 512, "a" * 1024, "a\x00b", "a\u200eb"]:
            self.assertRaises(InvalidAddress, splitJID, "romeo@sender.tld/" + bad)

    def test_notText(self):
        """
        Only text is a JID; an unhashable value is refused too, not passed to
        the cache.
        """
        for bad in [None, b"sender.tld", ["sender.tld"], 42]:
            self.assertRaises(InvalidAddress, splitJID, bad)


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

    def test_oneTrailingDot(self):
        """
        One trailing dot, an ASCII one or another IDNA dot, is dropped; a
        second makes an empty label.
        """
        for name in ["example.com.", "example.com\u3002", "example.com\uff0e"]:
            self.assertEqual("example.com", normalizeDomain(name))
        for bad in [".", "..", "example.com..", "example.com.\u3002", ".example.com"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_sharpS(self):
        """
        C{faß.example} is not C{fass.example}; the capital sharp s maps to
        the small one.
        """
        self.assertEqual("xn--fa-hia.example", normalizeDomain("faß.example"))
        self.assertEqual("xn--fa-hia.example", normalizeDomain("FAẞ.EXAMPLE"))
        self.assertNotEqual(normalizeDomain("fass.example"),
                            normalizeDomain("faß.example"))

    def test_finalSigma(self):
        """
        The final sigma and the sigma make two names; the capital sigma maps
        to the sigma.
        """
        final = normalizeDomain("βόλος.com")
        medial = normalizeDomain("βόλοσ.com")
        self.assertEqual("xn--nxasmm1c.com", final)
        self.assertEqual("xn--nxasmq6b.com", medial)
        self.assertEqual(medial, normalizeDomain("ΒΌΛΟΣ.com"))

    def test_joinersRefused(self):
        """
        A zero-width joiner or non-joiner outside the contexts CONTEXTJ
        allows is refused, not dropped.
        """
        for bad in ["a\u200db.example", "a\u200cb.example", "\u200cexample.com",
                    "example\u200d.com", _KSSA[0] + "\u200d" + _KSSA[2:] + ".example"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_joinersKept(self):
        """
        A joiner CONTEXTJ allows is part of the name: the name with it and
        the name without it are two names.
        """
        withoutJoiner = normalizeDomain(_KSSA + ".example")
        withZWNJ = normalizeDomain(_KSSA[:2] + "\u200c" + _KSSA[2:] + ".example")
        withZWJ = normalizeDomain(_KSSA[:2] + "\u200d" + _KSSA[2:] + ".example")
        self.assertEqual("xn--11b2ezcs70k.example", withZWNJ)
        self.assertEqual("xn--11b2ezcw70k.example", withZWJ)
        self.assertEqual(3, len({withoutJoiner, withZWNJ, withZWJ}))
        self.assertNotEqual(normalizeDomain(_PERSIAN.replace("\u200c", "") + ".example"),
                            normalizeDomain(_PERSIAN + ".example"))

    def test_uts46Mapping(self):
        """
        Upper case and full-width forms map to the same name (UTS #46), and
        so do the ideographic dots.
        """
        for name in ["EXAMPLE.COM", "ＥＸＡＭＰＬＥ．ｃｏｍ", "example\u3002com",
                     "example\uff61com", "Example.Com."]:
            self.assertEqual("example.com", normalizeDomain(name))
        self.assertEqual("xn--bcher-kva.example", normalizeDomain("BÜCHER.example"))
        self.assertEqual("xn--bcher-kva.example", normalizeDomain("ＢÜＣＨＥＲ.example"))

    def test_aLabelsRoundTrip(self):
        """
        An A-label in any case stands for its U-label.
        """
        for name in ["xn--fa-hia.example", "XN--FA-HIA.EXAMPLE", "faß.example",
                     "Xn--Fa-Hia.example."]:
            self.assertEqual("xn--fa-hia.example", normalizeDomain(name))

    def test_malformedALabels(self):
        """
        An C{xn--} label that does not decode, or decodes to something that
        does not encode back to it, is refused.
        """
        for bad in ["xn--.example", "xn---bbk.example", "xn--abc-.example",
                    "xn--zz-ooooooo.example", "xn--ls8h-.example",
                    # Decodes to 'É' (upper case: DISALLOWED in IDNA2008).
                    "xn--dca.example",
                    # Decodes to 'a' 'ZWJ' 'b': CONTEXTJ fails.
                    "xn--ab-m1t.example"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_hyphens(self):
        """
        No label starts or ends with a hyphen, or has two in the third and
        fourth place unless it is an A-label.
        """
        self.assertEqual("a-b.exa--mple", normalizeDomain("A-B.exa--mple"))
        for bad in ["-a.example", "a-.example", "-.example", "ab--c.example",
                    "é-.example", "-é.example"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_lengthLimits(self):
        """
        Labels hold 1 to 63 octets and the name 253, counted in A-labels.
        """
        label = "a" * 63
        self.assertEqual(label + ".example", normalizeDomain(label + ".Example"))
        name = ".".join([label] * 3 + ["b" * 61])
        self.assertEqual(253, len(normalizeDomain(name)))
        for bad in ["a" * 64 + ".example", name + "b", name + ".b",
                    # 59 characters, 64 octets in an A-label.
                    "ü" + "a" * 58 + ".example",
                    "a" * 2000]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_notDomains(self):
        """
        IP literals, service names with underscores, wildcards and addresses
        are not domains.
        """
        for bad in ["[::1]", "::1", "127.0.0.1", "192.0.2.1.", "10.0.0.010", "123",
                    "_xmpp-server._tcp.example", "a_b.example", "*.example",
                    "a b.example", "a/b", "a@b", "a\x00b", "a!b.example",
                    "ａ！b.example", "\U0001f600.example"]:
            self.assertRaises(InvalidAddress, normalizeDomain, bad)

    def test_numbersInNames(self):
        """
        A label of digits is fine anywhere but last.
        """
        self.assertEqual("127.0.0.1.example", normalizeDomain("127.0.0.1.example"))
        self.assertEqual("0x1", normalizeDomain("0x1"))

    def test_bidiAcrossLabels(self):
        """
        In a name with a right-to-left label, every label follows the Bidi
        rule (RFC 5893 section 1.4): a label starting with a digit is refused
        there, and allowed elsewhere.
        """
        hebrew = "\u05d0\u05d1"
        self.assertEqual("xn--4dbc.example", normalizeDomain(hebrew + ".example"))
        self.assertEqual("1abc.example", normalizeDomain("1abc.example"))
        self.assertRaises(InvalidAddress, normalizeDomain, "1abc." + hebrew)

    def test_cause(self):
        """
        The error carries the reason as its cause, for configuration
        messages.
        """
        error = self.assertRaises(InvalidAddress, normalizeDomain, "a\u200db.example")
        self.assertIn("U+200D", str(error.__cause__))
        error = self.assertRaises(InvalidAddress, normalizeDomain, "192.0.2.1")
        self.assertIn("IP address", str(error.__cause__))

    def test_failuresNotCached(self):
        """
        Refused names do not enter the cache.
        """
        before = _normalizeDomain.cache_info().currsize
        for i in range(10):
            self.assertRaises(InvalidAddress, normalizeDomain, f"bad_{i}.example")
        self.assertEqual(before, _normalizeDomain.cache_info().currsize)


class SameDomainTests(SynchronousTestCase):
    """
    Tests for L{sameDomain}.
    """

    def test_spellings(self):
        """
        Spellings of one name compare equal; different names do not.
        """
        self.assertTrue(sameDomain("faß.example.", "XN--FA-HIA.example"))
        self.assertTrue(sameDomain("ＥＸＡＭＰＬＥ．ｃｏｍ", "example.com."))
        self.assertFalse(sameDomain("faß.example", "fass.example"))
        self.assertFalse(sameDomain("βόλος.com", "βόλοσ.com"))

    def test_invalid(self):
        """
        An invalid name is refused, not taken as different.
        """
        self.assertRaises(InvalidAddress, sameDomain, "example.com", "a\u200db.example")
        self.assertRaises(InvalidAddress, sameDomain, None, "example.com")


class NormalizeServerNameTests(SynchronousTestCase):
    """
    Tests for L{normalizeServerName}.
    """

    def test_lowercaseALabels(self):
        """
        Names come out in lowercase A-labels without a trailing dot, as
        L{normalizeDomain} gives them.
        """
        self.assertEqual("xmpp1.example.net", normalizeServerName("XMPP1.Example.NET."))
        self.assertEqual("xn--bcher-kva.example", normalizeServerName("Bücher.example"))
        self.assertEqual("xn--fa-hia.example", normalizeServerName("faß.example"))

    def test_refused(self):
        """
        Empty names, IP addresses, empty labels, wildcards, service names and
        other characters are not server names.
        """
        for name in ["", ".", "127.0.0.1", "::1", "a..example", "a b.example",
                     "user@example.com", "*.example.com", "_xmpp-server.example",
                     b"example.com"]:
            self.assertRaises(InvalidAddress, normalizeServerName, name)


class NormalizeServerPatternTests(SynchronousTestCase):
    """
    Tests for L{normalizeServerPattern}: names certificates present,
    wildcards per RFC 6125 section 6.4.3.
    """

    def test_names(self):
        """
        A name without a wildcard is a server name.
        """
        self.assertEqual("xn--bcher-kva.example", normalizeServerPattern("Bücher.Example."))

    def test_wildcard(self):
        """
        C{'*'} as the whole left-most label stays; the rest is normalised.
        """
        self.assertEqual("*.xn--bcher-kva.example", normalizeServerPattern("*.Bücher.example."))
        self.assertEqual("*.provider.example", normalizeServerPattern("*.PROVIDER.example"))

    def test_refused(self):
        """
        A wildcard over a top-level domain, a partial-label wildcard, a
        wildcard right of the left-most label, two of them, and anything
        L{normalizeDomain} refuses after C{'*.'}, are refused with the reason
        as the cause.
        """
        for bad in ["*", "*.", "*.example", "*.example.", "f*o.example.net", "*o.example.net",
                    "xn--*.example.net", "a.*.example.net", "*.*.example.net",
                    "**.example.net", "*.a..example", "*.example.net..", "*._tcp.example",
                    "*.a\u200db.example", None]:
            error = self.assertRaises(InvalidAddress, normalizeServerPattern, bad)
            self.assertEqual(bad, error.address)
            if bad is not None:
                self.assertIsNotNone(error.__cause__, bad)


class CoversServerNameTests(SynchronousTestCase):
    """
    Tests for L{coversServerName}.
    """

    def test_exact(self):
        """
        A presented name covers itself only.
        """
        presented = {"xmpp1.provider.example"}
        self.assertTrue(coversServerName(presented, "xmpp1.provider.example"))
        for name in ["provider.example", "xmpp2.provider.example", "a.xmpp1.provider.example"]:
            self.assertFalse(coversServerName(presented, name), name)

    def test_wildcardOneLabel(self):
        """
        A wildcard covers exactly one label in its place: not the name
        without it, not two labels, not an A-label.
        """
        presented = {"*.provider.example"}
        for name in ["xmpp1.provider.example", "a-b.provider.example", "1.provider.example"]:
            self.assertTrue(coversServerName(presented, name), name)
        for name in ["provider.example", "a.xmpp1.provider.example", "*.provider.example",
                     "xn--bcher-kva.provider.example", "xmpp1.provider.example.net",
                     "xmpp1.other.example"]:
            self.assertFalse(coversServerName(presented, name), name)

    def test_idnParent(self):
        """
        A wildcard whose fixed labels are an IDN covers LDH labels below it.
        """
        presented = {normalizeServerPattern("*.Bücher.example")}
        self.assertTrue(coversServerName(presented, normalizeServerName("xmpp.bücher.example")))
        self.assertFalse(coversServerName(presented, normalizeServerName("ü.bücher.example")))

    def test_notNormalised(self):
        """
        Patterns that are not in the form L{normalizeServerPattern} gives
        cover nothing beyond themselves.
        """
        self.assertFalse(coversServerName({"*.example"}, "a.example"))
        self.assertFalse(coversServerName({"*.Provider.example"}, "a.provider.example"))
