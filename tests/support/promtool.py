"""Prometheus binaries for the tests: Debian's `prometheus` package, installed when missing.

Imported as tests.support.promtool. Installing needs root and a reachable Debian mirror; without
them the callers skip with the reason. The package would start a prometheus daemon where an init
system runs; any prometheus process that appears during the install is stopped again, by its pid,
so nothing is left listening on :9090.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess

import psutil

PACKAGE = "prometheus"
BINARIES = ("promtool", "prometheus")
INSTALL_TIMEOUT_S = 600
# Every prometheus a test starts listens on loopback with this flag; a daemon does not.
OWN_FLAG = "--web.listen-address=127.0.0.1:"


def _daemon_pids() -> set[int]:
    """Pids of prometheus servers that are not a test's own (tests always pass OWN_FLAG)."""
    pids = set()
    for proc in psutil.process_iter(["exe", "cmdline"]):
        exe, cmdline = proc.info["exe"] or "", proc.info["cmdline"] or []
        if exe.endswith("/prometheus") and not any(OWN_FLAG in word for word in cmdline):
            pids.add(proc.pid)
    return pids


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )


def _install() -> str | None:
    """Installs the package; None on success, else why it could not."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing it needs root"
    before = _daemon_pids()
    try:
        update = _apt("update", "-qq")
        if update.returncode != 0:
            return f"apt-get update failed: {update.stderr.strip()[-300:]}"
        done = _apt("install", "-y", "-qq", "--no-install-recommends", PACKAGE)
    except subprocess.TimeoutExpired:
        return "apt-get timed out"
    finally:
        for pid in _daemon_pids() - before:  # a daemon the package started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if done.returncode != 0:
        return f"apt-get install {PACKAGE} failed: {done.stderr.strip()[-300:]}"
    return None


@functools.cache
def binaries() -> tuple[dict[str, str], str | None]:
    """({name: path} of promtool and prometheus, None) or ({}, why they are unavailable)."""
    found = {name: shutil.which(name) for name in BINARIES}
    if not all(found.values()):
        why = _install()
        if why is not None:
            return {}, f"Debian package {PACKAGE!r} missing and not installable: {why}"
        found = {name: shutil.which(name) for name in BINARIES}
    if not all(found.values()):
        return {}, f"package {PACKAGE!r} installed but {BINARIES} not on PATH"
    return {name: str(path) for name, path in found.items()}, None
