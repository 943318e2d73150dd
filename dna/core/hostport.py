"""
The one parser of C{host[:port]} texts: DNS resolvers and static server
addresses in the configuration, C{--resolver} on command lines.

The forms are those of the authority of a URI (RFC 3986 section 3.2.2):
an IPv4 address or a host name with an optional C{:port}, and an IPv6
address in brackets when a port follows. A bare IPv6 address, whose colons
leave no room for a port, is accepted too:

    - C{"192.0.2.1"}, C{"192.0.2.1:53"}
    - C{"ns.example"}, C{"ns.example:53"}
    - C{"[2001:db8::1]"}, C{"[2001:db8::1]:53"}, C{"2001:db8::1"}

Brackets are for IPv6 only, as RFC 3986's IP-literal is: C{"[192.0.2.1]:53"}
is refused. Accepting it would be harmless, but refusing it keeps one
spelling per address, the one this package writes back in its messages.
"""

import ipaddress
import re

from dna.error import InvalidHostPort

# RFC 1123 section 2.1 labels, and underscores (service names such as
# _xmpp-server._tcp); a trailing dot is allowed.
_NAME = re.compile(
    r"(?=.{1,253}\.?\Z)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
    r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?\Z",
    re.ASCII | re.IGNORECASE,
)


def parseHostPort(text, defaultPort=None):
    """
    Split C{host[:port]} into its host and port.

    @param text: The text, in one of the forms of the module docstring.
    @type text: L{str}
    @param defaultPort: The port when none is given; L{None} leaves it to
        the caller.
    @return: C{(host, port)}: an IP address in its compressed form
        (C{"0:0::1"} is C{"::1"}), a host name in lower case without a
        trailing dot; the port an L{int} from 1 to 65535, or C{defaultPort}.
    @raise InvalidHostPort: If C{text} is none of these forms.
    """
    if not isinstance(text, str) or not text:
        raise InvalidHostPort(text, "empty")
    port = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise InvalidHostPort(text, "no closing bracket")
        if rest:
            if not rest.startswith(":"):
                raise InvalidHostPort(text, "use [ADDRESS]:PORT")
            port = rest[1:]
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidHostPort(text, "brackets are for IPv6 addresses only") from None
        return str(address), _port(text, port, defaultPort)
    if text.count(":") > 1:
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            raise InvalidHostPort(
                text, "not an IPv6 address (put one with a port in brackets)") from None
        return str(address), defaultPort
    host, colon, port = text.partition(":")
    port = _port(text, port if colon else None, defaultPort)
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        pass
    if not _NAME.match(host) or all(c.isdigit() or c == "." for c in host):
        raise InvalidHostPort(text, f"{host!r} is neither an IP address nor a host name")
    return host.rstrip(".").lower(), port


def parseAddressPort(text, defaultPort=None):
    """
    L{parseHostPort} for texts whose host must be an IP address: those that
    name servers to reach without asking DNS (resolvers, for one).

    @raise InvalidHostPort: If C{text} does not parse, or names a host.
    """
    host, port = parseHostPort(text, defaultPort)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidHostPort(text, "the host must be an IP address") from None
    return host, port


def _port(text, port, defaultPort):
    """
    The port of C{text}: C{port} as an L{int}, or C{defaultPort} when
    L{None}.
    """
    if port is None:
        return defaultPort
    if not (port.isascii() and port.isdigit()) or not 0 < int(port, 10) < 65536:
        raise InvalidHostPort(text, f"bad port {port!r}")
    return int(port, 10)


def isLoopback(host):
    """
    Whether C{host} is an IP address on loopback (127.0.0.0/8, ::1); a name
    never is, whatever it resolves to.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
