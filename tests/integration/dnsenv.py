"""
A real DNSSEC test environment on loopback, for integration tests.

L{DNSEnvironment} generates a DNSSEC-signed test tree under the test TLD
C{example.} (its trust anchor), serves every zone of it from one knotd and
validates it with one unbound, both child processes on random loopback
addresses, killed in L{DNSEnvironment.stop}.

Most zones are signed in-process with dnspython (C{dns.dnssec.sign_zone},
ECDSAP256SHA256, NSEC, one combined key per zone). C{nsec3.example} is
signed by knotd itself with NSEC3 (RFC 5155, 0 iterations and no salt as
RFC 9276 recommends), with a key made here and imported with C{keymgr} so
that the parent can hold its DS before knotd starts; so is C{many.example}
(with NSEC), which delegates the C{manyCount} benchmark zones.

Some zones are broken on purpose (RFC 4035 section 4.3 C{bogus}); see
L{DOMAINS} for the whole list and the status a validator must find for each.

unbound forwards C{example.} to knotd, which is authoritative for every zone
of the tree (it answers a DS query from the parent zone), so no glue or stub
per zone cut is needed and unbound never leaves loopback.

Usage in a trial test::

    env = startDNSEnvironment(self)
    client = DNSClient([env.resolver], reactor)
"""

import ctypes
import datetime
import io
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives import serialization
from dns.dnssecalgs import PrivateECDSAP256SHA256
from dns.dnssectypes import Algorithm

from tests.integration.processes import stopProcess

#: Every test domain: name -> (status a validator must find, description).
#: The status is that of the SRV lookup of C{_xmpp-server._tcp.<name>}
#: (RFC 4035 section 4.3).
DOMAINS = {
    "example": (
        "secure",
        "The test TLD and trust anchor; delegates every zone below."),
    "originating.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.originating.example. (A 127.0.0.11)."),
    "receiving.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.receiving.example. (A 127.0.0.12)."),
    "sender.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.originating.example.: delegated to the "
        "Originating Server's host."),
    "target.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.receiving.example.: delegated to the "
        "Receiving Server's host."),
    "multi.example": (
        "secure",
        "SRV 10 60 5269 xmpp1, 10 40 5270 xmpp2 and 20 0 5271 xmpp3 "
        ".multi.example. (A 127.0.0.21-23). big.multi.example has a 2 KB "
        "TXT record: truncated over UDP, for TCP."),
    "nosrv.example": (
        "secure",
        "_xmpp-server._tcp.nosrv.example has a TXT record but no SRV: "
        "NODATA proven by NSEC."),
    "missing.example": (
        "secure",
        "Not a zone: _xmpp-server._tcp.missing.example does not exist, "
        "NXDOMAIN proven by NSEC in example."),
    "dot.example": (
        "secure",
        "SRV 0 0 0 . (RFC 2782: service decidedly not available)."),
    "b.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.originating.example.; delegates c.b.example "
        "with a DS."),
    "c.b.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.c.b.example. (A 127.0.0.31); chain "
        "example -> b.example -> c.b.example."),
    "nsec3.example": (
        "secure",
        "Signed by knotd with NSEC3 (0 iterations, no salt, no opt-out); "
        "SRV 0 5 5269 xmpp1.nsec3.example. (A 127.0.0.41)."),
    "missing.nsec3.example": (
        "secure",
        "Not a zone: _xmpp-server._tcp.missing.nsec3.example does not "
        "exist, NXDOMAIN proven by NSEC3."),
    "unsigned.nsec3.example": (
        "insecure",
        "Unsigned; no DS in nsec3.example, proven by NSEC3. "
        "SRV 0 5 5269 xmpp1.unsigned.nsec3.example. (A 127.0.0.52)."),
    "unsigned.example": (
        "insecure",
        "Unsigned; no DS in example, proven by NSEC. "
        "SRV 0 5 5269 xmpp1.unsigned.example. (A 127.0.0.51)."),
    "fass.example": (
        "secure",
        "SRV 0 5 5269 xmpp1.receiving.example.; faß.example "
        "(xn--fa-hia.example, IDNA2003's fass.example) does not exist."),
    "xn--nxasmq6b.example": (
        "secure",
        "\u03b2\u03cc\u03bb\u03bf\u03c3.example (medial sigma): SRV 0 5 5269 "
        "xmpp1.receiving.example.; the final-sigma name (xn--nxasmm1c.example) does "
        "not exist."),
    "xn--11b2ezc.example": (
        "secure",
        "\u0915\u094d\u0937.example: SRV 0 5 5269 xmpp1.receiving.example.; the "
        "name with a ZWNJ after the virama (xn--11b2ezcs70k.example) does not exist."),
    "xn--fa-hia.example": (
        "secure",
        "Not a zone: _xmpp-server._tcp.xn--fa-hia.example does not exist, "
        "NXDOMAIN proven by NSEC in example."),
    "bogus.example": (
        "bogus",
        "Signed, then the SRV changed to port 5270 with the old RRSIG kept."),
    "expired.example": (
        "bogus",
        "Every RRSIG expired 7 days ago (unbound tolerates about a day)."),
    "wrongds.example": (
        "bogus",
        "Signed, but the DS in example is for another key."),
}

#: Addresses of the XMPP hosts the SRV records point to.
HOSTS = {
    "xmpp1.originating.example": "127.0.0.11",
    "xmpp1.receiving.example": "127.0.0.12",
    "xmpp1.multi.example": "127.0.0.21",
    "xmpp2.multi.example": "127.0.0.22",
    "xmpp3.multi.example": "127.0.0.23",
    "xmpp1.c.b.example": "127.0.0.31",
    "xmpp1.nsec3.example": "127.0.0.41",
    "xmpp1.unsigned.example": "127.0.0.51",
    "xmpp1.unsigned.nsec3.example": "127.0.0.52",
    "xmpp1.bogus.example": "127.0.0.61",
    "xmpp1.expired.example": "127.0.0.62",
    "xmpp1.wrongds.example": "127.0.0.63",
}

#: The status a validator finds for the SRV record of a zone of each mode.
_MODE_STATUS = {"unsigned": "insecure", "bogus": "bogus", "expired": "bogus",
                "wrongds": "bogus", "broken": "indeterminate"}

_SRV = "_xmpp-server._tcp"
_SOA = ("@ 3600 IN SOA ns1.example. hostmaster.example. "
        "{serial} 3600 600 86400 300\n")
_PORT = 5300
_PR_SET_PDEATHSIG = 1

# zone -> (how it is signed, records relative to the zone)
_ZONES = {
    "originating.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.originating.example.",
        "xmpp1 A 127.0.0.11"]),
    "receiving.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example.",
        "xmpp1 A 127.0.0.12"]),
    "sender.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.originating.example."]),
    "target.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example."]),
    "multi.example": ("nsec", [
        f"{_SRV} SRV 10 60 5269 xmpp1.multi.example.",
        f"{_SRV} SRV 10 40 5270 xmpp2.multi.example.",
        f"{_SRV} SRV 20 0 5271 xmpp3.multi.example.",
        "xmpp1 A 127.0.0.21",
        "xmpp2 A 127.0.0.22",
        "xmpp3 A 127.0.0.23",
        "big TXT " + " ".join(f'"{i:02d}{"x" * 200}"' for i in range(10))]),
    "nosrv.example": ("nsec", [
        f'{_SRV} TXT "no SRV here"']),
    "dot.example": ("nsec", [
        f"{_SRV} SRV 0 0 0 ."]),
    "b.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.originating.example."]),
    "c.b.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.c.b.example.",
        "xmpp1 A 127.0.0.31"]),
    "nsec3.example": ("knot-nsec3", [
        f"{_SRV} SRV 0 5 5269 xmpp1.nsec3.example.",
        "xmpp1 A 127.0.0.41"]),
    "unsigned.nsec3.example": ("unsigned", [
        f"{_SRV} SRV 0 5 5269 xmpp1.unsigned.nsec3.example.",
        "xmpp1 A 127.0.0.52"]),
    "unsigned.example": ("unsigned", [
        f"{_SRV} SRV 0 5 5269 xmpp1.unsigned.example.",
        "xmpp1 A 127.0.0.51"]),
    "fass.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example."]),
    "xn--nxasmq6b.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example."]),
    "xn--11b2ezc.example": ("nsec", [
        f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example."]),
    "bogus.example": ("bogus", [
        f"{_SRV} SRV 0 5 5269 xmpp1.bogus.example.",
        "xmpp1 A 127.0.0.61"]),
    "expired.example": ("expired", [
        f"{_SRV} SRV 0 5 5269 xmpp1.expired.example.",
        "xmpp1 A 127.0.0.62"]),
    "wrongds.example": ("wrongds", [
        f"{_SRV} SRV 0 5 5269 xmpp1.wrongds.example.",
        "xmpp1 A 127.0.0.63"]),
}

_KNOT_CONF = """\
server:
    rundir: "{run}"
    listen: {address}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: {workers}
control:
    listen: "{socket}"
log:
  - target: stderr
    any: {logLevel}
database:
    storage: "{run}/db"
policy:
  - id: nsec
    manual: on
    algorithm: ecdsap256sha256
    single-type-signing: on
  - id: nsec3
    manual: on
    algorithm: ecdsap256sha256
    single-type-signing: on
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
    nsec3-opt-out: off
template:
  - id: default
    storage: "{zones}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
"""

_UNBOUND_CONF = """\
server:
    interface: {address}@{port}
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{run}"
    pidfile: "{run}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    outgoing-interface: {address}
    qname-minimisation: no
    num-threads: 1
    so-reuseport: no
    trust-anchor-file: "{anchor}"
    trust-anchor-signaling: no
    root-key-sentinel: no
    local-zone: "." refuse
    local-zone: "example." transparent
    cache-max-ttl: 5
    cache-max-negative-ttl: 1
    val-bogus-ttl: 1
    serve-expired: no
    ede: yes
forward-zone:
    name: "example."
    forward-addr: {authoritative}@{authoritativePort}
remote-control:
    control-enable: no
"""


class DNSEnvironmentError(Exception):
    """
    The environment could not be started: a program is missing, a server
    died or did not answer in time. Tests must fail on it, never skip.
    """


def _findProgram(name):
    """
    Find a server program in C{PATH} or the sbin directories, which a
    non-root C{PATH} often lacks.

    @raise DNSEnvironmentError: If it is not installed.
    """
    path = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise DNSEnvironmentError(
            f"{name} not found: the DNS integration tests need knot (knotd, "
            f"keymgr) and unbound, e.g. apt-get install knot unbound")
    return found


def _isFree(address):
    """
    Whether nothing listens on C{address} over UDP or TCP.

    knotd binds UDP with C{SO_REUSEPORT}: a stale knotd would silently share
    the port. A plain C{bind()} without it notices.
    """
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                # TIME-WAIT leftovers do not count; a LISTEN socket does.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
        except OSError:
            return False
        finally:
            s.close()
    return True


def _pickAddresses(count, port=_PORT):
    """
    Pick C{count} free loopback addresses C{127.a.b.1}, C{127.a.b.2}, ...
    in a random C{/24}, so that runs in parallel or after a crash do not
    collide.
    """
    rng = random.SystemRandom()
    for _ in range(100):
        net = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}"
        addresses = [(f"{net}.{i}", port) for i in range(1, count + 1)]
        if all(_isFree(a) for a in addresses):
            return addresses
    raise DNSEnvironmentError("no free loopback address found")


def _newKey():
    """
    A combined signing key (flags 257) with ECDSAP256SHA256.

    @return: C{(private key, DNSKEY rdata)}.
    """
    private = PrivateECDSAP256SHA256.generate()
    dnskey = dns.dnssec.make_dnskey(
        private.public_key(), Algorithm.ECDSAP256SHA256, flags=257)
    return private, dnskey


def _zoneText(name, serial, records, mode, key, validity):
    """
    Make one zone and sign it as C{mode} says.

    @param name: The zone's name, without the trailing dot.
    @param records: C{"owner TYPE data"} strings, owners relative.
    @param mode: C{"nsec"}, C{"expired"} (signatures expired),
        C{"bogus"} (SRV changed after signing), C{"bogus-tlsa"} (every TLSA
        record changed after signing), C{"broken"} (a file knotd cannot load,
        so that it answers SERVFAIL), C{"wrongds"} (signed like
        C{"nsec"}; the parent takes care), C{"unsigned"} or
        C{"knot-nsec"} or C{"knot-nsec3"} (left for knotd to sign).
    @param key: C{(private key, DNSKEY)}.
    @param validity: C{{"valid": (inception, expiration), "expired": ...}}.
    @return: The zone file text, names absolute.
    """
    if mode == "broken":
        # knotd cannot load it and answers SERVFAIL for every name in it.
        return "this is not a zone file\n"
    lines = [_SOA.format(serial=serial), "@ 3600 IN NS ns1.example.\n"]
    for record in records:
        owner, data = record.split(" ", 1)
        lines.append(f"{owner} 3600 IN {data}\n")
    zone = dns.zone.from_text("".join(lines), origin=name + ".",
                              relativize=False)
    if mode in ("nsec", "expired", "bogus", "wrongds", "bogus-tlsa"):
        inception, expiration = validity[
            "expired" if mode == "expired" else "valid"]
        dns.dnssec.sign_zone(zone, keys=[key], dnskey_ttl=3600,
                             inception=inception, expiration=expiration)
    if mode == "bogus":
        # Data changed after signing, the old RRSIG kept.
        with zone.writer() as txn:
            txn.replace(dns.name.from_text(f"{_SRV}.{name}."), 3600,
                        dns.rdata.from_text("IN", "SRV",
                                            f"0 5 5270 xmpp1.{name}."))
    if mode == "bogus-tlsa":
        # Every TLSA RRset's data changed after signing, the old RRSIG kept.
        with zone.writer() as txn:
            for owner, rdataset in list(txn.iterate_rdatasets()):
                if rdataset.rdtype != dns.rdatatype.TLSA:
                    continue
                changed = [dns.rdata.from_text(
                    "IN", "TLSA", f"{rd.usage} {rd.selector} {rd.mtype} "
                    f"{bytes(b ^ 0xff for b in rd.cert).hex()}") for rd in rdataset]
                txn.replace(owner, dns.rdataset.from_rdata_list(3600, changed))
    output = io.StringIO()
    zone.to_file(output, relativize=False, want_origin=True)
    return output.getvalue()


def _makeLeafZone(arguments):
    """
    Make and sign a zone with a new key, in a worker process.

    @param arguments: C{(name, serial, records, validity)}.
    @return: C{(name, DNSKEY text, zone file text)}.
    """
    name, serial, records, validity = arguments
    key = _newKey()
    return (name, key[1].to_text(),
            _zoneText(name, serial, records, "nsec", key, validity))


def _dieWithParent():
    """
    In the child, before C{exec}: ask Linux to send SIGTERM when the thread
    that started it dies, so that a killed test run leaves no server behind.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


class _Process:
    """
    A server running in the foreground as our child, stopped by its PID.
    """

    def __init__(self, name, argv, logPath):
        self.name = name
        self.logPath = logPath
        with open(logPath, "wb") as log:
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_dieWithParent if sys.platform == "linux" else None)

    def running(self):
        return self._popen.poll() is None

    @property
    def returncode(self):
        return self._popen.returncode

    def logTail(self, lines=15):
        try:
            with open(self.logPath, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=5.0):
        return stopProcess(self._popen, timeout)


class DNSEnvironment:
    """
    knotd and a validating unbound on loopback, serving freshly generated
    and signed test zones under C{workdir}.

    The NS records name C{ns1.example.}, whose address is knotd's but on
    port 53, where nothing listens: ask L{authoritative} directly for any
    zone instead of following referrals.

    @ivar authoritative: C{(host, port)} of knotd, authoritative for every
        zone (query it with RD clear); it answers DS queries from the
        parent zone.
    @ivar resolver: C{(host, port)} of unbound, validating with
        C{example.} as the only trust anchor.
    @ivar anchorFile: Path of the trust anchor, one C{example. 3600 IN DS}
        line in zone file syntax.
    @ivar anchors: The trust anchor as a L{dns.rrset.RRset} (DS).
    @ivar zones: C{{zone: description}} of the zones served (no trailing
        dots).
    @ivar domains: C{{domain: (status, description)}}: L{DOMAINS} plus the
        C{many.example} domains.
    @ivar hosts: C{{host: IPv4 address}} of the SRV targets.
    @ivar manyDomains: The names C{n0001.many.example}, ... (each its own
        signed zone with an SRV record to C{xmpp1.receiving.example.}).
    @ivar timings: Seconds spent starting, by step.
    """

    def __init__(self, workdir, manyCount=0, extraZones=None):
        """
        @param workdir: Directory for zones, configs and logs; created if
            missing. Its C{zones}, C{knot} and C{unbound} subdirectories
            are replaced.
        @param manyCount: How many extra signed zones C{nNNNN.many.example}
            to make, for benchmarks.
        @param extraZones: More zones below C{example}, such as zones with
            TLSA records for certificates made by the test:
            C{{name: (mode, records, description)}}, mode and records as in
            L{_zoneText}.  Their status is the mode's.
        """
        self.workdir = os.path.abspath(workdir)
        self.manyCount = manyCount
        self.authoritative = None
        self.resolver = None
        self.anchorFile = os.path.join(self.workdir, "anchor.ds")
        self.anchors = None
        self.hosts = dict(HOSTS)
        self.timings = {}
        width = max(4, len(str(manyCount)))
        self.manyDomains = [
            f"n{i:0{width}d}.many.example" for i in range(1, manyCount + 1)]
        self.domains = dict(DOMAINS)
        self._specs = dict(_ZONES)
        if manyCount:
            # Thousands of DS records are signed faster by knotd.
            self._specs["many.example"] = ("knot-nsec", [])
            self.domains["many.example"] = (
                "secure", "Signed by knotd with NSEC; no SRV; delegates "
                "the nNNNN.many.example zones.")
            for name in self.manyDomains:
                self._specs[name] = ("nsec", [
                    f"{_SRV} SRV 0 5 5269 xmpp1.receiving.example."])
                self.domains[name] = (
                    "secure", "SRV 0 5 5269 xmpp1.receiving.example.")
        for name, (mode, records, description) in (extraZones or {}).items():
            self._specs[name] = (mode, list(records))
            self.domains[name] = (_MODE_STATUS.get(mode, "secure"), description)
        self.zones = {name: self.domains[name][1]
                      for name in ["example"] + list(self._specs)}
        self._knot = None
        self._unbound = None
        self._socketDir = None

    # Zones

    def _writeZones(self, authoritative):
        """
        Generate and sign the tree, write the zone files and the anchor.

        @return: C{{name: (path of the key as PEM, policy)}} of the zones
            knotd must sign itself.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        validity = {
            "valid": (now - datetime.timedelta(hours=1),
                      now + datetime.timedelta(days=30)),
            # unbound accepts signatures up to a day past their expiration
            "expired": (now - datetime.timedelta(days=60),
                        now - datetime.timedelta(days=7)),
        }
        serial = int(time.time())
        zoneDir = os.path.join(self.workdir, "zones")
        os.makedirs(zoneDir)

        children = {name: [] for name in ["example"] + list(self._specs)}
        for name in self._specs:
            parent = name.split(".", 1)[1]
            while parent not in children:
                parent = parent.split(".", 1)[1]
            children[parent].append(name)

        # The many leaf zones first, in worker processes if there are
        # enough to pay for them: only their DNSKEYs are needed here.
        dnskeys = {}
        leaves = [(name, serial, self._specs[name][1], validity)
                  for name in self.manyDomains]
        if len(leaves) >= 200:
            context = multiprocessing.get_context("fork")
            with context.Pool() as pool:
                results = pool.map(_makeLeafZone, leaves, chunksize=50)
        else:
            results = map(_makeLeafZone, leaves)
        for name, dnskey, text in results:
            dnskeys[name] = dns.rdata.from_text("IN", "DNSKEY", dnskey)
            with open(os.path.join(zoneDir, name + ".zone"), "w") as f:
                f.write(text)

        keys = {name: _newKey() for name in children if name not in dnskeys}
        dnskeys.update((name, key[1]) for name, key in keys.items())
        otherKey = _newKey()
        knotSigned = {}
        for name, key in keys.items():
            mode, records = self._specs.get(name, ("nsec", []))
            records = list(records)
            if name == "example":
                records.append(f"ns1 A {authoritative[0]}")
            origin = dns.name.from_text(name)
            for child in children[name]:
                label = dns.name.from_text(child).relativize(origin).to_text()
                records.append(f"{label} NS ns1.example.")
                childMode = self._specs[child][0]
                if childMode == "unsigned":
                    continue
                dnskey = (otherKey[1] if childMode == "wrongds"
                          else dnskeys[child])
                ds = dns.dnssec.make_ds(child + ".", dnskey, "SHA256")
                records.append(f"{label} DS {ds.to_text()}")
            if mode.startswith("knot-"):
                pemPath = os.path.join(zoneDir, name + ".pem")
                with open(pemPath, "wb") as f:
                    f.write(key[0].key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption()))
                knotSigned[name] = (pemPath, mode[len("knot-"):])
            text = _zoneText(name, serial, records, mode, key, validity)
            with open(os.path.join(zoneDir, name + ".zone"), "w") as f:
                f.write(text)

        # Kept for setRecords.
        self._keys, self._validity, self._serial = keys, validity, serial
        ds = dns.dnssec.make_ds("example.", dnskeys["example"], "SHA256")
        self.anchors = dns.rrset.from_rdata_list(
            dns.name.from_text("example."), 3600, [ds])
        with open(self.anchorFile, "w") as f:
            f.write(f"example. 3600 IN DS {ds.to_text()}\n")
        return knotSigned

    # Processes

    def _startKnot(self, authoritative, knotSigned):
        run = os.path.join(self.workdir, "knot")
        os.makedirs(os.path.join(run, "db"))
        # A unix socket path has at most 107 bytes: trial's temp dirs are
        # deeper than that allows.
        self._socketDir = tempfile.mkdtemp(prefix="dna-knot-")
        conf = _KNOT_CONF.format(
            run=run, address=authoritative[0], port=authoritative[1],
            workers=4 if self.manyCount else 1,
            socket=os.path.join(self._socketDir, "knot.sock"),
            logLevel="notice" if self.manyCount > 50 else "info",
            zones=os.path.join(self.workdir, "zones"))
        zoneLines = []
        for name in ["example"] + list(self._specs):
            zoneLines.append(f"  - domain: {name}.\n")
            if name in knotSigned:
                zoneLines.append("    dnssec-signing: on\n"
                                 f"    dnssec-policy: {knotSigned[name][1]}\n")
        confPath = os.path.join(run, "knot.conf")
        with open(confPath, "w") as f:
            f.write(conf + "".join(zoneLines))
        self._knotConf = confPath

        keymgr = _findProgram("keymgr")
        knotd = _findProgram("knotd")
        for name, (pemPath, policy) in knotSigned.items():
            result = subprocess.run(
                [keymgr, "-c", confPath, name + ".", "import-pem", pemPath,
                 "algorithm=13", "ksk=yes", "zsk=yes"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=10)
            if result.returncode != 0:
                raise DNSEnvironmentError(
                    f"keymgr import-pem for {name} failed: "
                    f"{result.stdout}{result.stderr}")
        self._knot = _Process(
            "knotd", [knotd, "-c", confPath], os.path.join(run, "knotd.log"))

    def _startUnbound(self):
        run = os.path.join(self.workdir, "unbound")
        os.makedirs(run, exist_ok=True)
        confPath = os.path.join(run, "unbound.conf")
        with open(confPath, "w") as f:
            f.write(_UNBOUND_CONF.format(
                address=self.resolver[0], port=self.resolver[1], run=run,
                anchor=self.anchorFile,
                authoritative=self.authoritative[0],
                authoritativePort=self.authoritative[1]))
        self._unbound = _Process(
            "unbound", [_findProgram("unbound"), "-d", "-c", confPath],
            os.path.join(run, "unbound.log"))

    def _ask(self, process, server, name, rdtype, timeout=0.05):
        """
        One blocking query for the readiness checks.

        @return: The response, or L{None} on timeout.
        @raise DNSEnvironmentError: If C{process} died.
        """
        if not process.running():
            raise DNSEnvironmentError(
                f"{process.name} exited with status "
                f"{process.returncode}:\n{process.logTail()}")
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD
        try:
            return dns.query.udp(query, server[0], port=server[1],
                                 timeout=timeout)
        except (dns.exception.Timeout, OSError):
            return None

    def _waitAuthoritative(self, deadline):
        """
        Wait until knotd serves every zone, knotd-signed ones signed.
        """
        pending = ["example"] + [name for name, (mode, _) in self._specs.items()
                                 if mode != "broken"]
        while pending:
            name = pending[0]
            response = self._ask(self._knot, self.authoritative,
                                 name + ".", "SOA")
            if response is not None:
                soa = response.get_rrset(
                    response.answer, dns.name.from_text(name),
                    dns.rdataclass.IN, dns.rdatatype.SOA)
                signed = (self._specs.get(name, ("nsec",))[0] == "unsigned"
                          or len(response.answer) > 1)
                if (response.rcode() == dns.rcode.NOERROR
                        and response.flags & dns.flags.AA
                        and soa is not None and signed):
                    pending.pop(0)
                    continue
            if time.monotonic() > deadline:
                raise DNSEnvironmentError(
                    f"knotd does not serve {name} yet:\n"
                    f"{self._knot.logTail()}")
            time.sleep(0.002)

    def _waitResolver(self, deadline):
        """
        Wait until unbound answers the anchor's SOA as secure.
        """
        while True:
            response = self._ask(self._unbound, self.resolver,
                                 "example.", "SOA")
            if (response is not None
                    and response.rcode() == dns.rcode.NOERROR
                    and response.flags & dns.flags.AD):
                return
            if time.monotonic() > deadline:
                raise DNSEnvironmentError(
                    f"unbound does not validate example. yet:\n"
                    f"{self._unbound.logTail()}")
            time.sleep(0.002)

    def start(self, timeout=30.0):
        """
        Generate the zones and start knotd and unbound. Blocks until both
        answer.

        @param timeout: Seconds to wait for the servers.
        @return: C{self}.
        @raise DNSEnvironmentError: If a program is missing or a server
            does not come up; whatever was started is stopped.
        """
        t0 = time.monotonic()
        try:
            for program in ("knotd", "keymgr", "unbound"):
                _findProgram(program)
            os.makedirs(self.workdir, exist_ok=True)
            for leftover in ("zones", "knot", "unbound"):
                shutil.rmtree(os.path.join(self.workdir, leftover),
                              ignore_errors=True)
            self.authoritative, self.resolver = _pickAddresses(2)
            knotSigned = self._writeZones(self.authoritative)
            t1 = time.monotonic()
            self._startKnot(self.authoritative, knotSigned)
            self._waitAuthoritative(t1 + timeout)
            t2 = time.monotonic()
            self._startUnbound()
            self._waitResolver(t2 + timeout)
            t3 = time.monotonic()
        except BaseException:
            self.stop()
            raise
        self.timings = dict(zones=t1 - t0, authoritative=t2 - t1,
                            resolver=t3 - t2, total=t3 - t0)
        return self

    def setRecords(self, name, records, timeout=10.0):
        """
        Replace the records of a zone signed here (mode C{"nsec"}): sign it
        again with its key and a new serial, and have knotd reload it
        (C{knotc zone-reload}). Blocks until knotd serves the new serial;
        unbound's cache keeps the old data for at most its
        C{cache-max-ttl} (5 s).

        @param name: The zone, such as C{"sender.example"}.
        @param records: Its records, as in L{_ZONES}.
        """
        self._serial += 1
        serial = self._serial
        text = _zoneText(name, serial, records, "nsec", self._keys[name], self._validity)
        with open(os.path.join(self.workdir, "zones", name + ".zone"), "w") as f:
            f.write(text)
        result = subprocess.run(
            [_findProgram("knotc"), "-c", self._knotConf, "zone-reload", name + "."],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise DNSEnvironmentError(
                f"knotc zone-reload {name} failed: {result.stdout}{result.stderr}")
        deadline = time.monotonic() + timeout
        while True:
            response = self._ask(self._knot, self.authoritative, name + ".", "SOA")
            if response is not None:
                soa = response.get_rrset(response.answer, dns.name.from_text(name),
                                         dns.rdataclass.IN, dns.rdatatype.SOA)
                if soa is not None and soa[0].serial == serial:
                    return
            if time.monotonic() > deadline:
                raise DNSEnvironmentError(
                    f"knotd does not serve serial {serial} of {name}:\n"
                    f"{self._knot.logTail()}")
            time.sleep(0.01)

    def restartResolver(self, timeout=30.0):
        """
        Restart unbound with an empty cache.

        @return: The seconds it took.
        """
        t0 = time.monotonic()
        if self._unbound is not None:
            self._unbound.stop()
        self._startUnbound()
        self._waitResolver(t0 + timeout)
        return time.monotonic() - t0

    def stop(self):
        """
        Stop the servers (SIGTERM to their PIDs, SIGKILL after 5 s). Safe to
        call more than once.
        """
        for attribute in ("_unbound", "_knot"):
            process = getattr(self, attribute)
            if process is not None:
                process.stop()
                setattr(self, attribute, None)
        if self._socketDir is not None:
            shutil.rmtree(self._socketDir, ignore_errors=True)
            self._socketDir = None


def startDNSEnvironment(testCase, workdir=None, **kwargs):
    """
    Start a L{DNSEnvironment} for a trial test and stop it in its cleanup.

    @param testCase: A L{twisted.trial.unittest.TestCase}.
    @param workdir: Directory for the files; by default a fresh one from
        C{testCase.mktemp()}.
    @param kwargs: More arguments for L{DNSEnvironment}.
    @return: The started L{DNSEnvironment}.
    """
    if workdir is None:
        workdir = testCase.mktemp()
    env = DNSEnvironment(workdir, **kwargs)
    testCase.addCleanup(env.stop)
    return env.start()
