"""deploy/kuberay/rayservice.yaml: the cluster runs what serve_config.yaml says, and KubeRay accepts
the manifest.

Why: serveConfigV2 is a copy of serve_config.yaml held in a string, so nothing but this test
notices when the two drift apart (a new deployment, a changed user_config or autoscaling bound
would silently not reach Kubernetes). The structural checks pin what the manifest's comments
promise and what KubeRay or the kubelet would only reject, or silently get wrong, on a cluster:
the gRPC port's name and number, the same environment on every node, resources, GCS fault
tolerance on a Redis of its own, the gRPC readiness probe. The manifest is validated against the
RayService schema of the KubeRay CRD it targets (vendored under tests/data/), with Kubernetes'
strict field validation (unknown fields are errors, as `kubectl apply` reports them). No cluster
and no Ray is started.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from heartrate_serve.service.wire import GRPC_HARD_MAX_BYTES
from heartrate_serve.settings import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
SERVE_CONFIG = ROOT / "serve_config.yaml"
PYPROJECT = ROOT / "pyproject.toml"
# From github.com/ray-project/kuberay, tag v1.7.0: the v1 openAPIV3Schema of
# ray-operator/config/crd/bases/ray.io_rayservices.yaml (provenance inside the file).
SCHEMA = ROOT / "tests" / "data" / "kuberay-v1.7.0-rayservice-v1.schema.json"

# The only values of serveConfigV2 that differ from serve_config.yaml, and why each must.
CLUSTER_ONLY: dict[tuple[str, ...], tuple[Any, str]] = {
    ("proxy_location",): (
        "EveryNode",
        "the head runs no replicas and is kept out of the Serve Service; every worker Pod that "
        "hosts a replica must run Serve's ingress to take traffic",
    ),
    ("http_options", "host"): (
        "0.0.0.0",
        "HAProxy binds both the HTTP and the gRPC port on http_options.host; probes and the "
        "Service reach the Pod on its own address, never on loopback",
    ),
}

# Serve's HAProxy ingress and throughput profile: on the head and on every worker (Serve reads
# them in each process it starts, on every node).
REQUIRED_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(GRPC_HARD_MAX_BYTES),
    "AUTH_MODE": "jwt",
}

# Env names KubeRay refuses on the head when gcsFaultToleranceOptions is set
# (ray-operator/controllers/ray/utils/validation.go).
KUBERAY_FT_FORBIDDEN_ENV = {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"}

_QUANTITY = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


# --- helpers -------------------------------------------------------------------------------------


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The RayService as a dict."""
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    return manifest


def load_serve_config(path: Path = SERVE_CONFIG) -> dict[str, Any]:
    """serve_config.yaml as a dict."""
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    return config


def serve_config_v2(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Serve config embedded in the manifest (a YAML document inside a string)."""
    text = manifest["spec"]["serveConfigV2"]
    assert isinstance(text, str), "serveConfigV2 must be a string (KubeRay's type)"
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def for_cluster(local: dict[str, Any]) -> dict[str, Any]:
    """serve_config.yaml with CLUSTER_ONLY's values put in: what serveConfigV2 must equal."""
    expected = copy.deepcopy(local)
    for path, (value, _why) in CLUSTER_ONLY.items():
        node = expected
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return expected


def differences(want: Any, got: Any, path: str = "") -> Iterator[str]:
    """Every place where got differs from want, as `path: ...`; lists of named items
    (applications, deployments) are compared by name so that a message names the item."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in got:
                yield f"{where}: missing in serveConfigV2 (serve_config.yaml: {want[key]!r})"
            elif key not in want:
                yield f"{where}: only in serveConfigV2 ({got[key]!r})"
            else:
                yield from differences(want[key], got[key], where)
    elif isinstance(want, list) and isinstance(got, list) and _named(want) and _named(got):
        yield from differences(
            {item["name"]: item for item in want}, {item["name"]: item for item in got}, path
        )
        if [item["name"] for item in want] != [item["name"] for item in got]:
            yield f"{path}: order {[i['name'] for i in want]} -> {[i['name'] for i in got]}"
    elif want != got or type(want) is not type(got):
        yield f"{path}: serve_config.yaml {want!r}, serveConfigV2 {got!r}"


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def sync_problems(local: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """How serveConfigV2 differs from serve_config.yaml beyond CLUSTER_ONLY (empty: in sync)."""
    return list(differences(for_cluster(local), serve_config_v2(manifest)))


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


def cluster(manifest: dict[str, Any]) -> dict[str, Any]:
    """spec.rayClusterConfig."""
    spec: dict[str, Any] = manifest["spec"]["rayClusterConfig"]
    return spec


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    """The Ray container of a head or worker group (KubeRay: the first one)."""
    container: dict[str, Any] = group["template"]["spec"]["containers"][0]
    return container


def groups(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, group spec) of the head and of every worker group."""
    spec = cluster(manifest)
    return [("head", spec["headGroupSpec"])] + [
        (f"worker group {g['groupName']}", g) for g in spec.get("workerGroupSpecs", [])
    ]


def workers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The worker group specs."""
    found: list[dict[str, Any]] = cluster(manifest).get("workerGroupSpecs", [])
    return found


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: a Secret's value stands in as
    `secret-<name>-<key>`, `$(NAME)` is replaced by an earlier variable's value."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"secret-{ref['name']}-{ref['key']}"
    return env


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("500m", "2", "4Gi") as a number."""
    found = _QUANTITY.match(str(value))
    assert found, f"not a quantity: {value!r}"
    return float(found.group(1)) * _UNITS[found.group(2)]


def ray_pin() -> str:
    """The Ray version pyproject.toml pins (ray[serve]==X)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"ray\[serve\]==([0-9.]+)", requirement.replace(" ", ""))
        if found:
            return found.group(1)
    raise AssertionError("pyproject.toml pins no ray[serve]==X")


def redis_host(address: str) -> str:
    """The host of a Redis URL or host:port address."""
    host = urlsplit(address if "://" in address else f"redis://{address}").hostname
    assert host, f"no host in {address!r}"
    return host


def strict_schema(node: Any) -> Any:
    """An openAPIV3Schema as JSON Schema with the API server's strict field validation: objects
    with declared properties refuse other fields (unless x-kubernetes-preserve-unknown-fields),
    and `nullable` admits null."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        else:
            out[key] = strict_schema(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    """deploy/kuberay/rayservice.yaml."""
    return load_manifest()


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    """serve_config.yaml."""
    return load_serve_config()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    """A validator for the vendored RayService v1 schema (KubeRay v1.7.0), strict."""
    vendored = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(strict_schema(vendored["openAPIV3Schema"]))


def schema_errors(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    """Each schema violation as `path: message`."""
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# --- (a) serveConfigV2 is serve_config.yaml ------------------------------------------------------


def test_serve_config_v2_equals_serve_config(
    manifest: dict[str, Any], local: dict[str, Any]
) -> None:
    """Every application, deployment and field (autoscaling, user_config, max_ongoing_requests,
    max_queued_requests, ray_actor_options, runtime_env, args ...), grpc_options (servicer
    functions, port, reflection) and logging_config are serve_config.yaml's; only CLUSTER_ONLY
    differs."""
    problems = sync_problems(local, manifest)
    assert not problems, (
        "deploy/kuberay/rayservice.yaml serveConfigV2 is out of sync with serve_config.yaml; "
        "update the manifest (or, for a value that must differ on a cluster, CLUSTER_ONLY in "
        "this test, saying why):\n  " + "\n  ".join(problems)
    )


def test_servicer_functions_are_the_same(manifest: dict[str, Any], local: dict[str, Any]) -> None:
    """The gRPC services registered on the cluster are those `make run` registers (spelled out,
    though covered by the whole-config comparison: a mismatch here means clients get
    UNIMPLEMENTED)."""
    want = local["grpc_options"]["grpc_servicer_functions"]
    assert serve_config_v2(manifest)["grpc_options"]["grpc_servicer_functions"] == want


def test_cluster_only_values_are_needed(local: dict[str, Any]) -> None:
    """Each exception really differs from serve_config.yaml: one that no longer does is removed,
    so the list stays the true set of cluster-only values."""
    for path, (value, why) in CLUSTER_ONLY.items():
        node: Any = local
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        assert node != value, f"{'.'.join(path)} is {value!r} in serve_config.yaml too ({why})"


DEPLOYMENTS = ("applications", 0, "deployments")


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ((*DEPLOYMENTS, 1, "autoscaling_config", "max_replicas"), 3, "Validator.autoscaling"),
        ((*DEPLOYMENTS, 0, "user_config", "max_open_streams"), 8000, "max_open_streams"),
        ((*DEPLOYMENTS, 2, "max_queued_requests"), 128, "ZoneCalculator.max_queued_requests"),
        ((*DEPLOYMENTS, 2, "ray_actor_options", "num_cpus"), 0.5, "ZoneCalculator.ray_actor"),
        ((*DEPLOYMENTS, 3), {"name": "Extra"}, "deployments.Extra"),
        (("applications", 0, "import_path"), "x:y", "heartrate.import_path"),
        (("grpc_options", "grpc_servicer_functions", 1), DELETE, "grpc_servicer_functions"),
        (("logging_config", "enable_access_log"), True, "logging_config.enable_access_log"),
    ],
)
def test_a_change_to_serve_config_alone_is_caught(
    manifest: dict[str, Any], local: dict[str, Any], path: tuple[Any, ...], value: Any, named: str
) -> None:
    """Editing serve_config.yaml without the manifest fails the sync test, naming the field."""
    problems = sync_problems(edited(local, path, value), manifest)
    assert any(named in problem for problem in problems), problems


def test_serve_config_v2_is_a_valid_serve_config(manifest: dict[str, Any]) -> None:
    """Serve's own schema accepts serveConfigV2 (the cluster-only values included), as the
    dashboard will when KubeRay submits it."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config_v2(manifest))


# --- (b) structure -------------------------------------------------------------------------------


def test_is_a_v1_rayservice_for_the_pinned_ray(manifest: dict[str, Any]) -> None:
    """The current KubeRay API, and rayVersion the Ray pyproject.toml pins (KubeRay picks probes
    and start options by it); the same image everywhere."""
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    assert cluster(manifest)["rayVersion"] == ray_pin()
    images = {ray_container(group)["image"] for _, group in groups(manifest)}
    assert len(images) == 1, images


def test_grpc_port_is_exposed_as_serve_grpc(
    manifest: dict[str, Any], local: dict[str, Any]
) -> None:
    """KubeRay builds the Serve Service from the head container's ports named `serve` or
    `serve-*`; the port is grpc_options.port. Listing ports replaces KubeRay's defaults, so the
    head also names `dashboard` (the operator deploys serveConfigV2 through it) and
    `gcs-server`."""
    port = local["grpc_options"]["port"]
    head_ports = {
        p["name"]: p["containerPort"] for p in ray_container(groups(manifest)[0][1])["ports"]
    }
    assert head_ports.get("serve-grpc") == port, head_ports
    assert {"dashboard", "gcs-server"} <= set(head_ports), head_ports
    for name, group in groups(manifest)[1:]:
        for p in ray_container(group).get("ports", []):
            if p["name"] == "serve-grpc":
                assert p["containerPort"] == port, name
    service_ports = manifest["spec"].get("serveService", {}).get("spec", {}).get("ports", [])
    for p in service_ports:
        assert p["name"] == "serve-grpc" and p["port"] == port, p
        assert p.get("targetPort", port) == port, p


def test_same_environment_on_every_node(manifest: dict[str, Any]) -> None:
    """Head and worker containers get the same env (Serve's flags are read per process, on every
    node; replicas and HAProxy run on workers), with HAProxy, the throughput profile, the gRPC
    message limit `make run` uses, JWT auth and the readings Redis."""
    envs = {name: ray_container(group).get("env", []) for name, group in groups(manifest)}
    head = envs["head"]
    for name, env in envs.items():
        assert env == head, f"{name}'s env differs from the head's"
    resolved = resolved_env(ray_container(groups(manifest)[0][1]))
    for var, value in REQUIRED_ENV.items():
        assert resolved.get(var) == value, (var, resolved.get(var))
    assert resolved.get("REDIS_URL"), "REDIS_URL: the replicas refuse to start without it"


def test_environment_is_valid_settings(manifest: dict[str, Any]) -> None:
    """The service's variables parse as Settings (a typo'd name or bad value would only show as
    a replica that fails to start), require tokens, name no client-only setting, and point
    their key files into mounted volumes."""
    known = set(ENV_NAMES.values())
    for name, group in groups(manifest):
        container = ray_container(group)
        env = resolved_env(container)
        raw = {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}
        referenced = {n for v in raw.values() for n in re.findall(r"\$\(([A-Za-z0-9_]+)\)", v)}
        for var in env:
            assert var.startswith("RAY_") or var in known or var in referenced, (
                f"{name}: {var} is neither a setting (heartrate_serve/settings.py) nor used"
            )
        assert "HEARTRATE_TOKEN" not in env, "the CLI's token is never given to the service"
        settings = Settings.from_env(env)
        assert settings.effective_auth_mode == "jwt"
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        for var, value in env.items():
            if var.endswith("_FILE"):
                assert any(value.startswith(m.rstrip("/") + "/") for m in mounts), (name, var)


def test_ray_serve_flags_exist_in_this_ray() -> None:
    """Every RAY_SERVE_* variable the manifest sets is one Ray 2.60 reads (a misspelt flag is
    silently ignored); looked up in Serve's constants without importing Ray."""
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.origin is not None
    constants = (Path(spec.origin).parent / "serve" / "_private" / "constants.py").read_text()
    for _, group in groups(load_manifest()):
        for var in resolved_env(ray_container(group)):
            if var.startswith("RAY_SERVE_"):
                assert f'"{var}"' in constants, f"{var} is not read by Ray Serve"


def test_resources_fit_the_deployments(manifest: dict[str, Any], local: dict[str, Any]) -> None:
    """Requests and limits for CPU and memory everywhere, equal (KubeRay hands the limits to Ray;
    Guaranteed QoS). The head runs no replicas; the workers' CPUs hold every deployment at
    max_replicas (no Ray autoscaler), and so does one worker alone (the other may die); each
    worker has at least the measured idle RSS of a whole node (1.5 GiB)."""
    for name, group in groups(manifest):
        resources = ray_container(group)["resources"]
        for kind in ("cpu", "memory"):
            request = quantity(resources["requests"][kind])
            limit = quantity(resources["limits"][kind])
            assert request == limit, f"{name}: {kind} request {request} != limit {limit}"
    spec = cluster(manifest)
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"
    deployments = local["applications"][0]["deployments"]
    needed = sum(
        (d.get("autoscaling_config") or {}).get("max_replicas", d.get("num_replicas", 1))
        * (d.get("ray_actor_options") or {}).get("num_cpus", 0)
        for d in deployments
    )
    assert not spec.get("enableInTreeAutoscaling"), "sizing below assumes fixed worker Pods"
    per_pod = [quantity(ray_container(g)["resources"]["limits"]["cpu"]) for g in workers(manifest)]
    total = sum(g["minReplicas"] * cpu for g, cpu in zip(workers(manifest), per_pod, strict=True))
    assert total >= needed and max(per_pod) >= needed, (
        f"every deployment at max_replicas needs {needed} CPUs; worker Pods have {per_pod} "
        f"({total} at minReplicas): raise the workers' CPUs or turn on the Ray autoscaler"
    )
    for g in workers(manifest):
        assert quantity(ray_container(g)["resources"]["limits"]["memory"]) >= 1.5 * 2**30


def test_gcs_fault_tolerance_on_its_own_redis(manifest: dict[str, Any]) -> None:
    """GCS FT through gcsFaultToleranceOptions (KubeRay >= 1.3), on a Redis that is not the
    readings Redis (other host, other password Secret), and none of the older switches KubeRay
    refuses next to it."""
    spec = cluster(manifest)
    ft = spec["gcsFaultToleranceOptions"]
    assert ft.get("backend", "redis") == "redis"
    env = resolved_env(ray_container(spec["headGroupSpec"]))
    assert redis_host(ft["redisAddress"]) != redis_host(env["REDIS_URL"])
    gcs_secret = ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"]
    readings_secrets = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in ray_container(spec["headGroupSpec"])["env"]
        if "valueFrom" in item
    }
    assert gcs_secret not in readings_secrets
    assert "ray.io/ft-enabled" not in manifest["metadata"].get("annotations", {})
    assert not KUBERAY_FT_FORBIDDEN_ENV & set(env)


def test_grpc_readiness_probe_on_the_serving_pods(
    manifest: dict[str, Any], local: dict[str, Any]
) -> None:
    """Worker Pods are admitted to the Service by a Kubernetes gRPC probe (grpc.health.v1,
    service "") on grpc_options.port. Not on the head: KubeRay deploys serveConfigV2 only once
    the head is ready, so an application probe there would never pass; the head is kept out of
    the Service instead, which needs Serve's ingress on the workers (EveryNode). No gRPC
    liveness probe: NOT_SERVING (Redis down) must not restart Pods."""
    port = local["grpc_options"]["port"]
    assert workers(manifest), "the head serves no traffic: worker groups are needed"
    for group in workers(manifest):
        probe = ray_container(group).get("readinessProbe") or {}
        assert probe.get("grpc", {}).get("port") == port, group["groupName"]
        assert probe["grpc"].get("service", "") == ""
    for name, group in groups(manifest):
        container = ray_container(group)
        assert "grpc" not in (container.get("livenessProbe") or {}), name
    assert "grpc" not in (ray_container(groups(manifest)[0][1]).get("readinessProbe") or {})
    assert manifest["spec"]["excludeHeadPodFromServeSvc"] is True
    assert serve_config_v2(manifest)["proxy_location"] == "EveryNode"


# --- (c) the KubeRay CRD schema ------------------------------------------------------------------


def test_matches_the_kuberay_crd_schema(
    manifest: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    """The manifest is a valid RayService of KubeRay v1.7.0's CRD, unknown fields refused.
    (The CRD's few CEL rules, e.g. managedBy's values, are not checked: none is set here.)"""
    errors = schema_errors(validator, manifest)
    assert not errors, "\n".join(errors)


CONTAINER = ("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("spec", "excludeHeadPodFromServeService"), True, "spec"),
        (
            ("spec", "rayClusterConfig", "workerGroupSpecs", 0, "replicas"),
            "two",
            "spec.rayClusterConfig.workerGroupSpecs.0.replicas",
        ),
        (
            ("spec", "rayClusterConfig", "gcsFaultToleranceOptions", "backend"),
            "etcd",
            "spec.rayClusterConfig.gcsFaultToleranceOptions.backend",
        ),
        (
            (*CONTAINER, "ports", 0, "containerPort"),
            DELETE,
            "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.ports.0",
        ),
    ],
)
def test_the_schema_check_catches_mistakes(
    manifest: dict[str, Any],
    validator: jsonschema.Draft7Validator,
    path: tuple[Any, ...],
    value: Any,
    where: str,
) -> None:
    """The schema check is real: a misspelt field, a wrong type, a bad enum value and a missing
    required field are each reported where they are."""
    errors = schema_errors(validator, edited(manifest, path, value))
    assert any(error.startswith(where + ":") for error in errors), errors
