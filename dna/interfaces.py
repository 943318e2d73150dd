"""
Interfaces of DNA's pluggable parts.
"""

from zope.interface import Attribute, Interface


class IDelegationChecker(Interface):
    """
    Decides whether a domain's XMPP service is securely delegated to a server
    (draft-ietf-xmpp-dna-01 section 5 steps 1-2, section 6 step 3).
    """

    def check(domain):
        """
        Look up and validate the delegation of C{domain}: the SRV records of
        C{_xmpp-server._tcp.<domain>} and their DNSSEC security status.

        @param domain: A domain name (C{str}), A-labels or U-labels.
        @return: A L{Deferred} firing with an L{IDelegationResult}. It does not
            fail for DNS problems (timeouts, SERVFAIL, bogus data): those are
            reported in the result's C{status} and C{reason}.
        """

    def isDelegated(domain, serverNames, certificate=None):
        """
        Whether C{domain} is delegated, under this checker's policy, to the
        peer that authenticated C{serverNames} with C{certificate}.

        @param domain: The delegated domain, such as C{'sender.tld'}.
        @param serverNames: An iterable of server names, such as
            C{['xmpp1.originating.tld']}.
        @param certificate: The certificate the peer presented on the
            stream (a L{cryptography.x509.Certificate}), or L{None}: POSH
            (RFC 7711) delegates a domain to a certificate, whatever names
            it carries. Checkers that decide by DNS alone ignore it.
        @return: A L{Deferred} firing with a true value when delegated and a
            false one otherwise: C{True} or C{False}, or a
            L{dna.core.proofs.DelegationVerdict} that also says by which
            prooftype, until when, or why each prooftype failed.
        """


class IDelegationResult(Interface):
    """
    The outcome of one delegation lookup.
    """

    domain = Attribute("The domain that was checked (C{str}, A-labels, no trailing dot).")
    records = Attribute(
        "A sequence of SRV records in RFC 2782 order, each with C{priority}, "
        "C{weight}, C{port} and C{target} (C{str}, A-labels, no trailing dot).")
    status = Attribute(
        "One of C{'secure'}, C{'insecure'}, C{'bogus'}, C{'indeterminate'} "
        "(RFC 4035 section 4.3).")
    reason = Attribute("Why the status is not secure (C{str}), or L{None}.")
    ttl = Attribute("How many seconds this result may be cached (C{int}).")


class IDelegationPolicy(Interface):
    """
    Which delegations count for a domain: only secure ones, or provably
    unsigned ones too (draft-ietf-xmpp-dna-01 section 5 step 2).
    """

    def policyFor(domain):
        """
        The policy for a domain.

        @param domain: A normalised domain (C{str}, A-labels, lower case, no
            trailing dot).
        @return: C{'require-secure'} or C{'allow-insecure'}.
        """


class IDelegationLookup(Interface):
    """
    A way to learn the SRV records of C{_xmpp-server._tcp.<domain>} and their
    DNSSEC status (draft-ietf-xmpp-dna-01 section 5 step 2: "may either
    retrieve DNSSEC records directly or rely on a validating resolver").
    """

    def lookup(domain):
        """
        Look up the SRV records of C{domain}'s XMPP service with their
        status.

        @param domain: The domain, absolute and valid
            (L{dns.name.Name}).
        @return: A L{Deferred} firing with an L{IDelegationResult} whose
            C{domain} is the normalised text of C{domain}. DNS problems are
            reported in its status, not as failures; cancelling it stops the
            queries.
        """


class IDNSClient(Interface):
    """
    Asks DNS servers, keeping the DNSSEC bits that L{twisted.names} drops.
    """

    servers = Attribute(
        "The C{(host, port)} of the servers asked, in order, hosts as IP literals.")

    def query(name, rdtype, dnssec=True, checkingDisabled=False, recursionDesired=True):
        """
        Ask for C{name} and C{rdtype}.

        @param name: The name (C{str} or L{dns.name.Name}).
        @param rdtype: The type, such as C{'SRV'} or L{dns.rdatatype.SRV}.
        @param dnssec: Whether to set the DO bit, asking for RRSIGs.
        @param checkingDisabled: Whether to set the CD bit, asking a
            validating resolver for data it could not validate.
        @param recursionDesired: Whether to set the RD bit; clear it to ask
            an authoritative server.
        @return: A L{Deferred} firing with the L{dns.message.Message}
            answered, whatever its rcode, or failing with a
            L{dna.error.DNSQueryError}.
        """


class IAddressResolver(Interface):
    """
    Where to open a TCP connection to a server name (an SRV target).
    """

    def __call__(serverName, port):
        """
        The addresses of C{serverName}.

        @param serverName: The server name (C{str}, A-labels, no trailing
            dot).
        @param port: The port of its SRV record.
        @return: A L{Deferred} firing with a non-empty list of C{(host,
            port)}, or failing with L{dna.error.NoAddress}.
        """
