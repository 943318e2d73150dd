"""
Hostile XML for DNA's robustness tests and C{bench/hostile.py}: what a peer
that wants to exhaust a Receiving Server sends before it authenticates.

Each payload is the whole byte stream a hostile Originating Server writes
after connecting (its stream header included), cut into the pieces it writes
one at a time and the pause between them. The classes are those of issue 9
("Safe to expose on the internet"):

  - L{bomb}: a DOCTYPE of nested internal entities ("billion laughs",
    CVE-2003-1564) referenced in a stanza;
  - L{quadraticText}: one huge text node in many small pieces (domish
    appends each piece of character data to the string before it);
  - L{deepNesting}: elements opened and never closed;
  - L{giantAttribute}: one start tag with an attribute that never ends;
  - L{slowloris}: a valid stream header and stanza trickled a byte at a time.

The same generators serve the property test with small sizes and the
benchmark with large ones.
"""

import attr

from dna.namespaces import NS_DIALBACK, NS_SERVER, NS_STREAMS

#: What the Receiving Server sends first on every answered stream.
REPLY_HEADER_START = b"<stream:stream"

_HEADER = (
    "<stream:stream xmlns='{server}' xmlns:db='{dialback}' "
    "xmlns:stream='{streams}' from='{peer}' to='{us}' version='1.0'>"
)


def streamHeader(us, peer):
    """
    The stream header an Originating Server C{peer} opens a stream to
    C{us} with.

    @rtype: L{bytes}
    """
    return _HEADER.format(
        server=NS_SERVER, dialback=NS_DIALBACK, streams=NS_STREAMS, peer=peer, us=us
    ).encode("utf-8")


@attr.s(frozen=True)
class Payload:
    """
    What a hostile peer writes.

    @ivar name: The payload class, such as C{"bomb"}.
    @ivar chunks: The pieces, in order, each written on its own.
    @ivar interval: Seconds to wait between two pieces.
    """

    name = attr.ib()
    chunks = attr.ib()
    interval = attr.ib(default=0.0)

    def data(self):
        """
        @return: All of it as one L{bytes}.
        """
        return b"".join(self.chunks)


def _split(data, size):
    """
    C{data} in pieces of C{size} bytes.
    """
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def bomb(us, peer, levels=10, fanout=10, chunk=65536):
    """
    Billion laughs: entity C{l<n>} is C{fanout} references to C{l<n-1>}, so
    that the reference in the message body expands to
    C{3 * fanout ** (levels - 1)} characters from a few hundred bytes.

    The DOCTYPE must come before the root element, so it precedes the
    stream header.
    """
    entities = ["<!ENTITY l0 'lol'>"]
    for level in range(1, levels):
        entities.append(
            "<!ENTITY l%d '%s'>" % (level, ("&l%d;" % (level - 1,)) * fanout)
        )
    data = (
        b"<?xml version='1.0'?><!DOCTYPE stream:stream ["
        + "".join(entities).encode("ascii")
        + b"]>"
        + streamHeader(us, peer)
        + b"<message from='romeo@"
        + peer.encode("utf-8")
        + b"' to='juliet@"
        + us.encode("utf-8")
        + b"'><body>&l"
        + str(levels - 1).encode("ascii")
        + b";</body></message>"
    )
    return Payload("bomb", _split(data, chunk))


def quadraticText(us, peer, size=1 << 20, line=64, chunk=512):
    """
    A message body of C{size} bytes of text in lines of C{line} bytes:
    expat reports every line (and every piece the network cut) as its own
    character data, and domish concatenates each onto all that came before.
    """
    lines = (b"x" * (line - 1) + b"\n") * max(1, size // line)
    data = streamHeader(us, peer) + b"<message><body>" + lines
    return Payload("quadratic", _split(data, chunk))


def deepNesting(us, peer, depth=100000, chunk=65536):
    """
    C{depth} nested elements, never closed.
    """
    data = streamHeader(us, peer) + b"<a>" * depth
    return Payload("deep", _split(data, chunk))


def giantAttribute(us, peer, size=1 << 20, chunk=4096):
    """
    A start tag whose attribute value is C{size} bytes long and never ends:
    the parser must keep the whole tag, and may rescan it on every piece.
    """
    data = streamHeader(us, peer) + b"<message a='" + b"x" * size
    return Payload("attribute", _split(data, chunk))


def slowloris(us, peer, interval=0.05, body=4096):
    """
    A valid stream header, then a message whose body never ends, one byte
    every C{interval} seconds.
    """
    data = streamHeader(us, peer) + b"<message><body>" + b"x" * body
    return Payload("slowloris", _split(data, 1), interval=interval)


#: Every payload class, by name, for the benchmark.
PAYLOADS = {
    "bomb": bomb,
    "quadratic": quadraticText,
    "deep": deepNesting,
    "attribute": giantAttribute,
    "slowloris": slowloris,
}
