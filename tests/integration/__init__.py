"""
Integration tests: the real components a user runs (knotd, unbound, prosody,
C{twistd}, TLS over loopback sockets), started and stopped by the tests on
127.0.0.0/8 with bounded time. They fail, never skip, when a component is
missing.
"""
