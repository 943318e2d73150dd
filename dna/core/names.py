"""
Domain names and JIDs: the one place that parses, normalises and compares them.

RFC 6120 sections 8.1.1 and 8.1.2: every stanza between two servers carries a
'to' and a 'from' attribute; DNA binds pairs of domains (draft-ietf-xmpp-dna-01
section 4), so the domain part of each address is what routing, the binding
table, enforcement, C{<db:result/>}, DNS queries, certificate names and the
configuration compare.  They must all agree on what a domain is, so they all
call this module.

The canonical form is RFC 7622 section 3.2: IDNA2008 (RFC 5891) after the
UTS #46 non-transitional mapping, in lower-case A-labels, without the trailing
dot.  Two spellings of one name (C{'Bücher.example.'}, C{'ＢÜＣＨＥＲ．example'},
C{'xn--bcher-kva.example'}) give one string; two names IDNA2008 tells apart
stay apart (C{'faß.example'} is C{'xn--fa-hia.example'}, not
C{'fass.example'} as under IDNA2003's nameprep; a joiner that CONTEXTJ allows
is kept, not dropped).  A name IDNA2008 refuses is refused with
L{InvalidAddress}, never mapped to some other name: the exception's
C{__cause__} says why.

Choices beyond the RFCs:

  - At most 253 octets in A-labels (RFC 1035), not RFC 7622's 1023: a server
    domain has to be looked up in DNS and named in certificates, which cannot
    hold more.
  - No IP literals (C{'[::1]'}, C{'192.0.2.1'}), although RFC 7622 allows
    them: a server-to-server peer is authenticated by DNS names (SRV, DNSSEC,
    DNS-IDs), which an address has none of.  A name whose last label is all
    digits is taken for an IPv4 address (RFC 3696 section 2: top-level
    domains are not all-numeric).
  - No underscores: C{'_xmpp-server._tcp.example'} is a DNS owner name, not a
    domain of a JID; the DNS code builds those from a normalised domain.

Localparts and resourceparts still go through Twisted's RFC 6122 stringprep
profiles (nodeprep and resourceprep), as before; no PRECIS (RFC 7613) library
is available yet.
"""

import functools
import re
import unicodedata

import idna
from twisted.words.protocols.jabber.xmpp_stringprep import nodeprep, resourceprep

from dna.error import InvalidAddress

#: RFC 1035 section 2.3.4, without the trailing dot.
MAX_DOMAIN_OCTETS = 253

#: RFC 7622 sections 3.3 and 3.4.
MAX_PART_OCTETS = 1023

#: The characters IDNA (RFC 3490 section 3.1, UTS #46) takes for a dot; one
#: of them may end a name.
_DOTS = ".\u3002\uff0e\uff61"

#: Lower-case LDH labels IDNA2008 accepts as they are: no hyphen first or
#: last, 1 to 63 octets.  Names with C{'--'} in the third and fourth place of
#: a label (A-labels and reserved labels) take the slow path.
_LDH_NAME = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_RESERVED_LABEL = re.compile(r"(?:^|\.)[^.][^.]--")

_RIGHT_TO_LEFT = frozenset(["R", "AL", "AN"])


class _Refused(ValueError):
    """
    Why a name was refused, when IDNA itself does not say: the
    C{__cause__} of the L{InvalidAddress} raised.
    """


def normalizeDomain(domain):
    """
    Return a domain name in its canonical form.

    @param domain: A domain in U-labels, A-labels or a mixture, any case or
        width, with or without one trailing dot, such as C{'Bücher.example.'}.
    @type domain: L{str}

    @return: The name in lower-case A-labels without the trailing dot, such
        as C{'xn--bcher-kva.example'}.
    @rtype: L{str}

    @raise InvalidAddress: When C{domain} is not text or not a domain name
        IDNA2008 accepts: an empty label, a disallowed character (C{'@'},
        C{'/'}, C{'_'}, space), a joiner outside its CONTEXTJ context, a
        label with a leading or trailing hyphen, an C{xn--} label that does
        not decode and encode back to itself, a label over 63 octets or a name
        over 253, an IP address.

    Results are remembered in a bounded cache; failures are not, so hostile
    input cannot fill it.
    """
    if not isinstance(domain, str):
        raise InvalidAddress(domain)
    return _normalizeDomain(domain)


@functools.lru_cache(maxsize=4096)
def _normalizeDomain(domain):
    """
    L{normalizeDomain} for text.
    """
    name = domain[:-1] if domain.endswith(tuple(_DOTS)) else domain
    try:
        if name.isascii():
            name = name.lower()
            if (len(name) > MAX_DOMAIN_OCTETS or not _LDH_NAME.fullmatch(name)
                    or _RESERVED_LABEL.search(name)):
                name = _encode(name)
        else:
            name = _encode(name)
        if name.rpartition(".")[2].isdigit():
            raise _Refused("an IP address is not a server domain")
    except (UnicodeError, _Refused) as error:
        # idna.IDNAError is a UnicodeError.
        raise InvalidAddress(domain) from error
    return name


def _encode(name):
    """
    Map and encode a name without the trailing dot by UTS #46 and IDNA2008.

    @raise UnicodeError: Where IDNA refuses the name.
    @raise _Refused: Where the name contains a dot of its own at the end, an
        C{xn--} label that is not the canonical spelling of its U-label, or
        breaks the Bidi rule across labels.
    """
    encoded = idna.encode(name, uts46=True, std3_rules=True, transitional=False)
    encoded = encoded.decode("ascii")
    if encoded.endswith("."):
        # UTS #46 mapped a character to a dot ('a。。' less one dot).
        raise _Refused("empty label")
    uLabels = []
    for label in encoded.split("."):
        if label.startswith("xn--"):
            uLabel = idna.ulabel(label)
            if idna.encode(uLabel, uts46=True, std3_rules=True).decode("ascii") != label:
                raise _Refused(f"{label} does not decode and encode to itself")
            label = uLabel
        uLabels.append(label)
    if any(unicodedata.bidirectional(c) in _RIGHT_TO_LEFT
           for uLabel in uLabels for c in uLabel):
        # RFC 5893 section 1.4: in a name with a right-to-left label, every
        # label follows the Bidi rule; idna checks each label on its own.
        for uLabel in uLabels:
            idna.check_bidi(uLabel, check_ltr=True)
    return encoded


def normalizeServerName(name):
    """
    Return a server name, as certificates (DNS-ID, the domain of an SRV-ID or
    XmppAddr), SNI and the configuration give it, in the form
    L{normalizeDomain} gives: one form for every comparison of names.

    A wildcard (C{'*.example.net'}) is not a server name: see
    L{normalizeServerPattern}.

    @param name: A domain name, such as C{'XMPP1.Example.NET.'}.
    @type name: L{str}
    @rtype: L{str}
    @raise InvalidAddress: Where L{normalizeDomain} does.
    """
    return normalizeDomain(name)


def normalizeServerPattern(pattern):
    """
    Return a name a certificate presents (a DNS-ID, the domain of an SRV-ID, a
    subject common name), possibly a wildcard, in the form
    L{normalizeServerName} gives: C{'*.Bücher.example'} is
    C{'*.xn--bcher-kva.example'}.

    RFC 6125 section 6.4.3 as its strictest clients apply it (and
    C{service_identity}): the C{'*'} is the whole left-most label and at
    least two labels follow it.  C{'*.example'} would cover a whole
    top-level domain; a partial-label wildcard (C{'f*o.example'},
    C{'xn--*.example'}) and a C{'*'} further right are not patterns but
    invalid names.

    @param pattern: A name, such as C{'*.Provider.EXAMPLE.'}.
    @type pattern: L{str}
    @return: C{'*.'} and a server name, or a server name.
    @rtype: L{str}
    @raise InvalidAddress: When C{pattern} is neither, with the reason as
        its C{__cause__}.
    """
    if not (isinstance(pattern, str) and pattern.startswith("*.")):
        return normalizeServerName(pattern)
    try:
        rest = normalizeDomain(pattern[2:])
    except InvalidAddress as error:
        raise InvalidAddress(pattern) from error.__cause__
    if "." not in rest:
        raise InvalidAddress(pattern) from _Refused(
            "a wildcard covers one label left of at least two")
    return "*." + rest


def coversServerName(presented, name):
    """
    Whether the names a peer presented cover a server name: the name is one
    of them, or a wildcard among them matches it.

    A wildcard matches per RFC 6125 section 6.4.3, by C{service_identity}'s
    rules: C{'*.provider.example'} covers C{'xmpp1.provider.example'}, not
    C{'provider.example'}, not C{'a.xmpp1.provider.example'} (one label,
    exactly), and not an A-label (C{'xn--bcher-kva.provider.example'}: a
    wildcard is no IDN).  Stream authentication
    (L{dna.channel.identity.verifyPeerName}) and delegation checks
    (L{dna.dns.verdict.delegates}) both decide with this function.

    @param presented: Names in the form L{normalizeServerPattern} gives.
    @type presented: L{frozenset} or L{set} of L{str}
    @param name: A server name in the form L{normalizeServerName} gives,
        such as an SRV target or a stream's C{from}.
    @type name: L{str}
    @rtype: L{bool}
    """
    if "*" in name:
        # A pattern is no server name, even among the patterns.
        return False
    if name in presented:
        return True
    head, dot, tail = name.partition(".")
    wildcard = "*." + tail
    if not dot or wildcard not in presented:
        return False
    # Imported here: service_identity loads pyOpenSSL, which the
    # configuration and the policy words must not pay for.
    from service_identity import CertificateError
    from service_identity.hazmat import DNS_ID, DNSPattern

    try:
        return DNS_ID(name).verify(DNSPattern.from_bytes(wildcard.encode("ascii")))
    except (CertificateError, ValueError):
        # Not normalised as documented: covers nothing.
        return False


def sameDomain(a, b):
    """
    Whether two spellings name the same domain.

    @type a: L{str}
    @type b: L{str}
    @rtype: L{bool}
    @raise InvalidAddress: When either is not a domain name: an invalid name
        is refused, not taken as different from every other.
    """
    return normalizeDomain(a) == normalizeDomain(b)


def splitJID(address):
    """
    Split a JID into its parts and normalise each.

    RFC 7622 section 3.1: the first C{'/'} ends the bare JID, and a C{'@'} in
    the bare JID ends the localpart.  An empty localpart or resourcepart is
    invalid, not absent.

    @param address: A JID such as C{'Romeo@Sender.TLD/orchard'}.
    @type address: L{str}

    @return: C{(localpart, domainpart, resourcepart)}, the localpart and the
        resourcepart L{None} when absent, such as C{('romeo', 'sender.tld',
        'orchard')}.  The domainpart is in the form of L{normalizeDomain}; the
        localpart went through nodeprep and the resourcepart through
        resourceprep (RFC 6122), each 1 to 1023 octets.
    @rtype: L{tuple}

    @raise InvalidAddress: When C{address} is not a valid JID.

    Results are remembered in a bounded cache; failures are not.
    """
    if not isinstance(address, str):
        raise InvalidAddress(address)
    if len(address) > _CACHED_MAX:
        return _splitJIDText(address)
    return _splitJID(address)


#: The longest address whose parts L{splitJID} (and so L{domainOf}) remember:
#: a peer sending distinct long addresses (up to 3,071 octets each) must
#: not make the cache hold tens of megabytes (16,384 entries, keys of at
#: most 128 characters: a few megabytes).
_CACHED_MAX = 128


@functools.lru_cache(maxsize=16384)
def _splitJID(address):
    """
    L{splitJID} for text of at most L{_CACHED_MAX} characters, remembered.
    """
    return _splitJIDText(address)


def _splitJIDText(address):
    """
    L{splitJID} for text.
    """
    bare, slash, resource = address.partition("/")
    local, at, domain = bare.partition("@")
    if not at:
        local, domain = None, bare
    if not slash:
        resource = None
    try:
        domain = _normalizeDomain(domain)
    except InvalidAddress as error:
        raise InvalidAddress(address) from error.__cause__
    return (_prepared(nodeprep, local, address), domain,
            _prepared(resourceprep, resource, address))


def _prepared(profile, part, address):
    """
    Prepare a localpart or resourcepart.

    @param profile: C{nodeprep} or C{resourceprep}.
    @param part: The part, or L{None} when absent.
    @param address: The JID, for the error.
    @raise InvalidAddress: When the profile refuses C{part}, or it is empty
        or longer than 1023 octets (before or after preparation).
    """
    if part is None:
        return None
    try:
        if len(part) > MAX_PART_OCTETS:
            raise _Refused("part too long")
        prepared = profile.prepare(part)
        if not 0 < len(prepared.encode("utf-8")) <= MAX_PART_OCTETS:
            raise _Refused("part empty or too long")
    except (UnicodeError, _Refused) as error:
        raise InvalidAddress(address) from error
    return prepared


def domainOf(address):
    """
    Return the normalised domainpart of a JID.

    @param address: A JID such as C{'romeo@Sender.TLD/orchard'}.
    @type address: L{str}
    @return: The domainpart in the form of L{normalizeDomain}, such as
        C{'sender.tld'} or C{'xn--caf-dma.tld'}.
    @rtype: L{str}
    @raise InvalidAddress: When C{address} is not a valid JID (see
        L{splitJID}).
    """
    if address.__class__ is str and len(address) <= _CACHED_MAX:
        # Straight to the remembered parts: one call per stanza address on
        # the forwarding path.
        return _splitJID(address)[1]
    return splitJID(address)[1]
