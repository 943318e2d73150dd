"""
Property tests for L{dna.core.names}.
"""

import idna
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dna.core.names import (
    _encode,
    domainOf,
    normalizeDomain,
    normalizeServerName,
    sameDomain,
    splitJID,
)
from dna.error import InvalidAddress
from tests.unit import examples

#: Characters where normalisation has something to decide: case, width,
#: dots, hyphens, the IDNA2003/IDNA2008 deviations, joiners and what makes
#: them valid, right-to-left letters, marks, and characters never allowed.
_TRICKY = (
    "aAzZ09-._@/ !*"
    "ßẞςσΣéÉüÜ"
    "\u200c\u200d\u094d\u0915\u0937"
    "\u0645\u06cc\u062e\u05d0\u05d1\u0660"
    "\u00ad\u0301\ufe0f"
    "ＡＺａ０．\u3002\uff61"
)

_names = st.one_of(
    st.text(alphabet=_TRICKY, max_size=24),
    st.lists(st.text(alphabet=_TRICKY, min_size=1, max_size=8),
             min_size=1, max_size=4).map(".".join),
    st.lists(st.sampled_from(["xn--", "a", "b", "-", "zca", "fa", "hia", "9", "."]),
             max_size=8).map("".join),
    st.text(max_size=40),
)

_ldh = st.text(alphabet="abcXYZ019-.", max_size=80)


def _normalized(name):
    """
    L{normalizeDomain}, or L{None} where it refuses.
    """
    try:
        return normalizeDomain(name)
    except InvalidAddress:
        return None


def _spellings(name):
    """
    Other spellings of the same name, by the rules L{normalizeDomain}
    follows: case, a trailing dot, full width, A-labels, U-labels.
    """
    normal = normalizeDomain(name)
    yield normal
    yield name.upper()
    yield name + "."
    yield normal.upper() + "\u3002"
    yield "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c != "." else c
                  for c in normal)
    yield idna.decode(normal)


class NormalizeDomainPropertyTests(SynchronousTestCase):
    """
    Properties of L{normalizeDomain} and L{sameDomain}.
    """

    @settings(max_examples=examples(500), deadline=None)
    @given(_names)
    def test_onlyInvalidAddress(self, name):
        """
        Any text either normalises or raises L{InvalidAddress}; nothing else
        escapes, whether a domain or a JID.
        """
        for function in [normalizeDomain, normalizeServerName, domainOf, splitJID]:
            try:
                function(name)
            except InvalidAddress:
                pass

    @settings(max_examples=examples(500), deadline=None)
    @given(_names)
    def test_idempotent(self, name):
        """
        A normalised name is its own normal form, and its A-labels are
        lower-case ASCII within the DNS limits.
        """
        normal = _normalized(name)
        if normal is not None:
            self.assertEqual(normal, normalizeDomain(normal))
            self.assertTrue(normal.isascii())
            self.assertEqual(normal.lower(), normal)
            self.assertLessEqual(len(normal), 253)
            self.assertTrue(all(0 < len(label) <= 63 for label in normal.split(".")))

    @settings(max_examples=examples(300), deadline=None)
    @given(_names)
    def test_spellingsCompareEqual(self, name):
        """
        Spellings that normalise equal compare equal with L{sameDomain}, and
        name the same domainpart in a JID.
        """
        normal = _normalized(name)
        if normal is not None:
            for spelling in _spellings(name):
                if _normalized(spelling) == normal:
                    self.assertTrue(sameDomain(name, spelling))
                    self.assertEqual(normal, domainOf("local@" + spelling + "/r"))
            self.assertTrue(sameDomain(name, normal))

    @settings(max_examples=examples(300), deadline=None)
    @given(_names, _names)
    def test_sameDomainIsEquality(self, a, b):
        """
        L{sameDomain} is equality of the normal forms.
        """
        normalA, normalB = _normalized(a), _normalized(b)
        if normalA is not None and normalB is not None:
            self.assertEqual(normalA == normalB, sameDomain(a, b))

    @settings(max_examples=examples(500), deadline=None)
    @given(_ldh)
    def test_asciiFastPath(self, name):
        """
        The ASCII shortcut accepts and refuses what IDNA does, with the same
        result.
        """
        try:
            expected = _encode(name[:-1] if name.endswith(".") else name)
        except (UnicodeError, ValueError):
            expected = None
        if expected is not None and expected.rpartition(".")[2].isdigit():
            expected = None
        self.assertEqual(expected, _normalized(name))
