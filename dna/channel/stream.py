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

Forwarding (issue 13): each stanza in the stream's default namespace is
dispatched as a L{RawStanza}, which keeps the bytes it came in and parses its
children only when something asks for them; a stanza that did not change is
written on the next stream as it came (L{ForwardingStream}, also the XEP-0114
component streams' class). Expat still parses every byte, so the checks above
and the stanza filter see every stanza as before.
"""

import collections
import pyexpat
from sys import intern

import attr
from twisted.logger import Logger
from twisted.python import log
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish
from twisted.words.xish.xmlstream import STREAM_ERROR_EVENT
from twisted.words.xish.xpath import _Location

from dna.core.logthrottle import report
from dna.namespaces import NS_SM, STANZA_NAMES

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

#: Our closing tag (C{xmlstream.XmlStream.sendFooter} writes the same).
_FOOTER = "</stream:stream>"


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


def _plainName(name):
    """
    An expat name reported with C{namespace_prefixes} on (C{"uri local
    prefix"}) as domish expects it (C{"uri local"}).
    """
    if name.count(" ") == 2:
        return name.rpartition(" ")[0]
    return name


def _plainAttributes(attrs):
    """
    Attributes reported with C{namespace_prefixes} on, as domish expects
    them: qualified names as C{(uri, local)} keys.
    """
    for key in attrs:
        if " " in key:
            break
    else:
        return attrs
    plain = {}
    for key, value in attrs.items():
        if " " in key:
            uri, local = key.split(" ")[:2]
            plain[(uri, local)] = value
        else:
            plain[key] = value
    return plain


class RawStanza(domish.Element):
    """
    A stanza as received, kept as the bytes it came in: its name, namespace
    and attributes are parsed, its children only when something asks for
    them (L{children}), by parsing those bytes again.

    A stanza that forwards unchanged to another stream is written as it came
    (L{verbatim}): parsing it into elements and serialising them again is
    most of what forwarding costs.

    @ivar raw: The stanza's bytes when they can be written verbatim on a
        stream whose default namespace is the stanza's: they declare no
        default namespace on the stanza, and every prefix they use is
        declared inside them (or is C{xml:}); L{None} otherwise.
    """

    handled = False
    raw = None
    _children = None

    def __init__(self, qname, attribs, localPrefixes, source, context, safe):
        """
        @param qname: C{(uri, name)} of the stanza.
        @param attribs: Its attributes, as domish keys them.
        @param localPrefixes: The prefixes it declares itself.
        @param source: Its bytes, verbatim (UTF-8).
        @param context: The prefixes in scope around it (on the stream's
            root element), to parse C{source} again.
        @param safe: Whether C{source} can be written verbatim.
        """
        # As domish.Element.__init__ sets them for a stanza in the stream's
        # default namespace, without the children.
        self.localPrefixes = localPrefixes
        self.uri, self.name = qname
        self.defaultUri = self.uri
        self.attributes = attribs
        self.parent = None
        self._source = source
        self._context = context
        if safe:
            self.raw = source
            self._rawAttributes = dict(attribs)

    @property
    def children(self):
        """
        The stanza's children, parsed from its bytes the first time they
        are asked for. From then on the stanza may change: it is no longer
        written verbatim.
        """
        children = self._children
        if children is None:
            self.raw = None
            children = self._children = self._parseChildren()
        return children

    @children.setter
    def children(self, value):
        self.raw = None
        self._children = value

    def _parseChildren(self):
        """
        Parse the stanza's bytes again, inside an element declaring the
        stanza's current namespace as default and the prefixes in scope
        around it, and return the stanza's children.
        """
        declarations = "".join(
            " xmlns:%s='%s'" % (prefix, domish.escapeToXml(uri, 1))
            for prefix, uri in self._context.items())
        head = "<w xmlns='%s'%s>" % (domish.escapeToXml(self.uri or "", 1), declarations)
        parsed = []
        stream = domish.ExpatElementStream()
        stream.DocumentStartEvent = lambda root: None
        stream.ElementEvent = parsed.append
        stream.DocumentEndEvent = lambda: None
        stream.parse(head.encode("utf-8") + self._source + b"</w>")
        children = parsed[0].children
        for child in children:
            if domish.IElement.providedBy(child):
                child.parent = self
        return children

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        return domish.Element.__getattr__(self, key)

    def moveNamespace(self, old, new):
        """
        Move the stanza and every descendant in namespace C{old} to C{new},
        without parsing the children when they have not been: they inherit
        the stanza's namespace when they are.

        @return: Whether it was done (otherwise walk the children).
        """
        if self._children is not None:
            return False
        self.uri = new
        if self.defaultUri == old:
            self.defaultUri = new
        return True

    def verbatim(self, namespace):
        """
        The stanza's bytes to write on a stream whose default namespace is
        C{namespace}, or L{None} when it must be serialised: its bytes are
        not verbatim-safe, or its attributes or children may have changed.
        """
        raw = self.raw
        if raw is None or self._children is not None or (
                self.attributes != self._rawAttributes):
            return None
        if self.uri == namespace:
            return raw
        # The stanza's namespace, declared where the stream's default would
        # otherwise apply (its children without a declaration inherit it).
        declaration = _declarations.get(self.uri)
        if declaration is None:
            declaration = (" xmlns='%s'" % (
                domish.escapeToXml(self.uri or "", 1),)).encode("utf-8")
            if len(_declarations) < 16:
                _declarations[self.uri] = declaration
        cut = len(self.name) + 1
        return b"".join([raw[:cut], declaration, raw[cut:]])


#: Namespace URI -> C{xmlns} declaration as bytes, for the few namespaces
#: stanzas are in.
_declarations = {}


#: The prefixes declared in a stanza that declares none (never changed).
_ONLY_XML = {"xml": 1}


class _RawElementStream(domish.ExpatElementStream):
    """
    Twisted's expat element stream, except that each stanza in the stream's
    default namespace is dispatched as a L{RawStanza}: its children are not
    built, and its bytes are kept.

    Expat reports the byte offset of each event in the stream; the bytes fed
    since the start of the pending top-level element are kept (a stanza may
    span many reads) and sliced when it ends.

    The size and depth limits of L{_GuardedElementStream} are checked here,
    in the same handlers, when it sets them.
    """

    #: Returns the size limit in bytes that applies now, or L{None}.
    _limitOf = None
    #: Returns how deep a stanza may nest, or L{None}.
    _depthOf = None

    def __init__(self):
        domish.ExpatElementStream.__init__(self)
        parser = self.parser
        # Names as "uri local prefix": a prefix used inside a stanza but
        # declared outside it makes its bytes unsafe to copy.
        parser.namespace_prefixes = True
        parser.buffer_text = True
        parser.CommentHandler = self._onUnsafe
        parser.ProcessingInstructionHandler = self._onUnsafe
        # A document type may declare entities and default attributes: the
        # bytes would not mean the same without it, so stanzas after one are
        # built as Twisted builds them (the guarded parser refuses it).
        parser.StartDoctypeDeclHandler = self._onDoctype
        self._doctype = False
        self._depth = 0
        # Expat's name of a top-level element -> its (uri, name) when that
        # is a stanza's, else False (a few names: the first 16 are kept).
        self._stanzaNames = {}
        # The bytes fed that may still be needed, from stream offset _base.
        self._pending = b""
        self._base = 0
        self._keep = 0
        self._rootDefault = None
        self._rootDefaults = 1
        self._rootPrefixes = {}
        # The stanza being received raw, where it began, whether nothing
        # has come inside it yet, the prefixes declared inside it, and
        # whether its bytes can still be copied.
        self._stanza = None
        self._stanzaStart = 0
        self._fresh = False
        self._declared = {}
        self._safe = True
        # Byte index where the pending top-level element (or, between
        # elements, the bytes since the last one) began.
        self._start = 0

    def parse(self, buffer):
        self.stanzaSize += len(buffer)
        self._feed(buffer)
        if self.stanzaSize > self.maxStanzaSize:
            raise domish.ParserError("Maximum stanza size exceeded")

    def _feed(self, data):
        """
        Parse C{data}, keeping what the pending element may need of it.
        """
        if self._pending:
            self._pending += data
        else:
            self._pending = data
        try:
            self.parser.Parse(data)
        except self.error as e:
            raise domish.ParserError(str(e))
        done = self._keep - self._base
        if done > 0:
            self._pending = self._pending[done:]
            self._base = self._keep

    def _onUnsafe(self, *args):
        self._safe = False

    def _onDoctype(self, *args):
        self._doctype = True

    def _checkSize(self, size):
        limit = self._limitOf()
        if size > limit:
            raise _Refusal(
                "policy-violation",
                "stanza of more than {} bytes".format(limit),
            )

    def _onStartElement(self, name, attrs):
        depth = self._depth = self._depth + 1
        if depth > 2:
            # The stream's root is depth 1, a stanza 2.
            depthOf = self._depthOf
            if depthOf is not None:
                maxDepth = depthOf()
                if depth > maxDepth + 1:
                    raise _Refusal(
                        "policy-violation",
                        "stanza nested more than {} deep".format(maxDepth),
                    )
        if self._stanza is not None:
            # Inside a raw stanza: nothing is built, prefixes are checked.
            self._fresh = False
            self.elementCount += 1
            if self.elementCount > self.maxElementCount:
                raise domish.ParserError("Maximum element count exceeded")
            if self._safe:
                declared = self._declared
                if name.count(" ") == 2 and name.rpartition(" ")[2] not in declared:
                    self._safe = False
                for key in attrs:
                    if " " in key and key.rpartition(" ")[2] not in declared:
                        self._safe = False
            return
        if depth == 2:
            index = self.parser.CurrentByteIndex
            self._keep = self._start = index
            qname = self._stanzaNames.get(name)
            if qname is None:
                # (uri, name) of an unprefixed stanza name, or False.
                parts = name.split(" ")
                qname = len(parts) == 2 and parts[1] in STANZA_NAMES and tuple(parts)
                if len(self._stanzaNames) < 16:
                    self._stanzaNames[name] = qname
            if (qname and qname[0] == self._rootDefault
                    and len(self.defaultNsStack) == self._rootDefaults
                    and not self._doctype):
                self._startStanza(qname, attrs, index)
                return
        elif depth == 1:
            self._keep = self.parser.CurrentByteIndex
            self._rootPrefixes = dict(self.localPrefixes)
        domish.ExpatElementStream._onStartElement(
            self, _plainName(name), _plainAttributes(attrs))
        if depth == 1:
            self._rootDefault = self.defaultNsStack[-1]
            self._rootDefaults = len(self.defaultNsStack)

    def _startStanza(self, qname, attrs, index):
        """
        A stanza C{(uri, name)} begins at stream offset C{index}: keep it
        raw.
        """
        localPrefixes = self.localPrefixes
        self.localPrefixes = {}
        safe = True
        plain = attrs
        for key in attrs:
            if " " in key:
                plain = _plainAttributes(attrs)
                for key in attrs:
                    prefix = key.rpartition(" ")[2]
                    if " " in key and prefix != "xml" and prefix not in localPrefixes:
                        safe = False
                break
        if localPrefixes and self._rootDefault in localPrefixes.values():
            safe = False
        self._stanza = RawStanza(
            qname, plain, localPrefixes, None, self._rootPrefixes, False)
        self._stanzaStart = index
        self._fresh = True
        if localPrefixes:
            declared = dict.fromkeys(localPrefixes, 1)
            declared["xml"] = 1
        else:
            # Shared until a declaration inside the stanza changes it.
            declared = _ONLY_XML
        self._declared = declared
        self._safe = safe

    def _onEndElement(self, name):
        depth = self._depth
        self._depth = depth - 1
        if depth == 2 and self._limitOf is not None:
            # Checked before anything is dispatched.
            end = self.parser.CurrentByteIndex
            if end - self._start > self._limitOf():
                self._checkSize(end - self._start)
            self._start = end
        stanza = self._stanza
        if stanza is None:
            if depth == 2:
                self._keep = self.parser.CurrentByteIndex
            domish.ExpatElementStream._onEndElement(self, name)
            return
        if depth > 2:
            return
        self._stanza = None
        index = self.parser.CurrentByteIndex
        self._keep = index
        pending = self._pending
        start = self._stanzaStart - self._base
        end = index - self._base
        if self._fresh and pending[end - 2:end] == b"/>":
            # <message .../>: nothing inside.
            stanza._children = []
        else:
            end = pending.index(b">", end) + 1
            source = pending[start:end]
            stanza._source = source
            if self._safe:
                stanza.raw = source
                stanza._rawAttributes = dict(stanza.attributes)
        self.elementCount = 0
        self.stanzaSize = 0
        self.ElementEvent(stanza)

    def _onCdata(self, data):
        self._fresh = False
        if self.currElem is not None:
            self.currElem.addContent(data)

    def _onStartNamespace(self, prefix, uri):
        if self._stanza is None:
            domish.ExpatElementStream._onStartNamespace(self, prefix, uri)
            return
        if uri == self._rootDefault:
            # Redeclared inside: a change of the stanza's namespace would
            # not move what it names.
            self._safe = False
        if prefix is not None:
            declared = self._declared
            if declared is _ONLY_XML:
                declared = self._declared = dict(_ONLY_XML)
            declared[prefix] = declared.get(prefix, 0) + 1

    def _onEndNamespace(self, prefix):
        if self._stanza is None:
            domish.ExpatElementStream._onEndNamespace(self, prefix)
            return
        if prefix is not None:
            declared = self._declared
            count = declared[prefix] - 1
            if count:
                declared[prefix] = count
            else:
                del declared[prefix]


class _GuardedElementStream(_RawElementStream):
    """
    The raw element stream, with RFC 6120's restrictions and size and depth
    limits. Its state lives as long as its parser: a stream restart makes a
    new one.
    """

    def __init__(self, limitOf, depthOf):
        """
        @param limitOf: Returns the size limit in bytes that applies now
            (it grows when the stream is authenticated).
        @param depthOf: Returns how deep a stanza may nest.
        """
        _RawElementStream.__init__(self)
        parser = self.parser
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _restricted("DOCTYPE")
        parser.EntityDeclHandler = _restricted("entity declaration")
        parser.ProcessingInstructionHandler = _restricted("processing instruction")
        parser.CommentHandler = _restricted("comment")
        self._limitOf = limitOf
        self._depthOf = depthOf
        self._fed = 0

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
            self._feed(piece)
            # Bytes fed and not yet part of a completed top-level element:
            # an element being received, or a tag expat is still buffering.
            self._checkSize(self._fed - self._start)


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


#: The most bytes a stream holds in a L{WriteBatch} before writing them
#: (flow control sees only what reaches the transport).
HOLD_LIMIT = 64 * 1024


class WriteBatch:
    """
    Holds the stanzas that streams send while it is open, and writes each
    stream's in one piece when it closes (L{ForwardingStream.send}).

    Forwarding a stanza is little work beside writing it: each transport
    write is a call through the TLS layer, and over TLS a record of its own,
    or a socket write to a component. The reads of a server open a batch
    around handling their data (L{dna.app.flow}), so that what one read makes
    goes out as one write per stream.

    @ivar depth: How many times it is open (a read handled while another is
        being handled does not close it).
    @ivar holding: The streams holding stanzas, in the order they first did.
    """

    def __init__(self):
        self.depth = 0
        self.holding = collections.deque()

    def open(self):
        self.depth += 1

    def close(self):
        """
        Close it once; the last close writes what every stream held.
        """
        self.depth -= 1
        if self.depth == 0:
            self.flush()

    def flush(self):
        """
        Write what every stream holds, now. A stream leaves L{holding} only
        as its stanzas are written: if a write raises, the streams after it
        are written at the next close, and none is forgotten.
        """
        holding = self.holding
        while holding:
            holding.popleft().flushWrites()


class ForwardingStream(xmlstream.XmlStream):
    """
    An XML stream that receives stanzas as L{RawStanza}s and writes those
    that have not changed as they came: a stanza going from one stream to
    another is parsed once, by expat, and neither built into elements nor
    serialised again.

    @ivar bytesSent: Bytes written on the stream so far.
    """

    bytesSent = 0

    footerSent = False
    """
    Whether our closing tag went out (L{S2SStream.sendFooter}): nothing is
    written after it.
    """

    writeBatch = None
    """
    The L{WriteBatch} that holds the stanzas this stream sends while a read
    is handled, to write them at once when it ends; L{None}: each is written
    when sent.
    """

    _held = None

    def _initializeStream(self):
        """
        Set up the raw element stream, as Twisted's method of this name sets
        up its own (C{reset} calls it on every stream restart).
        """
        self.stream = _RawElementStream()
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd

    def send(self, obj):
        """
        Write C{obj}: a L{RawStanza} verbatim when it can be, anything else
        as Twisted's method of this name does; count the bytes in
        L{bytesSent} (the acknowledgements' buffer bound is in bytes).

        A stanza sent while the L{writeBatch} is open is held, and written
        with the others when it closes (one transport write, so one TLS
        record, per stream per read instead of one per stanza). Anything
        else (a stream header or footer, a stream error, a stream feature,
        an acknowledgement) writes what is held first, then itself: nothing
        is reordered, and what changes the connection (STARTTLS, a close)
        never leaves a stanza behind.

        Nothing goes after our closing tag: that would be junk after the
        document to the peer, which would refuse the stream; what we would
        have sent is unacknowledged, and goes again on another stream.
        """
        if self.footerSent and obj is not _FOOTER:
            return
        kind = obj.__class__
        stanza = False
        if kind is RawStanza:
            data = obj.verbatim(self.namespace)
            if data is None:
                data = self._serialise(obj)
            stanza = True
        elif kind is bytes or kind is str:
            data = obj
        elif domish.IElement.providedBy(obj):
            data = self._serialise(obj)
            stanza = obj.name in STANZA_NAMES
        else:
            data = obj
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.bytesSent += len(data)
        if stanza:
            batch = self.writeBatch
            if batch is not None and batch.depth:
                held = self._held
                if held is None:
                    self._held = [data]
                    self._heldBytes = len(data)
                    batch.holding.append(self)
                    return
                held.append(data)
                self._heldBytes += len(data)
                if self._heldBytes < HOLD_LIMIT:
                    return
                # Past the limit, what is held goes to the transport now, so
                # that its buffer, which flow control watches, says it.
                self.flushWrites()
                return
        if self._held is not None:
            self.flushWrites()
        self._write(data)

    def flushWrites(self):
        """
        Write the stanzas the L{writeBatch} held, in one piece.
        """
        held = self._held
        if held is None:
            return
        self._held = None
        self._write(held[0] if len(held) == 1 else b"".join(held))

    def _write(self, data):
        # As Twisted's send does with bytes.
        if self.rawDataOutFn:
            self.rawDataOutFn(data)
        transport = self.transport
        if transport is not None:
            transport.write(data)

    _plans = None

    def _addObserver(self, onetime, event, observerfn, priority, *args, **kwargs):
        # Observers change: the dispatch plans are stale (a change asked for
        # while dispatching is queued, and comes back here when it is made).
        self._plans = None
        xmlstream.XmlStream._addObserver(
            self, onetime, event, observerfn, priority, *args, **kwargs)

    def removeObserver(self, event, observerfn):
        self._plans = None
        xmlstream.XmlStream.removeObserver(self, event, observerfn)

    def _plan(self, name):
        """
        The XPath observers that may match an element named C{name}, as
        C{(priority, query, callbacks, check, calls)} in the order Twisted
        asks them: those whose query names another element are left out
        (they would not match); C{check} is the query to ask, or L{None} for
        those that match every element of that name (C{"/*"},
        C{"/message"}: no predicate, no child); C{calls} are the callbacks
        as C{(key, method, args, kwargs, onetime)}, as Twisted would list
        them. Kept until the observers change (one-time observers that fire
        change them), for the stanza names and the names an observer's
        query names (C{<db:result/>}, C{<a/>}): a few, whatever the peer
        sends.
        """
        plans = self._plans
        if plans is None:
            plans = self._plans = {}
        plan = plans.get(name)
        if plan is None:
            plan = []
            named = name in STANZA_NAMES
            observers = self._xpathObservers
            for priority in sorted(observers, reverse=True):
                for query, callbacklist in observers[priority].items():
                    location = getattr(query, "baseLocation", None)
                    check = query
                    if location.__class__ is _Location:
                        if location.elementName is not None:
                            if location.elementName != name:
                                continue
                            named = True
                        if not location.predicates and location.childLocation is None:
                            check = None
                    calls = tuple(
                        (key, wrapper.method, wrapper.args, wrapper.kwargs, onetime)
                        for key, (wrapper, onetime) in callbacklist.callbacks.items())
                    plan.append((priority, query, callbacklist, check, calls))
            if named:
                # Any other name, chosen by the peer, is not kept: the
                # plans stay as few as the observers.
                plans[name] = plan
        return plan

    def dispatch(self, obj, event=None):
        """
        Dispatch as Twisted's L{EventDispatcher.dispatch} does, in the same
        order with the same outcome, but asking only the XPath observers
        that may match (L{_plan}): Twisted asks each observer of the stream
        about each element, three calls each. Each observer is called as
        Twisted's L{CallbackList.callback} calls it (its own arguments
        first, an exception logged), without the wrapper's copies.
        """
        if event is not None:
            return xmlstream.XmlStream.dispatch(self, obj, event)
        plans = self._plans
        plan = None if plans is None else plans.get(obj.name)
        if plan is None:
            plan = self._plan(obj.name)
        foundTarget = False
        emptyLists = None
        self._dispatchDepth += 1
        for priority, query, callbacklist, check, calls in plan:
            if check is not None and not check.matches(obj):
                continue
            foundTarget = True
            for key, method, args, kwargs, onetime in calls:
                if onetime and key not in callbacklist.callbacks:
                    # Fired already, by a dispatch inside an observer.
                    continue
                try:
                    if kwargs:
                        method(*args, obj, **kwargs)
                    elif args:
                        method(*args, obj)
                    else:
                        method(obj)
                except BaseException:
                    log.err()
                if onetime:
                    callbacks = callbacklist.callbacks
                    del callbacks[key]
                    self._plans = None
                    if not callbacks:
                        if emptyLists is None:
                            emptyLists = []
                        emptyLists.append((priority, query))
        if emptyLists:
            observers = self._xpathObservers
            for priority, query in emptyLists:
                observers[priority].pop(query, None)
        self._dispatchDepth -= 1
        if self._dispatchDepth == 0 and self._updateQueue:
            for update in self._updateQueue:
                update()
            self._updateQueue = []
        return foundTarget

    #: What the parser calls with each top-level element: Twisted's
    #: C{onElement} only dispatches it.
    onElement = dispatch

    def _serialise(self, element):
        """
        Serialise an element for this stream, as Twisted does.
        """
        return element.toXml(
            prefixes=self.prefixes,
            defaultUri=self.namespace,
            prefixesInScope=list(self.prefixes.values()),
        )


class S2SStream(ForwardingStream):
    """
    A server-to-server XML stream (RFC 6120), Receiving or Originating.

    @ivar refusals: How many times the parser refused this stream's input
        (at most once: the stream closes).
    @ivar refusal: The stream error condition it was refused with, or
        L{None}.
    @ivar streamError: The condition of the stream error we sent, on any
        grounds, or L{None}: once set, nothing more is parsed or dispatched.
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

    def _serialise(self, element):
        """
        Serialise an element as Twisted does, faster for the common stanza
        (L{_simpleXml}).
        """
        pieces = []
        if self.namespace not in self.prefixes and _simpleXml(
                element, self.namespace, pieces.append):
            return "".join(pieces)
        return element.toXml(
            prefixes=self.prefixes,
            defaultUri=self.namespace,
            prefixesInScope=list(self.prefixes.keys()),
        )

    def sendFooter(self):
        """
        Send our closing tag, once, after L{STREAM_CLOSING_EVENT}.
        """
        if self.footerSent:
            return
        if self.streamError is None:
            self.dispatch(self, STREAM_CLOSING_EVENT)
        self.footerSent = True
        self.send(_FOOTER)

    def onDocumentEnd(self):
        """
        The peer closed its stream: close ours too (RFC 6120 section 4.4),
        saying first what we handled (L{STREAM_CLOSING_EVENT}), so that the
        peer sends again exactly what we did not, then the connection.
        """
        if self.streamError is None and self.headerSent and not self.footerSent:
            self.sendFooter()
        xmlstream.XmlStream.onDocumentEnd(self)

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
        if self.streamError is not None:
            return
        if self.footerSent and (element.uri, element.name) != (NS_SM, "a"):
            # Only the peer's last acknowledgement still counts.
            return
        stanzaFilter = self.stanzaFilter
        if stanzaFilter is None or stanzaFilter.admit(element):
            self.dispatch(element)
