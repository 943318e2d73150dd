"""
Tests for L{dna.channel.identity}: the server names a certificate presents
(RFC 6125, RFC 6120 section 13.7).
"""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from dna.channel.identity import serverNamesFromCertificate, verifyPeerName
from dna.core.names import normalizeServerName
from dna.error import CertificateNameMismatch, DNAError, InvalidAddress
from dna.testing.pki import ID_ON_DNSSRV, ID_ON_XMPPADDR, CertificateAuthority

# Certificates are cheap, but not free: share the authority.
CA = CertificateAuthority("DNA Test Root CA")


def _past(days):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        days=days)


def _certificateWithOtherName(typeID, value, dnsNames=()):
    """
    A certificate with one raw C{otherName}, for malformed contents.
    """
    issued = CA.issue(None, dnsNames=dnsNames)
    key = issued.privateKey
    names = [x509.DNSName(n) for n in dnsNames] + [x509.OtherName(typeID, value)]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(CA.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_past(1))
        .not_valid_after(_past(-1))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .sign(key, hashes.SHA256())
    )

class NormalizeServerNameTests(unittest.TestCase):
    """
    Tests for L{normalizeServerName}.
    """

    def test_lowercaseALabels(self):
        """
        Names come out in lowercase A-labels without a trailing dot.
        """
        self.assertEqual(normalizeServerName("XMPP1.Example.NET."),
                         "xmpp1.example.net")
        self.assertEqual(normalizeServerName("Bücher.example"),
                         "xn--bcher-kva.example")

    def test_refused(self):
        """
        Empty names, IP addresses, empty labels and other characters are not
        server names.
        """
        for name in ["", ".", "127.0.0.1", "::1", "a..example", "a b.example",
                     "user@example.com", "*.example.com"]:
            self.assertRaises(InvalidAddress, normalizeServerName, name)

    def test_text(self):
        """
        Names are text.
        """
        self.assertRaises(InvalidAddress, normalizeServerName, b"example.com")


class ServerNamesTests(unittest.TestCase):
    """
    Tests for L{serverNamesFromCertificate} and L{verifyPeerName}.
    """

    def assertValidFor(self, certificate, *names):
        for name in names:
            verifyPeerName(certificate, name)

    def assertNotValidFor(self, certificate, *names):
        for name in names:
            error = self.assertRaises(
                CertificateNameMismatch, verifyPeerName, certificate, name)
            self.assertEqual(error.name, name)
            self.assertEqual(error.presentedNames,
                             serverNamesFromCertificate(certificate))

    def test_dnsID(self):
        """
        A DNS-ID names a server, in any case.
        """
        certificate = CA.issue(
            "ignored.example", dnsNames=["XMPP1.Example.NET", "b.example"]
        ).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"xmpp1.example.net", "b.example"})
        self.assertValidFor(certificate, "xmpp1.example.net",
                            "Xmpp1.Example.Net.", "b.example")
        self.assertNotValidFor(certificate, "ignored.example", "example.net",
                               "c.example")

    def test_wildcard(self):
        """
        A wildcard DNS-ID is presented as it is and matches one whole label
        on its left, as RFC 6125 allows.
        """
        certificate = CA.issue(None, dnsNames=["*.example.net"]).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"*.example.net"})
        self.assertValidFor(certificate, "xmpp1.example.net", "A.example.net")
        self.assertNotValidFor(certificate, "example.net", "a.b.example.net",
                               "xn--bcher-kva.example.net", "*.example.net")

    def test_srvID(self):
        """
        An SRV-ID for C{_xmpp-server} names the server of its domain; an
        SRV-ID for another service does not.
        """
        certificate = CA.issue(
            None,
            srvNames=["_xmpp-server.Example.com", "_xmpp-client.other.example"],
        ).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"example.com"})
        self.assertValidFor(certificate, "example.com")
        self.assertNotValidFor(certificate, "other.example",
                               "_xmpp-server.example.com",
                               "xmpp-server.example.com")

    def test_xmppAddr(self):
        """
        An XmppAddr that is a bare domain names a server; one with a
        localpart or a resourcepart does not.
        """
        certificate = CA.issue(
            None,
            xmppAddrs=["Example.com", "user@user.example",
                       "res.example/resource"],
        ).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"example.com"})
        self.assertValidFor(certificate, "example.com", "EXAMPLE.COM")
        self.assertNotValidFor(certificate, "user.example", "res.example",
                               "user@user.example", "sub.example.com")

    def test_xmppAddrIsNotAPattern(self):
        """
        An XmppAddr is compared exactly: C{*} in it is no wildcard.
        """
        certificate = CA.issue(None, xmppAddrs=["*.example.com"]).certificate
        self.assertEqual(serverNamesFromCertificate(certificate), set())
        self.assertNotValidFor(certificate, "a.example.com")

    def test_allKinds(self):
        """
        The names of all identifier types are presented together.
        """
        certificate = CA.issue(
            "cn.example",
            dnsNames=["dns.example"],
            srvNames=["_xmpp-server.srv.example"],
            xmppAddrs=["xmpp.example"],
        ).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"dns.example", "srv.example", "xmpp.example"})
        self.assertValidFor(certificate, "dns.example", "srv.example",
                            "xmpp.example")
        self.assertNotValidFor(certificate, "cn.example")

    def test_commonNameWithoutSubjectAltName(self):
        """
        Without any subject alternative name, the common name is a server
        name, as RFC 6125 section 6.4.4 allows.
        """
        certificate = CA.issue("XMPP1.example.net").certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"xmpp1.example.net"})
        self.assertValidFor(certificate, "xmpp1.example.net")
        self.assertNotValidFor(certificate, "example.net")

    def test_commonNameWildcard(self):
        """
        A wildcard common name matches like a wildcard DNS-ID.
        """
        certificate = CA.issue("*.example.net").certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"*.example.net"})
        self.assertValidFor(certificate, "a.example.net")
        self.assertNotValidFor(certificate, "a.b.example.net")

    def test_commonNameIgnoredWithApplicationIdentifiers(self):
        """
        The common name does not count when the certificate has a DNS-ID, an
        SRV-ID (of any service) or an XmppAddr (even a user's).
        """
        for kw in [dict(dnsNames=["other.example"]),
                   dict(srvNames=["_xmpp-client.other.example"]),
                   dict(xmppAddrs=["user@other.example"])]:
            certificate = CA.issue("cn.example", **kw).certificate
            self.assertNotIn("cn.example",
                             serverNamesFromCertificate(certificate))
            self.assertNotValidFor(certificate, "cn.example")

    def test_commonNameWithOnlyIPAddresses(self):
        """
        IP address entries are no application identifiers: the common name
        still counts.
        """
        issued = CA.issue("cn.example")
        key = issued.privateKey
        certificate = (
            x509.CertificateBuilder()
            .subject_name(issued.certificate.subject)
            .issuer_name(CA.certificate.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(_past(1))
            .not_valid_after(_past(-1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]),
                critical=False)
            .sign(key, hashes.SHA256())
        )
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"cn.example"})
        self.assertNotValidFor(certificate, "192.0.2.1")

    def test_commonNameNotADomainName(self):
        """
        A common name that is not a domain name names nothing.
        """
        certificate = CA.issue("DNA Test Server").certificate
        self.assertEqual(serverNamesFromCertificate(certificate), set())
        self.assertNotValidFor(certificate, "dna test server")

    def test_lastCommonName(self):
        """
        Of several common names, the last, most specific one counts.
        """
        issued = CA.issue(None)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.COMMON_NAME, "first.example"),
                x509.NameAttribute(NameOID.COMMON_NAME, "last.example"),
            ]))
            .issuer_name(CA.certificate.subject)
            .public_key(issued.privateKey.public_key())
            .serial_number(1)
            .not_valid_before(_past(1))
            .not_valid_after(_past(-1))
            .sign(issued.privateKey, hashes.SHA256())
        )
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"last.example"})
        self.assertNotValidFor(certificate, "first.example")

    def test_idna(self):
        """
        Names in U-labels match A-label identifiers, and XmppAddrs in
        U-labels are presented in A-labels.
        """
        certificate = CA.issue(
            None,
            dnsNames=["xn--bcher-kva.example"],
            srvNames=["_xmpp-server.xn--mnchen-3ya.example"],
            xmppAddrs=["Zürich.example"],
        ).certificate
        self.assertEqual(
            serverNamesFromCertificate(certificate),
            {"xn--bcher-kva.example", "xn--mnchen-3ya.example",
             "xn--zrich-kva.example"})
        self.assertValidFor(certificate, "bücher.example", "Bücher.example",
                            "münchen.example", "zürich.example",
                            "xn--zrich-kva.example")
        self.assertNotValidFor(certificate, "bucher.example")

    def test_malformedPresentsNothing(self):
        """
        A certificate with a malformed SRV-ID or XmppAddr presents no name
        at all, not even its well-formed DNS-IDs.
        """
        for typeID in [ID_ON_DNSSRV, ID_ON_XMPPADDR]:
            certificate = _certificateWithOtherName(
                typeID, b"\x04\x03abc", dnsNames=["good.example"])
            self.assertEqual(serverNamesFromCertificate(certificate), set())
            self.assertNotValidFor(certificate, "good.example")
        self.flushLoggedErrors()

    def test_wildcardRules(self):
        """
        RFC 6125 section 6.4.3: a partial-label wildcard presents nothing
        and matches nothing; a wildcard over an IDN matches an LDH label
        below it, never an A-label in its place.
        """
        certificate = CA.issue(
            None, dnsNames=["f*o.example.net", "*.xn--bcher-kva.example", "b.example"]
        ).certificate
        self.assertEqual(serverNamesFromCertificate(certificate),
                         {"*.xn--bcher-kva.example", "b.example"})
        self.assertValidFor(certificate, "xmpp.bücher.example", "B.example.")
        self.assertNotValidFor(certificate, "foo.example.net", "fo.example.net",
                               "f*o.example.net", "bücher.example",
                               "xn--4ca.xn--bcher-kva.example", "a.b.bücher.example")

    def test_wildcardTopLevel(self):
        """
        A certificate with a wildcard over a top-level domain is malformed:
        it presents nothing.
        """
        certificate = CA.issue(None, dnsNames=["*.example", "b.example"]).certificate
        self.assertEqual(serverNamesFromCertificate(certificate), set())
        self.assertNotValidFor(certificate, "a.example", "b.example")

    def test_trailingDot(self):
        """
        One trailing dot is stripped from a reference name, never two; a
        DNS-ID with a trailing dot presents the name without it.
        """
        certificate = CA.issue(None, dnsNames=["a.example.", "*.b.example"]).certificate
        self.assertEqual(serverNamesFromCertificate(certificate), {"a.example", "*.b.example"})
        self.assertValidFor(certificate, "a.example.", "x.b.example.")
        self.assertNotValidFor(certificate, "a.example..", "x.b.example..")

    @settings(max_examples=40, deadline=None)
    @given(dnsNames=st.lists(st.sampled_from(
        ["*.provider.example", "xmpp1.provider.example", "f*o.provider.example",
         "*.xn--bcher-kva.example", "XMPP2.Provider.example.", "*.example"]), max_size=3),
        srvNames=st.lists(st.sampled_from(
            ["_xmpp-server.*.srv.example", "_xmpp-server.srv.example"]), max_size=1))
    def test_sameRuleAsDelegation(self, dnsNames, srvNames):
        """
        Stream authentication and the delegation check agree: a certificate
        is valid for an SRV target exactly when the names it presents make
        that target a delegation (L{dna.dns.verdict.delegates}).
        """
        from dna.dns.verdict import SECURE, DelegationResult, SRVRecord, delegates

        certificate = CA.issue(None, dnsNames=dnsNames, srvNames=srvNames).certificate
        names = serverNamesFromCertificate(certificate)
        for target in ["xmpp1.provider.example", "xmpp2.provider.example", "provider.example",
                       "a.xmpp1.provider.example", "foo.provider.example",
                       "xn--4ca.provider.example", "xmpp.xn--bcher-kva.example",
                       "a.srv.example", "srv.example", "XMPP1.provider.example"]:
            result = DelegationResult("d.example", [SRVRecord(0, 0, 5269, target)], SECURE)
            try:
                verifyPeerName(certificate, target)
            except CertificateNameMismatch:
                valid = False
            else:
                valid = True
            self.assertEqual(valid, delegates(result, names), (target, sorted(names)))

    def test_referenceNotADomainName(self):
        """
        A reference name that is no domain name (as a stream header's
        C{from} might be) matches nothing and is reported as a mismatch.
        """
        certificate = CA.issue(None, dnsNames=["example.com"]).certificate
        self.assertNotValidFor(certificate, "", "192.0.2.1", "a b",
                               "@example.com", "example.com/resource")

    def test_referenceNotText(self):
        """
        Passing anything but text as a name is a programming error, not a
        mismatch.
        """
        certificate = CA.issue(None, dnsNames=["example.com"]).certificate
        self.assertRaises(TypeError, verifyPeerName, certificate,
                          b"example.com")

    def test_noCertificate(self):
        """
        No certificate presents no names and is valid for none.
        """
        self.assertEqual(serverNamesFromCertificate(None), frozenset())
        self.assertNotValidFor(None, "example.com")

    def test_certificateTypes(self):
        """
        Certificates from Twisted and pyOpenSSL are accepted too.
        """
        issued = CA.issue(None, dnsNames=["example.com"])
        twistedCertificate = issued.toCertificate()
        for certificate in [twistedCertificate, twistedCertificate.original]:
            self.assertEqual(serverNamesFromCertificate(certificate),
                             {"example.com"})
            verifyPeerName(certificate, "example.com")

    def test_mismatchIsDNAError(self):
        """
        L{CertificateNameMismatch} is a L{DNAError} that carries the name and
        the names presented.
        """
        error = CertificateNameMismatch("a.example", frozenset(["b.example"]))
        self.assertIsInstance(error, DNAError)
        self.assertEqual(error.name, "a.example")
        self.assertEqual(error.presentedNames, {"b.example"})
        self.assertIn("a.example", repr(error))

    @settings(max_examples=30, deadline=None)
    @given(
        dnsNames=st.lists(st.sampled_from(
            ["a.example", "*.b.example", "C.example"]), max_size=2),
        srvNames=st.lists(st.sampled_from(
            ["_xmpp-server.d.example", "_xmpp-client.e.example"]), max_size=2),
        xmppAddrs=st.lists(st.sampled_from(
            ["f.example", "u@g.example", "Ä.example"]), max_size=2),
        commonName=st.sampled_from([None, "h.example", "*.i.example"]),
    )
    def test_presentedNamesAreValid(self, dnsNames, srvNames, xmppAddrs,
                                    commonName):
        """
        A certificate is valid for every name it presents, a wildcard for a
        name in its place, and for no name it does not present.
        """
        certificate = CA.issue(commonName, dnsNames=dnsNames, srvNames=srvNames,
                               xmppAddrs=xmppAddrs).certificate
        names = serverNamesFromCertificate(certificate)
        for name in names:
            verifyPeerName(certificate, name.replace("*", "wild"))
        for candidate in ["a.example", "b.example", "wild.b.example",
                          "c.example", "d.example", "e.example", "f.example",
                          "g.example", "h.example", "wild.i.example",
                          "xn--4ca.example"]:
            presented = candidate in names or (
                "*." + candidate.split(".", 1)[1] in names)
            try:
                verifyPeerName(certificate, candidate)
            except CertificateNameMismatch:
                self.assertFalse(presented, candidate)
            else:
                self.assertTrue(presented, candidate)


class PurityTests(unittest.TestCase):
    """
    L{dna.channel.identity} is about certificates, not connections.
    """

    def test_noTLSImports(self):
        """
        The module imports neither pyOpenSSL nor Twisted's TLS or networking.
        """
        import ast
        import inspect

        from dna.channel import identity

        imported = set()
        for node in ast.walk(ast.parse(inspect.getsource(identity))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        self.assertEqual(
            [],
            [name for name in imported
             if name.split(".")[0] == "OpenSSL" or name.startswith("twisted.internet")],
        )
