"""
Routing between the DNA service and local components without writing
stanzas into the log.

wokkel's L{wokkel.component.Router.route} logs every stanza it routes, in
full, at the default level: every message between users would land in the
operator's log (a privacy leak), and serialising each costs as much as
routing it. L{route} routes the same way and logs nothing of a stanza's
content; L{QuietRouter} is a router whose routes use it, and
L{ComponentServerFactory} accepts XEP-0114 components into it with Nagle's
algorithm off. The service
delivers accepted stanzas and bounces through L{route}, whatever router it
is given, and is the router's L{DefaultRoute}.
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber import error
from wokkel.component import Router, XMPPComponentServerFactory

from dna.channel.stream import ForwardingStream
from dna.core.names import domainOf
from dna.error import InvalidAddress

_log = Logger()


def route(router, stanza):
    """
    Route C{stanza} as L{Router.route} does: to the route of its 'to'
    domain, else to the default route, else answer it with
    C{<remote-server-timeout/>} unless it is a result or an error.

    @param router: A L{Router}: its C{routes} are used.
    @param stanza: The stanza, a L{domish.Element}.
    """
    try:
        domain = domainOf(stanza.attributes.get("to"))
    except InvalidAddress as e:
        _log.info("Not routing a stanza with bad address {address!r}", address=e.address)
        return
    routes = router.routes
    destination = routes.get(domain)
    if destination is None:
        destination = routes.get(None)
    if destination is not None:
        destination.send(stanza)
        return
    _log.info("No route to {domain}: {name} not delivered", domain=domain, name=stanza.name)
    if stanza.getAttribute("type") not in ("result", "error"):
        stanzaError = error.StanzaError("remote-server-timeout", type="wait")
        stanzaError.code = "504"
        route(router, stanzaError.toResponse(stanza))


class QuietRouter(Router):
    """
    A L{Router} that routes with L{route}: no stanza content in the log.
    """

    route = route


class DefaultRoute:
    """
    A router's default route that hands what it is given to a callable:
    the stanzas for remote domains go straight to the S2S service, not
    through an L{twisted.words.xish.utility.XmlPipe} (one more dispatch to every observer per stanza,
    as wokkel's C{ServerService} does it).
    """

    def __init__(self, send):
        """
        @param send: Called with each stanza routed here.
        """
        self.send = send

    def addObserver(self, event, observerfn, *args, **kwargs):
        """
        The router observes its routes to route what they send; this one
        sends nothing to the router.
        """

    def removeObserver(self, event, observerfn):
        """
        See L{addObserver}.
        """


class ComponentServerFactory(XMPPComponentServerFactory):
    """
    wokkel's XEP-0114 component listener with C{TCP_NODELAY} on every
    component link: with Nagle's algorithm on, each small write to a
    component waits for the acknowledgement of the previous one, which the
    component's delayed acknowledgement holds up to about 40 ms.

    Its streams are L{ForwardingStream}s: a stanza a component sends is
    forwarded to a peer as the component wrote it, and one from a peer is
    written to the component as the peer wrote it, when neither changed.
    """

    protocol = ForwardingStream

    def makeConnection(self, xs):
        XMPPComponentServerFactory.makeConnection(self, xs)
        xs.transport.setTcpNoDelay(True)
