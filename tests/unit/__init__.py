"""
Unit tests: in memory, no processes, no sockets; the whole set runs in seconds
(C{python -m twisted.trial tests.unit}).
"""

import os


def examples(thorough):
    """
    How many examples a property test runs: C{thorough} in CI (C{.ci/run}
    sets C{DNA_THOROUGH=1}), a third of it (at least 10) for a quick local
    C{python -m twisted.trial tests.unit}. Examples are derandomised, so a
    quick run is a prefix of what CI runs, never a different set.
    """
    if os.environ.get("DNA_THOROUGH"):
        return thorough
    return max(10, thorough // 3)
