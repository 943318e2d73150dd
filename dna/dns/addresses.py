"""
Addresses of server names: where to open a TCP connection to an SRV target.

The SRV target's A and AAAA records are looked up through the same DNS
client as the delegation checks (never the system resolver, which may not be
the operator's choice), or taken from a static table the operator
configures. They need no DNSSEC: the TLS certificate proves who answers
(draft-ietf-xmpp-dna-01 section 5, steps 6-8).
"""

import dns.rcode
import dns.rdatatype
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from dna.error import NoAddress
from dna.interfaces import IAddressResolver

_log = Logger()


@implementer(IAddressResolver)
class AddressResolver:
    """
    Resolve server names to (host, port) lists.
    """

    def __init__(self, client=None, hosts=None):
        """
        @param client: An L{IDNSClient}; L{None} to use only C{hosts}.
        @param hosts: C{{serverName: (host, port)}}: static addresses that
            win over DNS; a port of L{None} keeps the SRV record's.
        """
        self._client = client
        self._hosts = dict(hosts or {})

    def __call__(self, serverName, port):
        """
        See L{IAddressResolver.__call__}.

        @return: A L{Deferred} firing with a non-empty list of (host, port),
            IPv4 first, or failing with L{NoAddress}.
        """
        static = self._hosts.get(serverName)
        if static is not None:
            host, staticPort = static
            return defer.succeed([(host, port if staticPort is None else staticPort)])
        if self._client is None:
            return defer.fail(NoAddress(serverName, "not in the static host table"))
        lookups = [
            self._client.query(serverName, rdtype, dnssec=False)
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        ]
        d = defer.DeferredList(lookups, consumeErrors=True)

        def collect(results):
            addresses = []
            reasons = []
            for success, value in results:
                if not success:
                    reasons.append(value.getErrorMessage())
                    continue
                if value.rcode() != dns.rcode.NOERROR:
                    reasons.append(dns.rcode.to_text(value.rcode()))
                    continue
                for rrset in value.answer:
                    if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                        addresses.extend((rdata.address, port) for rdata in rrset)
            if not addresses:
                raise NoAddress(serverName, "; ".join(reasons) or "no A or AAAA record")
            return addresses

        return d.addCallback(collect)
