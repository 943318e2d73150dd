"""
The two providers of draft-ietf-xmpp-dna-01 section 3 as the demo, the
benchmarks and the integration tests build them on loopback: the names of
the Originating and the Receiving Server, a test CA with a certificate for
each server name only (DNSSEC-signed SRV records, not certificates, delegate
the tenant domains to them), and a L{DNAService} started and listening on
TCP.

Which delegation checker and address resolver a provider uses is for the
caller to say: in-memory fakes, or DNS served on loopback.
"""

from twisted.internet import defer, endpoints
from twisted.internet.ssl import trustRootFromCertificates

from dna.app.service import DNAService
from dna.testing.pki import CertificateAuthority

#: The server name of provider A, hosting the sender domains.
ORIGINATING = "xmpp1.originating.tld"
#: The server name of provider B, hosting the target domains.
RECEIVING = "xmpp1.receiving.tld"


class ProviderPKI:
    """
    A test CA and a certificate naming each server (one DNS-ID, the common
    name the same).

    @ivar ca: The L{CertificateAuthority}.
    @ivar trustRoot: An L{IOpenSSLTrustRoot} trusting C{ca} alone.
    @ivar certificates: C{{server name: IssuedCertificate}}.
    """

    def __init__(self, caName, serverNames=(ORIGINATING, RECEIVING)):
        """
        @param caName: The CA's common name (shown by the demo).
        @param serverNames: The server names to issue certificates for.
        """
        self.ca = CertificateAuthority(caName)
        self.trustRoot = trustRootFromCertificates([self.ca.toCertificate()])
        self.certificates = {name: self.ca.issue(name, dnsNames=[name])
                             for name in serverNames}


@defer.inlineCallbacks
def startProvider(reactor, hostedDomains, certificates, trustRoot, checker,
                  addressResolver, deliver, interface="127.0.0.1", port=0, backlog=50,
                  **kw):
    """
    Start a provider and have it listen on TCP.

    @param reactor: The reactor of the service and its listening port.
    @param hostedDomains: The domains it hosts.
    @param certificates: C{{server name: IssuedCertificate}} it presents.
    @param trustRoot: What it trusts its peers' certificates from.
    @param checker: Its L{IDelegationChecker}.
    @param addressResolver: Its address resolver.
    @param deliver: Called with each stanza for a hosted domain.
    @param interface: The address to listen on.
    @param port: The port; 0 to have the system pick one.
    @param backlog: The listen backlog.
    @param kw: More arguments of L{DNAService}.
    @return: A L{Deferred} firing with C{(service, IListeningPort)}; when it
        cannot listen, the service is stopped and the L{Deferred} fails with
        L{twisted.internet.error.CannotListenError}.
    """
    service = DNAService(
        hostedDomains,
        {name: cert.toPrivateCertificate() for name, cert in certificates.items()},
        trustRoot,
        checker,
        addressResolver,
        deliver=deliver,
        reactor=reactor,
        **kw,
    )
    service.startService()
    try:
        listening = yield service.listen(
            endpoints.TCP4ServerEndpoint(reactor, port, interface=interface, backlog=backlog))
    except Exception:
        yield service.stopService()
        raise
    return service, listening
