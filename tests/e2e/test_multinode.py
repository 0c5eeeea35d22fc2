"""The cluster configuration on two Ray nodes of this machine: `ray start --head` and `ray start
--address` (JOIN_ON_LOOPBACK; each node with its own temp dir and ports, both with
deploy/cluster/ray-node.env), then
`serve deploy` of a copy of deploy/cluster/serve_config.cluster.yaml that pins the ingress and
the Validator to the worker node (falling back to the head) and the ZoneCalculator to the head.

Both nodes' gRPC ports answer (EveryNode: an HAProxy per node, with ray-node.env's limits), and
the head's HAProxy routes to the ingress on the other node. Then every process of the worker
node (raylet, agents, replicas, its HAProxy) is killed with SIGKILL, as when a machine is lost,
while clients that resend keep streaming and calling through the head: the ingress and the
Validator come back on the head, the service answers SERVING again, and every reading
acknowledged before, during and after the loss is stored. Redis is a real embedded one.

Traffic is on 127.0.0.1 (both nodes' address). HAProxy binds 0.0.0.0 as the cluster config says.
`ray stop` is never called (it would stop every Ray of this machine); the nodes are stopped
through their own temp dirs (runtime/process_sweep.py), also when the test fails."""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.cli.resending import (
    Backoff,
    ResendingStream,
    RetryPolicy,
    Stamper,
    StreamStats,
    call_with_retry,
)
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.runtime.embedded_redis import EmbeddedRedis
from heartrate_serve.runtime.haproxy_mode import free_port_block
from heartrate_serve.runtime.process_sweep import owned_processes, sweep
from heartrate_serve.runtime.ray_runtime import free_port

pytestmark = [pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONFIG = ROOT / "deploy" / "cluster" / "serve_config.cluster.yaml"
NODE_ENV = ROOT / "deploy" / "cluster" / "ray-node.env"
BIN = Path(sys.executable).parent
APP = "heartrate"
LABEL = "hr-node"  # a node label: which deployment goes where
ON_WORKER = ("HeartRateIngress", "Validator")  # on the worker node, the head as a fallback
ON_HEAD = ("ZoneCalculator",)
READY_TIMEOUT_S = 150.0
RECOVERY_TIMEOUT_S = 120.0
# Resending clients keep trying through the loss of the node (their default gives up after 60 s).
RETRY = RetryPolicy(backoff=Backoff(initial=0.2, max_delay=2.0), max_seconds=RECOVERY_TIMEOUT_S)
STREAM_RATE_HZ = 10.0
UNARY_RATE_HZ = 4.0
AFTER_RECOVERY_S = 3.0  # traffic kept up after the recovery, to see it acknowledged
STATUS_MAX = 1000  # GetHeartRateStatus's recent_count limit
# `ray start` for the second node, on 127.0.0.1 like the head. With
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (what keeps every Ray port of a node on loopback; any other
# node address makes Ray bind its GCS and raylet on all interfaces) `ray start --address`
# refuses to join, and with 1 it swaps the head's 127.0.0.1 for the LAN address. This lifts the
# refusal in the `ray start` process alone and keeps its address lookups on loopback; the node's
# processes inherit the 0 (the test checks its raylet listens on loopback only).
JOIN_ON_LOOPBACK = """
import sys
import ray._private.ray_constants as ray_constants
import ray._private.services as services
from ray.scripts.scripts import main

ray_constants.ENABLE_RAY_CLUSTER = True
services.get_node_ip_address = lambda address=None: "127.0.0.1"
sys.exit(main())
"""


def node_env_file() -> dict[str, str]:
    """deploy/cluster/ray-node.env as a dict (KEY=value lines; tests/unit checks the format)."""
    lines = [line.strip() for line in NODE_ENV.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def fd_fitting_maxconn(wanted: int) -> int:
    """RAY_SERVE_HAPROXY_MAXCONN as this machine allows: HAProxy refuses to start unless the
    open-files limit holds 2.5 x maxconn + 40 (ray-node.env), and a test cannot raise the hard
    limit (here 20 000; cluster nodes raise it before `ray start`)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, int((hard - 1000) / 2.5))


class Ports:
    """Free loopback ports that do not overlap each other."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def one(self) -> int:
        while (port := free_port()) in self.taken:
            pass
        self.taken.add(port)
        return port

    def block(self) -> range:
        start = free_port_block(avoid=tuple(self.taken))
        block = range(start, start + 64)
        self.taken.update(block)
        return block


@dataclass
class Node:
    """One Ray node of the test cluster."""

    name: str  # the value of its LABEL
    temp: Path  # its --temp-dir: every process of the node points under it
    grpc_port: int  # its HAProxy's gRPC port
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class Cluster:
    """The two nodes, the dashboard (serve deploy, Serve's REST API), the Redis, the maxconn
    used."""

    head: Node
    worker: Node
    dashboard: int
    redis: EmbeddedRedis
    maxconn: int
    root: Path  # both nodes' temp dirs are under it

    def haproxy_state(self, node_id: str) -> list[Path]:
        """The folders of the HAProxy of the node with node_id (its config, sockets). Serve
        names them after the node id under RAY_SERVE_HAPROXY_CONFIG_FILE_LOC's folder, as the
        head's environment has it: Serve ships HAProxyManager's code from the controller with
        the controller's module globals (the file paths), while its HAProxyConfig (limits,
        timeouts, stats and metrics ports) comes from the node's own environment."""
        return sorted(path.parent for path in self.root.glob(f"*/hp/{node_id}/haproxy.cfg"))

    def get(self, path: str) -> Any:
        """GET of the dashboard's REST API, as JSON."""
        url = f"http://127.0.0.1:{self.dashboard}{path}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return json.loads(answer.read())

    def node_ids(self) -> dict[str, str]:
        """The node id of each node, by name, from Ray's state API (GET /api/v0/nodes)."""
        rows = self.get("/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]
        return {
            row["labels"][LABEL]: row["node_id"]
            for row in rows
            if LABEL in row.get("labels", {}) and row["state"] == "ALIVE"
        }

    def serve_state(self) -> ServeState:
        """What Serve reports (GET /api/serve/applications/, `serve status` with node ids)."""
        details = self.get("/api/serve/applications/")
        app = details["applications"][APP]
        return ServeState(
            app["status"],
            {
                name: [(r["state"], r["node_id"]) for r in d.get("replicas", [])]
                for name, d in app["deployments"].items()
            },
            {node_id: proxy["status"] for node_id, proxy in details["proxies"].items()},
        )


@dataclass(frozen=True)
class ServeState:
    """The application's status, (state, node id) of every replica by deployment, and the
    status of the proxy (HAProxy manager) on each node id."""

    app: str
    replicas: dict[str, list[tuple[str, str]]]
    proxies: dict[str, str]


def _node_env(base: dict[str, str], node: Node, ports: Ports) -> dict[str, str]:
    """The environment of one node's `ray start`: ray-node.env plus what two nodes on one
    machine need apart (HAProxy's files and its stats and metrics ports)."""
    state = node.temp / "hp"
    return {
        **base,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(state / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports.one()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports.one()),
    }


def _ray_ports(ports: Ports) -> list[str]:
    """`ray start` options giving every port of a node (none of Ray's fixed defaults, which the
    other node, or another test's Ray, would hold)."""
    workers = ports.block()
    return [
        f"--node-manager-port={ports.one()}",
        f"--object-manager-port={ports.one()}",
        f"--dashboard-agent-listen-port={ports.one()}",
        f"--dashboard-agent-grpc-port={ports.one()}",
        f"--runtime-env-agent-port={ports.one()}",
        f"--metrics-export-port={ports.one()}",
        f"--min-worker-port={workers.start}",
        f"--max-worker-port={workers.stop - 1}",
        "--num-cpus=1",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
    ]


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(args[:3])}: {done.stdout}{done.stderr}"


def _deployed_config(cluster_ports: tuple[int, int]) -> dict[str, Any]:
    """The cluster config with the head's ports, fixed replica counts and node labels: the
    ingress and the Validator on the worker (the head as fallback), the ZoneCalculator on the
    head. Everything else is the file's."""
    grpc_port, http_port = cluster_ports
    config: dict[str, Any] = yaml.safe_load(CLUSTER_CONFIG.read_text())
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    for deployment in config["applications"][0]["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = 1
        options = deployment.setdefault("ray_actor_options", {})
        if deployment["name"] in ON_WORKER:
            options["label_selector"] = {LABEL: "worker"}
            options["fallback_strategy"] = [{"label_selector": {LABEL: "head"}}]
        else:
            options["label_selector"] = {LABEL: "head"}
    return config


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two Ray nodes with ray-node.env, the application deployed with `serve deploy`; every
    process stopped at the end, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="hrs-mn-", dir="/tmp"))  # short: unix socket paths
    redis = EmbeddedRedis(tmp_path / "redis")
    ports = Ports()
    file_env = node_env_file()
    maxconn = fd_fitting_maxconn(int(file_env["RAY_SERVE_HAPROXY_MAXCONN"]))
    base = {
        **os.environ,
        **file_env,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps both nodes' address on 127.0.0.1
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_MAXCONN": str(maxconn),
        "AUTH_MODE": "none",  # no identity provider here; tokens are tested elsewhere
        "LOG_DIR": str(tmp_path / "log"),
        # The controller's range for the replicas' direct-ingress ports (both nodes draw from
        # it; a port the other node holds is retried by Serve).
        **_direct_ingress_ports(ports),
    }
    base.pop("AUTH_JWT_PUBLIC_KEY_FILE", None)
    head = Node("head", root / "h", ports.one())
    worker = Node("worker", root / "w", ports.one())
    http_port, gcs, dashboard = ports.one(), ports.one(), ports.one()
    head.env = {
        **_node_env(base, head, ports),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports.one()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(ports.one()),
    }
    worker.env = {
        **_node_env(base, worker, ports),
        # Serve's per-node ports for a second proxy on the same machine.
        "RAY_SERVE_WORKER_PROXY_GRPC_PORT": str(worker.grpc_port),
        "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(ports.one()),
    }
    path = tmp_path / "serve_config.cluster.yaml"
    path.write_text(yaml.safe_dump(_deployed_config((head.grpc_port, http_port))))
    try:
        redis.start()
        head.env["REDIS_URL"] = worker.env["REDIS_URL"] = redis.url
        _run(
            [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--ray-client-server-port={ports.one()}", f"--temp-dir={head.temp}",
             f"--labels={LABEL}=head", *_ray_ports(ports)],
            head.env,
        )  # fmt: skip
        _run(
            [sys.executable, "-c", JOIN_ON_LOOPBACK, "start", f"--address=127.0.0.1:{gcs}",
             "--node-ip-address=127.0.0.1", f"--temp-dir={worker.temp}",
             f"--labels={LABEL}=worker", *_ray_ports(ports)],
            worker.env,
        )  # fmt: skip
        _run(
            [str(BIN / "serve"), "deploy", str(path), "-a", f"http://127.0.0.1:{dashboard}"],
            head.env,
        )
        yield Cluster(head, worker, dashboard, redis, maxconn, root)
    finally:
        sweep([root])
        shutil.rmtree(root, ignore_errors=True)
        redis.stop()


def _direct_ingress_ports(ports: Ports) -> dict[str, str]:
    block = ports.block()
    return {
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(block[0]),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(block[31]),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(block[32]),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(block[63]),
    }


# --- calls ---------------------------------------------------------------------------------------


def _health(target: str) -> str:
    """SERVING, NOT_SERVING, or the error's code and details."""
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(),  # pyright: ignore[reportAttributeAccessIssue]
                timeout=5,
            )
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"  # pyright: ignore[reportAttributeAccessIssue]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def _serving(target: str) -> bool | str:
    """True when target answers SERVING, else what it answered."""
    health = _health(target)
    return health == "SERVING" or health


def _wait_until(what: str, check: Any, timeout_s: float) -> float:
    """Polls check() (truthy or an explanation) until truthy; the seconds it took."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout_s:
        try:
            last = check()
        except Exception as error:  # noqa: BLE001 - reported if it never gets there
            last = f"{type(error).__name__}: {error}"
        if last is True:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s; last: {last}")


def _smoke(target: str, user: str) -> set[int]:
    """SubmitHeartRate, StreamHeartRate and CalculateExerciseZones through target, with their
    answers checked; the timestamps (ms) of the readings acknowledged."""
    stamper = Stamper()
    acked: set[int] = set()
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        one = stamper.stamp(pb.HeartRateRequest(user_id=user, bpm=72))
        answer = stub.SubmitHeartRate(one, timeout=30)
        assert answer.success and not answer.duplicate, answer
        acked.add(one.timestamp_ms)
        sent = [stamper.stamp(pb.HeartRateRequest(user_id=user, bpm=60 + i)) for i in range(20)]
        answers = list(stub.StreamHeartRate(iter(sent), timeout=60))
        assert [a.success for a in answers] == [True] * len(sent), answers
        assert [a.timestamp_ms for a in answers] == [r.timestamp_ms for r in sent]
        acked.update(r.timestamp_ms for r in sent)
        # Vector 1 of the zones issue (tests/e2e/test_service.py): 10 s below zone 1, 10 s in
        # each of the five %HRmax zones.
        readings = [(0, 100), (10, 110), (20, 126), (30, 150), (40, 170), (50, 85)]
        base = 1_700_000_000
        zones = stub.CalculateExerciseZones(
            pb.ExerciseZoneRequest(
                age=40,
                measurements=[
                    pb.HeartRateMeasurement(bpm=b, timestamp=base + t) for t, b in readings
                ],
                session_end_timestamp=base + 60,
            ),
            timeout=60,
        )
        assert [z.seconds for z in zones.zones] == [10, 10, 10, 10, 10], zones
        assert (zones.zone1_time, zones.zone2_time, zones.zone3_time) == (10, 10, 20)
        assert zones.total_duration == 60 and zones.hr_max_bpm == 180
    return acked


def _stored(target: str, user: str) -> list[int]:
    """The timestamps (ms) of every reading stored for user, read back through the service."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.HeartRateMonitorStub(channel)
        status = stub.GetHeartRateStatus(
            pb.StatusRequest(user_id=user, recent_count=STATUS_MAX), timeout=30
        )
    stored = [m.timestamp_ms for m in status.recent_measurements]
    assert len(stored) < STATUS_MAX, f"{user}: more readings than one status call returns"
    return stored


@dataclass
class Traffic:
    """Readings sent through the head while the worker node is lost: one resending stream and
    one resending unary caller, each its own user."""

    target: str
    stop: threading.Event = field(default_factory=threading.Event)
    acked: dict[str, dict[int, float]] = field(default_factory=dict)  # user -> ts -> when acked
    rejected: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stats: StreamStats = field(default_factory=StreamStats)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, run in (("mn-stream", self._stream), ("mn-unary", self._unary)):
            self.acked[name] = {}
            thread = threading.Thread(target=self._guard, args=(run, name), daemon=True)
            thread.start()
            self.threads.append(thread)

    def acknowledged_each(self, n: int) -> bool | str:
        """True once every user has n readings acknowledged, else the counts."""
        counts = {user: len(acked) for user, acked in self.acked.items()}
        return all(c >= n for c in counts.values()) or f"acknowledged {counts}"

    def acknowledged_since(self, t: float) -> bool | str:
        """True once every user had a reading acknowledged after t (time.monotonic())."""
        late = {user: max(acked.values(), default=0.0) > t for user, acked in self.acked.items()}
        return all(late.values()) or f"acknowledged after the recovery: {late}"

    def finish(self, timeout_s: float) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout_s)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} traffic threads still running after {timeout_s} s"

    def _guard(self, run: Any, user: str) -> None:
        try:
            run(user)
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            self.errors.append(f"{user}: {type(error).__name__}: {error}")

    def _paced(self, user: str, rate_hz: float) -> Iterator[pb.HeartRateRequest]:
        i = 0
        while not self.stop.is_set():
            yield pb.HeartRateRequest(user_id=user, bpm=60 + i % 60)
            i += 1
            self.stop.wait(1.0 / rate_hz)

    def _record(self, user: str, request: pb.HeartRateRequest, answer: Any) -> None:
        if answer.success:
            self.acked[user][request.timestamp_ms] = time.monotonic()
        else:
            self.rejected.append(f"{user}: {answer.error_detail or answer.error}")

    def _stream(self, user: str) -> None:
        channel = grpc.insecure_channel(self.target)
        try:
            stub = pb_grpc.HeartRateMonitorStub(channel)
            stream = ResendingStream(
                lambda requests: stub.StreamHeartRate(requests),
                self._paced(user, STREAM_RATE_HZ),
                retry=RETRY,
                stats=self.stats,
            )
            with stream:
                for request, answer in stream:
                    self._record(user, request, answer)
        finally:
            channel.close()

    def _unary(self, user: str) -> None:
        stamper = Stamper()
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.HeartRateMonitorStub(channel)
            for request in self._paced(user, UNARY_RATE_HZ):
                stamper.stamp(request)
                answer = call_with_retry(stub.SubmitHeartRate, request, timeout=10, retry=RETRY)
                self._record(user, request, answer)


def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _kill_node(cluster: Cluster, node: Node, node_id: str) -> list[str]:
    """SIGKILL to every process of the node at once (a lost machine): those under its temp dir
    and its HAProxy; their names."""
    procs = owned_processes([node.temp, *cluster.haproxy_state(node_id)])
    names = []
    for proc in procs:
        try:
            names.append(proc.name())
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)
    return names


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_two_nodes_serve_and_survive_the_loss_of_one(cluster: Cluster) -> None:
    """Replicas and an HAProxy on both nodes, the smoke through both nodes' gRPC ports; the
    worker node killed under traffic: the ingress and the Validator back on the head, SERVING,
    every acknowledged reading stored once."""
    head, worker = cluster.head, cluster.worker
    started = time.monotonic()
    for node in (head, worker):
        _wait_until(f"{node.name} SERVING", lambda n=node: _serving(n.address), READY_TIMEOUT_S)
    ids = cluster.node_ids()
    assert set(ids) == {"head", "worker"}, ids

    # Replicas on both nodes, as placed; an HAProxy with ray-node.env's limits on both nodes.
    serve = cluster.serve_state()
    for name, where in (*((n, "worker") for n in ON_WORKER), *((n, "head") for n in ON_HEAD)):
        assert serve.replicas[name] == [("RUNNING", ids[where])], (name, serve)
    assert serve.proxies == {ids["head"]: "HEALTHY", ids["worker"]: "HEALTHY"}, serve
    file_env = node_env_file()
    for node in (head, worker):
        state = cluster.haproxy_state(ids[node.name])
        assert len(state) == 1, (node.name, state)
        text = (state[0] / "haproxy.cfg").read_text()
        for line in (
            f"maxconn {cluster.maxconn}",
            f"timeout client {file_env['RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S']}s",
            f"timeout server {file_env['RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S']}s",
            f"hard-stop-after {file_env['RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S']}s",
            f"tune.bufsize {file_env['RAY_SERVE_HAPROXY_TUNE_BUFSIZE']}",
            f"bind *:{node.grpc_port} proto h2",  # all interfaces (http_options.host 0.0.0.0)
        ):
            assert line in text, f"{node.name}'s haproxy.cfg lacks {line!r}"
    # The second node joined on loopback like the head (JOIN_ON_LOOPBACK): its raylet listens
    # on 127.0.0.1 only.
    raylets = [p for p in owned_processes([worker.temp]) if p.name() == "raylet"]
    assert len(raylets) == 1, raylets
    listening = {c.laddr.ip for c in raylets[0].net_connections("inet") if not c.raddr}
    assert listening and all(_is_loopback(ip) for ip in listening), listening
    ready_s = time.monotonic() - started

    # The smoke through each node's own gRPC port (the head's HAProxy routes to the worker).
    before = {user: _smoke(node.address, user) for user, node in (("mn-h", head), ("mn-w", worker))}

    traffic = Traffic(head.address)
    traffic.start()
    try:
        _wait_until("traffic acknowledged", lambda: traffic.acknowledged_each(10), 60)
        killed_at = time.monotonic()
        killed = _kill_node(cluster, worker, ids["worker"])
        assert "raylet" in killed and any("haproxy" in n for n in killed), killed
        assert not owned_processes([worker.temp, *cluster.haproxy_state(ids["worker"])])
        assert _health(worker.address).startswith("UNAVAILABLE"), "the worker's port answers"

        def recovered() -> Any:
            serve = cluster.serve_state()
            moved = all(serve.replicas[n] == [("RUNNING", ids["head"])] for n in ON_WORKER)
            health = _health(head.address)
            done = moved and serve.app == "RUNNING" and health == "SERVING"
            return done or f"{health}; {serve}"

        recovery_s = _wait_until("recovery on the head", recovered, RECOVERY_TIMEOUT_S)
        recovered_at = time.monotonic()
        _wait_until(
            "traffic acknowledged after the recovery",
            lambda: traffic.acknowledged_since(recovered_at + AFTER_RECOVERY_S),
            60,
        )
    finally:
        traffic.finish(RECOVERY_TIMEOUT_S)
    assert not traffic.errors, traffic.errors
    assert not traffic.rejected, traffic.rejected[:5]
    # The stream ran through the ingress on the worker: the loss broke it, and it was reopened.
    assert traffic.stats.reconnects >= 1, traffic.stats

    after = _smoke(head.address, "mn-after")
    acknowledged = {**before, "mn-after": after}
    acknowledged.update({user: set(acked) for user, acked in traffic.acked.items()})
    for user, timestamps in acknowledged.items():
        stored = _stored(head.address, user)
        assert len(stored) == len(set(stored)), f"{user}: a reading stored twice"
        missing = timestamps - set(stored)
        assert not missing, f"{user}: {len(missing)} acknowledged readings not stored"
        assert set(stored) == timestamps, f"{user}: stored readings that were never acknowledged"
    print(
        f"\nready {ready_s:.1f} s; worker killed ({len(killed)} processes) "
        f"{killed_at - started:.1f} s in; recovered on the head after {recovery_s:.1f} s; "
        f"acknowledged {sum(len(t) for t in acknowledged.values())} readings, all stored; "
        f"stream {traffic.stats}"
    )
