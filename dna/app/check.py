"""
C{dna-check DOMAIN}: look up and explain the delegation of a domain's XMPP
service (draft-ietf-xmpp-dna-01 section 5 steps 1-2): its
C{_xmpp-server._tcp} SRV records, their DNSSEC status and the chain of keys
that proves it, and, given C{--server-name}, whether the domain is delegated
to that server.

Exit status: 0 when the domain is delegated under the policy given (by
default only a secure delegation counts), 1 when it is not, 2 for a usage
error.
"""

import base64
import sys

from twisted.internet import defer
from twisted.python import usage

from dna.app.config import DEFAULT_DNS_TIMEOUT, DEFAULT_RESOLVERS, DNS_PORT
from dna.app.delegation import DNS_MODES, MODE_AD, makeDelegationChecker, makeTLSALookup
from dna.app.script import runCommand
from dna.core.hostport import parseAddressPort
from dna.core.names import normalizeDomain, normalizeServerPattern
from dna.dns.client import DNSClient
from dna.dns.dnssec.proofs import readAnchors
from dna.dns.posh import POSHFetcher
from dna.dns.verdict import (
    ALLOW_INSECURE,
    INSECURE,
    REQUIRE_SECURE,
    SECURE,
)
from dna.error import InvalidAddress, InvalidHostPort


def parseServer(text):
    """
    Parse C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT}; hosts are IP
    literals, the port is 53 by default
    (L{dna.core.hostport.parseAddressPort}).

    @rtype: C{(str, int)}
    @raise ValueError: When C{text} is none of these.
    """
    try:
        return parseAddressPort(text, DNS_PORT)
    except InvalidHostPort as e:
        raise ValueError(f"invalid server {text!r}: {e.reason}") from None


class Options(usage.Options):
    """
    Command line options of C{dna-check}.
    """

    synopsis = "Usage: dna-check [options] DOMAIN"
    longdesc = ("Look up the _xmpp-server._tcp SRV records of DOMAIN with DNSSEC and "
                "tell whether they securely delegate its XMPP service. Exit status 0 "
                "when delegated, 1 when not, 2 for usage errors.")
    optParameters = [
        ["mode", "m", MODE_AD,
         "'ad': trust the AD bit of a validating resolver on loopback; 'validate': "
         "validate here from trust anchors."],
        ["upstream", None, "resolver",
         "With --mode validate: 'resolver' (asked with CD set) or 'authoritative' "
         "(one server authoritative for every zone, asked with RD clear)."],
        ["trust-anchor", "a", None,
         "File of DS or DNSKEY records in zone file syntax (--mode validate); the "
         "IANA root anchors by default."],
        ["timeout", "t", DEFAULT_DNS_TIMEOUT, "Seconds before giving up.", float],
    ]
    optFlags = [
        ["allow-insecure", None, "Accept a provably unsigned delegation."],
        ["posh", None, "Also fetch the POSH document of DOMAIN over HTTPS (RFC 7711), "
         "verified with the platform's trusted authorities."],
        ["trusted-path", None,
         "The path to a resolver off loopback is secured: allow --mode ad with it."],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["resolvers"] = []
        self["serverNames"] = []

    def opt_resolver(self, value):
        """
        Resolver (or authoritative server) to ask, HOST[:PORT] or [V6]:PORT;
        repeatable. Default 127.0.0.1:53.
        """
        try:
            self["resolvers"].append(parseServer(value))
        except ValueError as e:
            raise usage.UsageError(str(e))

    opt_r = opt_resolver

    def opt_server_name(self, value):
        """
        A name the server authenticated with; also report whether DOMAIN is
        delegated to it. Repeatable.
        """
        try:
            self["serverNames"].append(normalizeServerPattern(value))
        except InvalidAddress as e:
            raise usage.UsageError(f"--server-name: {value!r} is not a server name: "
                                   f"{e.__cause__}")

    opt_s = opt_server_name

    def parseArgs(self, domain):
        self["domain"] = domain

    def postOptions(self):
        if self["mode"] not in DNS_MODES:
            raise usage.UsageError(f"unknown mode {self['mode']!r}: use 'ad' or 'validate'")
        if self["upstream"] not in ("resolver", "authoritative"):
            raise usage.UsageError(f"unknown upstream {self['upstream']!r}: use "
                                   f"'resolver' or 'authoritative'")
        if self["timeout"] <= 0:
            raise usage.UsageError("the timeout must be positive")
        try:
            self["domain"] = normalizeDomain(self["domain"])
        except InvalidAddress as e:
            raise usage.UsageError(f"DOMAIN: {self['domain']!r} is not a domain: "
                                   f"{e.__cause__}")
        if not self["resolvers"]:
            self["resolvers"] = list(DEFAULT_RESOLVERS)
        self["anchors"] = None
        if self["trust-anchor"] is not None:
            if self["mode"] != "validate":
                raise usage.UsageError("--trust-anchor needs --mode validate; in mode "
                                       "'ad' the resolver has its own anchors")
            try:
                self["anchors"] = readAnchors(self["trust-anchor"])
            except ValueError as e:
                raise usage.UsageError(str(e))


def makeChecker(options, reactor):
    """
    The L{dna.dns.delegation.DelegationChecker} the options ask for.

    @raise ValueError: When the combination is refused (such as C{--mode ad}
        with a resolver off loopback).
    """
    timeout = options["timeout"]
    return makeDelegationChecker(
        reactor, options["resolvers"], mode=options["mode"],
        anchors=options["anchors"], upstream=options["upstream"],
        trustedPath=options["trusted-path"],
        policy=ALLOW_INSECURE if options["allow-insecure"] else REQUIRE_SECURE,
        timeout=min(1.0, timeout), retries=3, deadline=timeout)


def makeTLSA(options, reactor, client):
    """
    The L{dna.dns.tlsa.TLSALookup} of the options' mode, for the DANE
    verdicts of the SRV targets.
    """
    return makeTLSALookup(reactor, client, options["mode"], anchors=options["anchors"],
                          upstream=options["upstream"],
                          trustedPath=options["trusted-path"])


def _daneData(result):
    return {"target": result.serverName, "port": result.port, "status": result.status,
            "reason": result.reason, "records": [str(rdata) for rdata in result.records]}


def _poshData(result):
    document = result.document
    return {"reason": result.reason,
            "fingerprints": [] if document is None else [
                f"{algorithm} {base64.b64encode(digest).decode()}"
                for algorithm, digest in document.fingerprints]}


def reportData(result, delegations, allowInsecure, dane=(), posh=None):
    """
    What L{report} prints, as data: the control API's C{/v1/check} answers
    with it (L{dna.app.control}).

    @param result: The L{IDelegationResult}.
    @param delegations: C{[(server name, bool)]}.
    @param dane: The L{dna.dns.tlsa.TLSAResult} of each SRV target.
    @param posh: The L{dna.dns.posh.POSHResult} of the domain, or L{None}
        when it was not fetched.
    @return: A L{dict} of JSON values: C{dane} (per target: C{target},
        C{port}, C{status}, C{reason}, C{records}), C{posh} (C{reason},
        C{fingerprints}) or L{None}, C{domain}, C{records} (each with
        C{priority}, C{weight}, C{port}, C{target}), C{status}, C{chain}
        (lines), C{reason}, C{delegations} (server name to verdict),
        C{delegated} and C{secure}.
    """
    accepted = result.status == SECURE or (allowInsecure and result.status == INSECURE)
    if delegations:
        delegated = any(verdict for _, verdict in delegations)
    else:
        delegated = accepted and any(record.target for record in result.records)
    return {
        "domain": result.domain,
        "records": [{"priority": r.priority, "weight": r.weight, "port": r.port,
                     "target": r.target, "text": str(r)} for r in result.records],
        "status": result.status,
        "chain": [str(link) for link in result.chain],
        "reason": result.reason,
        "delegations": {name: verdict for name, verdict in delegations},
        "delegated": delegated,
        "secure": result.status == SECURE,
        "dane": [_daneData(tlsa) for tlsa in dane],
        "posh": None if posh is None else _poshData(posh),
    }


def report(result, delegations, allowInsecure, out, dane=(), posh=None):
    """
    Print a lookup result and the delegation verdicts.

    @param result: The L{IDelegationResult}.
    @param delegations: C{[(server name, bool)]}.
    @param dane: See L{reportData}, as is C{posh}.
    @return: The exit status.
    """
    return printReport(reportData(result, delegations, allowInsecure, dane, posh), out)


def printReport(data, out):
    """
    Print what L{reportData} gives, as C{dna-check} does (and C{dna-ctl
    check}, from the server's answer).

    @return: The exit status: 0 when delegated, 1 when not.
    """
    write = lambda line="": out.write(line + "\n")  # noqa: E731
    write(f"SRV _xmpp-server._tcp.{data['domain']}:")
    for record in data["records"]:
        write(f"  {record['text']}")
    if not data["records"]:
        write("  (none)")
    write(f"status: {data['status']}")
    if data["chain"]:
        write("chain:")
        for link in data["chain"]:
            write(f"  {link}")
    if data["reason"]:
        write(f"reason: {data['reason']}")
    for name, verdict in data["delegations"].items():
        write(f"delegated to {name}: {'yes' if verdict else 'no'}")
    for dane in data.get("dane", ()):
        write(f"dane {dane['target']}:{dane['port']}: {dane['status']}: {dane['reason']}")
        for record in dane["records"]:
            write(f"  TLSA {record}")
    posh = data.get("posh")
    if posh is not None:
        write(f"posh: {posh['reason']}")
        for line in posh["fingerprints"]:
            write(f"  {line}")
    if data["delegated"]:
        how = "securely " if data["secure"] else "insecurely (allowed) "
        write(f"result: {how}delegated")
        return 0
    write("result: not delegated")
    return 1


@defer.inlineCallbacks
def run(reactor, options, out=None):
    """
    Check the domain of parsed L{Options} and print the outcome.

    @param out: Where to print; C{sys.stdout} by default.
    @return: A L{Deferred} firing with the exit status.
    """
    if out is None:
        out = sys.stdout
    timeout = options["timeout"]
    try:
        client = DNSClient(options["resolvers"], reactor, timeout=min(1.0, timeout),
                           retries=3, deadline=timeout)
        checker = makeChecker(options, reactor)
        tlsa = makeTLSA(options, reactor, client)
    except ValueError as e:
        sys.stderr.write(f"dna-check: {e}\n")
        return 2
    domain = options["domain"]
    result = yield checker.check(domain)
    delegations = []
    for name in options["serverNames"]:
        verdict = yield checker.isDelegated(domain, [name])
        delegations.append((name, verdict))
    dane = []
    if result.status == SECURE:
        for record in result.records:
            if record.target:
                dane.append((yield tlsa.lookup(normalizeDomain(record.target), record.port)))
    posh = None
    if options["posh"]:
        from twisted.web.client import Agent

        posh = yield POSHFetcher(Agent(reactor), reactor, deadline=timeout).fetch(domain)
    return report(result, delegations, options["allow-insecure"], out, dane, posh)


def main(argv=None, _reactor=None):
    """
    The C{dna-check} console script: exits with the status of L{run}.

    @param argv: The arguments, C{sys.argv[1:]} by default.
    """
    runCommand("dna-check", Options(), run, argv, _reactor)
