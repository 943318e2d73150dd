"""
A real HTTPS server on loopback and an HTTP client that reaches it for any
host name, for POSH tests and benchmarks (RFC 7711): the client verifies the
server under PKIX for the URL's host, with a test authority.
"""

from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import Agent
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer


def listenHTTPS(reactor, site, certificate, interface="127.0.0.1"):
    """
    Serve C{site} over TLS on a free port of C{interface}.

    @param certificate: The server's L{dna.testing.pki.IssuedCertificate}.
    @return: A L{Deferred} firing with the listening port.
    """
    options = certificate.toPrivateCertificate().options()
    endpoint = serverFromString(reactor, f"tcp:0:interface={interface}")
    return endpoint.listen(TLSMemoryBIOFactory(options, False, site))


@implementer(IAgentEndpointFactory)
class _LoopbackEndpoints:
    def __init__(self, reactor, host, port, trustRoot):
        self._reactor = reactor
        self._host = host
        self._port = port
        self._trustRoot = trustRoot

    def endpointForURI(self, uri):
        return wrapClientTLS(optionsForClientTLS(uri.host.decode(), self._trustRoot),
                             TCP4ClientEndpoint(self._reactor, self._host, self._port))


def loopbackAgent(reactor, port, trustRoot, host="127.0.0.1"):
    """
    An L{Agent} that connects every URL to C{host}:C{port} over TLS,
    verifying the server for the URL's host against C{trustRoot}.
    """
    return Agent.usingEndpointFactory(
        reactor, _LoopbackEndpoints(reactor, host, port, trustRoot))
