"""Overload on the real service: work beyond the bounds is shed with RESOURCE_EXHAUSTED at once
(never INTERNAL or UNKNOWN), streams beyond max_open_streams are refused, and the service serves
normally right after. Its own service, with serve_config.yaml's ingress bounds lowered so that a
few seconds of load on 2 cores go past them (the shipped bounds: loadtest/flood.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import yaml

from heartrate_serve.loadtest.flood import LOST_STATUS, flood
from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.settings import packaged_serve_config
from tests.support.service import running_service

pytestmark = [pytest.mark.e2e]
MAX_QUEUED_READINGS = 150_000
MAX_OPEN_STREAMS = 8


@pytest.fixture(scope="module")
def small_bounds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    work = tmp_path_factory.mktemp("overload")
    config = yaml.safe_load(packaged_serve_config().read_text())
    (ingress,) = [
        d for d in config["applications"][0]["deployments"] if d["name"] == "HeartRateIngress"
    ]
    ingress["user_config"].update(
        max_queued_readings=MAX_QUEUED_READINGS, max_open_streams=MAX_OPEN_STREAMS
    )
    path = work / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_service(work, SERVE_CONFIG=str(path)) as svc:
        yield svc


def test_a_flood_is_shed_with_load_statuses_and_the_service_recovers(
    small_bounds: ServiceProcess,
) -> None:
    """Six senders of 100 000-reading batches, 100 unary callers and 12 streams for 4 s:
    batches beyond the queue bound and streams beyond the cap answer RESOURCE_EXHAUSTED naming
    the bound; nothing answers another error; right after, a call and a batch succeed."""
    assert small_bounds.process is not None
    result = asyncio.run(
        flood(
            small_bounds.address,
            seconds=4,
            unary=100,
            batches=6,
            batch_readings=100_000,
            streams=MAX_OPEN_STREAMS + 4,
            pid=small_bounds.process.pid,
            channels=2,
        )
    )
    assert result.bad_codes == {}, result.summary()
    batches = result.calls["SubmitHeartRateBatch"]
    assert batches.get("RESOURCE_EXHAUSTED", 0) > 0 and batches.get("OK", 0) > 0, batches
    assert (
        f"max_queued_readings {MAX_QUEUED_READINGS}"
        in result.details["SubmitHeartRateBatch/RESOURCE_EXHAUSTED"]
    )
    streams = result.calls["StreamHeartRate"]
    # The 4 beyond the cap are refused RESOURCE_EXHAUSTED; grpc.aio may lose that status when the
    # refusal meets this client's next write (LOST_STATUS, grpc/grpc#36066): never another code.
    refused = streams.get("RESOURCE_EXHAUSTED", 0) + streams.get(LOST_STATUS, 0)
    assert streams.get("OK") == MAX_OPEN_STREAMS and refused == 4, streams
    assert set(streams) <= {"OK", "RESOURCE_EXHAUSTED", LOST_STATUS}, streams
    if streams.get("RESOURCE_EXHAUSTED"):
        assert (
            f"max_open_streams {MAX_OPEN_STREAMS}"
            in result.details["StreamHeartRate/RESOURCE_EXHAUSTED"]
        )
    assert result.calls["SubmitHeartRate"].get("OK", 0) > 0
    assert result.recovered_after_s is not None and result.recovered_after_s < 30, result
