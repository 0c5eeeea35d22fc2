"""Finding and stopping every process that belongs to one service instance (psutil).

Ray's agents and Serve's haproxy can outlive a driver that died abruptly; each instance keeps its
Ray session and HAProxy state under its own folders, so a process is ours when its command line,
its working directory or an open file points under one of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil


def _points_under(proc: psutil.Process, prefixes: tuple[str, ...]) -> bool:
    cmd = " ".join(proc.cmdline())
    if any(prefix in cmd for prefix in prefixes):
        return True
    paths = [f.path for f in proc.open_files()] + [proc.cwd() + "/"]
    return any(path.startswith(prefixes) for path in paths)


def owned_processes(roots: Sequence[str | Path]) -> list[psutil.Process]:
    """Processes (not this one) whose command line or open files are under any of roots."""
    prefixes = tuple(str(Path(r)).rstrip("/") + "/" for r in roots)
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if _points_under(proc, prefixes):
                found.append(proc)
        except (psutil.Error, OSError):  # gone meanwhile, or not ours to read
            continue
    return found


def owned_pids(roots: Sequence[str | Path]) -> list[int]:
    """Pids of owned_processes(roots)."""
    return [p.pid for p in owned_processes(roots)]


def sweep(roots: Sequence[str | Path], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then after grace_s SIGKILL, every process owned by roots (twice over, for
    processes started meanwhile); returns the pids found."""
    found: list[int] = []
    for _ in range(2):
        procs = owned_processes(roots)
        if not procs:
            break
        found += [p.pid for p in procs]
        _signal(procs, psutil.Process.terminate)
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        _signal(alive, psutil.Process.kill)
        psutil.wait_procs(alive, timeout=2.0)
    return found


def _signal(procs: Sequence[psutil.Process], send: Callable[[psutil.Process], None]) -> None:
    for proc in procs:
        try:
            send(proc)
        except psutil.NoSuchProcess:
            continue
