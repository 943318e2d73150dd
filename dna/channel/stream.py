"""
The XML stream of every server-to-server connection, DNA's and legacy, in
both directions.

Twisted's L{xmlstream.XmlStream} leaves room for whatever a protocol wants to
hang on a stream; this subclass declares what DNA hangs on it (whether the
stream is bidirectional, how a legacy stream was authenticated, the stanza
filter), so that every factory builds the same kind of stream and nothing is
set on it that is not written down here.

The stanza filter runs in L{S2SStream.onElement}: the parser hands every
top-level element to that method, before any observer sees it, and keeps
doing so after the stream restarts (STARTTLS, SASL), because a restart makes
a new parser bound to the same method.

The parser itself is guarded, on every stream, before and after
authentication (RFC 6120 section 11.1 and section 13.12): a DOCTYPE, an
entity declaration, a processing instruction or a comment closes the stream
with C{<restricted-xml/>}, so no entity is ever declared, let alone expanded;
a top-level element larger than the stanza size limit, or nested deeper than
the depth limit, closes it with C{<policy-violation/>} before anything is
dispatched; XML that is not well-formed closes it with C{<not-well-formed/>}.
The limits are per stream (L{StreamLimits}, from the configuration's
C{[limits]}), and each refusal is counted and logged through the stream's
L{dna.core.logthrottle.ThrottledLog}, so that a flood of hostile
connections writes a few log lines, not one per connection.

Once a stream error has been sent, on whatever grounds, the stream parses and
dispatches nothing more (RFC 6120 section 4.9.1.1: the stream is closed).
"""

import pyexpat
from sys import intern

import attr
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish
from twisted.words.xish.xmlstream import STREAM_ERROR_EVENT

from dna.core.logthrottle import report

_log = Logger()

#: Bytes a top-level element may take once the stream is authenticated.
DEFAULT_MAX_STANZA_SIZE = 512 * 1024
#: Bytes a top-level element may take before: features, STARTTLS, SASL and
#: dialback elements are small.
DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH = 16 * 1024
#: Elements a stanza may nest, itself included (domish serialises
#: recursively: a stanza nested a thousand deep could not be sent on).
DEFAULT_MAX_DEPTH = 64

#: Dispatched on a stream, with the stream, when it is authenticated: it has
#: joined the federation (L{dna.app.federation.Federation.streamAuthenticated})
#: and its peer proved a name. Until then it counts as unauthenticated for
#: the connection limits of L{dna.channel.receiving}.
STREAM_AUTHENTICATED_EVENT = intern("//event/dna/authenticated")

#: Dispatched on a stream, with the stream, just before our closing tag goes
#: out, unless a stream error went out first: the last moment to write to the
#: peer (L{dna.channel.acks} answers what the stream handled).
STREAM_CLOSING_EVENT = intern("//event/dna/closing")


@attr.s(frozen=True)
class StreamLimits:
    """
    The limits a stream enforces on what it receives, and what it
    advertises of them (XEP-0478).

    @ivar maxStanzaSize: Bytes a top-level element may take once the stream
        is authenticated.
    @ivar maxStanzaSizeBeforeAuth: Bytes before that.
    @ivar maxDepth: Elements a stanza may nest, itself included.
    @ivar idleSeconds: Seconds of silence after which the stream may be
        closed, to advertise; L{None} to advertise none.
    """

    maxStanzaSize = attr.ib(default=DEFAULT_MAX_STANZA_SIZE)
    maxStanzaSizeBeforeAuth = attr.ib(default=DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH)
    maxDepth = attr.ib(default=DEFAULT_MAX_DEPTH)
    idleSeconds = attr.ib(default=None)

    def apply(self, xs, incidents=None):
        """
        Make C{xs}, an L{S2SStream}, enforce these limits, and report its
        refusals to C{incidents} (a L{dna.core.logthrottle.ThrottledLog}).
        """
        xs.maxStanzaSize = self.maxStanzaSize
        xs.maxStanzaSizeBeforeAuth = self.maxStanzaSizeBeforeAuth
        xs.maxDepth = self.maxDepth
        xs.idleSeconds = self.idleSeconds
        if incidents is not None:
            xs.incidents = incidents


class _Refusal(Exception):
    """
    The parser met something a stream may not carry.

    @ivar condition: The stream error condition (RFC 6120 section 4.9.3).
    @ivar reason: What it was, for the log and the error text.
    """

    def __init__(self, condition, reason):
        Exception.__init__(self, condition, reason)
        self.condition = condition
        self.reason = reason


def _restricted(what):
    """
    An expat handler that refuses C{what} (RFC 6120 section 11.1).
    """

    def refuse(*args):
        raise _Refusal("restricted-xml", what)

    return refuse


class _GuardedElementStream(domish.ExpatElementStream):
    """
    Twisted's expat element stream, with RFC 6120's restrictions and size
    and depth limits. Its state lives as long as its parser: a stream
    restart makes a new one.
    """

    def __init__(self, limitOf, depthOf):
        """
        @param limitOf: Returns the size limit in bytes that applies now
            (it grows when the stream is authenticated).
        @param depthOf: Returns how deep a stanza may nest.
        """
        domish.ExpatElementStream.__init__(self)
        parser = self.parser
        parser.buffer_text = True
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _restricted("DOCTYPE")
        parser.EntityDeclHandler = _restricted("entity declaration")
        parser.ProcessingInstructionHandler = _restricted("processing instruction")
        parser.CommentHandler = _restricted("comment")
        self._limitOf = limitOf
        self._depthOf = depthOf
        self._depth = 0
        self._fed = 0
        # Byte index where the pending top-level element (or, between
        # elements, the bytes since the last one) began.
        self._start = 0

    def parse(self, buffer):
        # Feed expat no more than could still fit the size limit (and one
        # byte to cross it): a peer sending more than the limit before its
        # first element ends is refused after at most that much parsing, not
        # after a whole read (a burst of hostile connections before
        # authentication would otherwise cost a 64 KiB parse each).
        while buffer:
            room = max(self._limitOf() - (self._fed - self._start), 0) + 1
            if len(buffer) <= room:
                piece, buffer = buffer, b""
            else:
                piece, buffer = buffer[:room], buffer[room:]
            self._fed += len(piece)
            try:
                self.parser.Parse(piece)
            except self.error as e:
                raise domish.ParserError(str(e))
            # Bytes fed and not yet part of a completed top-level element:
            # an element being received, or a tag expat is still buffering.
            self._checkSize(self._fed - self._start)

    def _checkSize(self, size):
        limit = self._limitOf()
        if size > limit:
            raise _Refusal(
                "policy-violation",
                "stanza of more than {} bytes".format(limit),
            )

    def _onStartElement(self, name, attrs):
        depth = self._depth = self._depth + 1
        if depth == 2:
            self._start = self.parser.CurrentByteIndex
        elif depth > 2:
            # The stream's root is depth 1, a stanza 2.
            maxDepth = self._depthOf()
            if depth > maxDepth + 1:
                raise _Refusal(
                    "policy-violation",
                    "stanza nested more than {} deep".format(maxDepth),
                )
        domish.ExpatElementStream._onStartElement(self, name, attrs)

    def _onEndElement(self, name):
        depth = self._depth
        self._depth = depth - 1
        if depth == 2:
            end = self.parser.CurrentByteIndex
            self._checkSize(end - self._start)
            self._start = end
        domish.ExpatElementStream._onEndElement(self, name)


def provenStream(xs):
    """
    Tell the stream's observers, once, that its peer has proved who it is:
    the connection no longer counts among the unauthenticated ones
    (L{dna.channel.receiving.ConnectionGate}).
    """
    if not xs.proven:
        xs.proven = True
        xs.dispatch(xs, STREAM_AUTHENTICATED_EVENT)


def _simpleXml(element, namespace, write):
    """
    Serialise C{element} as C{Element.toXml} does on a stream whose default
    namespace is C{namespace}, for the common stanza whose every element is
    in that namespace, declares no prefixes and has no qualified attributes:
    the same text, without the serialiser's prefix bookkeeping (about a
    third of the cost of forwarding a stanza).

    @param write: Called with each piece of text.
    @return: C{False}, with the output incomplete, when the element is not
        of that kind (then use C{toXml}).
    """
    if element.uri != namespace or element.localPrefixes or (
            element.defaultUri is not None and element.defaultUri != namespace):
        return False
    name = element.name
    write("<" + name)
    for key, value in element.attributes.items():
        if key.__class__ is not str:
            return False
        write(" %s='%s'" % (key, domish.escapeToXml(value, 1)))
    children = element.children
    if not children:
        write("/>")
        return True
    write(">")
    for child in children:
        if isinstance(child, str):
            write(child if isinstance(child, domish.SerializedXML) else domish.escapeToXml(child))
        elif not _simpleXml(child, namespace, write):
            return False
    write("</" + name + ">")
    return True


class S2SStream(xmlstream.XmlStream):
    """
    A server-to-server XML stream (RFC 6120), Receiving or Originating.

    @ivar refusals: How many times the parser refused this stream's input
        (at most once: the stream closes).
    @ivar refusal: The stream error condition it was refused with, or
        L{None}.
    @ivar streamError: The condition of the stream error we sent, on any
        grounds, or L{None}: once set, nothing more is parsed or dispatched.
    @ivar bytesSent: Bytes written on the stream so far.
    """

    maxStanzaSize = DEFAULT_MAX_STANZA_SIZE
    """
    Bytes a top-level element may take once the stream is authenticated
    (has a L{stanzaFilter}); beyond it, C{<policy-violation/>}.
    """

    maxStanzaSizeBeforeAuth = DEFAULT_MAX_STANZA_SIZE_BEFORE_AUTH
    """
    Bytes a top-level element may take before that.
    """

    maxDepth = DEFAULT_MAX_DEPTH
    """
    How many elements a stanza may nest, itself included; beyond it,
    C{<policy-violation/>}.
    """

    idleSeconds = None
    """
    Seconds of silence after which we may close the stream, as advertised
    (XEP-0478 C{<idle-seconds/>}); L{None}: not advertised.
    """

    peerLimits = None
    """
    What the peer advertised of its limits (XEP-0478): a
    L{dna.channel.features.PeerLimits}, or L{None}.
    """

    incidents = None
    """
    The L{dna.core.logthrottle.ThrottledLog} that counts and logs the
    stream's refusals; L{None}: each is logged.
    """

    afterRead = None
    """
    Called with no arguments after each read has been parsed and
    dispatched (L{dna.channel.acks}: one unrequested C{<a/>} per read), or
    L{None}.
    """

    refusals = 0
    refusal = None
    streamError = None
    bytesSent = 0

    footerSent = False
    """
    Whether our closing tag went out: we write nothing more, and handle
    nothing more the peer sends (what it sent in the meantime it still holds
    as unacknowledged and sends again on another stream).
    """

    proven = False
    """
    Whether the peer has proved who it is (L{provenStream}): a DNA stream as
    soon as it is authenticated, a legacy stream checked by dialback only once
    a pair is granted on it.
    """

    bidi = False
    """
    Whether the stream carries stanzas both ways (XEP-0288): set by
    L{dna.channel.features.BidiInitializer} on the Originating side, by
    L{dna.channel.features.watchBidiRequest} on the Receiving side.
    """

    stanzaFilter = None
    """
    L{None} until the stream is authenticated; then the object that decides
    which incoming stanzas the stream's observers may see, such as a
    L{dna.core.enforcement.StanzaFilter}. Its C{admit(element)} is called
    with every top-level element before dispatch and returns whether to
    dispatch it; an element it refuses it has dealt with already (answered,
    or the stream closed).
    """

    legacyMechanism = None
    """
    How an Originating Server's legacy stream authenticated its domain pair
    (draft-ietf-xmpp-dna-01 section 7): L{None} (a DNA stream, or not
    authenticated yet), C{"EXTERNAL"} (SASL EXTERNAL, XEP-0178) or
    C{"dialback"} (XEP-0220).
    """

    peerVerified = False
    """
    On an Originating Server's legacy stream: whether the peer's certificate
    verified and is valid for the target domain (set after TLS by
    L{dna.legacy.originating.PeerCheckInitializer}).
    """

    peerDeclaresDialback = False
    """
    On an Originating Server's legacy stream: whether the peer's stream
    header declares the dialback namespace, as servers that predate the
    dialback stream feature do.
    """

    def _initializeStream(self):
        """
        Set up a guarded parser, as Twisted's method of this name sets up
        its own (C{reset} calls it on every stream restart).
        """
        self.stream = _GuardedElementStream(self._stanzaLimit, self._depthLimit)
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd

    def _stanzaLimit(self):
        if self.stanzaFilter is None:
            return self.maxStanzaSizeBeforeAuth
        return self.maxStanzaSize

    def _depthLimit(self):
        return self.maxDepth

    def dataReceived(self, data):
        """
        Feed the parser; refuse the stream with a stream error when the
        data breaks RFC 6120's rules or our limits.
        """
        if self.streamError is not None:
            return
        try:
            if self.rawDataInFn:
                self.rawDataInFn(data)
            self.stream.parse(data)
        except _Refusal as e:
            self._refuse(e.condition, e.reason, Failure(error.StreamError(e.condition, e.reason)))
        except domish.ParserError as e:
            self._refuse("not-well-formed", str(e), Failure())
        if self.streamError is not None:
            self._dropParser()
        elif self.afterRead is not None:
            self.afterRead()

    def _dropParser(self):
        """
        Free the parser of a stream that will parse nothing more: its
        buffers hold what the peer sent, up to the stanza size limit, for as
        long as the connection takes to close.
        """
        if self.stream is not None:
            # The parser and the element stream refer to each other through
            # its handlers: break the cycle so that both go now.
            self.stream.parser = None
            self.stream = None

    def _refuse(self, condition, reason, failure):
        """
        Close the stream with the stream error C{condition}, then tell the
        stream's observers with C{failure}, as Twisted does for a parse
        error (an observer may abort the connection).
        """
        self.refusal = condition
        self.refusals += 1
        report(
            self.incidents, "stream-refused-" + condition, _log,
            "Stream {streamID}: refused with <{condition}/>: {reason}",
            event="stream-refused", streamID=self.sid, condition=condition,
            reason=reason,
        )
        self.sendStreamError(error.StreamError(condition, text=reason))
        self.dispatch(failure, STREAM_ERROR_EVENT)

    def sendStreamError(self, streamError):
        """
        Send a stream error and close the stream; parse nothing after it.
        """
        if self.streamError is None:
            self.streamError = streamError.condition
        xmlstream.XmlStream.sendStreamError(self, streamError)

    def send(self, obj):
        """
        Serialise and write C{obj} as Twisted's method of this name does,
        counting the bytes in L{bytesSent} (the acknowledgements' buffer
        bound is in bytes too).
        """
        if domish.IElement.providedBy(obj):
            pieces = []
            if self.namespace not in self.prefixes and _simpleXml(
                    obj, self.namespace, pieces.append):
                obj = "".join(pieces)
            else:
                obj = obj.toXml(
                    prefixes=self.prefixes,
                    defaultUri=self.namespace,
                    prefixesInScope=list(self.prefixes.keys()),
                )
        if isinstance(obj, str):
            obj = obj.encode("utf-8")
        self.bytesSent += len(obj)
        xmlstream.XmlStream.send(self, obj)

    def sendFooter(self):
        """
        Send our closing tag, once, after L{STREAM_CLOSING_EVENT}.
        """
        if self.footerSent:
            return
        if self.streamError is None:
            self.dispatch(self, STREAM_CLOSING_EVENT)
        self.footerSent = True
        xmlstream.XmlStream.sendFooter(self)

    @property
    def headerSent(self):
        """
        Whether our stream header has gone out on the current stream (a
        restart clears it): only then may a footer follow.
        """
        return self._headerSent

    def onElement(self, element):
        """
        Dispatch a top-level element to the observers, unless the stanza
        filter refuses it.
        """
        if self.streamError is not None or self.footerSent:
            return
        stanzaFilter = self.stanzaFilter
        if stanzaFilter is None or stanzaFilter.admit(element):
            self.dispatch(element)
