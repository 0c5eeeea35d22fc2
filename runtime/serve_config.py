"""Reading serve_config.yaml (found through Settings.serve_config), without importing Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_config(path: Path) -> dict[str, Any]:
    """Reads a Serve config file; raises FileNotFoundError naming SERVE_CONFIG when missing."""
    if not path.is_file():
        raise FileNotFoundError(f"serve config {path} not found (set SERVE_CONFIG)")
    with open(path) as f:
        config: dict[str, Any] = yaml.safe_load(f)
    return config


def servicer_functions(path: Path) -> list[str]:
    """The servicer functions Serve registers on its gRPC port."""
    return list(load_config(path)["grpc_options"]["grpc_servicer_functions"])


def deployment_user_configs(path: Path) -> dict[str, dict[str, Any]]:
    """user_config of each deployment of the (first) application, by deployment name."""
    app = load_config(path)["applications"][0]
    return {d["name"]: dict(d.get("user_config") or {}) for d in app["deployments"]}
