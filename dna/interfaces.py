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

    def isDelegated(domain, serverNames):
        """
        Whether C{domain} is delegated, under this checker's policy, to one of
        C{serverNames} (the names the remote side authenticated).

        @param domain: The delegated domain, such as C{'sender.tld'}.
        @param serverNames: An iterable of server names, such as
            C{['xmpp1.originating.tld']}.
        @return: A L{Deferred} firing with C{True} or C{False}.
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
