"""
The package's layering, read from its source with L{ast}: lower parts never
import higher ones, so the layout stays the architecture.

The parts, lowest first (see the README's Layout section)::

    dna.error, dna.namespaces, dna.interfaces   the shared vocabulary
    dna.core                                    pure data and decisions
    dna.dns                                     DNS client, DNSSEC, delegation
    dna.channel                                 TLS channels and streams
    dna.legacy                                  the fallback to servers without DNA
    dna.app                                     configuration, service, tap, CLIs
    dna.demo, dna.testing                       support: never imported by the above
"""

import ast
import os

from twisted.trial import unittest

import dna

_PACKAGE = os.path.dirname(os.path.abspath(dna.__file__))

#: The vocabulary every part may use; it imports nothing of dna itself.
VOCABULARY = frozenset(["dna", "dna.error", "dna.namespaces", "dna.interfaces"])

#: For each part, the parts it may import besides itself and the vocabulary.
ALLOWED = {
    "vocabulary": frozenset(),
    "core": frozenset(),
    "dns": frozenset(["core"]),
    "channel": frozenset(["core", "dns"]),
    "legacy": frozenset(["core", "dns", "channel"]),
    "app": frozenset(["core", "dns", "channel", "legacy"]),
    "demo": frozenset(["core", "dns", "channel", "legacy", "app", "testing"]),
    "testing": frozenset(["core", "dns", "channel", "legacy", "app"]),
}

#: Pure data and decisions: no Twisted beyond the string preparation tables
#: (no Deferreds, no reactor, no logger).
PURE_TWISTED = frozenset(["twisted.words.protocols.jabber.xmpp_stringprep"])
NO_TWISTED = frozenset([
    "dna.core.tables",
    "dna.core.names",
    "dna.core.hostport",
    "dna.dns.dnssec.proofs",
])


def partOf(moduleName):
    """
    The part a dna module belongs to.
    """
    if moduleName in VOCABULARY:
        return "vocabulary"
    return moduleName.split(".")[1]


def modules(root=_PACKAGE):
    """
    Yield (module name, path) for every module of the package.
    """
    parent = os.path.dirname(root)
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, parent)[:-len(".py")]
            parts = relative.split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def importsOf(moduleName, path, known=()):
    """
    Yield (imported module name, line, top level) for every import in a
    module, relative imports resolved, including those inside functions.

    @param known: The package's module names: C{from a import b} imports the
        module C{a.b} when it is one of them, else the module C{a}.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    topLevel = set(id(node) for node in tree.body)
    isPackage = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in topLevel
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = moduleName.split(".")
                if not isPackage:
                    anchor.pop()
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = base + "." + alias.name
                isModule = full in known or full == "twisted.internet.reactor"
                yield (full if isModule else base), node.lineno, id(node) in topLevel


def violations(root=_PACKAGE):
    """
    Every import that goes against the layering, as readable lines.
    """
    known = dict(modules(root))
    found = []
    for moduleName, path in sorted(known.items()):
        part = partOf(moduleName)
        for imported, line, topLevel in importsOf(moduleName, path, known):
            where = "{}:{}".format(os.path.relpath(path, os.path.dirname(root)), line)
            if imported == "twisted.internet.reactor" and topLevel:
                found.append("{}: imports the global reactor at module level".format(where))
            if (moduleName in NO_TWISTED and imported.split(".")[0] == "twisted"
                    and imported not in PURE_TWISTED):
                found.append("{}: a pure module imports {}".format(where, imported))
                continue
            if imported not in known:
                continue
            other = partOf(imported)
            if other == part or other == "vocabulary":
                continue
            if other not in ALLOWED[part]:
                found.append("{}: {} ({}) imports {} ({})".format(
                    where, moduleName, part, imported, other))
    return list(dict.fromkeys(found))


class LayeringTests(unittest.TestCase):
    """
    The package obeys its layering.
    """

    def test_noUpwardImports(self):
        """
        No module imports a part above its own, the vocabulary imports no other
        part of dna, pure modules import no Twisted, and no module imports the
        global reactor at module level.
        """
        self.assertEqual([], violations())

    def test_everyModuleHasAPart(self):
        """
        Every module sits in a known part: nothing is left loose at the top of
        the package beside the vocabulary.
        """
        loose = [name for name, _ in modules() if partOf(name) not in ALLOWED]
        self.assertEqual([], loose)

    def test_partsDocumented(self):
        """
        Every subpackage says what it is in its docstring.
        """
        undocumented = []
        for name, path in modules():
            if path.endswith("__init__.py"):
                with open(path, encoding="utf-8") as f:
                    if not ast.get_docstring(ast.parse(f.read())):
                        undocumented.append(name)
        self.assertEqual([], undocumented)

    def test_detectsViolation(self):
        """
        The check finds an upward import, one inside a function, a relative
        one, and a module-level reactor import: it can fail.
        """
        root = os.path.join(self.mktemp(), "dna")
        files = {
            "__init__.py": "",
            "error.py": "",
            "core/__init__.py": "",
            "core/tables.py": "from dna.app import service\n",
            "core/names.py": "def f():\n    from ..channel import tls\n",
            "channel/__init__.py": "",
            "channel/tls.py": "from twisted.internet import reactor\n",
            "app/__init__.py": "",
            "app/service.py": "from dna.core import tables\nfrom dna.error import DNAError\n",
        }
        for relative, text in files.items():
            path = os.path.join(root, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        found = violations(root)
        self.assertEqual(3, len(found), found)
        self.assertIn(
            "dna/core/tables.py:1: dna.core.tables (core) imports dna.app.service (app)", found)
        self.assertIn(
            "dna/core/names.py:2: dna.core.names (core) imports dna.channel.tls (channel)", found)
        self.assertIn("dna/channel/tls.py:1: imports the global reactor at module level", found)
