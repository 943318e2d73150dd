"""
The C{twistd dna} command: options and service.
"""

from twisted.application import service
from twisted.python import usage

from dna.addressing import InvalidAddress, normalizeDomain
from dna.dialback import DEFAULT_MAX_PENDING, DEFAULT_REQUEST_TIMEOUT
from dna.federation import DEFAULT_QUEUE_LIMIT


def _positive(kind):
    def parse(value):
        number = kind(value)
        if number <= 0:
            raise ValueError(value)
        return number

    parse.coerceDoc = "Must be a positive number."
    return parse


class Options(usage.Options):
    """
    Options of C{twistd dna}.
    """

    synopsis = "[options]"
    longdesc = (
        "Secure, multiplexed XMPP server-to-server federation for hosted "
        "domains (Domain Name Associations, draft-ietf-xmpp-dna)."
    )

    optParameters = [
        ["max-pending", None, DEFAULT_MAX_PENDING, "Most <db:result/> requests a peer may have pending on one stream.", _positive(int)],
        ["request-timeout", None, DEFAULT_REQUEST_TIMEOUT, "Seconds to wait for a peer's answer to a <db:result/> request.", _positive(float)],
        ["queue-limit", None, DEFAULT_QUEUE_LIMIT, "Most stanzas that may wait for one domain pair.", _positive(int)],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["domains"] = set()

    def opt_domain(self, domain):
        """
        A domain hosted here (repeatable).
        """
        try:
            self["domains"].add(normalizeDomain(domain))
        except InvalidAddress:
            raise usage.UsageError("--domain: {!r} is not a valid domain".format(domain))

    def postOptions(self):
        if not self["domains"]:
            raise usage.UsageError("Name at least one hosted domain with --domain.")


def makeService(options):
    """
    Build the service from parsed L{Options}.

    @return: A L{service.MultiService} named C{dna} carrying the validated
        C{options}. It has no network listener yet: the S2S listener and
        connector come with the secure-channels work (see README).
    """
    root = service.MultiService()
    root.setName("dna")
    root.options = options
    return root
