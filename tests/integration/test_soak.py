"""
The short soak (issue 14): C{bench/soak.py --short} runs two C{twistd dna}
over knotd and unbound with components, injects every fault once (RST,
black hole, slow link, a peer that stops reading, SIGKILL and restart, the
resolver stopped for 10 s, a delegation changed) and must end with nothing
lost, duplicated, reordered, bounced twice, bounced and delivered, delivered
without authorization, and no traceback in any log.
"""

import os
import subprocess
import sys

from twisted.trial import unittest

from tests.integration.processes import CHECKOUT


class ShortSoakTests(unittest.TestCase):

    def test_short(self):
        """
        C{bench/soak.py --short} exits 0 and prints every figure.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(CHECKOUT, "bench", "soak.py"), "--short"],
            cwd=CHECKOUT, env=dict(os.environ, PYTHONPATH=CHECKOUT),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        figures = dict(line.split(": ", 1) for line in result.stdout.splitlines()
                       if ": " in line)
        for name in ("stanzas_sent", "stanzas_delivered", "lost", "lost_in_killed_process",
                     "duplicated", "reordered", "bounced", "unauthorized_delivered",
                     "peak_rss_mb.a", "peak_rss_mb.b", "p99_latency_ms", "tracebacks",
                     "wall_s"):
            self.assertIn(name, figures, output)
        self.assertEqual(result.returncode, 0, output)
        self.assertEqual(figures["stanzas_sent"], "20000", output)
