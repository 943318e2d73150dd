"""
In-memory S2S streams for DNA's unit tests: real L{S2SStream}s over
L{StringTransport}, fed bytes through C{dataReceived}, so that every element
goes through the same parsing and dispatch as on the network.
"""

from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from dna.channel.stream import S2SStream

HEADER = (
    "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
    "xmlns:stream='http://etherx.jabber.org/streams' "
    "from='{peer}' to='{us}' id='{sid}' version='1.0'>"
)


class RecordingXmlStream(S2SStream):
    """
    An L{S2SStream} that also keeps every element it sends in C{output}.
    """

    def __init__(self, authenticator):
        S2SStream.__init__(self, authenticator)
        self.output = []
        self.streamErrors = []

    def send(self, obj):
        self.output.append(obj)
        S2SStream.send(self, obj)

    def sendStreamError(self, streamError):
        self.streamErrors.append(streamError)
        S2SStream.sendStreamError(self, streamError)


def makeStream(sid="s1", us="xmpp1.receiving.tld", peer="xmpp1.originating.tld"):
    """
    A stream whose header has been received: ready for stanzas.

    @return: The L{RecordingXmlStream}; its C{transport} is a
        L{StringTransport}.
    """
    xs = RecordingXmlStream(xmlstream.Authenticator())
    xs.makeConnection(StringTransport())
    xs.dataReceived(HEADER.format(peer=peer, us=us, sid=sid).encode("utf-8"))
    xs.sid = sid
    return xs


def receive(xs, element):
    """
    Feed an element, or raw XML text, to a stream as if from the network.
    """
    if isinstance(element, domish.Element):
        element = element.toXml()
    xs.dataReceived(element.encode("utf-8"))


def stanza(name="message", sender="romeo@sender.tld/orchard",
           to="juliet@target.tld", stanzaType=None, body="hi", stanzaID=None):
    """
    Build a stanza in the C{jabber:server} namespace.
    """
    element = domish.Element(("jabber:server", name))
    if sender is not None:
        element["from"] = sender
    if to is not None:
        element["to"] = to
    if stanzaType is not None:
        element["type"] = stanzaType
    if stanzaID is not None:
        element["id"] = stanzaID
    if body is not None and name == "message":
        element.addElement("body", content=body)
    return element


def close(xs):
    """
    Lose the connection of a stream, as if the peer went away.
    """
    from twisted.internet import error
    from twisted.python.failure import Failure

    xs.connectionLost(Failure(error.ConnectionDone()))


def stanzaErrorOf(element):
    """
    The (defined condition, application condition) of an error stanza.
    """
    from dna.namespaces import NS_STANZAS

    for err in element.elements():
        if err.name != "error":
            continue
        defined = app = None
        for child in err.elements():
            if child.uri == NS_STANZAS and child.name != "text":
                defined = child.name
            elif child.uri != NS_STANZAS:
                app = (child.uri, child.name)
        return defined, app
    return None, None
