"""The real service (`make run`'s launcher) with REDIS_URL naming one node of a 3-master Redis
Cluster on loopback, and no other Redis setting: it detects the cluster by itself.

Every test of test_service.py (the e2e smoke: each RPC, duplicates, profiles and their bands,
stored-range zones, health) runs here again against the cluster: they are imported below and pick
up this module's `service` fixture (conftest's `stub` uses it). Then what needs several nodes:
streams and rounds of users on every master, profiles of users on different nodes in one round,
readings of 3 h ago backfilled and compacted by the running service and read back exactly,
heartrate-status, and no ERROR in server.log at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot

from heartrate_serve.loadtest.service import ServiceProcess
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc
from heartrate_serve.store.keys import CHUNK_MS, CHUNKS_KEY, READINGS_KEY, chunk_start
from tests.e2e import test_service as smoke
from tests.support.redis_cluster import RedisCluster
from tests.support.service import running_service

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
Stub = pb_grpc.HeartRateMonitorStub
COMPACTED_WITHIN_S = 60.0  # COMPACT_INTERVAL_S=1: a sweep a second once a replica holds the lease

# The smoke tests of test_service.py, collected again in this module (against the cluster).
for _name in dir(smoke):
    if _name.startswith("test_"):
        globals()[_name] = getattr(smoke, _name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster on 127.0.0.1 for this module."""
    with RedisCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def service(
    cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The launcher with REDIS_URL = the cluster's first node, compaction every second with no
    grace (closed chunks are compacted at once); stopped at the end of the module."""
    with running_service(
        tmp_path_factory.mktemp("cluster-service"),
        REDIS_URL=cluster.url,
        COMPACT_INTERVAL_S="1",
        COMPACT_GRACE_S="0",
        LOG_LEVEL="WARNING",
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def cluster_client(cluster: RedisCluster) -> Iterator[SyncRedisCluster]:
    """A cluster client for the tests' own look at the keys."""
    client = SyncRedisCluster.from_url(cluster.url)
    try:
        yield client
    finally:
        client.close()


def users_on_every_node(cluster: RedisCluster, per_node: int) -> list[list[str]]:
    """per_node fresh user ids whose keys live on each node (cluster.nodes order)."""
    out: list[list[str]] = [[] for _ in cluster.nodes]
    while any(len(users) < per_node for users in out):
        user = f"c-{uuid.uuid4().hex[:12]}"
        node = cluster.node_of_slot(key_slot(READINGS_KEY.format(user=user).encode()))
        i = cluster.nodes.index(node)
        if len(out[i]) < per_node:
            out[i].append(user)
    return out


def held_by(cluster: RedisCluster, users: list[list[str]], key: str) -> None:
    """Asserts each node holds `key` of its own users (asked of that node alone)."""
    for node, mine in zip(cluster.nodes, users, strict=True):
        with node.client() as c:
            for u in mine:
                assert c.exists(key.format(user=u)) == 1, (node.port, u)


async def test_service_uses_the_cluster(service: ServiceProcess, cluster: RedisCluster) -> None:
    """The launcher took REDIS_URL as it is: no embedded Redis was started."""
    log = service.log_tail(100_000)
    assert f"using Redis at {cluster.url}" in log and "embedded Redis" not in log


async def _stream(user: str, bpms: list[int], t0_ms: int) -> AsyncIterator[pb.HeartRateRequest]:
    for i, bpm in enumerate(bpms):
        yield pb.HeartRateRequest(bpm=bpm, timestamp_ms=t0_ms + i * 100, user_id=user)


async def test_streams_of_users_on_every_node(stub: Stub, cluster: RedisCluster) -> None:
    """Six concurrent streams (two users per master) and one stream mixing them: every answer
    in order, every reading stored on its user's node, status per user."""
    users = users_on_every_node(cluster, 2)
    flat = [u for mine in users for u in mine]
    t0 = int(time.time() * 1000) - 120_000
    bpms = [60 + (i * 7) % 100 for i in range(300)]

    async def answers_of(user: str) -> list[pb.HeartRateResponse]:
        return [r async for r in stub.StreamHeartRate(_stream(user, bpms, t0))]

    answers = await asyncio.gather(*(answers_of(u) for u in flat))
    for got in answers:
        assert [a.timestamp_ms for a in got] == [t0 + i * 100 for i in range(300)]
        assert all(a.success and not a.duplicate for a in got)
        assert [a.alert_triggered for a in got] == [b > 150 for b in bpms]

    async def mixed() -> AsyncIterator[pb.HeartRateRequest]:
        for i in range(60):  # the same readings again, users interleaved: all duplicates
            yield pb.HeartRateRequest(bpm=bpms[i], timestamp_ms=t0 + i * 100, user_id=flat[i % 6])
        for i, u in enumerate(flat):  # and one new reading each
            yield pb.HeartRateRequest(bpm=70 + i, timestamp_ms=t0 + 30_000 + i, user_id=u)

    got = [a async for a in stub.StreamHeartRate(mixed())]
    assert [a.duplicate for a in got] == [True] * 60 + [False] * 6
    assert all(a.success for a in got)
    held_by(cluster, users, READINGS_KEY)
    for i, u in enumerate(flat):
        status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=1000))
        assert len(status.recent_measurements) == 301
        assert status.recent_measurements[0].bpm == 70 + i


async def test_batches_and_profile_bands_across_nodes(stub: Stub, cluster: RedisCluster) -> None:
    """Users with personal bands on different masters submit in the same rounds: each reading
    is judged by its own user's band (profiles read across slots), batches land per node."""
    a, b, c = (mine[0] for mine in users_on_every_node(cluster, 1))  # one user per master
    for user, high in ((a, 140), (b, 130)):
        await stub.SetUserProfile(
            pb.SetUserProfileRequest(profile=pb.UserProfile(user_id=user, normal_high_bpm=high))
        )
    got = await asyncio.gather(
        *(
            stub.SubmitHeartRate(pb.HeartRateRequest(bpm=bpm, user_id=u))
            for bpm in (135, 145)
            for u in (a, b, c)
        )  # fmt: skip
    )
    assert [r.alert_triggered for r in got] == [False, True, False, True, True, False]
    assert all(r.success for r in got)
    t = int(time.time()) - 1000
    batches = await asyncio.gather(
        *(
            stub.SubmitHeartRateBatch(
                pb.HeartRateBatchRequest(
                    user_id=u, bpm=[70, 200, 160, 75, 70], timestamps=[t, t + 1, t + 2, t + 3, t]
                )
            )
            for u in (a, b, c)
        )  # fmt: skip
    )
    for resp in batches:
        assert (resp.accepted, resp.rejected, resp.duplicate) == (3, 1, 1)
    for user in (a, b, c):
        status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=user, recent_count=10))
        assert len(status.recent_measurements) == 5
    status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=b))
    assert status.thresholds.normal_high_bpm == 130


def _three_hours_ago(now_s: int) -> tuple[list[int], list[int]]:
    """600 readings spread over the (closed) chunk that held now - 3 h."""
    start_ms = chunk_start(now_s * 1000 - 3 * 3_600_000)
    step_ms = CHUNK_MS // 600
    ts_ms = [start_ms + i * step_ms + i % 5 for i in range(600)]
    bpm = [int(95 + 60 * ((i % 120) / 120)) for i in range(600)]
    return ts_ms, bpm


async def test_old_readings_are_compacted_and_read_back_exactly(
    stub: Stub, cluster: RedisCluster, cluster_client: SyncRedisCluster
) -> None:
    """Readings of three hours ago (backfilled by batch, one chunk) for users on every master are
    compacted by the running service; afterwards status and stored-range zones give exactly
    what was sent, and resending the batch is all duplicates (found in the compacted blobs)."""
    users = users_on_every_node(cluster, 1)
    flat = [u for mine in users for u in mine]
    ts_ms, bpm = _three_hours_ago(int(time.time()))
    for u in flat:
        resp = await stub.SubmitHeartRateBatch(
            pb.HeartRateBatchRequest(user_id=u, bpm=bpm, timestamps_ms=ts_ms)
        )
        assert resp.accepted == 600, resp
    deadline = time.monotonic() + COMPACTED_WITHIN_S
    while any(cluster_client.exists(READINGS_KEY.format(user=u)) for u in flat):
        assert time.monotonic() < deadline, "the service did not compact the old readings"
        await asyncio.sleep(0.25)
    for u in flat:
        assert cluster_client.zcard(CHUNKS_KEY.format(user=u)) == 1
    held_by(cluster, users, CHUNKS_KEY)

    rng = pb.StoredRange(from_timestamp_ms=ts_ms[0], to_timestamp_ms=ts_ms[-1])
    sent = pb.ExerciseZoneRequest(age=40, bpm=bpm, timestamps_ms=ts_ms, max_gap_seconds=30)
    expected = await stub.CalculateExerciseZones(sent)
    assert expected.reading_count == 600
    for u in flat:
        status = await stub.GetHeartRateStatus(pb.StatusRequest(user_id=u, recent_count=1000))
        assert [m.timestamp_ms for m in status.recent_measurements] == ts_ms[::-1]
        assert [m.bpm for m in status.recent_measurements] == bpm[::-1]
        stored = await stub.CalculateExerciseZones(
            pb.ExerciseZoneRequest(user_id=u, age=40, stored_range=rng, max_gap_seconds=30)
        )
        assert stored == expected
        again = await stub.SubmitHeartRateBatch(
            pb.HeartRateBatchRequest(user_id=u, bpm=bpm, timestamps_ms=ts_ms)
        )
        assert (again.accepted, again.duplicate) == (0, 600)
    assert not any(cluster_client.exists(READINGS_KEY.format(user=u)) for u in flat)


async def test_heartrate_status_reports_every_deployment_healthy(
    service: ServiceProcess,
) -> None:
    """heartrate-status on the instance (its Ray, not Redis) works as with a single Redis."""
    assert service.instance_dir is not None
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "heartrate_serve.runtime.status", str(service.instance_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for deployment in ("HeartRateIngress", "Validator", "ZoneCalculator"):
        assert re.search(rf"{deployment}\s+HEALTHY\s+replicas RUNNING=\d", out.stdout), out.stdout


async def test_no_error_was_logged(service: ServiceProcess) -> None:
    """After all of the above, server.log (WARNING and above of every process) holds no ERROR:
    no store error escaped as a bug, no compaction sweep failed."""
    log = Path(service.workdir) / "log" / "server.log"
    lines = log.read_text().splitlines() if log.exists() else []
    errors = [line for line in lines if json.loads(line).get("level") in ("ERROR", "CRITICAL")]
    assert errors == [], errors[:5]
