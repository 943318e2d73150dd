"""
Enforcement of the binding table on incoming stanzas.

draft-ietf-xmpp-dna-01 section 4: a stanza received on a connection is
accepted only when the binding table has a row with its 'to' domain as local
domain and its 'from' domain as remote domain, and the connection it arrived
on is listed in that row. Otherwise it is discarded and answered with a stanza
error; section 6 names C{<not-authorized/>} for a pair that is not authorized
at all. For a pair that is authorized, but on other connections, the answer
carries the application-specific condition C{<invalid-connection/>} in
L{NS_DNA_ERRORS} next to the defined condition C{<not-authorized/>}.

The filter sits where the stream hands each parsed top-level element to its
observers: the stream calls L{StanzaFilter.admit} from its C{onElement} (see
L{dna.channel.stream.S2SStream.stanzaFilter}), so nothing else sees a stanza
first, and it survives stream restarts (STARTTLS, SASL). Each stanza costs two attribute
reads and one set lookup: accepted (to, from) attribute pairs are remembered
per stream, so the JID parsing and table look-up run once per distinct pair of
addresses, not once per stanza. Only accepted pairs are remembered; the memory
is cleared when a binding of the stream is removed (L{StanzaFilter.forget})
and when it reaches its size bound. (An XPath observer per stanza costs a
quarter of the receive path's throughput; see C{bench/enforcement.py}.)
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish

from dna.core.logthrottle import report
from dna.core.names import domainOf
from dna.error import InvalidAddress
from dna.namespaces import NS_DNA_ERRORS, NS_SERVER, STANZA_NAMES

_log = Logger()

#: How many distinct accepted (to, from) address pairs a stream remembers.
DEFAULT_CACHE_SIZE = 4096


def invalidConnectionError(text=None):
    """
    The stanza error for a pair that is bound, but not to this stream.

    @rtype: L{error.StanzaError}
    """
    appCondition = domish.Element((NS_DNA_ERRORS, "invalid-connection"))
    return error.StanzaError(
        "not-authorized", type="auth", text=text, appCondition=appCondition
    )


def errorResponse(stanza, stanzaError):
    """
    An error reply to C{stanza}: addresses swapped, id kept, the error
    element added. Unlike L{error.StanzaError.toResponse} it does not echo the
    original payload back (RFC 6120 section 8.3.1 makes that optional), so a
    hostile sender gets nothing larger than it sent.
    """
    response = xmlstream.toResponse(stanza, "error")
    response.addChild(stanzaError.getElement())
    return response


class StanzaFilter:
    """
    Drop incoming stanzas whose domain pair is not bound to one stream.

    @ivar rejected: How many stanzas this filter has dropped.
    """

    def __init__(self, xs, streamID, bindings, cacheSize=DEFAULT_CACHE_SIZE,
                 isReply=None, incidents=None):
        """
        @param xs: The stream to guard: one that declares a C{stanzaFilter}
            and consults it before dispatching each element.
        @type xs: L{dna.channel.stream.S2SStream}
        @param streamID: The id of this stream in the tables.
        @param bindings: The binding table for the receiving direction
            (L{dna.core.tables.Tables.incoming}).
        @param cacheSize: How many accepted address pairs to remember.
        @param isReply: L{None}, or a callable (local, remote, stanzaID) ->
            bool telling whether we sent a stanza with that id from C{local}
            to C{remote} on this stream, for a pair we send on, ask for, or
            sent on until the peer revoked it. An error stanza from C{remote}
            to C{local} with that id is then accepted without a binding: it
            answers that stanza (such as one the peer refused because it had
            just revoked the pair), and dropping it would lose the only news
            the sender gets.
        @param incidents: The L{dna.core.logthrottle.ThrottledLog} that counts
            and logs rejections (C{"filter-rejected"}), or L{None} to log
            each.
        """
        self._xs = xs
        self._incidents = incidents
        self._streamID = streamID
        self._bindings = bindings
        self._isReply = isReply
        self._cacheSize = cacheSize
        self._accepted = set()
        self.rejected = 0

    def install(self):
        """
        Put the filter in front of every observer of the stream, now and
        after every stream restart.

        @raise TypeError: When the stream has no place for a filter (a plain
            L{xmlstream.XmlStream} would dispatch everything unfiltered).
        """
        xs = self._xs
        if not hasattr(type(xs), "stanzaFilter"):
            raise TypeError(
                "{} does not apply a stanza filter".format(type(xs).__name__)
            )
        xs.stanzaFilter = self

    def uninstall(self):
        """
        Take the filter away; the stream dispatches as before.
        """
        if self._xs.stanzaFilter is self:
            self._xs.stanzaFilter = None
        self._accepted.clear()

    def forget(self):
        """
        Forget the address pairs accepted so far. Called whenever a binding of
        this stream is removed, so that no remembered pair outlives it.
        """
        self._accepted.clear()

    def admit(self, element):
        """
        Whether to dispatch C{element}: yes if it is not a stanza, or if its
        pair is bound to this stream; otherwise it is dropped and answered.

        @rtype: L{bool}
        """
        attributes = element.attributes
        try:
            accepted = (attributes["to"], attributes["from"]) in self._accepted
        except KeyError:
            accepted = False
        if (accepted and element.uri == NS_SERVER) or element.name not in STANZA_NAMES:
            return True
        return self._judge(element)

    def _judge(self, element):
        """
        The slow path: parse the addresses, consult the binding table,
        remember an accepted pair or reject the stanza.

        @return: Whether to dispatch C{element}.
        """
        if element.uri != NS_SERVER:
            self._closeStream(
                element, "invalid-namespace",
                "Stream {streamID}: {name} in namespace {uri}: closing stream",
                uri=element.uri,
            )
            return False
        to = element.getAttribute("to")
        sender = element.getAttribute("from")
        if not to or not sender:
            # RFC 6120 section 4.9.3.7: a stanza between servers lacks 'to'
            # or 'from'.
            self._closeStream(
                element, "improper-addressing",
                "Stream {streamID}: {name} without 'to' or 'from': closing stream",
            )
            return False
        try:
            local = domainOf(to)
            remote = domainOf(sender)
        except InvalidAddress as e:
            self._reject(
                element,
                "malformed",
                error.StanzaError("jid-malformed", type="modify"),
                "malformed address {!r}".format(e.address),
            )
            return False
        if self._bindings.accepts(self._streamID, local, remote):
            if len(self._accepted) >= self._cacheSize:
                self._accepted.clear()
            self._accepted.add((to, sender))
            return True
        if (element.getAttribute("type") == "error" and self._isReply is not None
                and self._isReply(local, remote, element.getAttribute("id"))):
            return True
        if self._bindings.streams(local, remote):
            self._reject(
                element,
                "invalid-connection",
                invalidConnectionError(),
                "pair {remote} -> {local} is bound to other streams".format(
                    remote=remote, local=local
                ),
            )
            return False
        self._reject(
            element,
            "not-authorized",
            error.StanzaError("not-authorized", type="auth"),
            "pair {remote} -> {local} is not bound".format(remote=remote, local=local),
        )
        return False

    def _closeStream(self, element, condition, message, **fields):
        """
        Drop a malformed stanza and close the stream with the stream error
        C{condition}.
        """
        _log.info(
            message,
            event="stream-refused",
            condition=condition,
            streamID=self._streamID,
            name=element.name,
            **fields,
        )
        self._drop(element, "malformed")
        self._xs.sendStreamError(error.StreamError(condition))

    def _drop(self, element, reason):
        """
        Drop a stanza, counted in C{"stanza-refused-<reason>"} of the
        incidents' counters (C{reason}: C{"not-authorized"},
        C{"invalid-connection"} or C{"malformed"}).
        """
        element.handled = True
        self.rejected += 1
        if self._incidents is not None:
            self._incidents.counters["stanza-refused-" + reason] += 1

    def _reject(self, element, reason, stanzaError, why):
        """
        Drop a stanza and answer it with C{stanzaError}, unless it is itself
        an error (RFC 6120 section 8.3.1: never answer an error with an error).
        """
        self._drop(element, reason)
        isError = element.getAttribute("type") == "error"
        report(
            self._incidents, "filter-rejected", _log,
            "Stream {streamID}: dropped {name} from {sender!r} to {to!r}: "
            "{why} ({condition}{answered})",
            event="stanza-refused",
            reason=why,
            refusal=reason,
            streamID=self._streamID,
            name=element.name,
            sender=element.getAttribute("from"),
            to=element.getAttribute("to"),
            why=why,
            condition=stanzaError.condition,
            answered="" if isError else ", answered",
        )
        if not isError:
            self._xs.send(errorResponse(element, stanzaError))
