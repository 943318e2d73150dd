"""
A real legacy peer for interoperability tests and benchmarks: Debian's
Prosody 0.12 on loopback, resolving through the validating unbound of
L{tests.integration.dnsenv}, with zones of its own added to that environment.

Facts this relies on (docs in /work/shared/recipes/README.md):

  - Prosody refuses to run as root: it is started as user C{prosody} with
    C{setpriv}; its directory (from L{tempfile.mkdtemp}, made 0755) and
    every file in it belong to that user, keys are 0644, and nothing under
    a 0700 directory is needed (trial's temporary directories are 0700).
  - It resolves through lua-unbound forwarding to our unbound
    (C{resolvconf = false}); it has no static S2S routes.
  - It offers ALPN C{xmpp-server}, requires STARTTLS before dialback, and
    with C{s2s_secure_auth} accepts only valid certificates.
  - Its outgoing connections come from 127.0.0.1.

L{ProsodyServer} also loads C{mod_dna_echo}, written here: a message to
C{echo@<domain>} comes back to its sender with the same body, so a test sees
a stanza go through Prosody's router both ways.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

from dna.channel.dane import associationData
from tests.integration.dnsenv import (
    DNSEnvironment,
    DNSEnvironmentError,
    _isFree,
    _pickAddresses,
)
from tests.integration.processes import stopProcess

#: The port every server here listens on for S2S; each has its own address.
S2S_PORT = 5269

_PROSODY_CONFIG = """\
pidfile = "{run}/prosody.pid"
data_path = "{run}/data"
plugin_paths = {{ "{run}/plugins" }}
log = {{
    {{ levels = {{ min = "{logLevel}" }}, to = "file", filename = "{run}/prosody.log" }};
}}
interfaces = {{ "{address}" }}
local_interfaces = {{ "{address}" }}
c2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {port} }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
use_ipv6 = false
admin_socket = "{run}/admin.sock"

modules_enabled = {{
    "tls"; "dialback"; {bidi}"saslauth"; "disco"; "ping"; "roster";
    "presence"; "message"; "iq"; "admin_shell"; "admin_socket"; "dna_echo";
}}
modules_disabled = {{ "offline"; "c2s"; "posix" }}

s2s_require_encryption = true
s2s_secure_auth = {secureAuth}
s2s_insecure_domains = {{ {insecureDomains} }}
s2s_timeout = 10
use_dane = {dane}
dialback_secret = "prosody dialback secret"

certificates = "{run}/certs"
ssl = {{
    cafile = "{run}/certs/ca.pem";
    certificate = "{run}/certs/server.pem";
    key = "{run}/certs/server.key";
}}

unbound = {{
    resolvconf = false;
    hoststxt = false;
    forward = "{resolver}";
    trustfile = "{run}/anchor.ds";
}}

authentication = "internal_plain"
storage = "internal"
{extra}
{hosts}
"""

_ECHO_MODULE = """\
-- Echo a message sent to echo@<this host> back to its sender.
local st = require "util.stanza";
local jid_split = require "util.jid".split;

module:hook("message/bare", function (event)
    local stanza = event.stanza;
    local node = jid_split(stanza.attr.to);
    if node ~= "echo" or stanza.attr.type == "error" then return; end
    local reply = st.message({
        from = stanza.attr.to; to = stanza.attr.from; type = stanza.attr.type;
        id = stanza.attr.id and ("echo-" .. stanza.attr.id) or nil;
    });
    reply:tag("body"):text(stanza:get_child_text("body") or ""):up();
    module:send(reply);
    return true;
end, 10);
"""


def pickAddresses(count, port=S2S_PORT):
    """
    C{count} loopback addresses in a random C{/24} on which C{port} is free
    (L{tests.integration.dnsenv._pickAddresses}, without the ports).
    """
    return [address for address, _ in _pickAddresses(count, port)]


def xmppZone(serverName, address, domains=(), port=S2S_PORT):
    """
    The records, relative to a zone, of one XMPP server and the domains it
    serves: an A record for C{serverName}, an SRV record for each domain.

    @param serverName: The host name of the server, inside the zone.
    @param domains: Domains inside the zone, the zone's own name as C{"@"}.
    """
    label = serverName.split(".", 1)[0]
    records = ["{} A {}".format(label, address)]
    for domain in domains:
        owner = "_xmpp-server._tcp" + ("" if domain == "@" else "." + domain)
        records.append("{} SRV 0 5 {} {}.".format(owner, port, serverName))
    return records


def tlsaRecord(serverName, certificate, port=S2S_PORT, digest=None):
    """
    The DANE-EE record (C{3 1 1}, RFC 7671 section 5.1) of a server's
    certificate, relative to the zone as L{xmppZone}'s records are.

    @param serverName: The server name (SRV target) inside the zone.
    @param certificate: Its L{dna.testing.pki.IssuedCertificate}.
    @param digest: Hex to publish instead of the certificate's SHA-256
        SubjectPublicKeyInfo digest (a record that does not match).
    """
    if digest is None:
        digest = associationData(certificate.certificate, 1, 1).hex()
    return "_{}._tcp.{} TLSA 3 1 1 {}".format(port, serverName.split(".", 1)[0], digest)


class InteropDNS(DNSEnvironment):
    """
    L{DNSEnvironment}'s tree plus more signed zones under C{example.}, for
    the servers of an interoperability test.
    """

    def __init__(self, workdir, zones):
        """
        @param zones: C{{zone name: [records relative to the zone]}}.
        """
        DNSEnvironment.__init__(self, workdir)
        for name, records in zones.items():
            self._specs[name] = ("nsec", list(records))
            self.domains[name] = ("secure", "interoperability test zone")
            self.zones[name] = "interoperability test zone"


def startInteropDNS(testCase, zones):
    """
    Start an L{InteropDNS} for a trial test, stopped in its cleanup.
    """
    env = InteropDNS(testCase.mktemp(), zones)
    testCase.addCleanup(env.stop)
    return env.start()


def _prosodyUser():
    try:
        return pwd.getpwnam("prosody")
    except KeyError:
        raise DNSEnvironmentError(
            "no user prosody: install Debian's prosody (apt-get install prosody lua-unbound)"
        )


class ProsodyServer:
    """
    Prosody 0.12 in the foreground as user C{prosody}, stopped by its PID.

    @ivar directory: Its directory, removed by L{stop}.
    """

    def __init__(self, hosts, address, certificate, authorities, resolver, anchorFile,
                 secureAuth=True, insecureDomains=(), rosters=None, port=S2S_PORT,
                 logLevel="debug", extraConfig="", dane=False, bidi=True):
        """
        @param hosts: The domains it serves (VirtualHosts).
        @param certificate: Its L{dna.testing.pki.IssuedCertificate}.
        @param authorities: PEM bytes of the CAs it trusts.
        @param resolver: (host, port) of the validating resolver.
        @param anchorFile: The trust anchor file of C{example.}.
        @param rosters: C{{(user, host): {contact JID: "approved"}}}: roster
            items to create, pre-approved (RFC 6121 section 3.4).
        @param extraConfig: More global configuration lines, such as
            C{network_settings = { nagle = false }}.
        @param dane: Whether Prosody checks the certificates of the servers
            it connects to against their TLSA records (C{use_dane}; Prosody
            0.12 does so on outgoing connections only).
        @param bidi: Whether it loads C{mod_s2s_bidi}; without it, Prosody
            answers over a connection of its own.
        """
        self._dane = dane
        self._bidi = bidi
        self.hosts = list(hosts)
        self.address = address
        self.port = port
        self._certificate = certificate
        self._authorities = authorities
        self._resolver = resolver
        self._anchorFile = anchorFile
        self._secureAuth = secureAuth
        self._insecureDomains = insecureDomains
        self._rosters = rosters or {}
        self._logLevel = logLevel
        self._extraConfig = extraConfig
        self.directory = None
        self._process = None

    def _write(self, path, data, mode=0o644):
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(path, mode)

    def start(self, timeout=15.0):
        """
        Write the configuration and start Prosody; blocks until it listens.

        @raise DNSEnvironmentError: When Prosody is missing or does not come
            up.
        """
        prosody = shutil.which("prosody", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
        setpriv = shutil.which("setpriv", path=os.environ.get("PATH", "") + ":/usr/bin")
        if prosody is None or setpriv is None:
            raise DNSEnvironmentError(
                "prosody (and setpriv) not found: apt-get install prosody lua-unbound"
            )
        user = _prosodyUser()
        if not _isFree((self.address, self.port)):
            raise DNSEnvironmentError("{}:{} is in use".format(self.address, self.port))
        self.directory = run = tempfile.mkdtemp(prefix="dna-prosody-")
        os.chmod(run, 0o755)
        for sub in ("certs", "plugins", "data"):
            os.makedirs(os.path.join(run, sub))
        self._certificate.writeTo(os.path.join(run, "certs"), "server")
        self._write(os.path.join(run, "certs", "ca.pem"), self._authorities)
        self._write(os.path.join(run, "plugins", "mod_dna_echo.lua"), _ECHO_MODULE)
        shutil.copyfile(self._anchorFile, os.path.join(run, "anchor.ds"))
        os.chmod(os.path.join(run, "anchor.ds"), 0o644)
        self._writeRosters(os.path.join(run, "data"))
        hosts = "\n".join('VirtualHost "{}"'.format(host) for host in self.hosts)
        self._write(
            os.path.join(run, "prosody.cfg.lua"),
            _PROSODY_CONFIG.format(
                run=run, address=self.address, port=self.port, logLevel=self._logLevel,
                secureAuth="true" if self._secureAuth else "false",
                insecureDomains="; ".join('"{}"'.format(d) for d in self._insecureDomains),
                resolver="{}@{}".format(*self._resolver), hosts=hosts, extra=self._extraConfig,
                dane="true" if self._dane else "false",
                bidi='"s2s_bidi"; ' if self._bidi else "",
            ),
        )
        for root, dirs, files in os.walk(run):
            for name in [root] + [os.path.join(root, f) for f in files]:
                os.chown(name, user.pw_uid, user.pw_gid)
        argv = [
            setpriv, "--reuid=prosody", "--regid=prosody", "--init-groups",
            "--pdeathsig", "TERM", prosody, "-F", "--config",
            os.path.join(run, "prosody.cfg.lua"),
        ]
        with open(os.path.join(run, "console.log"), "wb") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise DNSEnvironmentError(
                    "prosody exited with status {}:\n{}".format(self._process.returncode, self.logTail())
                )
            try:
                socket.create_connection((self.address, self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise DNSEnvironmentError("prosody does not listen:\n" + self.logTail())
                time.sleep(0.01)

    def _writeRosters(self, data):
        for (user, host), contacts in self._rosters.items():
            hostDirectory = os.path.join(data, host.replace(".", "%2e").replace("-", "%2d"))
            directory = os.path.join(hostDirectory, "roster")
            os.makedirs(directory, exist_ok=True)
            # Prosody keeps rosters of existing accounts only.
            os.makedirs(os.path.join(hostDirectory, "accounts"), exist_ok=True)
            self._write(
                os.path.join(hostDirectory, "accounts", user + ".dat"),
                'return { ["password"] = "not used"; };\n',
            )
            items = "".join(
                '    ["{}"] = {{ subscription = "none"; approved = "true"; groups = {{}}; }};\n'.format(contact)
                for contact in contacts
            )
            self._write(
                os.path.join(directory, user + ".dat"),
                "return {\n" + items + '    [false] = { version = 1; pending = {}; };\n};\n',
            )

    def shell(self, command, timeout=30):
        """
        Run a command in Prosody's admin shell.

        @return: The L{subprocess.CompletedProcess}.
        """
        return subprocess.run(
            ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups",
             "prosodyctl", "--config", os.path.join(self.directory, "prosody.cfg.lua"),
             "shell", command],
            capture_output=True, text=True, timeout=timeout,
        )

    def logTail(self, lines=40):
        """
        The end of Prosody's logs, for failure messages.
        """
        text = []
        for name in ("console.log", "prosody.log"):
            try:
                with open(os.path.join(self.directory, name), errors="replace") as f:
                    text.extend(f.readlines()[-lines:])
            except (OSError, TypeError):
                pass
        return "".join(text)

    def log(self):
        """
        All of Prosody's log file.
        """
        try:
            with open(os.path.join(self.directory, "prosody.log"), errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self):
        """
        Stop Prosody (SIGTERM to its PID, SIGKILL after 5 s) and remove its
        directory (kept, for a post-mortem, when the environment variable
        C{DNA_KEEP_PROSODY} is set). Safe to call more than once.
        """
        if self._process is not None:
            stopProcess(self._process, 5)
            self._process = None
        if self.directory is not None:
            if not os.environ.get("DNA_KEEP_PROSODY"):
                shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def startService(testCase, service, address):
    """
    Start a L{dna.app.service.DNAService} listening for S2S on C{address},
    port L{S2S_PORT}, stopped in the test's cleanup.

    @return: The L{Deferred} of C{listen}.
    """
    from twisted.internet import endpoints, reactor

    service.startService()
    testCase.addCleanup(service.stopService)
    return service.listen(endpoints.TCP4ServerEndpoint(reactor, S2S_PORT, interface=address))


def startProsody(testCase, *args, **kwargs):
    """
    Start a L{ProsodyServer} for a trial test, stopped in its cleanup.
    """
    server = ProsodyServer(*args, **kwargs)
    testCase.addCleanup(server.stop)
    return server.start()
