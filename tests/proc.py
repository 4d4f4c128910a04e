"""Process helpers for tests that start real processes (daemons, servers, marker sleeps)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

# the one wait helper lives in tests/waiting.py; tests written against the older home
# (``from ..proc import wait_for``) keep working
from .waiting import wait_for as wait_for


def pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def alive(pid: int) -> bool:
    """Running and not a zombie (killed children linger as zombies until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def kill(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL after 5 s: only for processes a test started (found by a pattern
    naming the test's own store or a random marker)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
