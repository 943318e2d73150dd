"""
What C{dna-demo} prints: the tables drawn like the figures of
draft-ietf-xmpp-dna-01 section 4 and the lines telling each step, made from
the L{dna.demo.world} and its trace of events.

Pure functions from data to text, testable without a reactor; the
scenario decides when to print them.
"""

from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.words.protocols.jabber import error as jabberError

from dna.app.tabular import formatTable
from dna.channel.identity import serverNamesFromCertificate
from dna.channel.tls import peerCertificate
from dna.core.tables import INCOMING, OUTGOING
from dna.demo.world import (
    ORIGINATING,
    RECEIVING,
    TLD,
    Accepted,
    Delivered,
    Lookup,
    Resolved,
    Verdict,
)

#: The indentation of everything told under a heading.
INDENT = "   "


def connectionTable(tables):
    """
    The connection table (section 4), one row per stream.
    """
    rows = []
    for streamID in tables.connections:
        row = tables.connections.get(streamID)
        rows.append([streamID, sorted(row.serverNames), sorted(row.delegatedNames)])
    return formatTable(["Connection", "Server Domain Names", "Delegated Domain Names"],
                       rows)


def bindingTable(table):
    """
    One direction's binding table (section 4): Local, Remote, Connections.
    """
    pairs = set()
    for streamID in table.boundStreams():
        pairs.update(table.pairs(streamID))
    rows = [[local, remote, ", ".join(table.streams(local, remote))]
            for local, remote in sorted(pairs)]
    return formatTable(["Local", "Remote", "Connections"], rows)


def lookupTable(events):
    """
    The first result of every (provider, domain) SRV lookup in a trace.
    """
    rows = {}
    for event in events:
        if isinstance(event, (Lookup, Verdict)):
            key = (event.provider, event.result.domain)
            if key not in rows:
                result = event.result
                rows[key] = [event.provider, f"_xmpp-server._tcp.{result.domain}",
                             result.status,
                             [str(record) for record in result.records] or ["(none)"]]
    return formatTable(["By", "SRV", "Status", "Records"],
                       [rows[key] for key in sorted(rows)])


def heading(text):
    """
    The lines of a step's title, underlined, after an empty line.
    """
    return ["", text, "-" * len(text)]


def indented(text):
    """
    The lines of C{text} (a table), indented under a heading.
    """
    return [INDENT + line for line in text.splitlines()]


def srvText(result):
    """
    The SRV records of a delegation result and its status.
    """
    records = ", ".join(f"{record}" for record in result.records) or "no SRV record"
    return f"{records}  [{result.status}]"


def _names(certificate, kind):
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(kind)


def _commonName(name):
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return values[0].value if values else "(none)"


def describeCertificate(transport):
    """
    The subject, DNS names and issuer of the certificate the peer of a TLS
    transport presented.
    """
    certificate = peerCertificate(transport)
    if certificate is None:
        return "no certificate"
    dnsNames = ", ".join("DNS:" + name for name in _names(certificate, x509.DNSName))
    return (f"CN={_commonName(certificate.subject)} [{dnsNames}], issued by "
            f"{_commonName(certificate.issuer)}")


def _tlsParameters(transport):
    try:
        handle = transport.getHandle()
        return handle.get_protocol_version_name(), handle.get_cipher_name()
    except Exception:
        return None, None


def errorText(stanza):
    """
    The condition and text of an error stanza, like C{<item-not-found/>}.
    """
    exception = jabberError.exceptionFromStanza(stanza)
    text = f" ({exception.text})" if exception.text else ""
    return f"<{exception.condition}/>{text}"


def hostPort(address):
    """
    C{host:port} of an L{IAddress}.
    """
    return f"{address.host}:{address.port}"


def _stanzaText(stanza):
    return (f"<message id='{stanza['id']}' from='{stanza['from']}' "
            f"to='{stanza['to']}'>")


def setUpLines(world):
    """
    Steps 1 to 3: the signed DNS tree, the PKI and the two providers.

    @param world: A L{dna.demo.world.World} set up.
    @return: The lines (C{str}s).
    """
    host, port = world.nameServer
    lines = ["DNA demo: draft-ietf-xmpp-dna-01 sections 3-6, in one process on loopback"]
    lines += heading(f"1. DNS: the delegations, signed here, served on {host} port {port} "
                     f"(UDP, TCP)")
    lines.append(f"   Trust anchor: {world.anchorText}")
    rows = [[f"{TLD}.", f"signed, key {world.keyTags[TLD]}, trust anchor",
             f"ns1 A {world.addresses.nameServer}"]]
    for child, (signed, records) in world.children.items():
        if signed:
            status = f"signed, key {world.keyTags[child]}, DS in {TLD}."
        else:
            status = f"UNSIGNED, no DS in {TLD}. (NSEC proves it)"
        rows.append([child + ".", status,
                     [" ".join(line.split()[0:1] + line.split()[3:]) for line in records]])
    lines += indented(formatTable(["Zone", "DNSSEC (ECDSAP256SHA256, NSEC)", "Records"],
                                  rows))
    lines += heading("2. PKI: a test CA, certificates for the server names only")
    for name in (ORIGINATING, RECEIVING):
        lines.append(f"   {name}: CN={name} [DNS:{name}], issued by {world.ca.name}")
    lines.append("   No certificate names a tenant domain: DNSSEC-signed SRV records "
                 "delegate those.")
    lines += heading("3. Two providers")
    for (provider, serverName, interface, domains), listening in zip(world.plan, world.ports):
        lines.append(f"   {provider}: {serverName} on {interface}:{listening}, hosting "
                     f"{', '.join(domains)}")
    lines.append(f"   Both validate DNSSEC themselves from the {TLD}. anchor (mode "
                 f"'validate', RD=0 DO=1 to {host}:{port}), policy require-secure.")
    return lines


def streamLines(originating, accepted):
    """
    The TLS session and the stream between the providers, as both ends saw
    them.

    @param originating: The Originating Server's L{XmlStream}.
    @param accepted: The Receiving Server's L{XmlStream} of the same
        connection.
    @return: The lines (C{str}s).
    """
    version, cipher = _tlsParameters(originating.transport)
    sni = None
    try:
        sni = accepted.transport.getHandle().get_servername()
    except Exception:
        pass
    sniText = sni.decode("ascii") if sni else "(unknown)"
    names = sorted(serverNamesFromCertificate(peerCertificate(originating.transport)))
    bidi = "bidirectional (XEP-0288)" if getattr(originating, "bidi", False) else "one-way"
    return [
        f"   TLS {version or ''} {cipher or ''}, SNI {sniText}:",
        f"      A verified B's certificate: {describeCertificate(originating.transport)}",
        f"        presented names {names} include the SRV target (section 5 steps 6-8)",
        f"      B verified A's client certificate: "
        f"{describeCertificate(accepted.transport)}",
        f"        it covers the stream's from='{accepted.otherEntity.full()}' "
        f"(section 5, receiving steps 2-3)",
        f"   Stream {originating.sid}: from='{originating.thisEntity.full()}' "
        f"to='{originating.otherEntity.full()}', {bidi}",
    ]


def _newConnection(events):
    return any(isinstance(e, (Resolved, Accepted)) for e in events)


def narrate(events, sender, target, describeStream, streamID):
    """
    What happened while one message went from C{sender} to C{target}, step
    by step.

    @param events: The events of the trace since it was sent.
    @param describeStream: Called with the accepted L{XmlStream} of an
        L{Accepted} event; returns the lines telling its TLS and stream.
    @param streamID: The stream reused when no connection was made.
    @return: The lines (C{str}s).
    """
    lines = []
    senderDomain, targetDomain = sender.split("@")[1], target.split("@")[1]
    for event in events:
        who = event.provider
        if isinstance(event, Lookup):
            how = " (cached)" if event.cached else ""
            lines.append(f"   {who}: SRV _xmpp-server._tcp.{event.result.domain}{how} -> "
                         f"{srvText(event.result)}")
            if not event.cached and event.result.chain:
                lines.append(f"      validated from the {TLD}. trust anchor:")
                for link in event.result.chain:
                    lines.append(f"        {link}")
        elif isinstance(event, Verdict) and event.domain == targetDomain:
            verdict = "securely delegated" if event.delegated else "NOT delegated"
            lines.append(f"   {who}: {event.domain} is {verdict} to "
                         f"{', '.join(event.serverNames)} (section 5 steps 1-2)")
        elif isinstance(event, Verdict):
            lines.append(f"   {who}: got <db:result from='{senderDomain}' "
                         f"to='{targetDomain}'/> (section 6)")
            lines.append(f"   {who}: SRV _xmpp-server._tcp.{event.domain} -> "
                         f"{srvText(event.result)}; the peer authenticated as "
                         f"{', '.join(event.serverNames)}")
            answer = "valid" if event.delegated else "invalid"
            lines.append(f"   {who}: answers <db:result type='{answer}' "
                         f"from='{targetDomain}' to='{senderDomain}'/>")
        elif isinstance(event, Resolved):
            addresses = ", ".join(f"{host}:{port}" for host, port in event.addresses)
            lines.append(f"   {who}: {event.serverName} A -> connects to {addresses}")
        elif isinstance(event, Accepted):
            lines.append(f"   {who}: accepts TCP from {hostPort(event.peer)}")
            lines += describeStream(event.xs)
        elif isinstance(event, Delivered):
            body = str(event.stanza.body) if event.stanza.body else ""
            lines.append(f"   {who}: delivers {_stanzaText(event.stanza)} \"{body}\"")
    if not _newConnection(events):
        lines.append(f"   (no new connection: stream {streamID} was reused, section 5 "
                     f"step 3, bidirectional by XEP-0288)")
    return lines


def pairsLines(pairs, events, streamID):
    """
    One line per further domain pair, with the status of both SRV lookups.

    @param pairs: C{(index, (sender, target))} of the pairs.
    @param events: The events of the trace since they were sent.
    @param streamID: The stream that carried them.
    @return: The lines (C{str}s).
    """
    statuses = {}
    for event in events:
        if isinstance(event, (Lookup, Verdict)):
            statuses[(event.provider, event.result.domain)] = event.result.status
    lines = []
    for i, (sender, target) in pairs:
        senderDomain, targetDomain = sender.split("@")[1], target.split("@")[1]
        lines.append(f"   {i + 1}. {sender} -> {target}: delivered; reply delivered"
                     f"  (A: SRV {targetDomain} {statuses.get(('A', targetDomain), '?')}, "
                     f"B: SRV {senderDomain} {statuses.get(('B', senderDomain), '?')})")
    if not _newConnection(events):
        lines.append(f"   No new connection: every pair was authorized on stream {streamID} "
                     f"(<db:result/> per pair, section 6).")
    return lines


def refusalLines(result, sender, condition):
    """
    How the Originating Server refused to send to an insecurely delegated
    domain.

    @param result: Its L{DelegationResult}.
    @param condition: The condition of the bounce.
    @return: The lines (C{str}s).
    """
    return [f"   A: SRV _xmpp-server._tcp.{result.domain} -> {srvText(result)}",
            f"      {result.reason}",
            f"   A: refuses to connect (section 5 step 2, policy require-secure) and "
            f"bounces it to {sender} with <{condition}/>"]


def whyNot(events, bounce):
    """
    What the sender's provider last found when it looked up the target of
    a bounced stanza, as the end of a sentence; C{""} when it did not.
    """
    target = bounce.getAttribute("from", "").split("@")[-1]
    for event in reversed(events):
        if isinstance(event, (Lookup, Verdict)) and event.result.domain == target:
            return (f": {event.provider} found SRV _xmpp-server._tcp.{target} "
                    f"{event.result.status}"
                    + (f" ({event.result.reason})" if event.result.reason else ""))
    return ""


def summary(peer, host, streamID, count):
    """
    The outcome in one sentence: one TCP connection carried C{count} domain
    pairs both ways.

    @param peer: The L{IAddress} the connection came from.
    @param host: The L{IAddress} it was accepted on.
    """
    carried = f"all {count} domain pairs" if count > 1 else "the domain pair"
    return (f"ONE TCP connection ({hostPort(peer)} -> {hostPort(host)}, stream "
            f"{streamID}) carried {carried} both ways: {2 * count} messages "
            f"delivered, B accepted 1 connection, and both providers' tables hold "
            f"only that stream.")


def tablesLines(events, tables, queries):
    """
    Every SRV lookup, and both providers' tables of section 4.

    @param events: The whole trace.
    @param tables: C{{provider: Tables}}.
    @param queries: C{{provider: number of DNS queries its checker sent}}.
    @return: The lines (C{str}s).
    """
    lines = ["", "   SRV lookups, each validated by the provider itself from the "
                 f"{TLD}. trust anchor (section 5 step 2):"]
    lines += indented(lookupTable(events))
    for provider, serverName in [("A", ORIGINATING), ("B", RECEIVING)]:
        providerTables = tables[provider]
        lines.append("")
        lines.append(f"   Provider {provider} ({serverName}): connection table")
        lines += indented(connectionTable(providerTables))
        for direction, table, local in [(OUTGOING, providerTables.outgoing, "Sender"),
                                        (INCOMING, providerTables.incoming, "Target")]:
            lines.append(f"   Provider {provider}: binding table, {direction} "
                         f"(Local = {local} Domain)")
            lines += indented(bindingTable(table))
    counts = ", ".join(f"{provider}'s {count}" for provider, count in sorted(queries.items()))
    lines.append("")
    lines.append(f"   DNSSEC validation queries to the zone server (RD=0, DO=1): {counts}")
    return lines
