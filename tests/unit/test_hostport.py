"""
Tests for L{dna.core.hostport}, and for the configuration and C{dna-check}
agreeing on it.
"""

from twisted.trial.unittest import SynchronousTestCase

from dna.app import check, config
from dna.core.hostport import parseAddressPort, parseHostPort
from dna.error import InvalidHostPort


class ParseHostPortTests(SynchronousTestCase):
    """
    L{parseHostPort} reads the host and port of RFC 3986's authority.
    """

    def test_forms(self):
        """
        IPv4 addresses and names with an optional port, IPv6 addresses in
        brackets with an optional port or bare without one.
        """
        for text, expected in [
            ("192.0.2.1", ("192.0.2.1", 53)),
            ("192.0.2.1:5300", ("192.0.2.1", 5300)),
            ("ns.example", ("ns.example", 53)),
            ("NS.Example.:5300", ("ns.example", 5300)),
            ("_xmpp-server._tcp.example", ("_xmpp-server._tcp.example", 53)),
            ("[2001:db8::1]", ("2001:db8::1", 53)),
            ("[2001:db8::1]:5300", ("2001:db8::1", 5300)),
            ("2001:db8::1", ("2001:db8::1", 53)),
            ("0:0::1", ("::1", 53)),
            ("[0:0::1]:1", ("::1", 1)),
            ("192.0.2.1:65535", ("192.0.2.1", 65535)),
        ]:
            self.assertEqual(expected, parseHostPort(text, 53), text)

    def test_defaultPort(self):
        """
        Without a port, the default is returned as it is, L{None} by default.
        """
        self.assertEqual(("192.0.2.1", None), parseHostPort("192.0.2.1"))
        self.assertEqual(("::1", 5269), parseHostPort("[::1]", 5269))

    def test_bracketsAreForIPv6(self):
        """
        An IPv4 address or a name in brackets is refused, as RFC 3986's
        IP-literal is IPv6 (or IPvFuture) only.
        """
        for text in ["[127.0.0.1]:53", "[127.0.0.1]", "[ns.example]:53"]:
            error = self.assertRaises(InvalidHostPort, parseHostPort, text, 53)
            self.assertEqual((text, "brackets are for IPv6 addresses only"),
                             (error.text, error.reason))

    def test_bad(self):
        """
        Anything else is an L{InvalidHostPort} naming the text and the reason.
        """
        for text, reason in [
            ("", "empty"),
            (None, "empty"),
            ("[::1", "no closing bracket"),
            ("[::1]5300", "use [ADDRESS]:PORT"),
            ("[]:53", "brackets are for IPv6 addresses only"),
            ("::1:53:x", "not an IPv6 address (put one with a port in brackets)"),
            ("1.2.3.4:", "bad port ''"),
            ("1.2.3.4:0", "bad port '0'"),
            ("1.2.3.4:65536", "bad port '65536'"),
            ("1.2.3.4:+53", "bad port '+53'"),
            ("1.2.3.4: 53", "bad port ' 53'"),
            ("1.2.3.4:٥٣", "bad port '٥٣'"),
            ("[::1]:x", "bad port 'x'"),
            ("1.2.3.999", "'1.2.3.999' is neither an IP address nor a host name"),
            ("a..b:53", "'a..b' is neither an IP address nor a host name"),
            ("-a.example", "'-a.example' is neither an IP address nor a host name"),
            ("a b", "'a b' is neither an IP address nor a host name"),
        ]:
            error = self.assertRaises(InvalidHostPort, parseHostPort, text, 53)
            self.assertEqual((text, reason), (error.text, error.reason), text)

    def test_addressPort(self):
        """
        L{parseAddressPort} refuses host names.
        """
        self.assertEqual(("::1", 53), parseAddressPort("::1", 53))
        error = self.assertRaises(InvalidHostPort, parseAddressPort, "localhost:53", 53)
        self.assertEqual("the host must be an IP address", error.reason)


class CallersAgreeTests(SynchronousTestCase):
    """
    The configuration's C{[dns] resolvers} and C{dna-check --resolver} accept
    the same texts.
    """

    def test_agree(self):
        """
        Both accept and refuse the same texts, with the same results.
        """
        for text in ["127.0.0.1", "127.0.0.1:5300", "::1", "[::1]", "[::1]:5300",
                     "[127.0.0.1]:53", "localhost", "127.0.0.1:x", "1.2.3.4:٥٣",
                     "[::1]5300", "[::1"]:
            try:
                expected = parseAddressPort(text, 53)
            except InvalidHostPort:
                self.assertRaises(ValueError, config.parseAddress, text, 53)
                self.assertRaises(ValueError, check.parseServer, text)
            else:
                self.assertEqual(expected, config.parseAddress(text, 53))
                self.assertEqual(expected, check.parseServer(text))

    def test_checkMessage(self):
        """
        C{dna-check} says why a server is refused.
        """
        error = self.assertRaises(ValueError, check.parseServer, "[127.0.0.1]:53")
        self.assertEqual(
            "invalid server '[127.0.0.1]:53': brackets are for IPv6 addresses only",
            str(error))
