"""
Tests for L{dna.app.wokkelcompat}: wokkel's subprotocol handlers import on
the pinned Twisted after L{install}, and not before.

Each check runs in a fresh interpreter, so that the patch never leaks into
the other tests (the suite itself must pass without it).
"""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

#: The directory holding dna/.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The wokkel modules the issue names.
MODULES = ("wokkel.disco", "wokkel.data_form", "wokkel.pubsub", "wokkel.muc")


def _run(source):
    """
    Run Python C{source} in a subprocess with the checkout on the path.

    @return: (exit status, output text).
    """
    process = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", source], cwd=CHECKOUT,
        env=dict(os.environ, PYTHONPATH=CHECKOUT), capture_output=True, timeout=60)
    return process.returncode, (process.stdout + process.stderr).decode("utf-8", "replace")


class InstallTests(TestCase):
    """
    L{dna.app.wokkelcompat.install} in a fresh interpreter.
    """

    def test_importsAfterInstall(self):
        """
        After C{install()}, C{wokkel.disco}, C{data_form}, C{pubsub} and
        C{muc} import, and C{install} says what it restored.
        """
        status, output = _run(
            "from dna.app import wokkelcompat\n"
            "print(wokkelcompat.install())\n"
            f"import {', '.join(MODULES)}\n"
            "print('imported')\n")
        self.assertEqual(0, status, output)
        self.assertIn("imported", output)
        self.assertIn("twisted.python.compat._PY3", output)

    def test_failWithout(self):
        """
        Without it, each of those modules fails to import on the pinned
        Twisted: the patch is needed, and importing dna does not apply it.
        """
        for module in MODULES:
            status, output = _run(f"import dna.app.service, dna.app.embed\nimport {module}\n")
            self.assertNotEqual(0, status, f"{module} imported without the patch")
            self.assertIn("Error", output)

    def test_idempotent(self):
        """
        A second C{install()} restores nothing, and nothing already in
        Twisted is replaced.
        """
        status, output = _run(
            "from twisted.python import compat\n"
            "before = compat.iteritems\n"
            "from dna.app import wokkelcompat\n"
            "wokkelcompat.install()\n"
            "assert wokkelcompat.install() == [], 'second install restored something'\n"
            "assert wokkelcompat.missing() == []\n"
            "assert compat.iteritems is before\n"
            "print('same')\n")
        self.assertEqual(0, status, output)
        self.assertIn("same", output)
