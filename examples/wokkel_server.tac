"""
A Wokkel-based XMPP server whose server-to-server side is dna.

The hosted domain's own services are Wokkel subprotocol handlers in an
InternalComponent on the server's Router: service discovery (XEP-0030),
software version (XEP-0092) and ping (XEP-0199). Every other domain is
reached through dna, which is the Router's default route.

Run it with::

    twistd -ny examples/wokkel_server.tac

Its settings come from the environment (the defaults are placeholders):

    WOKKEL_SERVER_DOMAIN       the hosted domain
    WOKKEL_SERVER_NAME         our server name: the SRV target the domain's
                               signed _xmpp-server._tcp record names
    WOKKEL_SERVER_CERTIFICATE  its certificate (PEM), and chain
    WOKKEL_SERVER_KEY          its key (PEM)
    WOKKEL_SERVER_CA           the authorities trusted for peers (PEM)
    WOKKEL_SERVER_RESOLVER     a validating DNS resolver on loopback
    WOKKEL_SERVER_LISTEN       where peers connect (an endpoint description)
"""

import os

from twisted.application import service
from zope.interface import implementer

# wokkel 18.0.0's disco, ping and data_form need names current Twisted
# dropped: restore them before importing those (see dna.app.wokkelcompat).
from dna.app import wokkelcompat

wokkelcompat.install()

from wokkel import disco, generic, ping  # noqa: E402
from wokkel.component import InternalComponent  # noqa: E402
from wokkel.iwokkel import IDisco  # noqa: E402
from wokkel.subprotocols import XMPPHandler  # noqa: E402

from dna.app.embed import federate  # noqa: E402
from dna.app.router import QuietRouter  # noqa: E402

setting = os.environ.get
DOMAIN = setting("WOKKEL_SERVER_DOMAIN", "example.org")
SERVER_NAME = setting("WOKKEL_SERVER_NAME", "xmpp1.example.net")


@implementer(IDisco)
class ServerIdentity(XMPPHandler):
    """
    What disco#info reports of the domain itself (XEP-0030 section 3.1: an
    identity, and the disco features, which wokkel's DiscoHandler leaves to
    its siblings).
    """

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if nodeIdentifier:
            return []
        return [disco.DiscoIdentity("server", "im", "Wokkel server with dna"),
                disco.DiscoFeature(disco.NS_DISCO_INFO),
                disco.DiscoFeature(disco.NS_DISCO_ITEMS)]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []


application = service.Application("wokkel-server")

# The server's router (wokkel.component.Router, without logging stanzas).
router = QuietRouter()

# dna: server-to-server for DOMAIN, the router's default route.
s2s = federate(
    router,
    domains=[DOMAIN],
    serverNames={SERVER_NAME: (setting("WOKKEL_SERVER_CERTIFICATE", "xmpp1.pem"),
                               setting("WOKKEL_SERVER_KEY", "xmpp1.key"))},
    ca=setting("WOKKEL_SERVER_CA", "ca.pem"),
    resolvers=[setting("WOKKEL_SERVER_RESOLVER", "127.0.0.1:53")],
    dnsMode="ad",
    listen=setting("WOKKEL_SERVER_LISTEN", "tcp:5269"),
    fallback="dna",
)
s2s.setServiceParent(application)

# The domain's own services: Wokkel handlers in an InternalComponent.
services = InternalComponent(router, DOMAIN)
services.setServiceParent(application)
generic.FallbackHandler().setHandlerParent(services)
disco.DiscoHandler().setHandlerParent(services)
ServerIdentity().setHandlerParent(services)
generic.VersionHandler("wokkel-server", "1.0").setHandlerParent(services)
ping.PingHandler().setHandlerParent(services)
