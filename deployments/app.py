"""The composition root: builds the Serve application from typed arguments.

serve_config.yaml points here (`import_path: heartrate_serve.deployments.app:build_app`); the
deployments' options (replicas, autoscaling, CPUs, user_config) live in that file.
"""

# No `from __future__ import annotations`: Serve reads build_app's annotation at run time to
# turn the config's `args` dict into AppArgs.
from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from heartrate_serve.deployments.ingress import IngressDeployment
from heartrate_serve.deployments.validator import ValidatorDeployment
from heartrate_serve.deployments.zone_calculator import ZoneCalculatorDeployment


class AppArgs(BaseModel):
    """Arguments of the application (serve_config.yaml `args`); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str | None = Field(
        default=None,
        description="Redis for the replicas; default: REDIS_URL in the replicas' environment.",
    )


def build_app(args: AppArgs) -> Application:
    """Binds ingress -> (validator, zone calculator)."""
    app: Application = IngressDeployment.bind(
        ValidatorDeployment.bind(), ZoneCalculatorDeployment.bind(), redis_url=args.redis_url
    )
    return app
