"""
C{dna-check DOMAIN}: look up and explain the delegation of a domain's XMPP
service (draft-ietf-xmpp-dna-01 section 5 steps 1-2): its
C{_xmpp-server._tcp} SRV records, their DNSSEC status and the chain of keys
that proves it, and, given C{--server-name}, whether the domain is delegated
to that server.

With C{--connect}, it also connects to each SRV target (L{dna.app.probe}),
fetches the certificate presented there without trusting it, and prints,
per target, one verdict per prooftype of the configuration's vocabulary:
C{dnssec-srv} (does the secure SRV record name the target), C{dane} (do the
target's TLSA records match the certificate, L{dna.channel.dane}), C{posh}
(is the certificate's fingerprint in the domain's POSH document,
L{dna.dns.posh}), C{pkix} (does the chain verify under the trusted
authorities, and is the certificate valid for the domain and for the target,
L{dna.channel.identity}), then which prooftypes would authorise the domain
at that server. The verdicts are pure functions of what was found
(L{proofVerdicts}, L{authorisedBy}).

Exit status: 0 when the domain is delegated under the policy given (by
default only a secure delegation counts), 1 when it is not, 2 for a usage
error.
"""

import base64
import sys

from twisted.internet import defer
from twisted.internet.ssl import platformTrust, trustRootFromCertificates
from twisted.python import usage

from dna.app.certificates import authorities
from dna.app.config import (
    DEFAULT_DNS_TIMEOUT,
    DEFAULT_RESOLVERS,
    DNS_PORT,
)
from dna.app.delegation import DNS_MODES, MODE_AD, makeDelegationChecker, makeTLSALookup
from dna.app.probe import ProbeResult, probe
from dna.app.schema import Invalid
from dna.app.script import runCommand
from dna.channel.dane import TLSARecord, verifyChain
from dna.channel.identity import serverNamesFromCertificate, verifyPeerName
from dna.core.hostport import parseAddressPort
from dna.core.names import normalizeDomain, normalizeServerPattern
from dna.core.proofs import PROOF_DANE, PROOF_DNSSEC_SRV, PROOF_PKIX, PROOF_POSH
from dna.dns.addresses import AddressResolver
from dna.dns.client import DNSClient
from dna.dns.dnssec.proofs import readAnchors
from dna.dns.posh import POSHFetcher
from dna.dns.posh import fingerprint as poshFingerprint
from dna.dns.posh import matches as poshMatches
from dna.dns.tlsa import DANE, DANE_FAILED
from dna.dns.verdict import (
    ALLOW_INSECURE,
    INSECURE,
    REQUIRE_SECURE,
    SECURE,
)
from dna.error import (
    CertificateNameMismatch,
    InvalidAddress,
    InvalidHostPort,
    NoAddress,
)

#: The prooftypes C{--connect} judges, in the order printed: delegation
#: (C{[policy] delegation-proofs}), then identity (C{identity-proofs}).
PROOFTYPES = (PROOF_DNSSEC_SRV, PROOF_DANE, PROOF_POSH, PROOF_PKIX)

#: The C{from} of C{--connect}'s stream headers, when none is given: a
#: name that can be nobody's (RFC 6761).
DEFAULT_FROM = "dna-check.invalid"

#: A prooftype's verdict: it proves, it does not, it does not apply (or
#: was not checked).
YES = "yes"
NO = "no"
NOT_APPLICABLE = "n/a"


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
        ["from", None, DEFAULT_FROM,
         "With --connect: the server name put in the stream headers' 'from'."],
        ["ca", None, None,
         "With --connect: PEM file of the certificate authorities PKIX trusts, "
         "instead of the platform's."],
    ]
    optFlags = [
        ["allow-insecure", None, "Accept a provably unsigned delegation."],
        ["posh", None, "Also fetch the POSH document of DOMAIN over HTTPS (RFC 7711), "
         "verified with the platform's trusted authorities."],
        ["trusted-path", None,
         "The path to a resolver off loopback is secured: allow --mode ad with it."],
        ["connect", "c",
         "Connect to each SRV target (STARTTLS, certificate not trusted) and print "
         "every prooftype's verdict for the certificate it presents."],
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
        try:
            self["from"] = normalizeDomain(self["from"])
        except InvalidAddress as e:
            raise usage.UsageError(f"--from: {self['from']!r} is not a server name: "
                                   f"{e.__cause__}")
        self["trustRoot"] = None
        if self["ca"] is not None:
            if not self["connect"]:
                raise usage.UsageError("--ca needs --connect")
            try:
                with open(self["ca"], "rb") as f:
                    self["trustRoot"] = trustRootFromCertificates(
                        list(authorities(self["ca"], f.read())))
            except (OSError, Invalid) as e:
                raise usage.UsageError(f"--ca: {e}")
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


def _verdict(verdict, reason, **more):
    return dict(verdict=verdict, reason=reason, **more)


def _validFor(certificate, name):
    try:
        verifyPeerName(certificate, name)
    except CertificateNameMismatch:
        return False
    return True


def _srvTargets(result):
    targets = []
    for record in result.records:
        try:
            targets.append(normalizeDomain(record.target))
        except InvalidAddress:
            continue
    return targets


def proofVerdicts(domain, target, port, delegation, chain, pkixErrors, tlsa=None,
                  posh=None, now=0):
    """
    Every prooftype's verdict on the certificate a target presented. Pure.

    @param domain: The domain checked (normalized).
    @param target: The SRV target connected to (normalized).
    @param port: Its port, from the SRV record.
    @param delegation: The L{IDelegationResult} of C{domain}.
    @param chain: The presented certificates, leaf first
        (L{cryptography.x509.Certificate}); empty when none came.
    @param pkixErrors: Why PKIX refused the chain; empty when it verified.
    @param tlsa: The L{dna.dns.tlsa.TLSAResult} of C{_PORT._tcp.TARGET},
        or L{None} when it was not looked up (the SRV records are not
        secure).
    @param posh: The L{dna.dns.posh.POSHResult} of C{domain}, or L{None}
        when it was not fetched.
    @param now: Seconds since the epoch, for DANE-TA chains.
    @return: C{{prooftype: {"verdict": YES, NO or NOT_APPLICABLE,
        "reason": str}}} for each of L{PROOFTYPES}; the C{pkix} verdict
        also has C{names}, those of C{domain} and C{target} the certificate
        is valid for.
    """
    leaf = chain[0] if chain else None
    verdicts = {}
    if delegation.status != SECURE:
        verdicts[PROOF_DNSSEC_SRV] = _verdict(
            NO, f"the SRV records are {delegation.status}: {delegation.reason}")
    elif target in _srvTargets(delegation):
        verdicts[PROOF_DNSSEC_SRV] = _verdict(YES, f"a secure SRV record names {target}")
    else:
        verdicts[PROOF_DNSSEC_SRV] = _verdict(NO, f"no secure SRV record names {target}")

    if tlsa is None:
        verdicts[PROOF_DANE] = _verdict(NOT_APPLICABLE, "TLSA not looked up: the SRV "
                                        "records are not secure (RFC 7673)")
    elif tlsa.status == DANE_FAILED:
        verdicts[PROOF_DANE] = _verdict(NO, f"TLSA unusable: {tlsa.reason}")
    elif tlsa.status != DANE:
        verdicts[PROOF_DANE] = _verdict(NOT_APPLICABLE, tlsa.reason)
    elif leaf is None:
        verdicts[PROOF_DANE] = _verdict(NO, "no certificate presented")
    else:
        dane = verifyChain([TLSARecord.fromRdata(rdata) for rdata in tlsa.records],
                           chain, target, now)
        if dane.authenticated and dane.needsPKIX and pkixErrors:
            verdicts[PROOF_DANE] = _verdict(NO, f"{dane.reason}, but PKIX fails")
        elif dane.authenticated:
            verdicts[PROOF_DANE] = _verdict(YES, dane.reason)
        else:
            verdicts[PROOF_DANE] = _verdict(NO, dane.reason or "no TLSA record matches")

    if posh is None:
        verdicts[PROOF_POSH] = _verdict(NOT_APPLICABLE, "not fetched (use --posh)")
    elif posh.document is None:
        verdicts[PROOF_POSH] = _verdict(NO, f"not published: {posh.reason}")
    elif leaf is None:
        verdicts[PROOF_POSH] = _verdict(NO, "no certificate presented")
    elif poshMatches(posh.document, leaf):
        verdicts[PROOF_POSH] = _verdict(
            YES, f"sha-256 {poshFingerprint(leaf)} is listed")
    else:
        verdicts[PROOF_POSH] = _verdict(
            NO, f"sha-256 {poshFingerprint(leaf)} is not among the "
                f"{len(posh.document.fingerprints)} fingerprints")

    names = [] if leaf is None else [
        name for name in dict.fromkeys([domain, target]) if _validFor(leaf, name)]
    if leaf is None:
        verdicts[PROOF_PKIX] = _verdict(NO, "no certificate presented", names=names)
    elif pkixErrors:
        verdicts[PROOF_PKIX] = _verdict(
            NO, f"the chain does not verify: {'; '.join(pkixErrors)}", names=names)
    elif names:
        verdicts[PROOF_PKIX] = _verdict(
            YES, f"the chain verifies; valid for {' and '.join(names)}", names=names)
    else:
        verdicts[PROOF_PKIX] = _verdict(
            NO, f"the chain verifies, but valid for neither {domain} nor {target}",
            names=names)
    return verdicts


def authorisedBy(verdicts, domain, target):
    """
    Which prooftypes would authorise C{domain} at the server of C{target},
    from L{proofVerdicts}: a delegation by C{dnssec-srv} with the target's
    identity proven by C{dane} or C{pkix} (C{"dnssec-srv+dane"}), a
    C{posh} document listing the certificate, or a certificate valid for
    the domain itself under C{pkix} (RFC 6120). Pure.

    @rtype: L{list} of C{str}
    """
    def proven(proof):
        return verdicts[proof]["verdict"] == YES

    ways = []
    if proven(PROOF_DNSSEC_SRV):
        if proven(PROOF_DANE):
            ways.append(f"{PROOF_DNSSEC_SRV}+{PROOF_DANE}")
        if proven(PROOF_PKIX) and target in verdicts[PROOF_PKIX]["names"]:
            ways.append(f"{PROOF_DNSSEC_SRV}+{PROOF_PKIX}")
    if proven(PROOF_POSH):
        ways.append(PROOF_POSH)
    if proven(PROOF_PKIX) and domain in verdicts[PROOF_PKIX]["names"]:
        ways.append(PROOF_PKIX)
    return ways


def certificateData(certificate):
    """
    What C{dna-check} shows of a presented certificate, as JSON values:
    C{subject}, C{names} (the server names it presents), C{sha-256} (its
    POSH fingerprint) and C{notAfter}.
    """
    return {"subject": certificate.subject.rfc4514_string(),
            "names": sorted(serverNamesFromCertificate(certificate)),
            "sha-256": poshFingerprint(certificate),
            "notAfter": certificate.not_valid_after_utc.isoformat()}


def connectionData(domain, target, port, delegation, probed, tlsa=None, posh=None, now=0):
    """
    One target's part of L{reportData} under C{--connect}. Pure.

    @param probed: The L{dna.app.probe.ProbeResult} of the target (its
        C{address} L{None} when it has none).
    @param tlsa: See L{proofVerdicts}, as are C{posh} and C{now}.
    @return: A L{dict} of JSON values: C{target}, C{port}, C{address}
        (C{"host:port"} or L{None}), C{error}, C{certificate}
        (L{certificateData} of the leaf, or L{None}), C{chainLength},
        C{pkixErrors}, C{verdicts} (L{proofVerdicts}) and C{authorisedBy}
        (L{authorisedBy}).
    """
    chain = list(probed.chain)
    pkixErrors = list(probed.pkixErrors)
    verdicts = proofVerdicts(domain, target, port, delegation, chain, pkixErrors, tlsa,
                             posh, now)
    address = None
    if probed.address is not None:
        host, hostPort = probed.address
        address = f"[{host}]:{hostPort}" if ":" in host else f"{host}:{hostPort}"
    return {"target": target, "port": port, "address": address,
            "error": probed.error,
            "certificate": certificateData(chain[0]) if chain else None,
            "chainLength": len(chain), "pkixErrors": pkixErrors,
            "verdicts": verdicts, "authorisedBy": authorisedBy(verdicts, domain, target)}


def reportData(result, delegations, allowInsecure, dane=(), posh=None, connections=()):
    """
    What L{report} prints, as data: the control API's C{/v1/check} answers
    with it (L{dna.app.control}).

    @param result: The L{IDelegationResult}.
    @param delegations: C{[(server name, bool)]}.
    @param dane: The L{dna.dns.tlsa.TLSAResult} of each SRV target.
    @param posh: The L{dna.dns.posh.POSHResult} of the domain, or L{None}
        when it was not fetched.
    @param connections: With C{--connect}, the L{connectionData} of each
        SRV target.
    @return: A L{dict} of JSON values: C{connections} (L{connectionData}
        each, empty without C{--connect}), C{dane} (per target: C{target},
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
        "connections": list(connections),
    }


def report(result, delegations, allowInsecure, out, dane=(), posh=None, connections=()):
    """
    Print a lookup result and the delegation verdicts.

    @param result: The L{IDelegationResult}.
    @param delegations: C{[(server name, bool)]}.
    @param dane: See L{reportData}, as are C{posh} and C{connections}.
    @return: The exit status.
    """
    return printReport(
        reportData(result, delegations, allowInsecure, dane, posh, connections), out)


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
    for connection in data.get("connections", ()):
        printConnection(connection, data["domain"], write)
    if data["delegated"]:
        how = "securely " if data["secure"] else "insecurely (allowed) "
        write(f"result: {how}delegated")
        return 0
    write("result: not delegated")
    return 1


def printConnection(connection, domain, write):
    """
    Print one target's L{connectionData}: the certificate, then one line
    per prooftype (name, verdict, reason), then the authorising ones.

    @param write: Called with each line.
    """
    where = f"{connection['target']}:{connection['port']}"
    address = connection["address"]
    write(f"connect {where}" + (f" ({address})" if address else "") + ":")
    if connection["error"]:
        write(f"  error: {connection['error']}")
    certificate = connection["certificate"]
    if certificate is None:
        write("  certificate: none")
    else:
        write(f"  certificate: {certificate['subject']} "
              f"(chain of {connection['chainLength']})")
        write(f"    names: {', '.join(certificate['names']) or '(none)'}")
        write(f"    sha-256: {certificate['sha-256']}")
        write(f"    not after: {certificate['notAfter']}")
    width = max(len(proof) for proof in PROOFTYPES)
    for proof in PROOFTYPES:
        verdict = connection["verdicts"][proof]
        write(f"  {proof:<{width}}  {verdict['verdict']:<3}  {verdict['reason']}")
    ways = connection["authorisedBy"]
    if ways:
        write(f"authorised: {domain} at {where} by {', '.join(ways)}")
    else:
        write(f"authorised: {domain} at {where} by no prooftype")


@defer.inlineCallbacks
def connectAll(reactor, options, result, client, tlsa, posh):
    """
    Under C{--connect}: look up the addresses of each SRV target, fetch its
    certificate (L{dna.app.probe.probe}) and judge it.

    @param result: The L{IDelegationResult} of the domain.
    @param client: The L{IDNSClient} for addresses.
    @param tlsa: The L{dna.dns.tlsa.TLSALookup}.
    @param posh: The domain's L{dna.dns.posh.POSHResult} or L{None}.
    @return: A L{Deferred} firing with the L{connectionData} of each target.
    """
    domain = options["domain"]
    timeout = options["timeout"]
    trustRoot = options["trustRoot"]
    if trustRoot is None:
        trustRoot = platformTrust()
    resolve = AddressResolver(client)
    connections = []
    for record in result.records:
        try:
            target = normalizeDomain(record.target)
        except InvalidAddress:
            continue
        records = None
        if result.status == SECURE:
            records = yield tlsa.lookup(target, record.port)
        try:
            addresses = yield resolve(target, record.port)
        except NoAddress as e:
            probed = ProbeResult(target, None, error=f"no address: {e}")
        else:
            probed = yield probe(reactor, options["from"], target, addresses[0], trustRoot,
                                 timeout)
        connections.append(connectionData(domain, target, record.port, result, probed,
                                          records, posh, reactor.seconds()))
    return connections


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
    connections = ()
    if options["connect"]:
        connections = yield connectAll(reactor, options, result, client, tlsa, posh)
    return report(result, delegations, options["allow-insecure"], out, dane, posh,
                  connections)


def main(argv=None, _reactor=None):
    """
    The C{dna-check} console script: exits with the status of L{run}.

    @param argv: The arguments, C{sys.argv[1:]} by default.
    """
    runCommand("dna-check", Options(), run, argv, _reactor)
