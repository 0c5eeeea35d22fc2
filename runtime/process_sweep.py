"""Finding and stopping every process that belongs to one service instance.

Ray's agents and Serve's haproxy can outlive a driver that died abruptly; each instance keeps its
Ray session and HAProxy state under its own folders, so a process is ours when its command line or
an open file points under one of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path


def _points_under(pid: str, roots: tuple[str, ...]) -> bool:
    proc = Path("/proc") / pid
    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if any(root in cmd for root in roots):
        return True
    for fd in (proc / "fd").iterdir():
        try:
            if os.readlink(fd).startswith(roots):
                return True
        except OSError:
            continue
    return False


def owned_pids(roots: Sequence[str | Path]) -> list[int]:
    """Pids (not ours) whose command line or open files are under any of roots."""
    prefixes = tuple(str(Path(r)).rstrip("/") + "/" for r in roots)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if _points_under(entry, prefixes):
                found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def sweep(roots: Sequence[str | Path], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then after grace_s SIGKILL, every process owned by roots; returns those found."""
    first = owned_pids(roots)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = owned_pids(roots)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and owned_pids(roots):
            time.sleep(0.2)
    return first
