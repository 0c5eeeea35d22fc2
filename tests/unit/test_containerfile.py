"""deploy/container/Containerfile and .containerignore, read as a builder would, without a builder.

Why: the image is built and run only where podman or buildah and a registry are at hand
(deploy/container/smoke.sh), so nothing else notices when the file drifts from the project: a
floating or mismatched base, a root user, a health check that calls a CLI option that no longer
exists or a port other than the one served, a GRPC_HOST that keeps the service unreachable from
outside its container, a secret baked into a layer, or a build context that ships .venv, .git or
the development keys in data/ (or leaves out a folder the wheel needs). The HEALTHCHECK command is
run here by /bin/sh with a stand-in `heartrate` that records its arguments, which the real CLI
parser then parses.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from heartrate_serve.cli import parser as cli_parser
from heartrate_serve.settings import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
IGNORE_FILE = ROOT / ".containerignore"
PYPROJECT = ROOT / "pyproject.toml"

# Runtime ENV keys that are not settings of heartrate_serve/settings.py, and why each is there.
OTHER_RUNTIME_ENV = {
    "PATH": "the virtualenv's console scripts",
    "PYTHONUNBUFFERED": "log lines reach `podman logs` at once",
    "RAY_USAGE_STATS_ENABLED": "no usage report from a server",
}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PRIVATE|CREDENTIAL|API_?KEY", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")
DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name or self.base}: {len(found)} {keyword}"
        return found[0]

    def index(self, keyword: str) -> int:
        """Position of the last `keyword` instruction in the stage."""
        return max(n for n, i in enumerate(self.instructions) if i.keyword == keyword)

    def runs(self) -> str:
        return "\n".join(i.args for i in self.all("RUN"))


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined and comment lines dropped (comment lines
    inside a continued instruction are dropped too, as the Containerfile format does)."""
    out: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not parts and not line):
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    assert not parts, "the file ends inside a continued instruction"
    return out


def substitute(text: str, values: Mapping[str, str]) -> str:
    """${NAME} and $NAME replaced from `values` (build ARG defaults); others left as they are."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the ones FROM can use)."""
    values: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "FROM":
            break
        if i.keyword == "ARG":
            name, _, default = i.args.partition("=")
            values[name] = default
    return values


def stages(instructions: list[Instruction]) -> list[Stage]:
    args = build_args(instructions)
    result: list[Stage] = []
    base = ""
    name: str | None = None
    body: list[Instruction] = []
    for i in instructions:
        if i.keyword == "FROM":
            if base:
                result.append(Stage(base, name, tuple(body)))
            words = substitute(i.args, args).split()
            words = [w for w in words if not w.startswith("--platform")]
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            body = []
        elif base:
            body.append(i)
    assert base, "no FROM"
    result.append(Stage(base, name, tuple(body)))
    return result


def assignments(i: Instruction) -> dict[str, str]:
    """The KEY=VALUE pairs of an ENV or ARG (or the old `ENV KEY VALUE` form; ARG without a
    default: an empty value)."""
    words = shlex.split(i.args)
    if i.keyword == "ENV" and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs = (word.partition("=") for word in words)
    return {key: value for key, _, value in pairs}


def env_of(stage: Stage) -> dict[str, str]:
    """Every ENV of the stage, later ones winning."""
    env: dict[str, str] = {}
    for i in stage.all("ENV"):
        env.update(assignments(i))
    return env


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction argument (ENTRYPOINT, CMD, VOLUME)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return [str(v) for v in value]


def seconds(duration: str) -> float:
    match = DURATION.match(duration)
    assert match, f"not a duration: {duration}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    return int(match.group(1)) * scale


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    ref, _, digest = ref.partition("@")
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = ref.rsplit(":", 1)
        return repository, tag, digest or None
    return ref, None, digest or None


def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def ray_pin() -> str:
    """The exact Ray version pyproject.toml pins (ray[serve]==X.Y.Z)."""
    for dep in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"ray\[[^\]]*\bserve\b[^\]]*\]==(\d+\.\d+\.\d+)", dep.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml does not pin ray[serve]==X.Y.Z")


@pytest.fixture(scope="module")
def all_stages() -> list[Stage]:
    return stages(parse_instructions(CONTAINERFILE.read_text()))


@pytest.fixture(scope="module")
def runtime(all_stages: list[Stage]) -> Stage:
    """The final stage: the image that runs."""
    return all_stages[-1]


@pytest.fixture(scope="module")
def runtime_env(runtime: Stage) -> dict[str, str]:
    return env_of(runtime)


def test_bases_are_pinned_python_311_on_a_named_debian(all_stages: list[Stage]) -> None:
    """Every base is a versioned tag (or digest), never latest: a Ray image of exactly the Ray
    pyproject pins, or Python 3.11 (requires-python) on a named Debian release; with a Python
    base, the builder installs the dependencies from pyproject.toml, so the wheel brings that
    Ray."""
    requires = pyproject()["project"]["requires-python"]
    assert requires.startswith(">=3.11") and "<3.12" in requires
    pin = ray_pin()
    for stage in all_stages:
        repository, tag, digest = split_image(stage.base)
        assert tag or digest, f"{stage.base}: no tag or digest"
        assert tag != "latest", f"{stage.base}: latest moves"
        if repository.endswith("rayproject/ray"):
            assert tag is not None and tag.startswith(f"{pin}-py311"), (
                f"{stage.base}: the Ray image must be {pin}-py311*, the version pyproject pins"
            )
        else:
            assert repository.endswith(("/python", "library/python")), stage.base
            assert tag is not None and re.fullmatch(
                r"3\.11(\.\d+)?-(slim-)?(bookworm|trixie)", tag
            ), f"{stage.base}: Python 3.11 on a named Debian release (e.g. 3.11-slim-bookworm)"
    builder = all_stages[0]
    assert len(all_stages) >= 2, "build in a builder stage, run from a clean one"
    runs = builder.runs()
    assert "pyproject.toml" in runs and "['project']['dependencies']" in runs
    assert "pip wheel" in runs and "pip check" in runs


def test_runtime_copies_only_the_builder_s_virtualenv(
    all_stages: list[Stage], runtime: Stage, runtime_env: dict[str, str]
) -> None:
    """No source tree, wheel cache or local file in the image that runs: only the virtualenv
    built in the builder stage, whose bin/ leads PATH."""
    names = {s.name for s in all_stages[:-1]}
    copies = runtime.all("COPY") + runtime.all("ADD")
    assert copies, "the runtime stage copies nothing"
    for copy in copies:
        words = copy.args.split()
        source = next((w for w in words if w.startswith("--from=")), None)
        assert source is not None and source.removeprefix("--from=") in names, (
            f"line {copy.line}: the runtime stage copies from the build context"
        )
        assert words[-1] == words[-2], f"line {copy.line}: copy the virtualenv to the same path"
        venv = words[-1]
        assert runtime_env["PATH"].startswith(f"{venv}/bin:")


def test_runs_as_a_non_root_user_that_owns_the_data_volume(
    runtime: Stage, runtime_env: dict[str, str]
) -> None:
    """USER is numeric (Kubernetes' runAsNonRoot can check it), not root, set before ENTRYPOINT
    and CMD; the user created with that uid owns the VOLUME that holds DATA_DIR and LOG_DIR."""
    user = runtime.all("USER")[-1].args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {user}: use numeric ids"
    assert int(uid) != 0 and gid != "0", f"USER {user} is root"
    assert runtime.index("USER") < min(runtime.index("ENTRYPOINT"), runtime.index("CMD"))
    runs = runtime.runs()
    created = re.search(r"useradd\b[^&;]*--uid\s+(\d+)[^&;]*?\s(\w+)\s*(?:&&|;|$)", runs)
    assert created, "the runtime stage creates its user with useradd --uid"
    assert created.group(1) == uid, "USER and useradd --uid differ"
    name = created.group(2)
    volumes = [PurePosixPath(v) for i in runtime.all("VOLUME") for v in exec_form(i.args)]
    settings = Settings.from_env(runtime_env)
    for path in (settings.data_dir, settings.log_dir):
        posix = PurePosixPath(path.as_posix())
        assert any(posix.is_relative_to(v) for v in volumes), f"{path} is not on a VOLUME"
        owned = re.search(rf"(install -d -o {name}\b|chown -R {name}\b)[^&;]*\s{posix}(\s|$)", runs)
        assert owned, f"{posix} is not created owned by {name}"


def test_env_listens_off_loopback_and_holds_only_known_settings(
    runtime_env: dict[str, str],
) -> None:
    """GRPC_HOST=0.0.0.0 (a published port reaches the container's address, not its loopback),
    so AUTH_MODE defaults to jwt: the image does not switch it off. Every other key is a setting
    of settings.py (a typo would be ignored silently) or one listed above; the values pass
    Settings' own validation."""
    assert runtime_env.get("GRPC_HOST") == "0.0.0.0"
    settings = Settings.from_env(runtime_env)
    assert settings.effective_auth_mode == "jwt"
    assert "AUTH_MODE" not in runtime_env
    known = set(ENV_NAMES.values())
    for key in runtime_env:
        assert key in known or key in OTHER_RUNTIME_ENV, f"ENV {key}: not a setting"


def test_exposes_the_grpc_and_metrics_ports(runtime: Stage, runtime_env: dict[str, str]) -> None:
    exposed = {w.split("/")[0] for i in runtime.all("EXPOSE") for w in i.args.split()}
    settings = Settings.from_env(runtime_env)
    assert str(settings.grpc_port) in exposed
    assert str(settings.metrics_port) in exposed
    assert settings.metrics_host == "0.0.0.0", "an EXPOSEd metrics port must listen off loopback"


def test_stops_with_sigterm_under_an_init_that_signals_the_launcher_only(
    runtime: Stage,
) -> None:
    """The launcher stops Serve, Ray, HAProxy and Redis in order on SIGTERM. tini reaps the
    processes Ray orphans; without -g, so the signal reaches the launcher alone (with -g the
    embedded Redis would die before Serve stops)."""
    assert runtime.one("STOPSIGNAL").args in ("SIGTERM", "TERM", "15")
    entrypoint = exec_form(runtime.one("ENTRYPOINT").args)
    command = exec_form(runtime.one("CMD").args)
    assert Path(entrypoint[0]).name == "tini" and entrypoint[-1] == "--"
    assert not any(w.startswith("-g") for w in entrypoint[1:-1])
    scripts = pyproject()["project"]["scripts"]
    assert command == ["heartrate-serve"]
    assert scripts["heartrate-serve"] == "heartrate_serve.runtime.launcher:main"


def test_no_secret_in_any_stage(all_stages: list[Stage]) -> None:
    """A layer keeps whatever an ENV or ARG held: tokens, keys and passwords are given at run
    time (mounted files), never built in."""
    for stage in all_stages:
        for i in stage.all("ENV") + stage.all("ARG"):
            for key, value in assignments(i).items():
                assert not SECRET_NAME.search(key), f"line {i.line}: {key} looks like a secret"
                assert not URL_WITH_PASSWORD.search(value), f"line {i.line}: a URL with a password"
        for i in stage.all("COPY") + stage.all("ADD"):
            assert not re.search(r"\.(pem|key)\b|\bdata\b", i.args), f"line {i.line}: {i.args}"


def healthcheck_parts(runtime: Stage) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its command as an argv."""
    args = runtime.one("HEALTHCHECK").args
    options_text, _, command = args.partition("CMD ")
    options = {}
    for word in options_text.split():
        key, _, value = word.partition("=")
        options[key] = value
    command = command.strip()
    argv = exec_form(command) if command.startswith("[") else ["/bin/sh", "-c", command]
    return options, argv


def run_healthcheck(runtime: Stage, env: Mapping[str, str], tmp: Path) -> list[str]:
    """Runs the HEALTHCHECK command with a stand-in `heartrate` on PATH; its arguments."""
    _, argv = healthcheck_parts(runtime)
    stand_in = tmp / "heartrate"
    stand_in.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done\n')
    stand_in.chmod(0o755)
    # The image's PATH leads with the virtualenv: here the stand-in takes its place.
    environment = {**env, "PATH": f"{tmp}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    done = subprocess.run(argv, env=environment, capture_output=True, check=True, timeout=30)
    return done.stdout.decode().split("\0")[:-1]


HealthArgs = Callable[..., argparse.Namespace]


@pytest.fixture()
def check_argv(runtime: Stage, runtime_env: dict[str, str], tmp_path: Path) -> HealthArgs:
    """The HEALTHCHECK's `heartrate` arguments, parsed by the CLI, under the image's ENV plus
    the given variables."""

    def run(**extra: str) -> argparse.Namespace:
        argv = run_healthcheck(runtime, {**runtime_env, **extra}, tmp_path)
        assert argv[0] == "health", argv
        return cli_parser.parse_args(argv)

    return run


def test_healthcheck_asks_grpc_health_on_the_grpc_port(
    runtime: Stage, runtime_env: dict[str, str], check_argv: HealthArgs
) -> None:
    """`heartrate health` (grpc.health.v1 Check; exit 0 only when SERVING) on the loopback of
    the container at GRPC_PORT, with a deadline inside the HEALTHCHECK's timeout and a start
    period longer than a start (24 s measured on the host; Ray in a container, more)."""
    options, _ = healthcheck_parts(runtime)
    args = check_argv()
    settings = Settings.from_env(runtime_env)
    assert args.command == "health"
    assert args.address == f"127.0.0.1:{settings.grpc_port}"
    assert args.tls_ca is None and not args.tls
    assert args.timeout < seconds(options["--timeout"])
    assert seconds(options["--start-period"]) >= 60
    assert seconds(options["--interval"]) >= seconds(options["--timeout"])
    moved = check_argv(GRPC_PORT="50099")
    assert moved.address == "127.0.0.1:50099"


def test_healthcheck_speaks_tls_when_the_port_does(check_argv: HealthArgs) -> None:
    """With TLS_CERT_FILE set the port is TLS-only: the check trusts the server's own
    certificate (self-signed) or HEALTHCHECK_TLS_CA, and checks HEALTHCHECK_TLS_SERVER_NAME."""
    cert = "/run/secrets/tls dir/cert.pem"  # a space, to catch word splitting
    args = check_argv(TLS_CERT_FILE=cert)
    assert (args.tls_ca, args.tls_server_name) == (Path(cert), "localhost")
    args = check_argv(
        TLS_CERT_FILE=cert, HEALTHCHECK_TLS_CA="/etc/ca.pem", HEALTHCHECK_TLS_SERVER_NAME="hr"
    )
    assert (args.tls_ca, args.tls_server_name) == (Path("/etc/ca.pem"), "hr")


def ignore_patterns() -> list[str]:
    lines = (line.strip() for line in IGNORE_FILE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _matches(pattern: str, path: str) -> bool:
    if fnmatch.fnmatchcase(path, pattern):
        return True
    if pattern.startswith("**/"):
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
    return False


def ignored(path: str, patterns: list[str]) -> bool:
    """True when the build context leaves `path` out: the last pattern matching it or one of
    its parent folders decides (`!` patterns put paths back)."""
    prefixes = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        clean = pattern.lstrip("!").strip("/")
        if any(_matches(clean, prefix) for prefix in prefixes):
            result = not negated
    return result


def test_containerignore_keeps_local_state_out_and_the_wheel_s_sources_in() -> None:
    patterns = ignore_patterns()
    for path in (
        ".venv",
        ".git",
        "data",
        "data/auth/dev-jwt-private.pem",
        "log",
        "build",
        "heartrate_serve.egg-info",
        "tests/node/node_modules",
        "core/__pycache__/zones.cpython-311.pyc",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the builder"
    needed = ["pyproject.toml", "README.md", "serve_config.yaml", "heartrate_serve/settings.py"]
    for package in pyproject()["tool"]["setuptools"]["packages"]:
        room = package.removeprefix("heartrate_serve").lstrip(".") or "heartrate_serve"
        needed.append(room.replace(".", "/"))  # heartrate_serve/<room> links to ../<room>
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "proto").glob("*.proto")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "store").glob("*.lua")]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not ignored(path, patterns), f"{path} is needed by `pip wheel .` but ignored"


def test_ignore_matching_follows_the_context_rules() -> None:
    """The matcher above: parents, `**/` and negation."""
    assert ignored("a/b/c", ["a"]) and not ignored("ab", ["a"])
    assert ignored("x/__pycache__/y", ["**/__pycache__"])
    assert not ignored("data/keep", ["data", "!data/keep"])
