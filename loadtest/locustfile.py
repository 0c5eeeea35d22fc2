"""Locust gRPC users of heartrate-serve (the locust gRPC example pattern: a client interceptor
fires `events.request`; grpc is gevent-patched).

Headless run against a service on 127.0.0.1:50051 (`make run`):

  .venv/bin/locust -f loadtest/locustfile.py --headless -u 20 -r 10 -t 20s \
      --host 127.0.0.1:50051 --csv loadtest/results/locust

`make loadtest` does the same against a service it starts itself (loadtest/run_locust.py).

Users (weights: how locust shares -u between them):
  UnarySubmitter   SubmitHeartRate, one reading every 0.1-0.5 s
  StreamingDevice  one bidi StreamHeartRate held open, one realistic reading per second (a
                   workout curve); each reading's ack latency is its own request type "stream-ack"
  StatusReader     GetHeartRateStatus of the readings it submitted
  ZoneAnalyst      CalculateExerciseZones over an hour of columnar readings (3 600)
Request type "grpc" entries are named after the RPC; every user has its own user_id.

UnarySubmitter and StreamingDevice behave like real clients (cli/resending.py): through transient
failures (UNAVAILABLE, overload shed, timeouts) they retry for up to RETRY_FOR_S seconds with
backoff, resending their stamped readings; every failed attempt and every broken stream is still
recorded as a "grpc" failure, and a "stream-ack" times a reading from its first send to its final
answer (resends included).
"""

# ruff: noqa: E402 - grpc must be gevent-patched before anything else uses it
from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue
import grpc
import numpy as np
from locust import User, between, constant_pacing, events, task
from locust.env import Environment
from locust.exception import LocustError

from heartrate_serve.cli.resending import ResendingStream, RetryPolicy, call_with_retry
from heartrate_serve.cli.workouts import workout_bpm
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.proto import heartrate_service_pb2_grpc as pb_grpc

STREAM_ACK = "stream-ack"
ZONE_READINGS = 3_600
# Shorter than a real client's minute: a load test should report an outage, not sit through it.
RETRY_FOR_S = 10.0
RETRY = RetryPolicy(max_seconds=RETRY_FOR_S, sleep=gevent.sleep)
_user_numbers = itertools.count()
_run = f"{os.getpid()}-{int(time.time())}"


def rpc_name(method: str | bytes) -> str:
    """The RPC name of a full method path ("/heartrate.HeartRateMonitor/X" -> "X")."""
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Reports every RPC to locust: unary calls when answered, streams when they end."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment

    def _fire(self, name: str, start: float, length: int, exc: Exception | None) -> None:
        self.env.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            response=None,
            context=None,
            exception=exc,
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """Times one unary call."""
        start = time.perf_counter()
        call = continuation(client_call_details, request)
        exc: Exception | None = None
        length = 0
        try:
            length = call.result().ByteSize()
        except grpc.RpcError as e:
            exc = e
        self._fire(rpc_name(client_call_details.method), start, length, exc)
        return call

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Times a whole stream (its per-message acks are reported by the user)."""
        start = time.perf_counter()
        call = continuation(client_call_details, request_iterator)
        return _TimedStream(call, lambda exc: self._fire(
            rpc_name(client_call_details.method), start, 0, exc
        ))  # fmt: skip


class _TimedStream:
    """A response iterator that reports once, when the stream ends or fails."""

    def __init__(self, call: Any, done: Callable[[Exception | None], None]) -> None:
        self._call = call
        self._done = done
        self._reported = False

    def __iter__(self) -> _TimedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except StopIteration:
            self._report(None)
            raise
        except grpc.RpcError as e:
            self._report(e)
            raise

    def _report(self, exc: Exception | None) -> None:
        if not self._reported:
            self._reported = True
            self._done(exc)

    def cancel(self) -> None:
        """Cancels the stream."""
        self._call.cancel()


class GrpcUser(User):
    """A locust User with a heartrate stub on an intercepted channel to --host (host:port)."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError("pass the service address with --host 127.0.0.1:PORT")
        host = self.host.removeprefix("grpc://").removeprefix("http://").rstrip("/")
        self._channel = grpc.intercept_channel(
            grpc.insecure_channel(host), LocustInterceptor(environment)
        )
        self.stub = pb_grpc.HeartRateMonitorStub(self._channel)
        self.user_id = f"locust-{type(self).__name__}-{_run}-{next(_user_numbers)}"
        self.bpm = workout_bpm(ZONE_READINGS, 1.0, seed=next(_user_numbers))
        self._last_ts = 0
        self._n = 0

    def next_reading(self) -> pb.HeartRateRequest:
        """The next reading of this user: workout bpm, a unique increasing timestamp (ms)."""
        self._last_ts = max(self._last_ts + 1, time.time_ns() // 1_000_000)
        bpm = int(self.bpm[self._n % len(self.bpm)])
        self._n += 1
        return pb.HeartRateRequest(bpm=bpm, user_id=self.user_id, timestamp_ms=self._last_ts)

    def on_stop(self) -> None:
        """Closes the channel."""
        self._channel.close()


class UnarySubmitter(GrpcUser):
    """Submits single readings."""

    weight = 6
    wait_time = between(0.1, 0.5)

    @task
    def submit(self) -> None:
        """One SubmitHeartRate, made again after transient failures (the reading is stamped)."""
        call_with_retry(self.stub.SubmitHeartRate, self.next_reading(), retry=RETRY)


class StreamingDevice(GrpcUser):
    """A watch: one bidi stream held open, one reading per second, ack latency per reading."""

    weight = 8
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        """Opens the stream (a resending one: reopened, unanswered readings resent)."""
        self._outbox: gevent.queue.Queue[pb.HeartRateRequest | None] = gevent.queue.Queue()
        self._answers = ResendingStream(
            self.stub.StreamHeartRate, iter(self._outbox.get, None), retry=RETRY, window=1
        )

    @task
    def send_reading(self) -> None:
        """Sends one reading and waits for its final answer."""
        start = time.perf_counter()
        exc: Exception | None = None
        failed = False
        length = 0
        try:
            self._outbox.put(self.next_reading())
            _, resp = next(self._answers)
            length = resp.ByteSize()
            if not resp.success:
                exc = RuntimeError(f"rejected: {resp.error}")
        except (grpc.RpcError, StopIteration) as e:
            failed = True
            exc = e if isinstance(e, grpc.RpcError) else RuntimeError("stream ended")
        self.environment.events.request.fire(
            request_type=STREAM_ACK,
            name="StreamHeartRate",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            response=None,
            context=None,
            exception=exc,
        )
        if failed:  # the stream gave up; the next reading opens a new one
            self._outbox.put(None)
            self._answers.close()
            self.on_start()

    def on_stop(self) -> None:
        """Ends the stream (half-close) and reads its end."""
        self._outbox.put(None)
        with gevent.Timeout(5, False):
            for _ in self._answers:
                pass
        self._answers.close()
        super().on_stop()


class StatusReader(GrpcUser):
    """Submits a reading now and then and reads its status."""

    weight = 4
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        """Stores a first reading so there is a status to read."""
        self.stub.SubmitHeartRate(self.next_reading())

    @task(4)
    def status(self) -> None:
        """GetHeartRateStatus of the last 60 readings."""
        self.stub.GetHeartRateStatus(pb.StatusRequest(user_id=self.user_id, recent_count=60))

    @task(1)
    def submit(self) -> None:
        """One more reading."""
        self.stub.SubmitHeartRate(self.next_reading())


class ZoneAnalyst(GrpcUser):
    """Zone analysis of a one-hour session sent as columns."""

    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        """Builds the hour-long session (3 600 readings, 1 Hz)."""
        start_ms = time.time_ns() // 1_000_000 - ZONE_READINGS * 1000
        self._request = pb.ExerciseZoneRequest(
            user_id=self.user_id,
            age=35,
            bpm=self.bpm.tolist(),
            timestamps_ms=(start_ms + np.arange(ZONE_READINGS, dtype=np.int64) * 1000).tolist(),
        )

    @task
    def zones(self) -> None:
        """CalculateExerciseZones."""
        self.stub.CalculateExerciseZones(self._request)


@events.quitting.add_listener
def _report_exit_code(environment: Environment, **_kwargs: Any) -> None:
    """Exit code 1 when any request failed (locust's default too, made explicit)."""
    if environment.stats.total.num_failures > 0:
        environment.process_exit_code = 1
