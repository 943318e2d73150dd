"""
Unit tests: in memory, no processes, no sockets; the whole set runs in seconds
(C{python -m twisted.trial tests.unit}).
"""
