"""
Real processes for the integration tests and the benchmarks: starting
C{twistd} as an operator would, waiting for a process to listen, stopping
one.
"""

import os
import signal
import socket
import subprocess
import sys
import time

#: The directory holding dna/ and twisted/plugins/ (the dropin).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def freePort():
    """
    A TCP port on 127.0.0.1 that nothing listens on now.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def waitForPort(port, process, timeout=20.0, host="127.0.0.1"):
    """
    Block until something accepts connections on C{host}:C{port}.

    @raise AssertionError: If C{process} exits first, or after C{timeout}
        seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("twistd exited with %s" % (process.returncode,))
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("twistd did not listen on %d in %ss" % (port, timeout))


def twistdCommand(arguments, logFile):
    """
    The command line of C{twistd -n} with C{arguments}, logging to
    C{logFile}.
    """
    return ([sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile=" + logFile] + list(arguments))


def stopProcess(process, timeout=10.0):
    """
    Stop C{process} if it still runs: SIGTERM, then SIGKILL after
    C{timeout} seconds.

    @return: Its exit status.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def startTwistdProcess(testCase, arguments, logFile, **popen):
    """
    Run C{twistd -n} with C{arguments} in a subprocess, stopped (SIGTERM,
    then SIGKILL) in C{testCase}'s cleanup.

    @param popen: More arguments of L{subprocess.Popen} (C{cwd}, C{env}).
    @return: The L{subprocess.Popen}.
    """
    popen.setdefault("cwd", CHECKOUT)
    process = subprocess.Popen(
        twistdCommand(arguments, logFile),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen,
    )

    def stop():
        stopProcess(process)
        process.stdout.close()

    testCase.addCleanup(stop)
    return process
