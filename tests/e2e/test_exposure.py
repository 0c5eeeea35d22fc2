"""Loopback by default: every listening socket of the processes `make run` starts (the launcher,
its Redis, the Ray driver, GCS, raylet, agents, workers, HAProxy) is on 127.0.0.1 or ::1, except
the gRPC port (on GRPC_HOST) and the metrics endpoint (on METRICS_HOST), both loopback by default.

No Ray port is left on another interface, so Ray's token auth stays off (RAY_AUTH_MODE=disabled).
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from heartrate_serve.loadtest.service import ServiceProcess, tree
from heartrate_serve.runtime.process_sweep import owned_processes
from heartrate_serve.settings import Settings, is_loopback
from tests.support.service import Service, running_service

pytestmark = pytest.mark.e2e
METRICS_WAIT_S = 60.0  # Ray exports every ~10 s


@dataclass(frozen=True, order=True)
class Listener:
    """One listening socket: a TCP socket in LISTEN or an unconnected bound UDP socket."""

    ip: str
    port: int
    proto: str
    pid: int
    process: str

    def __str__(self) -> str:
        return f"{self.proto} {self.ip}:{self.port} {self.process} (pid {self.pid})"


def listeners(svc: ServiceProcess) -> list[Listener]:
    """Every listening socket of the launcher's process tree and of any process of its instance
    (found by INSTANCE_DIR, in case one was re-parented)."""
    assert svc.process is not None and svc.instance_dir is not None
    procs = {p.pid: p for p in tree([svc.process.pid])}
    procs.update({p.pid: p for p in owned_processes([svc.instance_dir])})
    found = set()
    for proc in procs.values():
        try:
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:  # gone meanwhile
            continue
        for c in conns:
            tcp = c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN
            udp = c.type == socket.SOCK_DGRAM and not c.raddr
            if tcp or udp:
                found.add(
                    Listener(c.laddr.ip, c.laddr.port, "udp" if udp else "tcp", proc.pid, name)
                )
    return sorted(found)


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a socket; an IPv4-mapped IPv6 address (::ffff:127.0.0.1) as IPv4."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _on_host(ip: str, host: str) -> bool:
    """True when a socket bound to ip is bound where `host` (a setting) says. Every interface is
    every interface: gRPC binds "0.0.0.0:port" as a dual-stack "[::]:port"."""
    if host.strip("[]").lower() == "localhost":
        return _address(ip).is_loopback
    wanted = _address(host.strip("[]"))
    if wanted.is_unspecified:
        return _address(ip).is_unspecified
    return _address(ip) == wanted


def exposure_problems(found: list[Listener], settings: Settings, svc: ServiceProcess) -> list[str]:
    """What is wrong with the listing: a socket off loopback (other than the gRPC port on
    GRPC_HOST and the metrics endpoint on METRICS_HOST), or one of those two not where set."""
    problems = []
    for lst in found:
        if lst.port == svc.grpc_port and lst.proto == "tcp":
            if not _on_host(lst.ip, settings.grpc_host):
                problems.append(f"gRPC port not on GRPC_HOST {settings.grpc_host}: {lst}")
        elif lst.port == svc.metrics_port and lst.proto == "tcp":
            if not _on_host(lst.ip, settings.metrics_host):
                problems.append(f"metrics port not on METRICS_HOST {settings.metrics_host}: {lst}")
        elif not _address(lst.ip).is_loopback:
            problems.append(f"not on loopback: {lst}")
    ports = {lst.port for lst in found if lst.proto == "tcp"}
    for port, what in ((svc.grpc_port, "gRPC"), (svc.metrics_port, "metrics")):
        if port not in ports:
            problems.append(f"no {what} listener on port {port} in the listing")
    names = " ".join(lst.process for lst in found)
    for ray_process in ("gcs_server", "raylet"):
        if ray_process not in names:
            problems.append(f"no {ray_process} in the listing")
    return problems


def _report(found: list[Listener], problems: list[str]) -> str:
    listing = "\n".join(f"  {lst}" for lst in found)
    return "\n".join(problems) + f"\nlistening sockets ({len(found)}):\n{listing}"


def test_every_listener_of_the_service_is_on_loopback(service: Service) -> None:
    """The shared service (HAProxy ingress, defaults): nothing listens beyond loopback."""
    settings = Settings.from_env()  # the launcher's GRPC_HOST / METRICS_HOST: the same env
    found = listeners(service.launcher)
    print(_report(found, []))
    problems = exposure_problems(found, settings, service.launcher)
    assert not problems, _report(found, problems)


def _lan_ip() -> str:
    """An address of this host other than loopback (127.0.0.1 if it has none)."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not is_loopback(a.address):
                return str(a.address)
    return "127.0.0.1"


def _metrics(url: str) -> str:
    """The body of /metrics once it has a Ray series; fails after METRICS_WAIT_S."""
    deadline = time.monotonic() + METRICS_WAIT_S
    body = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = bytes(resp.read()).decode()
            if "ray_" in body:
                return body
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"no ray_ series at {url} after {METRICS_WAIT_S:.0f} s: {body[:300]!r}")


def test_hosts_in_proxy_mode_with_embedded_redis(tmp_path: Path) -> None:
    """GRPC_HOST=0.0.0.0 and METRICS_HOST=0.0.0.0 move the gRPC port (Serve's Python proxy here)
    and the metrics endpoint, and only them, to every interface, where they answer; the embedded
    Redis and everything else stay on loopback."""
    with running_service(
        tmp_path, INGRESS_MODE="proxy", GRPC_HOST="0.0.0.0", METRICS_HOST="0.0.0.0"
    ) as svc:
        settings = Settings.from_env(grpc_host="0.0.0.0", metrics_host="0.0.0.0")  # as launched
        found = listeners(svc)
        print(_report(found, []))
        problems = exposure_problems(found, settings, svc)
        if not any(lst.process.startswith("redis-server") for lst in found):
            problems.append("no embedded redis-server in the listing")
        assert not problems, _report(found, problems)
        lan = _lan_ip()
        with grpc.insecure_channel(f"{lan}:{svc.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            check = stub.Check  # pyright: ignore[reportAttributeAccessIssue]
            resp = check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert "ray_" in _metrics(f"http://{lan}:{svc.metrics_port}/metrics")
