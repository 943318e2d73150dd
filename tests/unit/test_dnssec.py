"""
Tests for L{dna.dns.dnssec.proofs} and L{dna.dns.dnssec.walker}: validation
from trust anchors, in memory against zones signed here and for real against
knotd and unbound (L{tests.integration.dnsenv}).
"""

import base64

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.dnssecalgs import PrivateECDSAP256SHA256, PrivateED25519
from dns.dnssectypes import Algorithm
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from dna.dns.dnssec import walker
from dna.dns.dnssec.proofs import (
    BOGUS,
    INDETERMINATE,
    INSECURE,
    MAX_KEYS_PER_SIGNATURE,
    MAX_NSEC3_ITERATIONS,
    MAX_VERIFICATIONS_PER_RRSET,
    ROOT_ANCHORS,
    SECURE,
    Bogus,
    Insecure,
    Section,
    VerificationBudget,
    ZoneProof,
    keyCostBounded,
    matchDS,
    parseAnchors,
    proveAbsence,
    readAnchors,
    typeBitmap,
    verifyRRset,
)
from dna.dns.dnssec.walker import Validator
from dna.error import DNSTimeout
from dna.testing.fakes import FakeDNSClient, collidingKeys, signZone

NOW = 1_700_000_000


DAY = 86400


GOOD = (NOW - 3600, NOW + 30 * DAY)


EXPIRED = (NOW - 60 * DAY, NOW - 7 * DAY)


_SOA = "@ 3600 IN SOA ns1.example. hostmaster.example. 1 3600 600 86400 300\n"


_SRV = "_xmpp-server._tcp 3600 IN SRV"


ZONES = {
    "originating.example.": f"{_SRV} 0 5 5269 xmpp1.originating.example.\n",
    "receiving.example.": f"{_SRV} 0 5 5269 xmpp1.receiving.example.\n",
    "sender.example.": f"{_SRV} 0 5 5269 xmpp1.originating.example.\n",
    "target.example.": f"{_SRV} 0 5 5269 xmpp1.receiving.example.\n",
    "multi.example.": (f"{_SRV} 10 60 5269 xmpp1.multi.example.\n"
                       f"{_SRV} 10 40 5270 xmpp2.multi.example.\n"
                       f"{_SRV} 20 0 5271 xmpp3.multi.example.\n"),
    "nosrv.example.": '_xmpp-server._tcp 3600 IN TXT "no SRV here"\n',
    "dot.example.": f"{_SRV} 0 0 0 .\n",
    "b.example.": f"{_SRV} 0 5 5269 xmpp1.originating.example.\n",
    "c.b.example.": f"{_SRV} 0 5 5269 xmpp1.c.b.example.\n",
    "nsec3.example.": f"{_SRV} 0 5 5269 xmpp1.nsec3.example.\n",
    "unsigned.nsec3.example.": f"{_SRV} 0 5 5269 xmpp1.unsigned.nsec3.example.\n",
    "unsigned.example.": f"{_SRV} 0 5 5269 xmpp1.unsigned.example.\n",
    "bogus.example.": f"{_SRV} 0 5 5269 xmpp1.bogus.example.\n",
    "expired.example.": f"{_SRV} 0 5 5269 xmpp1.expired.example.\n",
    "wrongds.example.": f"{_SRV} 0 5 5269 xmpp1.wrongds.example.\n",
    "wild.example.": "*._tcp 3600 IN SRV 0 5 5269 xmpp1.wild.example.\n",
    "cname.example.": "_xmpp-server._tcp 3600 IN CNAME _xmpp-server._tcp.sender.example.\n",
    "optout.example.": "",
    "child.optout.example.": f"{_SRV} 0 5 5269 xmpp1.child.optout.example.\n",
    "ed.example.": f"{_SRV} 0 5 5269 xmpp1.ed.example.\n",
    "xn--bcher-kva.example.": f"{_SRV} 0 5 5269 xmpp.xn--caf-dma.example.\n",
}


UNSIGNED = {"unsigned.example.", "unsigned.nsec3.example.", "child.optout.example."}


NSEC3 = {"nsec3.example.": (b"\xab\xcd", 1, False), "optout.example.": (b"", 0, True)}


STATUSES = {
    "originating.example": SECURE,
    "sender.example": SECURE,
    "target.example": SECURE,
    "multi.example": SECURE,
    "nosrv.example": SECURE,
    "missing.example": SECURE,
    "dot.example": SECURE,
    "b.example": SECURE,
    "c.b.example": SECURE,
    "nsec3.example": SECURE,
    "missing.nsec3.example": SECURE,
    "unsigned.nsec3.example": INSECURE,
    "unsigned.example": INSECURE,
    "bogus.example": BOGUS,
    "expired.example": BOGUS,
    "wrongds.example": BOGUS,
    "wild.example": SECURE,
    "cname.example": SECURE,
    "child.optout.example": INSECURE,
    "ed.example": SECURE,
    "xn--bcher-kva.example": SECURE,
}



def newKey(algorithm=Algorithm.ECDSAP256SHA256):
    """
    A new CSK (flags 257) and its private key.
    """
    cls = PrivateED25519 if algorithm == Algorithm.ED25519 else PrivateECDSAP256SHA256
    private = cls.generate()
    return private, dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=257)



class Tree:
    """
    The signed in-memory zone tree.

    @ivar zones: The dnspython zones.
    @ivar anchorText: The trust anchor for C{example.} (a DS line).
    @ivar keys: C{{zone text: (private, DNSKEY)}}.
    """

    def __init__(self):
        self.keys = {}
        for name in ["example."] + list(ZONES):
            if name not in UNSIGNED:
                self.keys[name] = newKey(
                    Algorithm.ED25519 if name == "ed.example." else
                    Algorithm.ECDSAP256SHA256)
        otherKey = newKey()
        zones = {}
        for name in ["example."] + list(ZONES):
            origin = dns.name.from_text(name)
            body = _SOA + "@ 3600 IN NS ns1.example.\n" + ZONES.get(name, "")
            for child in ZONES:
                childName = dns.name.from_text(child)
                if childName.parent() != origin:
                    continue
                relative = childName.relativize(origin)
                body += f"{relative} 3600 IN NS ns1.example.\n"
                if child in UNSIGNED:
                    continue
                key = otherKey if child == "wrongds.example." else self.keys[child]
                body += (f"{relative} 3600 IN DS "
                         f"{dns.dnssec.make_ds(childName, key[1], 'SHA256').to_text()}\n")
            zone = dns.zone.from_text(body, origin=origin, relativize=False)
            if name not in UNSIGNED:
                window = EXPIRED if name == "expired.example." else GOOD
                signZone(zone, [self.keys[name]], *window, nsec3=NSEC3.get(name))
            if name == "bogus.example.":
                srvName = dns.name.from_text("_xmpp-server._tcp.bogus.example.")
                with zone.writer() as txn:
                    txn.replace(srvName, 3600, dns.rdata.from_text(
                        "IN", "SRV", "0 5 5270 xmpp1.bogus.example."))
            zones[origin] = zone
        self.zones = list(zones.values())
        ds = dns.dnssec.make_ds("example.", self.keys["example."][1], "SHA256")
        self.anchorText = f"example. 3600 IN DS {ds.to_text()}\n"
        self.dnskeyAnchorText = f"example. 3600 IN DNSKEY {self.keys['example.'][1].to_text()}\n"

    def anchors(self):
        return parseAnchors(self.anchorText)

    def client(self, **kwargs):
        return FakeDNSClient(self.zones, **kwargs)


_tree = None



def signedTree():
    """
    The L{Tree}, built once per test run (signing takes a tenth of a second).
    """
    global _tree
    if _tree is None:
        _tree = Tree()
    return _tree



def srvName(domain):
    return dns.name.from_text(f"_xmpp-server._tcp.{domain}.")



def rrsetOf(tree, name, rdtype):
    """
    An RRset and its RRSIGs from the tree.
    """
    response = tree.client().respond(dns.name.from_text(name), rdtype)
    rrset = response.get_rrset(response.answer, dns.name.from_text(name), dns.rdataclass.IN,
                               dns.rdatatype.RdataType.make(rdtype))
    sigs = response.get_rrset(response.answer, dns.name.from_text(name), dns.rdataclass.IN,
                              dns.rdatatype.RRSIG, dns.rdatatype.RdataType.make(rdtype))
    return rrset, sigs



def stripSignatures(response):
    """
    A failure hook for L{FakeDNSClient}: drop every RRSIG.
    """
    for section in (response.answer, response.authority):
        section[:] = [r for r in section if r.rdtype != dns.rdatatype.RRSIG]



def stripAuthority(response):
    """
    A failure hook for L{FakeDNSClient}: drop the authority section.
    """
    response.authority[:] = []



class AnchorTests(SynchronousTestCase):
    """
    Tests for L{parseAnchors} and L{readAnchors}.
    """

    def test_rootAnchors(self):
        """
        L{ROOT_ANCHORS} holds the DS records of the root KSK-2017 (20326) and
        KSK-2024 (38696), RSASHA256 with SHA-256 digests.
        """
        anchors = parseAnchors(ROOT_ANCHORS)
        self.assertEqual(list(anchors), [dns.name.root])
        rrset = anchors[dns.name.root]
        self.assertEqual(rrset.rdtype, dns.rdatatype.DS)
        self.assertEqual(sorted((ds.key_tag, ds.algorithm, ds.digest_type) for ds in rrset),
                         [(20326, 8, 2), (38696, 8, 2)])

    def test_validatorDefaultsToRoot(self):
        """
        A L{Validator} without anchors uses the root anchors.
        """
        validator = Validator(lambda name, rdtype: None)
        self.assertEqual(list(validator.anchors), [dns.name.root])

    def test_dsAndDNSKEY(self):
        """
        DS and DNSKEY anchors for different zones, comments and a default
        TTL are accepted.
        """
        tree = signedTree()
        anchors = parseAnchors("; test anchors\n" + tree.anchorText
                               + "sender.example. IN DNSKEY "
                               + tree.keys["sender.example."][1].to_text() + "\n")
        self.assertEqual(anchors[dns.name.from_text("example.")].rdtype, dns.rdatatype.DS)
        self.assertEqual(anchors[dns.name.from_text("sender.example.")].rdtype,
                         dns.rdatatype.DNSKEY)

    def test_otherType(self):
        """
        A record other than DS or DNSKEY is refused with a message naming it.
        """
        error = self.assertRaises(ValueError, parseAnchors, "example. IN A 127.0.0.1\n")
        self.assertIn("neither DS nor DNSKEY", str(error))

    def test_syntaxError(self):
        """
        Garbage is a L{ValueError}, as is an empty file.
        """
        self.assertRaises(ValueError, parseAnchors, "example. IN DS nonsense\n")
        self.assertRaises(ValueError, parseAnchors, "; nothing\n")

    def test_readMissingFile(self):
        """
        L{readAnchors} reports a file it cannot read as a L{ValueError}.
        """
        error = self.assertRaises(ValueError, readAnchors, self.mktemp())
        self.assertIn("cannot read trust anchor file", str(error))

    def test_readFile(self):
        """
        L{readAnchors} reads a file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(signedTree().anchorText)
        self.assertIn(dns.name.from_text("example."), readAnchors(path))



class VerifyTests(SynchronousTestCase):
    """
    Tests for L{verifyRRset}, L{matchDS} and L{typeBitmap}.
    """

    def setUp(self):
        self.tree = signedTree()
        self.zone = dns.name.from_text("sender.example.")
        self.keys = [self.tree.keys["sender.example."][1]]
        self.srv, self.sigs = rrsetOf(self.tree, "_xmpp-server._tcp.sender.example.", "SRV")

    def test_valid(self):
        """
        A good signature verifies; the RRSIG used is returned.
        """
        rrsig = verifyRRset(self.srv, self.sigs, self.zone, self.keys, NOW)
        self.assertEqual(rrsig.key_tag, dns.dnssec.key_id(self.keys[0]))

    def test_missing(self):
        """
        No RRSIG at all is bogus, naming the RRset.
        """
        error = self.assertRaises(Bogus, verifyRRset, self.srv, None, self.zone, self.keys,
                                  NOW)
        self.assertEqual(str(error), "missing RRSIG for SRV _xmpp-server._tcp.sender.example")

    def test_expired(self):
        """
        After its expiration the RRSIG is bogus with the time, the RRset and the
        key in the reason.
        """
        later = GOOD[1] + 1
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs, self.zone,
                                  self.keys, later)
        tag = dns.dnssec.key_id(self.keys[0])
        self.assertEqual(
            str(error),
            f"RRSIG expired at 2023-12-14T22:13:20Z for SRV _xmpp-server._tcp.sender.example"
            f" (key {tag} of sender.example.)")

    def test_notYetValid(self):
        """
        Before its inception the RRSIG is bogus.
        """
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs, self.zone,
                                  self.keys, GOOD[0] - 1)
        self.assertIn("RRSIG not valid before 2023-11-14T21:13:20Z", str(error))

    def test_wrongSigner(self):
        """
        A signature by another zone than the one the data belongs to is
        bogus.
        """
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs,
                                  dns.name.from_text("example."), self.keys, NOW)
        self.assertIn("is by sender.example., not by its zone example.", str(error))

    def test_unknownKey(self):
        """
        A signature by a key not in the key set is bogus, naming the tag.
        """
        other = [self.tree.keys["target.example."][1]]
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs, self.zone,
                                  other, NOW)
        tag = dns.dnssec.key_id(self.keys[0])
        self.assertIn(f"no DNSKEY {tag} (ECDSAP256SHA256) in sender.example.", str(error))

    def test_tampered(self):
        """
        Changed data no longer verifies.
        """
        tampered = dns.rrset.from_text(self.srv.name, 3600, "IN", "SRV",
                                       "0 5 5270 xmpp1.originating.example.")
        error = self.assertRaises(Bogus, verifyRRset, tampered, self.sigs, self.zone,
                                  self.keys, NOW)
        self.assertIn("does not verify for SRV _xmpp-server._tcp.sender.example",
                      str(error))

    def test_unsupportedAlgorithm(self):
        """
        A signature with an algorithm this validator does not support is not
        accepted.
        """
        sigs = dns.rrset.from_rdata(self.sigs.name, self.sigs.ttl, *[
            rd.replace(algorithm=Algorithm.RSAMD5) for rd in self.sigs])
        error = self.assertRaises(Bogus, verifyRRset, self.srv, sigs, self.zone,
                                  self.keys, NOW)
        self.assertIn("unsupported RSAMD5", str(error))

    def test_matchDS(self):
        """
        L{matchDS} pairs the DS with the key it is for, and with nothing for
        another key.
        """
        ds = dns.rrset.from_rdata("sender.example.", 3600, dns.dnssec.make_ds(
            "sender.example.", self.keys[0], "SHA256"))
        self.assertEqual(matchDS(self.zone, ds, self.keys), [(ds[0], self.keys[0])])
        self.assertEqual(matchDS(self.zone, ds, [self.tree.keys["target.example."][1]]),
                         [])

    def test_matchDSPrefersSHA256(self):
        """
        Beside a SHA-256 DS, SHA-1 DS records are ignored (RFC 4509 section
        3): a key only a SHA-1 DS vouches for is not trusted then.
        """
        other = self.tree.keys["target.example."][1]
        sha1 = dns.dnssec.make_ds("sender.example.", self.keys[0], "SHA1",
                                  policy=dns.dnssec.allow_all_policy)
        sha256 = dns.dnssec.make_ds("sender.example.", other, "SHA256")
        self.assertEqual(
            matchDS(self.zone, dns.rrset.from_rdata("sender.example.", 3600, sha1),
                    self.keys),
            [(sha1, self.keys[0])])
        both = dns.rrset.from_rdata("sender.example.", 3600, sha1, sha256)
        self.assertEqual(matchDS(self.zone, both, self.keys), [])
        self.assertEqual(matchDS(self.zone, both, [other] + self.keys), [(sha256, other)])

    def test_matchDSUnsupported(self):
        """
        DS records with only unsupported digests make the zone insecure
        (RFC 4035 section 5.2).
        """
        ds = dns.rrset.from_text("sender.example.", 3600, "IN", "DS",
                                 "12345 13 99 abcdef")
        self.assertRaises(Insecure, matchDS, self.zone, ds, self.keys)

    def test_keyTagCollisions(self):
        """
        Up to L{MAX_KEYS_PER_SIGNATURE} DNSKEYs sharing the key tag of an
        RRSIG are tried; more make the data bogus at once, whatever the
        signature (KeyTrap, CVE-2023-50387).
        """
        forged = collidingKeys(self.keys[0], MAX_KEYS_PER_SIGNATURE)
        verifyRRset(self.srv, self.sigs, self.zone, forged[:-1] + self.keys, NOW)
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs, self.zone,
                                  forged + self.keys, NOW)
        self.assertIn(f"{MAX_KEYS_PER_SIGNATURE + 1} DNSKEYs share the key tag", str(error))
        self.assertIn("KeyTrap", str(error))

    def garbled(self, count):
        """
        The RRSIGs over the SRV RRset: C{count} with the right key tag and a
        wrong signature, then the good one.
        """
        good = self.sigs[0]
        sigs = dns.rrset.RRset(self.sigs.name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                               dns.rdatatype.SRV)
        for i in range(count):
            sigs.add(good.replace(signature=bytes([i + 1]) * len(good.signature)))
        sigs.add(good)
        return sigs

    def test_verificationsPerRRset(self):
        """
        At most L{MAX_VERIFICATIONS_PER_RRSET} signature verifications are
        spent on one RRset; past them it is bogus.
        """
        limit = MAX_VERIFICATIONS_PER_RRSET
        verifyRRset(self.srv, self.garbled(limit - 1), self.zone, self.keys, NOW)
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.garbled(limit),
                                  self.zone, self.keys, NOW)
        self.assertIn(f"more than {limit} signature verifications for SRV", str(error))

    def test_budget(self):
        """
        A L{VerificationBudget} shared by the RRsets of one validation
        bounds the verifications of them all.
        """
        budget = VerificationBudget(limit=3)
        verifyRRset(self.srv, self.garbled(1), self.zone, self.keys, NOW, budget)
        verifyRRset(self.srv, self.sigs, self.zone, self.keys, NOW, budget)
        self.assertEqual(budget.spent, 3)
        error = self.assertRaises(Bogus, verifyRRset, self.srv, self.sigs, self.zone,
                                  self.keys, NOW, budget)
        self.assertIn("more than 3 signature verifications for one answer", str(error))

    def test_matchDSCollisions(self):
        """
        A DS whose key tag more than L{MAX_KEYS_PER_SIGNATURE} DNSKEYs share is
        bogus (no digest of them all is computed).
        """
        ds = dns.rrset.from_rdata("sender.example.", 3600, dns.dnssec.make_ds(
            "sender.example.", self.keys[0], "SHA256"))
        forged = collidingKeys(self.keys[0], MAX_KEYS_PER_SIGNATURE - 1)
        self.assertEqual(matchDS(self.zone, ds, forged + self.keys), [(ds[0], self.keys[0])])
        forged = collidingKeys(self.keys[0], MAX_KEYS_PER_SIGNATURE)
        self.assertRaises(Bogus, matchDS, self.zone, ds, forged + self.keys)

    def test_longRSAExponent(self):
        """
        An RSA key with a public exponent longer than 8 bytes is never tried:
        each verification with it would cost a full modular exponentiation.
        """
        def rsaKey(exponent):
            length = (exponent.bit_length() + 7) // 8
            key = bytes([length]) + exponent.to_bytes(length, "big") + b"\xc5" * 256
            return dns.rdata.from_text(
                "IN", "DNSKEY", f"257 3 8 {base64.b64encode(key).decode()}")

        self.assertTrue(keyCostBounded(rsaKey(65537)))
        self.assertTrue(keyCostBounded(rsaKey(2 ** 64 - 1)))
        self.assertFalse(keyCostBounded(rsaKey(2 ** 64 + 1)))
        self.assertTrue(keyCostBounded(self.keys[0]))

    def test_parentSideNSEC3(self):
        """
        The parent's NSEC3 matching a zone cut proves the absence of its DS,
        and nothing about other types at the child's apex (RFC 6840 section
        4.1).
        """
        tree = signedTree()
        cut = dns.name.from_text("unsigned.nsec3.example.")
        authority = Section(tree.client().respond(cut, "DS").authority)
        keys, _ = rrsetOf(tree, "nsec3.example.", "DNSKEY")
        proof = ZoneProof(dns.name.from_text("nsec3.example."), keys, NOW, [], [])
        self.assertIn("NODATA proven by NSEC3",
                      proveAbsence(cut, dns.rdatatype.DS, dns.rcode.NOERROR, authority,
                                   proof))
        error = self.assertRaises(Bogus, proveAbsence, cut, dns.rdatatype.TXT,
                                  dns.rcode.NOERROR, authority, proof)
        self.assertIn("RFC 6840 section 4.1", str(error))

    def test_typeBitmap(self):
        """
        L{typeBitmap} decodes the types of an NSEC.
        """
        response = self.tree.client().respond(
            dns.name.from_text("_xmpp-server._tcp.nosrv.example."), "SRV")
        nsec = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC][0]
        self.assertEqual(typeBitmap(nsec[0]), {dns.rdatatype.TXT, dns.rdatatype.RRSIG,
                                               dns.rdatatype.NSEC})



class ValidatorTests(SynchronousTestCase):
    """
    Tests for L{Validator} against the in-memory tree.
    """

    def setUp(self):
        self.tree = signedTree()
        self.client = self.tree.client()
        self.validator = Validator(self.query, self.tree.anchors(), maxZones=0)

    def query(self, name, rdtype):
        return self.client.query(name, rdtype, recursionDesired=False)

    def resolve(self, domain, now=NOW, validator=None):
        d = (validator or self.validator).resolve(srvName(domain), dns.rdatatype.SRV, now)
        return self.successResultOf(d)

    def test_statuses(self):
        """
        Every domain of the tree gets its status.
        """
        found = {domain: self.resolve(domain).status for domain in STATUSES}
        self.assertEqual(found, STATUSES)

    def test_secure(self):
        """
        A secure answer carries the SRV RRset, no reason and the smallest
        TTL on the chain.
        """
        result = self.resolve("sender.example")
        self.assertEqual([rd.to_text() for rd in result.rrset],
                         ["0 5 5269 xmpp1.originating.example."])
        self.assertIsNone(result.reason)
        self.assertEqual(result.ttl, 3600)

    def test_chain(self):
        """
        The chain names which key signed what from the anchor down, three
        zones deep.
        """
        result = self.resolve("c.b.example")
        tags = {zone: dns.dnssec.key_id(key[1]) for zone, key in self.tree.keys.items()}
        self.assertEqual(
            [(link.name, link.rdtype, link.signer, link.keyTag) for link in result.chain],
            [("example.", "DNSKEY", "example.", tags["example."]),
             ("b.example.", "DS", "example.", tags["example."]),
             ("b.example.", "DNSKEY", "b.example.", tags["b.example."]),
             ("c.b.example.", "DS", "b.example.", tags["b.example."]),
             ("c.b.example.", "DNSKEY", "c.b.example.", tags["c.b.example."]),
             ("_xmpp-server._tcp.c.b.example.", "SRV", "c.b.example.",
              tags["c.b.example."])])
        self.assertIn("matches trust anchor DS", str(result.chain[0]))
        self.assertEqual(
            str(result.chain[-1]),
            f"_xmpp-server._tcp.c.b.example. SRV signed by c.b.example. key "
            f"{tags['c.b.example.']} (ECDSAP256SHA256)")

    def test_dnskeyAnchor(self):
        """
        A DNSKEY trust anchor works like a DS one.
        """
        validator = Validator(self.query, parseAnchors(self.tree.dnskeyAnchorText))
        self.assertEqual(self.resolve("c.b.example", validator=validator).status, SECURE)

    def test_wrongAnchor(self):
        """
        An anchor matching no key of the zone makes everything below bogus.
        """
        validator = Validator(self.query, parseAnchors(
            "example. IN DS 1 13 2 " + "00" * 32 + "\n"))
        result = self.resolve("sender.example", validator=validator)
        self.assertEqual(result.status, BOGUS)
        self.assertIn("no DNSKEY of example. matches the trust anchor", result.reason)

    def test_noAnchor(self):
        """
        A name under no trust anchor is indeterminate (RFC 4033 section 5).
        """
        validator = Validator(self.query, parseAnchors(
            "other. IN DS 1 13 2 " + "00" * 32 + "\n"))
        result = self.resolve("sender.example", validator=validator)
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("no trust anchor covers", result.reason)

    def test_nodata(self):
        """
        A signed NODATA is a secure answer without RRset, its reason saying
        what was proved, cached for the negative TTL.
        """
        result = self.resolve("nosrv.example")
        self.assertEqual((result.status, result.rrset), (SECURE, None))
        self.assertEqual(result.reason,
                         "no SRV _xmpp-server._tcp.nosrv.example (NODATA proven by NSEC)")
        self.assertEqual(result.ttl, 300)

    def test_nxdomain(self):
        """
        A signed NXDOMAIN is a secure answer without RRset.
        """
        result = self.resolve("missing.example")
        self.assertEqual((result.status, result.rrset), (SECURE, None))
        self.assertIn("NXDOMAIN proven by NSEC", result.reason)

    def test_nsec3(self):
        """
        NSEC3 zones: data, NXDOMAIN, NODATA (an empty non-terminal) and an
        unsigned delegation proven by a matching NSEC3.
        """
        self.assertEqual(self.resolve("nsec3.example").status, SECURE)
        missing = self.resolve("missing.nsec3.example")
        self.assertEqual(missing.status, SECURE)
        self.assertIn("NXDOMAIN proven by NSEC3", missing.reason)
        d = self.validator.resolve(dns.name.from_text("_tcp.nsec3.example."),
                                   dns.rdatatype.SRV, NOW)
        self.assertIn("NODATA proven by NSEC3", self.successResultOf(d).reason)
        unsigned = self.resolve("unsigned.nsec3.example")
        self.assertEqual(unsigned.status, INSECURE)
        self.assertIn("NSEC3 from nsec3.example. proves no DS", unsigned.reason)

    def highIterationNSEC3(self, iterations=MAX_NSEC3_ITERATIONS + 1):
        """
        An NSEC3 RRset of C{nsec3.example.}, signed by its key, with more
        iterations than RFC 9276 allows.
        """
        private, dnskey = self.tree.keys["nsec3.example."]
        owner = dns.name.from_text("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.nsec3.example.")
        nsec3 = dns.rrset.from_text(
            owner, 300, "IN", "NSEC3",
            f"1 0 {iterations} abcd 0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TON A RRSIG")
        sig = dns.dnssec.sign(nsec3, private, dns.name.from_text("nsec3.example."), dnskey,
                              inception=GOOD[0], expiration=GOOD[1])
        return [nsec3, dns.rrset.from_rdata(owner, 300, sig)]

    def test_nsec3IterationsWhereTheyMatter(self):
        """
        An NSEC3 record with more than L{MAX_NSEC3_ITERATIONS} iterations
        that the proof does not need changes nothing; a proof that cannot
        be made without such records is insecure (RFC 9276 section 3.2).
        """
        def extra(response):
            response.authority.extend(self.highIterationNSEC3())

        def only(response):
            response.authority[:] = [r for r in response.authority
                                     if r.rdtype != dns.rdatatype.NSEC3
                                     and r.covers != dns.rdatatype.NSEC3]
            response.authority.extend(self.highIterationNSEC3())

        name = "_xmpp-server._tcp.missing.nsec3.example"
        self.client.failures[name, "SRV"] = extra
        result = self.resolve("missing.nsec3.example")
        self.assertEqual(result.status, SECURE, result.reason)
        self.client.failures[name, "SRV"] = only
        result = self.resolve("missing.nsec3.example")
        self.assertEqual(result.status, INSECURE)
        self.assertIn("more than 150, RFC 9276", result.reason)

    def test_optOut(self):
        """
        A delegation in an NSEC3 opt-out span is insecure, with the SRV
        records.
        """
        result = self.resolve("child.optout.example")
        self.assertEqual(result.status, INSECURE)
        self.assertIn("opt-out", result.reason)
        self.assertIsNotNone(result.rrset)

    def test_insecure(self):
        """
        Below an unsigned delegation proven by NSEC the answer is insecure,
        with its records and a chain ending in the proof.
        """
        result = self.resolve("unsigned.example")
        self.assertEqual(result.status, INSECURE)
        self.assertEqual(result.reason, "unsigned.example. is an unsigned delegation "
                                        "(NSEC from example. proves no DS)")
        self.assertEqual([rd.to_text() for rd in result.rrset],
                         ["0 5 5269 xmpp1.unsigned.example."])
        self.assertIn("insecure delegation", str(result.chain[-1]))

    def test_bogus(self):
        """
        Data changed after signing is bogus.
        """
        result = self.resolve("bogus.example")
        self.assertEqual((result.status, result.rrset), (BOGUS, None))
        self.assertIn("does not verify for SRV _xmpp-server._tcp.bogus.example",
                      result.reason)

    def test_expired(self):
        """
        Expired signatures are bogus, with the expiry time in the reason.
        """
        result = self.resolve("expired.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("RRSIG expired at 2023-11-07T22:13:20Z", result.reason)

    def test_wrongDS(self):
        """
        A DS for another key is bogus.
        """
        result = self.resolve("wrongds.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("no DS matches DNSKEY of wrongds.example.", result.reason)

    def test_laterExpiry(self):
        """
        Validation uses the time given: after the signatures expire the
        secure domain is bogus.
        """
        result = self.resolve("sender.example", now=GOOD[1] + 1)
        self.assertEqual(result.status, BOGUS)
        self.assertIn("RRSIG expired at", result.reason)

    def test_ttlBoundBySignature(self):
        """
        The lifetime of a result is at most the time left until a signature
        it rests on expires.
        """
        result = self.resolve("sender.example", now=GOOD[1] - 100)
        self.assertEqual(result.ttl, 100)

    def test_strippedSignatures(self):
        """
        An answer whose RRSIGs were removed is bogus.
        """
        self.client.failures["_xmpp-server._tcp.sender.example", "SRV"] = stripSignatures
        result = self.resolve("sender.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("missing RRSIG for SRV _xmpp-server._tcp.sender.example",
                      result.reason)

    def test_strippedDenial(self):
        """
        A NODATA or NXDOMAIN answer without its NSEC proof is bogus.
        """
        self.client.failures["_xmpp-server._tcp.nosrv.example", "SRV"] = stripAuthority
        self.client.failures["_xmpp-server._tcp.missing.example", "SRV"] = stripAuthority
        for domain in ["nosrv.example", "missing.example"]:
            result = self.resolve(domain)
            self.assertEqual(result.status, BOGUS, domain)

    def test_nodataForExistingData(self):
        """
        A NODATA answer whose own NSEC lists SRV hides data: bogus.
        """
        def hide(response):
            response.answer[:] = []
            nsec = self.client.respond(
                dns.name.from_text("_xmpp-server._tcp.sender.example."), "TXT")
            response.authority[:] = nsec.authority

        self.client.failures["_xmpp-server._tcp.sender.example", "SRV"] = hide
        result = self.resolve("sender.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("lists SRV", result.reason)

    def test_oneBudgetPerAnswer(self):
        """
        One L{VerificationBudget} bounds the verifications of the whole
        chain of an answer: past it the answer is bogus.
        """
        self.assertEqual(self.resolve("c.b.example").status, SECURE)
        self.patch(walker, "VerificationBudget", lambda: VerificationBudget(limit=4))
        result = self.resolve("c.b.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("more than 4 signature verifications for one answer", result.reason)

    def parentSideNSEC(self, owner):
        """
        The NSEC at the delegation point C{owner} in the zone C{example.},
        with its RRSIG: what the parent signs for a zone cut (NS and DS bits
        set, SOA clear).
        """
        parent = next(z for z in self.tree.zones if z.origin == dns.name.from_text("example."))
        name = dns.name.from_text(owner)
        nsec = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.NSEC)
        nsec.update(parent.get_rdataset(name, dns.rdatatype.NSEC))
        sigs = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                               dns.rdatatype.NSEC)
        sigs.update(parent.get_rdataset(name, dns.rdatatype.RRSIG, dns.rdatatype.NSEC))
        return [nsec, sigs]

    def test_parentSideNSECProvesNothingBelow(self):
        """
        The parent's NSEC at a zone cut (NS set, SOA clear) proves nothing
        below the cut (RFC 6840 section 4.1): an NXDOMAIN for a name in the
        child zone "proven" with it, though its signature is good, is bogus.
        """
        def forged(response):
            soa = self.client.respond(dns.name.from_text("example."), "SOA")
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.answer[:] = []
            response.authority[:] = soa.answer + self.parentSideNSEC("sender.example.")

        self.client.failures["_xmpp-server._tcp.sender.example", "SRV"] = forged
        result = self.resolve("sender.example")
        self.assertEqual(result.status, BOGUS, result.reason)
        self.assertIn("RFC 6840 section 4.1", result.reason)

    def test_parentSideNSECNoData(self):
        """
        Nor does the parent's NSEC at a zone cut prove that the child's apex
        lacks a type other than DS.
        """
        def forged(response):
            soa = self.client.respond(dns.name.from_text("example."), "SOA")
            response.answer[:] = []
            response.authority[:] = soa.answer + self.parentSideNSEC("sender.example.")

        self.client.failures["sender.example", "TXT"] = forged
        d = self.validator.resolve(dns.name.from_text("sender.example."),
                                   dns.rdatatype.TXT, NOW)
        result = self.successResultOf(d)
        self.assertEqual(result.status, BOGUS, result.reason)
        self.assertIn("RFC 6840 section 4.1", result.reason)

    def test_strippedDS(self):
        """
        A DS answer replaced by an unsigned empty answer does not make the
        child insecure: bogus.
        """
        def noDS(response):
            response.answer[:] = []
            response.authority[:] = []

        self.client.failures["sender.example", "DS"] = noDS
        result = self.resolve("sender.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("no NSEC or NSEC3 proof", result.reason)

    def test_wildcard(self):
        """
        An answer expanded from a wildcard is secure with the proof that the
        name itself does not exist, bogus without it.
        """
        self.assertEqual(self.resolve("wild.example").status, SECURE)
        self.client.failures["_xmpp-server._tcp.wild.example", "SRV"] = stripAuthority
        result = self.resolve("wild.example")
        self.assertEqual(result.status, BOGUS)
        self.assertIn("wildcard answer", result.reason)

    def test_cname(self):
        """
        CNAMEs are followed, each validated in its zone.
        """
        result = self.resolve("cname.example")
        self.assertEqual(result.status, SECURE)
        self.assertEqual(result.rrset.name, srvName("sender.example"))
        self.assertIn("_xmpp-server._tcp.cname.example.",
                      [link.name for link in result.chain if link.rdtype == "CNAME"])

    def test_ed25519(self):
        """
        Ed25519 zones validate.
        """
        result = self.resolve("ed.example")
        self.assertEqual(result.status, SECURE)
        self.assertIn("(ED25519)", str(result.chain[-1]))

    def test_queryFailure(self):
        """
        A query that fails makes the result indeterminate, saying which and
        why.
        """
        self.client.failures["sender.example", "DNSKEY"] = DNSTimeout(
            "sender.example.", "DNSKEY", "no reply within 1 s")
        result = self.resolve("sender.example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertEqual(result.reason, "query for sender.example DNSKEY failed "
                                        "(DNSTimeout: no reply within 1 s)")

    def test_servfail(self):
        """
        SERVFAIL on the way is indeterminate.
        """
        self.client.failures["b.example", "DS"] = dns.rcode.SERVFAIL
        result = self.resolve("c.b.example")
        self.assertEqual(result.status, INDETERMINATE)
        self.assertEqual(result.reason, "SERVFAIL for b.example DS")

    def test_referral(self):
        """
        A referral from a server that does not recurse is indeterminate.
        """
        client = FakeDNSClient([z for z in self.tree.zones
                                if z.origin != dns.name.from_text("sender.example.")])
        validator = Validator(lambda n, t: client.query(n, t, recursionDesired=False),
                              self.tree.anchors())
        result = self.resolve("sender.example", validator=validator)
        self.assertEqual(result.status, INDETERMINATE)
        self.assertIn("referral to sender.example.", result.reason)

    def test_zoneKeysReused(self):
        """
        Validated zone keys are kept: a second lookup below a known zone asks
        only for what is new, until the keys' lifetime ends.
        """
        validator = Validator(self.query, self.tree.anchors())
        self.resolve("sender.example", validator=validator)
        first = len(self.client.queries)
        self.resolve("sender.example", validator=validator)
        self.assertEqual(self.client.queries[first:],
                         [("_xmpp-server._tcp.sender.example", "SRV",
                           dict(dnssec=True, checkingDisabled=False,
                                recursionDesired=False))])
        cached = self.resolve("c.b.example", validator=validator)
        self.assertEqual(cached.chain[0].name, "example.")
        later = len(self.client.queries)
        self.resolve("sender.example", now=NOW + 3601, validator=validator)
        self.assertIn(("example", "DNSKEY"),
                      [q[:2] for q in self.client.queries[later:]])

    def test_cancel(self):
        """
        Cancelling a validation cancels its outstanding queries.
        """
        self.client.failures["_xmpp-server._tcp.sender.example", "SRV"] = "hang"
        d = self.validator.resolve(srvName("sender.example"), dns.rdatatype.SRV, NOW)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
