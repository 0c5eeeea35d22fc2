"""cli/resending.py over real gRPC on 127.0.0.1: an in-process server whose fake store dedups by
(user_id, timestamp_ms) and which can be made to fail (a stream cut with UNAVAILABLE after N
answers, OVERLOADED answers, RESOURCE_EXHAUSTED then OK, a message over the size limit).

Every reading must end stored exactly once and get exactly one final answer, in input order;
backoff waits go through a fake clock (no real sleeping); final errors are raised at once."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from heartrate_serve.cli import commands as cli_commands
from heartrate_serve.cli import main as cli
from heartrate_serve.cli import simulator as cli_simulator
from heartrate_serve.cli.resending import (
    NO_RETRY,
    AsyncResendingStream,
    Backoff,
    ResendingStream,
    RetryPolicy,
    Stamper,
    StreamStats,
    call_with_retry,
    is_retryable_answer,
    is_transient,
)
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

T0 = 1_700_000_000_000
MAX_MESSAGE = 4096
AT_CAPACITY = "the service is at capacity: 64 readings are waiting; retry later"
Code = grpc.StatusCode


class FakeMonitor(pb_grpc.HeartRateMonitorServicer):
    """StreamHeartRate, SubmitHeartRate and SubmitHeartRateBatch over a dict store, with scripted
    failures (each list is consumed one entry per call)."""

    def __init__(self) -> None:
        self.writes: Counter[tuple[str, int]] = Counter()  # new stores per reading identity
        self.received: list[tuple[int, int]] = []  # (bpm, timestamp_ms) of every reading read
        self.stream_cuts: list[int | None] = []  # per stream: UNAVAILABLE after N answers
        self.stream_errors: list[tuple[grpc.StatusCode, str]] = []  # per stream, at open
        self.unary_errors: list[tuple[grpc.StatusCode, str]] = []  # per unary call
        self.overloaded: Counter[int] = Counter()  # timestamp_ms -> OVERLOADED answers left
        self.calls: Counter[str] = Counter()

    def _store(self, user_id: str, bpm: int, ts: int) -> pb.HeartRateResponse:
        self.received.append((bpm, ts))
        if not 30 <= bpm <= 220:
            return pb.HeartRateResponse(
                success=False, reject_reason=pb.REJECT_REASON_BPM_OUT_OF_RANGE, timestamp_ms=ts
            )
        if self.overloaded[ts] > 0:
            self.overloaded[ts] -= 1
            return pb.HeartRateResponse(
                success=False,
                error=AT_CAPACITY,
                reject_reason=pb.REJECT_REASON_OVERLOADED,
                timestamp_ms=ts,
            )
        duplicate = (user_id, ts) in self.writes
        if not duplicate:
            self.writes[(user_id, ts)] += 1
        return pb.HeartRateResponse(success=True, duplicate=duplicate, timestamp_ms=ts)

    def _fail(self, errors: list[tuple[grpc.StatusCode, str]], context: Any) -> None:
        if errors:
            code, details = errors.pop(0)
            context.abort(code, details)

    def StreamHeartRate(
        self, request_iterator: Iterator[pb.HeartRateRequest], context: Any
    ) -> Iterator[pb.HeartRateResponse]:
        self.calls["StreamHeartRate"] += 1
        self._fail(self.stream_errors, context)
        cut = self.stream_cuts.pop(0) if self.stream_cuts else None
        for i, req in enumerate(request_iterator):
            resp = self._store(req.user_id, req.bpm, req.timestamp_ms)
            if cut is not None and i >= cut:  # stored, but the answer is lost
                context.abort(grpc.StatusCode.UNAVAILABLE, "the ingress replica died")
            yield resp

    def SubmitHeartRate(self, request: pb.HeartRateRequest, context: Any) -> pb.HeartRateResponse:
        self.calls["SubmitHeartRate"] += 1
        self._fail(self.unary_errors, context)
        return self._store(request.user_id, request.bpm, request.timestamp_ms)

    def SubmitHeartRateBatch(
        self, request: pb.HeartRateBatchRequest, context: Any
    ) -> pb.HeartRateBatchResponse:
        self.calls["SubmitHeartRateBatch"] += 1
        self._fail(self.unary_errors, context)
        resp = pb.HeartRateBatchResponse()
        for i, (bpm, ts) in enumerate(zip(request.bpm, request.timestamps_ms, strict=True)):
            one = self._store(request.user_id, bpm, ts)
            resp.accepted += one.success and not one.duplicate
            resp.duplicate += one.duplicate
            resp.rejected += not one.success
            if not one.success:
                resp.results.add(index=i, success=False, reject_reason=one.reject_reason)
        return resp


class FakeTime:
    """A clock that only moves when slept on; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)

    def policy(self, **kwargs: Any) -> RetryPolicy:
        """A policy on this clock, jitter pinned to its maximum (delays are the caps)."""
        return RetryPolicy(
            backoff=Backoff(rand=lambda: 1.0),
            sleep=self.sleep,
            async_sleep=self.async_sleep,
            clock=self.clock,
            **kwargs,
        )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def server() -> Iterator[tuple[str, FakeMonitor]]:
    """A FakeMonitor on a free 127.0.0.1 port, messages limited to MAX_MESSAGE bytes."""
    monitor = FakeMonitor()
    srv = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
    )
    pb_grpc.add_HeartRateMonitorServicer_to_server(monitor, srv)  # type: ignore[no-untyped-call]
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield f"127.0.0.1:{port}", monitor
    finally:
        srv.stop(None)


@pytest.fixture
def stub(server: tuple[str, FakeMonitor]) -> Iterator[Any]:
    """A blocking stub on a channel to the fake server."""
    with grpc.insecure_channel(server[0]) as channel:
        yield pb_grpc.HeartRateMonitorStub(channel)  # type: ignore[no-untyped-call]


def readings(bpms: list[int], user: str = "ann") -> list[pb.HeartRateRequest]:
    """Readings 1 s apart from T0, explicitly stamped."""
    return [
        pb.HeartRateRequest(bpm=b, timestamp_ms=T0 + i * 1000, user_id=user)
        for i, b in enumerate(bpms)
    ]


def test_stream_survives_cuts_and_overload(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """Two cut streams and an overloaded reading: every reading is stored once and answered once,
    in order; the readings stored before a cut come back as duplicates; backoff grows within a
    streak of failures and restarts after an acknowledgement."""
    _, monitor = server
    monitor.stream_cuts = [3, 2]  # answers 0-2, then reading 3 stored unanswered; then 2 answers
    sent = readings([70, 71, 72, 73, 74, 75, 76, 77, 300, 79])
    monitor.overloaded[sent[7].timestamp_ms] = 2
    stream = ResendingStream(stub.StreamHeartRate, sent, retry=fake_time.policy(), window=1)
    pairs = list(stream)

    assert [req.timestamp_ms for req, _ in pairs] == [r.timestamp_ms for r in sent]
    assert all(req.timestamp_ms == resp.timestamp_ms for req, resp in pairs)
    assert [i for i, (_, resp) in enumerate(pairs) if resp.duplicate] == [3, 5]
    assert [i for i, (_, resp) in enumerate(pairs) if not resp.success] == [8]
    assert pairs[8][1].reject_reason == pb.REJECT_REASON_BPM_OUT_OF_RANGE
    stored = {("ann", r.timestamp_ms) for r in sent if r.bpm != 300}
    assert set(monitor.writes) == stored and set(monitor.writes.values()) == {1}
    assert stream.stats == StreamStats(
        sent=10, resent=4, acknowledged=9, duplicates=2, rejected=1, reconnects=2
    )
    assert monitor.calls["StreamHeartRate"] == 3
    # cut, cut (each after acknowledgements: a new streak), then OVERLOADED twice in a row
    assert fake_time.sleeps == [0.2, 0.2, 0.2, 0.4]


def test_stream_stamps_readings_once(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """Readings without a timestamp are stamped by the client before the first send, strictly
    increasing, and keep that stamp when resent (so the resend is a duplicate, not a new one)."""
    _, monitor = server
    monitor.stream_cuts = [1]
    unstamped = [pb.HeartRateRequest(bpm=b, user_id="bob") for b in (60, 61, 62, 63)]
    stamper = Stamper(clock_ms=lambda: T0)
    stream = ResendingStream(
        stub.StreamHeartRate, unstamped, retry=fake_time.policy(), stamper=stamper, window=1
    )
    pairs = list(stream)

    stamps = [req.timestamp_ms for req, _ in pairs]
    assert stamps == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert monitor.received == [(60, T0), (61, T0 + 1), (61, T0 + 1), (62, T0 + 2), (63, T0 + 3)]
    assert [resp.duplicate for _, resp in pairs] == [False, True, False, False]
    assert sorted(monitor.writes) == [("bob", s) for s in stamps]
    assert set(monitor.writes.values()) == {1}
    explicit = pb.HeartRateRequest(bpm=70, timestamp=1_700_000_000)
    assert Stamper().stamp(explicit).timestamp_ms == 0  # an explicit timestamp is kept as is


def test_stream_backoff_grows_until_the_budget_is_spent(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """A service that keeps refusing the stream: waits 0.2, 0.4, 0.8, 1.6 s (full-jitter caps),
    the last one cut to the 3 s budget, then the last error is raised."""
    _, monitor = server
    monitor.stream_errors = [(Code.UNAVAILABLE, "Redis is down")] * 10
    stream = ResendingStream(
        stub.StreamHeartRate, readings([70, 71]), retry=fake_time.policy(max_seconds=3.0)
    )
    with pytest.raises(grpc.RpcError) as raised:
        list(stream)
    assert raised.value.code() == Code.UNAVAILABLE
    assert fake_time.sleeps == [0.2, 0.4, 0.8, 1.6]
    assert monitor.calls["StreamHeartRate"] == 5 and not monitor.writes
    assert stream.stats.reconnects == 4 and stream.stats.acknowledged == 0


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (Code.INVALID_ARGUMENT, "user_id must be 1-128 characters"),
        (Code.UNAUTHENTICATED, "no token"),
        (Code.RESOURCE_EXHAUSTED, "Received message larger than max (9000 vs. 4096)"),
    ],
)
def test_stream_final_errors_are_raised_without_retry(
    code: grpc.StatusCode,
    details: str,
    stub: Any,
    server: tuple[str, FakeMonitor],
    fake_time: FakeTime,
) -> None:
    """A final status code ends the stream at once: no wait, no second call."""
    _, monitor = server
    monitor.stream_errors = [(code, details)]
    with pytest.raises(grpc.RpcError) as raised:
        list(ResendingStream(stub.StreamHeartRate, readings([70]), retry=fake_time.policy()))
    assert raised.value.code() == code
    assert fake_time.sleeps == [] and monitor.calls["StreamHeartRate"] == 1


def test_stream_without_retry_keeps_the_old_behaviour(
    stub: Any, server: tuple[str, FakeMonitor]
) -> None:
    """NO_RETRY: an OVERLOADED answer is final (handed out as is), a cut stream is raised."""
    _, monitor = server
    sent = readings([70, 71, 72])
    monitor.overloaded[sent[1].timestamp_ms] = 1
    pairs = list(ResendingStream(stub.StreamHeartRate, sent, retry=NO_RETRY))
    assert [resp.reject_reason for _, resp in pairs] == [0, pb.REJECT_REASON_OVERLOADED, 0]
    assert is_retryable_answer(pairs[1][1]) and not is_retryable_answer(pairs[0][1])
    monitor.stream_cuts = [0]
    with pytest.raises(grpc.RpcError) as raised:
        list(ResendingStream(stub.StreamHeartRate, readings([80, 81]), retry=NO_RETRY))
    assert raised.value.code() == Code.UNAVAILABLE


def test_stream_of_nothing_ends(stub: Any, fake_time: FakeTime) -> None:
    """An empty input half-closes at once and yields nothing."""
    stream = ResendingStream(stub.StreamHeartRate, [], retry=fake_time.policy())
    assert list(stream) == [] and stream.stats == StreamStats()


async def test_async_stream_survives_a_cut_and_overload(
    server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """The grpc.aio variant over an async source: same guarantees and counts."""
    address, monitor = server
    monitor.stream_cuts = [2]
    sent = readings([90, 91, 92, 93, 94, 95], user="cy")
    monitor.overloaded[sent[4].timestamp_ms] = 1

    async def source() -> AsyncIterator[pb.HeartRateRequest]:
        for r in sent:
            yield r

    async with grpc.aio.insecure_channel(address) as channel:
        astub = pb_grpc.HeartRateMonitorStub(channel)  # type: ignore[no-untyped-call]
        stream = AsyncResendingStream(
            astub.StreamHeartRate, source(), retry=fake_time.policy(), window=1
        )
        pairs = [pair async for pair in stream]

    assert [req.timestamp_ms for req, _ in pairs] == [r.timestamp_ms for r in sent]
    assert [resp.duplicate for _, resp in pairs] == [False, False, True, False, False, False]
    assert all(resp.success for _, resp in pairs)
    assert set(monitor.writes) == {("cy", r.timestamp_ms) for r in sent}
    assert set(monitor.writes.values()) == {1}
    assert stream.stats == StreamStats(
        sent=6, resent=2, acknowledged=6, duplicates=1, rejected=0, reconnects=1
    )
    assert fake_time.sleeps == [0.2, 0.2]


async def test_async_stream_with_a_wide_window(
    server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """Many readings in flight when the stream is cut: all resent, each stored once, in order."""
    address, monitor = server
    monitor.stream_cuts = [5, 7]
    sent = readings(list(range(60, 100)), user="dee")
    async with grpc.aio.insecure_channel(address) as channel:
        astub = pb_grpc.HeartRateMonitorStub(channel)  # type: ignore[no-untyped-call]
        stream = AsyncResendingStream(astub.StreamHeartRate, sent, retry=fake_time.policy())
        pairs = [pair async for pair in stream]
    assert [req.timestamp_ms for req, _ in pairs] == [r.timestamp_ms for r in sent]
    assert sum(resp.duplicate for _, resp in pairs) == 2
    assert set(monitor.writes) == {("dee", r.timestamp_ms) for r in sent}
    assert set(monitor.writes.values()) == {1}
    assert stream.stats.reconnects == 2 and stream.stats.resent >= 2


async def test_async_stream_resends_after_grpc_aio_loses_the_status(
    server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """grpc.aio may report a stream cut while the client writes as INTERNAL "Internal error from
    Core" (grpc/grpc#36066): a broken stream, resent like UNAVAILABLE. A server INTERNAL with
    another text stays final."""
    address, monitor = server
    sent = readings([80, 81, 82], user="eve")
    opened: list[int] = []

    async with grpc.aio.insecure_channel(address) as channel:
        astub = pb_grpc.HeartRateMonitorStub(channel)  # type: ignore[no-untyped-call]

        def open_call(reqs: AsyncIterator[pb.HeartRateRequest]) -> Any:
            opened.append(1)
            if len(opened) == 1:
                return _failing(reqs, _Error(Code.INTERNAL, "Internal error from Core"))
            if len(opened) == 2:
                return _failing(reqs, _Error(Code.INTERNAL, "a bug"))
            return astub.StreamHeartRate(reqs)

        stream = AsyncResendingStream(open_call, sent, retry=fake_time.policy())
        with pytest.raises(grpc.RpcError) as raised:
            _ = [pair async for pair in stream]
        assert raised.value.details() == "a bug" and len(opened) == 2
        stream = AsyncResendingStream(open_call, sent, retry=fake_time.policy())
        pairs = [pair async for pair in stream]
    assert [resp.success for _, resp in pairs] == [True] * 3
    assert len(monitor.writes) == 3 and fake_time.sleeps == [0.2]


async def _failing(
    reqs: AsyncIterator[pb.HeartRateRequest], error: Exception
) -> AsyncIterator[pb.HeartRateResponse]:
    """A call that reads one request and fails with `error` without answering."""
    await reqs.__anext__()
    raise error
    yield pb.HeartRateResponse()  # an async generator


def test_unary_retries_overload_then_succeeds(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """RESOURCE_EXHAUSTED (overload shed) twice, then OK: three calls, waits 0.2 and 0.4 s."""
    _, monitor = server
    monitor.unary_errors = [(Code.RESOURCE_EXHAUSTED, AT_CAPACITY)] * 2
    told: list[tuple[str, float]] = []
    resp = call_with_retry(
        stub.SubmitHeartRate,
        readings([70])[0],
        timeout=5,
        retry=fake_time.policy(),
        on_retry=lambda what, delay: told.append((what, delay)),
    )
    assert resp.success and not resp.duplicate
    assert monitor.calls["SubmitHeartRate"] == 3 and fake_time.sleeps == [0.2, 0.4]
    assert told == [(f"RESOURCE_EXHAUSTED: {AT_CAPACITY}", 0.2)] + [
        (f"RESOURCE_EXHAUSTED: {AT_CAPACITY}", 0.4)
    ]


def test_unary_resends_an_overloaded_answer_and_a_batch(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """A retryable per-reading answer is resent too; a batch is resent whole after UNAVAILABLE
    and after a retryable result, its stored readings then answering as duplicates."""
    _, monitor = server
    one = readings([70])[0]
    monitor.overloaded[one.timestamp_ms] = 1
    resp = call_with_retry(stub.SubmitHeartRate, one, retry=fake_time.policy())
    assert resp.success and monitor.calls["SubmitHeartRate"] == 2

    stamps = [T0 + 10_000 + i for i in range(4)]
    batch = pb.HeartRateBatchRequest(user_id="ann", bpm=[60, 61, 62, 63], timestamps_ms=stamps)
    monitor.unary_errors = [(Code.UNAVAILABLE, "Redis is down")]
    monitor.overloaded[stamps[2]] = 1
    answer = call_with_retry(stub.SubmitHeartRateBatch, batch, retry=fake_time.policy())
    assert (answer.accepted, answer.duplicate, answer.rejected) == (1, 3, 0)
    assert monitor.calls["SubmitHeartRateBatch"] == 3
    assert set(monitor.writes.values()) == {1} and len(monitor.writes) == 5


def test_unary_final_errors_are_not_retried(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """A message over the size limit (RESOURCE_EXHAUSTED from gRPC itself) and INVALID_ARGUMENT
    are raised at the first call."""
    _, monitor = server
    n = MAX_MESSAGE // 4
    big = pb.HeartRateBatchRequest(
        user_id="ann", bpm=[70] * n, timestamps_ms=[T0 + i * 1000 for i in range(n)]
    )
    with pytest.raises(grpc.RpcError) as raised:
        call_with_retry(stub.SubmitHeartRateBatch, big, retry=fake_time.policy())
    assert raised.value.code() == Code.RESOURCE_EXHAUSTED
    assert "larger than max" in (raised.value.details() or "")
    assert monitor.calls["SubmitHeartRateBatch"] == 0  # refused before the handler

    monitor.unary_errors = [(Code.INVALID_ARGUMENT, "bpm must hold at least one reading")]
    with pytest.raises(grpc.RpcError) as raised:
        call_with_retry(stub.SubmitHeartRate, readings([70])[0], retry=fake_time.policy())
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert monitor.calls["SubmitHeartRate"] == 1 and fake_time.sleeps == []


def test_unary_gives_up_after_max_retries(
    stub: Any, server: tuple[str, FakeMonitor], fake_time: FakeTime
) -> None:
    """max_retries=2: three calls, then the last transient error is raised."""
    _, monitor = server
    monitor.unary_errors = [(Code.DEADLINE_EXCEEDED, "request_timeout_s")] * 5
    with pytest.raises(grpc.RpcError) as raised:
        call_with_retry(
            stub.SubmitHeartRate, readings([70])[0], retry=fake_time.policy(max_retries=2)
        )
    assert raised.value.code() == Code.DEADLINE_EXCEEDED
    assert monitor.calls["SubmitHeartRate"] == 3 and fake_time.sleeps == [0.2, 0.4]


class _Error(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "transient"),
    [
        (Code.UNAVAILABLE, "failed to connect to all addresses", True),
        (Code.DEADLINE_EXCEEDED, "Deadline Exceeded", True),
        (Code.RESOURCE_EXHAUSTED, AT_CAPACITY, True),
        (Code.RESOURCE_EXHAUSTED, "Sent message larger than max (70000000 vs. 67108864)", False),
        (Code.INVALID_ARGUMENT, "age must be > 0", False),
        (Code.PERMISSION_DENIED, "not yours", False),
        (Code.NOT_FOUND, "no profile", False),
        (Code.INTERNAL, "bug", False),
        # HAProxy resets a call whose ingress replica was killed (seen in tests/e2e).
        (
            Code.CANCELLED,
            "Stream removed (RST_STREAM (Received RST_STREAM with error code 8))",
            True,
        ),
        (Code.CANCELLED, "Locally cancelled by application!", False),
    ],
)
def test_is_transient(code: grpc.StatusCode, details: str, transient: bool) -> None:
    """Which status codes (and RESOURCE_EXHAUSTED texts) are worth another try."""
    assert is_transient(_Error(code, details)) is transient


def test_backoff_caps_and_jitter() -> None:
    """Delays double from 0.2 s up to 5 s; full jitter scales the cap by the random draw."""
    assert [Backoff(rand=lambda: 1.0).delay(n) for n in range(7)] == [
        0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0,
    ]  # fmt: skip
    assert Backoff(rand=lambda: 0.5).delay(3) == 0.8
    assert Backoff(rand=lambda: 1.0).delay(10_000) == 5.0


# --- the CLI commands over the helper ------------------------------------------------------


@pytest.fixture
def cli_time(monkeypatch: pytest.MonkeyPatch, fake_time: FakeTime) -> FakeTime:
    """The CLI's retry policy on the fake clock; no token from the environment."""
    monkeypatch.delenv("HEARTRATE_TOKEN", raising=False)
    real = cli_commands.retry_policy

    def policy(args: argparse.Namespace) -> RetryPolicy:
        return real(
            args,
            backoff=Backoff(rand=lambda: 1.0),
            sleep=fake_time.sleep,
            async_sleep=fake_time.async_sleep,
            clock=fake_time.clock,
        )

    monkeypatch.setattr(cli_commands, "retry_policy", policy)
    monkeypatch.setattr(cli_simulator, "retry_policy", policy)
    return fake_time


def test_cli_stream_resends_after_a_cut(
    server: tuple[str, FakeMonitor],
    cli_time: FakeTime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`heartrate stream`: one answer line per reading in input order, a warning per retry, the
    summary counting resends and reconnections; readings without a timestamp are stamped."""
    address, monitor = server
    monitor.stream_cuts = [2]
    path = tmp_path / "readings.csv"
    path.write_text("1700000000,70\n1700000001,71\n72\n1700000003,73\n")
    assert cli.main(["--address", address, "--json", "stream", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["bpm"] for line in lines[:-1]] == [70, 71, 72, 73]
    assert [line["result"] for line in lines[:-1]] == ["stored", "stored", "duplicate", "stored"]
    summary = lines[-1]["summary"]
    assert (summary["sent"], summary["acked"], summary["reconnects"]) == (4, 4, 1)
    assert summary["resent"] >= 1
    assert "warning: the stream failed (UNAVAILABLE: the ingress replica died)" in err
    assert len(monitor.writes) == 4 and set(monitor.writes.values()) == {1}
    assert cli_time.sleeps == [0.2]


def test_cli_stream_no_retry_fails_as_before(
    server: tuple[str, FakeMonitor],
    cli_time: FakeTime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--no-retry: a cut stream is an error (exit 2) after the answers already printed."""
    address, monitor = server
    monitor.stream_cuts = [1]
    path = tmp_path / "readings.csv"
    path.write_text("1700000000,70\n1700000001,71\n1700000002,72\n")
    assert cli.main(["--address", address, "stream", "--no-retry", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["70 bpm @ 2023-11-14T22:13:20.000Z: stored"]
    assert "error: UNAVAILABLE: the ingress replica died" in err
    assert cli_time.sleeps == []


def test_cli_batch_retries_overload(
    server: tuple[str, FakeMonitor],
    cli_time: FakeTime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`heartrate batch`: RESOURCE_EXHAUSTED (overload) is retried after a warning."""
    address, monitor = server
    monitor.unary_errors = [(Code.RESOURCE_EXHAUSTED, AT_CAPACITY)]
    path = tmp_path / "readings.csv"
    path.write_text("1700000000,70\n1700000001,71\n")
    assert cli.main(["--address", address, "--json", "batch", str(path)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[0])["accepted"] == 2
    assert f"warning: RESOURCE_EXHAUSTED: {AT_CAPACITY}; retrying in 0.2 s" in err
    assert monitor.calls["SubmitHeartRateBatch"] == 2 and len(monitor.writes) == 2


def test_cli_simulate_resends_after_a_cut(
    server: tuple[str, FakeMonitor], cli_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    """`heartrate simulate`: a cut stream is reopened; every reading is acked once."""
    address, monitor = server
    monitor.stream_cuts = [1]
    argv = ["--address", address, "--json", "simulate", "--users", "2", "--rate", "20",
            "--duration", "0.2"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["sent"], summary["acked"], summary["duplicates"]) == (8, 8, 1)
    assert summary["reconnects"] == 1 and summary["resent"] >= 1
    assert len(monitor.writes) == 8 and set(monitor.writes.values()) == {1}
