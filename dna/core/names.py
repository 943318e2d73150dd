"""
Addresses on server-to-server streams: the domain part of a JID, validated.

RFC 6120 section 8.1.1 and 8.1.2: every stanza between two servers carries a
'to' and a 'from' attribute; DNA binds pairs of domains (draft-ietf-xmpp-dna-01
section 4), so only the domain part of each address matters here. Parsing goes
through Twisted's stringprep-based L{jid.JID} and ends in A-labels, so every
spelling of one domain maps to the same table key, and that key is the form
the delegation checker and certificate names use.
"""

import functools

from twisted.words.protocols.jabber import jid

from dna.error import InvalidAddress



@functools.lru_cache(maxsize=16384)
def domainOf(address):
    """
    Return the normalised domain part of a JID string.

    @param address: A JID such as C{'romeo@sender.tld/orchard'}.
    @type address: C{str}
    @return: The domain, nameprepped, lower-cased and in A-labels (the form
        DNS and certificates use), such as C{'sender.tld'} or
        C{'xn--caf-dma.tld'}.
    @raise InvalidAddress: When C{address} is not a valid JID.

    Results are remembered (Twisted's stringprep costs tens of microseconds
    per address); failures are not, so hostile input cannot fill the cache
    with garbage, and the cache is bounded.
    """
    if not isinstance(address, str) or not address:
        raise InvalidAddress(address)
    bare, slash, resource = address.partition("/")
    local, at, domain = bare.rpartition("@")
    if (slash and not resource) or (at and not local):
        # RFC 7622 section 3.1: an empty localpart or resourcepart is invalid,
        # though Twisted's parser lets both through.
        raise InvalidAddress(address)
    try:
        host = jid.JID(address).host
    except (jid.InvalidFormat, UnicodeError, ValueError, IndexError):
        # IndexError: Twisted's nameprep indexes into empty labels ("a..b").
        raise InvalidAddress(address)
    return _checkedHost(host, address)


def _checkedHost(host, address):
    """
    Apply the length limits Twisted's parser does not: RFC 7622 section 3.2
    (1023 octets) and RFC 1035 (63 characters per label).
    """
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidAddress(address)
    if len(host) > 1023 or not all(0 < len(label) <= 63 for label in host.split(".")):
        raise InvalidAddress(address)
    return host


@functools.lru_cache(maxsize=4096)
def normalizeDomain(domain):
    """
    Return a bare domain in the form L{domainOf} produces.

    @param domain: A domain such as C{'Sender.TLD.'}; a trailing dot is dropped.
    @raise InvalidAddress: When C{domain} is not a valid domain, or is a JID
        with a localpart or resource.
    """
    if not isinstance(domain, str):
        raise InvalidAddress(domain)
    stripped = domain[:-1] if domain.endswith(".") else domain
    try:
        user, host, resource = jid.parse(stripped)
    except (jid.InvalidFormat, UnicodeError, ValueError, IndexError):
        raise InvalidAddress(domain)
    if user is not None or resource is not None or not host:
        raise InvalidAddress(domain)
    return _checkedHost(host, domain)
