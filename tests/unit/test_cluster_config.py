"""deploy/cluster/: the multi-node configuration runs what serve_config.yaml says, binds where
other nodes and a load balancer can reach it, and sizes HAProxy for tens of thousands of
long-lived streams.

Why: serve_config.cluster.yaml is a copy of serve_config.yaml, so nothing but this test notices
when the two drift apart (a new deployment, a changed user_config or servicer function would
silently not reach a cluster). Its HAProxy limits live in ray-node.env, the environment of
`ray start` on every node, where Ray silently ignores a misspelt name and a wrong number only
shows under load or after an hour of a quiet stream. No Ray is started here;
tests/e2e/test_multinode.py runs both files on two Ray nodes.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from heartrate_serve.runtime.haproxy_mode import HAPROXY_BUFSIZE
from heartrate_serve.runtime.worker_setup import HOOK_ENV_VAR, LOCAL_HOOK
from heartrate_serve.service.wire import GRPC_HARD_MAX_BYTES
from heartrate_serve.settings import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "serve_config.yaml"
CLUSTER_CONFIG = ROOT / "deploy" / "cluster" / "serve_config.cluster.yaml"
NODE_ENV = ROOT / "deploy" / "cluster" / "ray-node.env"
TUNE_HOOK = "heartrate_serve.runtime.worker_setup.tune"
ALL_INTERFACES = ("0.0.0.0", "::")

INGRESS_AUTOSCALING = ("applications", 0, "deployments", 0, "autoscaling_config")
# The only values of the cluster config that differ from serve_config.yaml, and why each must.
CLUSTER_ONLY: dict[tuple[Any, ...], tuple[Any, str]] = {
    ("proxy_location",): (
        "EveryNode",
        "an HAProxy ingress on every node, behind a load balancer; HeadOnly sends every call "
        "through the head",
    ),
    ("http_options", "host"): (
        "0.0.0.0",
        "HAProxy binds the HTTP and the gRPC port on http_options.host and routes to ingress "
        "replicas on other nodes; loopback breaks cross-node routing (ray-project/ray#62522)",
    ),
    (*INGRESS_AUTOSCALING, "min_replicas"): (
        2,
        "a lost node leaves an ingress replica serving while Serve replaces the other",
    ),
    (*INGRESS_AUTOSCALING, "max_replicas"): (
        16,
        "tens of thousands of streams: 16 x max_open_streams (4 000) = 64 000",
    ),
}

# ray-node.env: what every node must have, equal to what `make run` and the KubeRay manifest use.
REQUIRED_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(GRPC_HARD_MAX_BYTES),
    "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(HAPROXY_BUFSIZE),
    "AUTH_MODE": "jwt",
}
# Serve 2.60's defaults that ray-node.env exists to raise (ray/serve/_private/constants.py).
SERVE_DEFAULT_MAXCONN = 4096
SERVE_DEFAULT_TIMEOUT_CLIENT_S = 3600
SERVE_DEFAULT_HARD_STOP_AFTER_S = 120
# "Tens of thousands of long-lived streams" per node, and a quiet stream kept for a day.
MIN_MAXCONN = 50_000
MIN_IDLE_STREAM_S = 24 * 3600
MIN_HARD_STOP_AFTER_S = 3600
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s'\"$`\\]*)$")


# --- helpers -------------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as a dict."""
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def node_env(path: Path = NODE_ENV) -> dict[str, str]:
    """ray-node.env as a dict; every line a comment, blank or KEY=value (asserted)."""
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"{path.name}:{number}: not a plain KEY=value line: {line!r}"
        assert match[1] not in env, f"{path.name}:{number}: {match[1]} set twice"
        env[match[1]] = match[2]
    return env


def for_cluster(local: dict[str, Any]) -> dict[str, Any]:
    """serve_config.yaml with CLUSTER_ONLY's values put in: what the cluster config must equal."""
    expected = copy.deepcopy(local)
    for path, (value, _why) in CLUSTER_ONLY.items():
        node: Any = expected
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return expected


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def differences(want: Any, got: Any, path: str = "") -> Iterator[str]:
    """Every place where got differs from want, as `path: ...`; lists of named items
    (applications, deployments) are compared by name so that a message names the item."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in got:
                yield f"{where}: missing in the cluster config (serve_config.yaml: {want[key]!r})"
            elif key not in want:
                yield f"{where}: only in the cluster config ({got[key]!r})"
            else:
                yield from differences(want[key], got[key], where)
    elif isinstance(want, list) and isinstance(got, list) and _named(want) and _named(got):
        yield from differences(
            {item["name"]: item for item in want}, {item["name"]: item for item in got}, path
        )
        if [item["name"] for item in want] != [item["name"] for item in got]:
            yield f"{path}: order {[i['name'] for i in want]} -> {[i['name'] for i in got]}"
    elif want != got or type(want) is not type(got):
        yield f"{path}: serve_config.yaml {want!r}, cluster config {got!r}"


def sync_problems(local: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    """How the cluster config differs from serve_config.yaml beyond CLUSTER_ONLY."""
    return list(differences(for_cluster(local), cluster))


DELETE = object()  # edited(): remove the item at the path


def edited(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of document with the item at path set to value (appended when the index is one
    past a list's end; removed when value is DELETE)."""
    copied = copy.deepcopy(document)
    node: Any = copied
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return copied


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    """serve_config.yaml."""
    return load_yaml(SERVE_CONFIG)


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    """deploy/cluster/serve_config.cluster.yaml."""
    return load_yaml(CLUSTER_CONFIG)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """deploy/cluster/ray-node.env."""
    return node_env()


# --- the cluster config is serve_config.yaml -----------------------------------------------------


def test_cluster_config_equals_serve_config(local: dict[str, Any], cluster: dict[str, Any]) -> None:
    """Every application, deployment and field (user_config, autoscaling, max_ongoing_requests,
    max_queued_requests, ray_actor_options, runtime_env, args ...), grpc_options and
    logging_config are serve_config.yaml's; only CLUSTER_ONLY differs."""
    problems = sync_problems(local, cluster)
    assert not problems, (
        "deploy/cluster/serve_config.cluster.yaml is out of sync with serve_config.yaml; update "
        "it (or, for a value that must differ on a cluster, CLUSTER_ONLY in this test, saying "
        "why):\n  " + "\n  ".join(problems)
    )


def test_same_applications_and_deployments(local: dict[str, Any], cluster: dict[str, Any]) -> None:
    """The names clients and operators see (application, route, deployments in order, servicer
    functions) are the same: spelled out, though the comparison above covers them."""

    def names(config: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
        return [
            (app["name"], app["route_prefix"], [d["name"] for d in app["deployments"]])
            for app in config["applications"]
        ]

    assert (
        names(cluster)
        == names(local)
        == [("heartrate", "/", ["HeartRateIngress", "Validator", "ZoneCalculator"])]
    )
    want = local["grpc_options"]["grpc_servicer_functions"]
    assert cluster["grpc_options"]["grpc_servicer_functions"] == want
    assert cluster["grpc_options"]["port"] == local["grpc_options"]["port"]


def test_cluster_only_values_are_needed(local: dict[str, Any]) -> None:
    """Each exception really differs from serve_config.yaml: one that no longer does is removed,
    so the list stays the true set of cluster-only values."""
    for path, (value, why) in CLUSTER_ONLY.items():
        node: Any = local
        for key in path:
            node = node[key] if isinstance(node, (dict, list)) else None
        assert node != value, f"{path} is {value!r} in serve_config.yaml too ({why})"


DEPLOYMENTS = ("applications", 0, "deployments")


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ((*DEPLOYMENTS, 1, "autoscaling_config", "max_replicas"), 3, "Validator.autoscaling"),
        ((*DEPLOYMENTS, 0, "user_config", "max_open_streams"), 8000, "max_open_streams"),
        ((*DEPLOYMENTS, 0, "autoscaling_config", "target_ongoing_requests"), 500, "target_ongo"),
        ((*DEPLOYMENTS, 2, "max_queued_requests"), 128, "ZoneCalculator.max_queued_requests"),
        ((*DEPLOYMENTS, 3), {"name": "Extra"}, "deployments.Extra"),
        (("applications", 0, "runtime_env", "env_vars", "X"), "1", "runtime_env.env_vars.X"),
        (("grpc_options", "grpc_servicer_functions", 1), DELETE, "grpc_servicer_functions"),
        (("logging_config", "enable_access_log"), True, "logging_config.enable_access_log"),
    ],
)
def test_a_change_to_serve_config_alone_is_caught(
    local: dict[str, Any], cluster: dict[str, Any], path: tuple[Any, ...], value: Any, named: str
) -> None:
    """Editing serve_config.yaml without the cluster config fails the sync test, naming the
    field."""
    problems = sync_problems(edited(local, path, value), cluster)
    assert any(named in problem for problem in problems), problems


def test_is_a_valid_serve_config(cluster: dict[str, Any]) -> None:
    """Serve's own schema accepts the cluster config, as `serve deploy` will."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(cluster)


# --- binds ---------------------------------------------------------------------------------------


def test_binds_work_across_nodes(cluster: dict[str, Any]) -> None:
    """Every node runs an ingress (EveryNode) and HAProxy listens on every interface: Serve 2.60
    renders the host as `bind *:<port>` for both the HTTP and the gRPC frontend."""
    from ray.serve._private.haproxy import HAProxyConfig
    from ray.serve.config import HTTPOptions

    assert cluster["proxy_location"] == "EveryNode"
    host = cluster["http_options"]["host"]
    assert host in ALL_INTERFACES, f"http_options.host {host!r} is not reachable from other nodes"
    rendered = HAProxyConfig(http_options=HTTPOptions(host=host, port=8000))
    assert rendered.frontend_host == rendered.grpc_frontend_host == "*"


def test_make_run_stays_on_loopback(local: dict[str, Any]) -> None:
    """serve_config.yaml (what `make run` deploys) keeps its loopback bind and one ingress."""
    assert local["http_options"]["host"] == "127.0.0.1"
    assert local["proxy_location"] == "HeadOnly"


def test_replicas_get_the_tuning_not_the_loopback_hook(cluster: dict[str, Any]) -> None:
    """The replicas run the `tune` hook; make run's loopback hook would move the replicas'
    servers to 127.0.0.1, out of reach of HAProxy on other nodes."""
    env_vars = cluster["applications"][0]["runtime_env"]["env_vars"]
    assert env_vars[HOOK_ENV_VAR] == TUNE_HOOK != LOCAL_HOOK
    assert env_vars["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


# --- ray-node.env --------------------------------------------------------------------------------


def test_node_env_is_what_make_run_and_kuberay_use(env: dict[str, str]) -> None:
    """HAProxy ingress, throughput profile, gRPC message limit and HAProxy buffer as `make run`
    sets them (runtime/haproxy_mode.py), JWT auth and a readings Redis."""
    for var, value in REQUIRED_ENV.items():
        assert env.get(var) == value, (var, env.get(var))
    assert env.get("REDIS_URL", "").startswith(("redis://", "rediss://"))


def test_haproxy_is_sized_for_long_lived_streams(env: dict[str, str]) -> None:
    """Tens of thousands of connections per node, and a quiet stream is not cut after an hour:
    not by `timeout client`, not by `timeout server`, and not two minutes after a reload. Each
    value is finite (0 would mean no timeout: connections of vanished clients never freed)."""
    maxconn = int(env["RAY_SERVE_HAPROXY_MAXCONN"])
    client = int(env["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"])
    server = int(env["RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"])
    hard_stop = int(env["RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S"])
    assert maxconn >= MIN_MAXCONN > SERVE_DEFAULT_MAXCONN
    assert client >= MIN_IDLE_STREAM_S > SERVE_DEFAULT_TIMEOUT_CLIENT_S
    assert server >= client
    assert hard_stop >= MIN_HARD_STOP_AFTER_S > SERVE_DEFAULT_HARD_STOP_AFTER_S


def test_documented_open_files_limit_fits_maxconn(env: dict[str, str]) -> None:
    """HAProxy refuses to start below 2.5 x maxconn + 40 open files (measured: two descriptors
    per connection and a pipe per four, Serve's config splices); the limit ray-node.env tells
    operators to set (ulimit -n, LimitNOFILE=) leaves room for that."""
    text = NODE_ENV.read_text()
    limits = [int(n) for n in re.findall(r"(?:ulimit -n |LimitNOFILE=)(\d+)", text)]
    assert limits, "ray-node.env must say which open-files limit to set"
    needed = 2.5 * int(env["RAY_SERVE_HAPROXY_MAXCONN"]) + 40
    for limit in limits:
        assert limit >= needed, f"open-files limit {limit} < {needed:.0f} that maxconn needs"


def test_ray_serve_flags_exist_in_this_ray(env: dict[str, str]) -> None:
    """Every RAY_SERVE_* variable is one Ray 2.60 reads (a misspelt flag is silently ignored);
    looked up in Serve's constants without importing Ray."""
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.origin is not None
    constants = (Path(spec.origin).parent / "serve" / "_private" / "constants.py").read_text()
    for var in env:
        if var.startswith("RAY_SERVE_"):
            assert f'"{var}"' in constants, f"{var} is not read by Ray Serve"


def test_node_env_is_valid_settings(env: dict[str, str]) -> None:
    """The service's variables parse as Settings (a typo'd name or a bad value would only show
    as replicas that fail to start), require tokens, and name no client-only setting."""
    known = set(ENV_NAMES.values())
    for var in env:
        assert var.startswith("RAY_") or var in known, f"{var} is not a setting (settings.py)"
    assert "HEARTRATE_TOKEN" not in env, "the CLI's token is never given to the service"
    settings = Settings.from_env(env)
    assert settings.effective_auth_mode == "jwt"
    assert settings.grpc_host in ALL_INTERFACES


def test_kuberay_pods_carry_the_node_env_s_haproxy_limits() -> None:
    """The KubeRay head and worker containers set every RAY_SERVE_HAPROXY_* limit of
    ray-node.env to the same value (Serve's HAProxy reads them from each node's environment)."""
    from tests.unit.test_kuberay import groups, load_manifest, ray_container, resolved_env

    limits = {k: v for k, v in node_env().items() if k.startswith("RAY_SERVE_HAPROXY_")}
    assert {"RAY_SERVE_HAPROXY_MAXCONN", "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"} <= set(limits)
    for name, group in groups(load_manifest()):
        env = resolved_env(ray_container(group))
        wrong = {k: env.get(k) for k, v in limits.items() if env.get(k) != v}
        assert not wrong, f"{name}: {wrong} (ray-node.env: {limits})"
