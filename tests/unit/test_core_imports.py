"""core/ stays pure: it imports only the standard library, numpy and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"numpy", "__future__"}


def _imported_modules(path: Path) -> list[str]:
    """Every absolute module name a file imports (relative imports appear with dots)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _allowed(module: str) -> bool:
    """stdlib, numpy, __future__ or heartrate_serve.core.*; never relative."""
    if module.startswith("."):
        return False
    if module == "heartrate_serve.core" or module.startswith("heartrate_serve.core."):
        return True
    return module.split(".")[0] in ALLOWED_ROOTS


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_stdlib_and_numpy(path: Path) -> None:
    """No core module imports ray, grpc, redis, protobuf or anything else outside the allow-list."""
    bad = [m for m in _imported_modules(path) if not _allowed(m)]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("numpy.typing", True), ("fractions", True), ("heartrate_serve.core.zones", True),
     ("ray", False), ("grpc", False), ("redis", False), ("google.protobuf", False),
     ("heartrate_serve.store.store", False), (".zones", False)],
)  # fmt: skip
def test_the_allow_list_itself(module: str, allowed: bool) -> None:
    """The checker accepts stdlib/numpy/core and refuses service dependencies."""
    assert _allowed(module) is allowed


def test_the_walk_sees_every_core_module() -> None:
    """The glob finds the core modules (guards against a wrong path making the test vacuous)."""
    names = {p.name for p in CORE.glob("*.py")}
    assert {"zones.py", "validation.py", "alerts.py", "constants.py"} <= names
