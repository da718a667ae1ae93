"""Loopback helpers shared by the test environments: free ports and waiting for a listener."""

import os
import socket
import time


def free_port(address):
    """A TCP port nothing listens on at ADDRESS right now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_listening(address, port, proc=None, timeout=15.0, what="server", log=None):
    """Waits until ADDRESS:PORT accepts connections; raises when PROC exits first (with the tail
    of LOG, when given) or after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = ""
            if log and os.path.exists(log):
                with open(log, errors="replace") as f:
                    text = ": " + f.read()[-4000:]
            raise RuntimeError(f"{what} exited with {proc.returncode}{text}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {address}:{port} within {timeout}s")


def wait_until(cond, timeout, what, context=lambda: "",
               errors=(OSError, KeyError, TypeError, IndexError, AttributeError)):
    """Polls COND every 0.1 s until it is true (ERRORS count as not yet); raises AssertionError
    naming WHAT, with CONTEXT() (logs), after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except errors:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s:\n{context()}")
