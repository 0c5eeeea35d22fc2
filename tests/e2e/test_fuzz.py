"""Hostile input against the real service (issue 11): every RPC fuzzed with auth off and on.

hypothesis-generated messages, raw garbage / truncated / bit-flipped / hand-crafted request
bodies, oversized messages and metadata. Every answer must be OK or a clear status
(INVALID_ARGUMENT naming a field of the request, NOT_FOUND, RESOURCE_EXHAUSTED; with auth on
UNAUTHENTICATED / PERMISSION_DENIED), never INTERNAL, UNKNOWN or a dropped connection; every
stream message is answered. Afterwards the service is SERVING, no replica process died, and the
store holds exactly the readings it acknowledged as stored.

Undecodable bodies answer INVALID_ARGUMENT naming the message type (a per-reading
REJECT_REASON_INVALID_MESSAGE inside a stream, which goes on); metadata over 7 KiB answers
INVALID_ARGUMENT. The one known limit is a strict xfail: metadata over HAProxy's 64 KiB buffer
drops the connection.

Targets (one module-scoped parameter): `off` is the session's service; `jwt-valid`, `jwt-none`
and `jwt-garbage` share a second service started here with AUTH_MODE=jwt and a key pair made in
a temporary folder (a valid token, no token, refused tokens). hypothesis runs derandomized with
bounded examples; run with -s to see the statuses observed per kind of input.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.runtime.dev_keys import ensure_dev_keypair, issue_token
from heartrate_serve.runtime.haproxy_mode import MAX_METADATA_BYTES
from heartrate_serve.service.service import HeartRateService
from tests.support import fuzz
from tests.support.fuzz import RPCS, UNARY, Answer, Ledger, Tally
from tests.support.load import instance_dir, replica_processes
from tests.support.service import Service, service_with_external_redis

pytestmark = pytest.mark.e2e
Code = grpc.StatusCode
CALL_TIMEOUT_S = 60.0
DEPLOYMENTS = ("HeartRateIngress", "Validator", "ZoneCalculator")
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 << 20),
]
# Examples per hypothesis test, scaled per target (auth refused: the same answer every time).
EXAMPLES = {"unary": 30, "stream": 10, "raw": 20}
SCALE = {"off": 1.0, "jwt-valid": 0.5, "jwt-none": 0.1, "jwt-garbage": 0.35}
CLEAR_OFF = frozenset({Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED})
# Metadata over MAX_METADATA_BYTES is answered INVALID_ARGUMENT by HAProxy (below the replicas'
# 8 KiB gRPC limit, where some calls would fail RESOURCE_EXHAUSTED at random).
# A dropped connection, a hang: never acceptable, whatever was sent.
GONE = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED})
HEADER_DEFECT = (
    "limit: request metadata over HAProxy's tune.bufsize (64 KiB, runtime/haproxy_mode.py) makes "
    "HAProxy drop the whole HTTP/2 connection (GOAWAY INTERNAL_ERROR): UNAVAILABLE; metadata "
    "over 7 KiB and under that buffer answers INVALID_ARGUMENT"
)
RUN = uuid.uuid4().hex[:8]
TALLY = Tally()


def _auth_landed() -> bool:
    """The service core takes an Authenticator (service/service.py, issue 11)."""
    return "auth" in inspect.signature(HeartRateService.__init__).parameters


# --- targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    """One way of calling one running service, with what it must answer."""

    name: str
    service: Service
    channel: grpc.Channel
    metadata: st.SearchStrategy[Any]  # per call: None or a list of (key, value)
    allowed: frozenset[grpc.StatusCode]
    writers: list[str]  # users this target may write (tracked in the ledger)
    readers: list[str]  # users it reads besides the writers
    default_user: str  # whom user_id "" means
    ledger: Ledger
    read_metadata: list[tuple[str, str]] | None  # for the final reads of the store
    loose: frozenset[str] = frozenset()  # shared users: presence checked, not counts
    pids: dict[str, set[int]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # crafted authorization values

    def writes(self) -> st.SearchStrategy[str]:
        extra = [""] if self.default_user not in self.loose else []
        return fuzz.user_ids(self.writers + extra, [f"fz{RUN}-{i}" for i in range(3)])

    def reads(self) -> st.SearchStrategy[str]:
        return st.one_of(fuzz.user_ids(self.writers + self.readers + [""]), st.just(""))

    def examples(self, kind: str) -> int:
        return max(3, int(EXAMPLES[kind] * SCALE[self.name]))

    def user(self, user_id: str) -> str:
        return user_id or self.default_user


@dataclass
class AuthService:
    service: Service
    private_key: Path
    foreign_key: Path
    ledger: Ledger = field(default_factory=Ledger)
    pids: dict[str, set[int]] = field(default_factory=dict)

    def token(self, user: str, scopes: list[str]) -> str:
        return issue_token(self.private_key, user=user, scopes=scopes)


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthService]:
    """A second service with AUTH_MODE=jwt, verifying with a key pair made here."""
    if not _auth_landed():
        pytest.skip("auth (issue 11) has not landed: HeartRateService takes no `auth`")
    workdir = tmp_path_factory.mktemp("fuzz-auth")
    private, public, _ = ensure_dev_keypair(workdir / "keys")
    foreign, _, _ = ensure_dev_keypair(workdir / "foreign")
    env = {"LOG_LEVEL": "WARNING", "AUTH_MODE": "jwt", "AUTH_JWT_PUBLIC_KEY_FILE": str(public)}
    with service_with_external_redis(workdir, **env) as svc:
        yield AuthService(svc, private, foreign)


_LEDGER_OFF = Ledger()
_PIDS_OFF: dict[str, set[int]] = {}


@pytest.fixture(scope="module", params=["off", "jwt-valid", "jwt-none", "jwt-garbage"])
def target(request: pytest.FixtureRequest, service: Service) -> Iterator[Target]:
    """The service to fuzz and how: auth off, or the jwt service with each kind of token."""
    name: str = request.param
    writers = [f"fz{RUN}-w{i}" for i in range(3)]
    crafted: dict[str, str] = {}
    if name == "off":
        svc, ledger, pids = service, _LEDGER_OFF, _PIDS_OFF
        metadata: st.SearchStrategy[Any] = st.one_of(
            st.none(), fuzz.garbage_authorizations().map(lambda v: [("authorization", v)])
        )
        allowed, default, read_md = CLEAR_OFF, "default", None
        loose = frozenset({"default"})
    else:
        auth: AuthService = request.getfixturevalue("auth_service")
        svc, ledger, pids = auth.service, auth.ledger, auth.pids
        default, loose = writers[0], frozenset()
        read_md = fuzz.bearer(auth.token(f"fz{RUN}-admin", ["heartrate:admin"]))
        if name == "jwt-valid":
            token = auth.token(writers[0], ["heartrate:read", "heartrate:write"])
            metadata = st.just(fuzz.bearer(token))
            allowed = CLEAR_OFF | {Code.PERMISSION_DENIED}
        elif name == "jwt-none":
            metadata = st.sampled_from([None, [], [("x-other", "1")]])
            allowed = frozenset({Code.UNAUTHENTICATED})  # nothing else, whatever the message
        else:

            def foreign_issue(**kw: Any) -> str:
                return issue_token(auth.foreign_key, **kw)

            def own_issue(**kw: Any) -> str:
                return issue_token(auth.private_key, **kw)

            crafted.update(fuzz.crafted_tokens(writers[0], own_issue, foreign_issue))
            metadata = st.one_of(
                st.sampled_from(sorted(crafted.values())), fuzz.garbage_authorizations()
            ).map(lambda v: [("authorization", v)])
            allowed = frozenset({Code.UNAUTHENTICATED, Code.RESOURCE_EXHAUSTED})  # 9 KB token
    with grpc.insecure_channel(svc.address, options=CHANNEL_OPTIONS) as channel:
        if not pids:
            pids.update(_replica_pids(svc))
        yield Target(
            name, svc, channel, metadata, allowed, writers, [f"fz{RUN}-r0"], default, ledger,
            read_md, loose, pids, crafted,
        )  # fmt: skip


def _replica_pids(svc: Service) -> dict[str, set[int]]:
    where = instance_dir(svc)
    return {d: {p.pid for p in replica_processes(where, d)} for d in DEPLOYMENTS}


def _run(examples: int, strategy: st.SearchStrategy[Any], body: Callable[[Any], None]) -> None:
    """body over `examples` derandomized examples of strategy (shrinking a failure), with
    timestamps drawn around the wall clock of now."""
    fuzz.Clock.freeze()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
        report_multiple_bugs=False,
    )
    @given(strategy)
    def check(example: Any) -> None:
        body(example)

    check()


# --- answers ----------------------------------------------------------------------------------


def _check(t: Target, kind: str, rpc: str, request: Any, answer: Answer) -> None:
    """The answer is one the target may give; INVALID_ARGUMENT names a field of the request."""
    TALLY.add(t.name, kind, rpc, answer.code)
    what = f"{t.name} {rpc} ({kind}) answered {answer.code.name}: {answer.details!r}"
    assert answer.code in t.allowed, f"{what}\nrequest: {_short(request)}"
    if answer.code == Code.INVALID_ARGUMENT:
        assert fuzz.names_a_field(answer.details, RPCS[rpc][0]), f"{what}: names no field"


def _short(request: Any, limit: int = 600) -> str:
    text = repr(request) if isinstance(request, bytes) else str(request).replace("\n", " ")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _record(t: Target, rpc: str, request: Any, response: Any) -> None:
    """Acknowledged readings of an OK answer into the target's ledger."""
    if rpc == "SubmitHeartRate":
        t.ledger.reading(t.user(request.user_id), request, response)
    elif rpc == "SubmitHeartRateBatch":
        t.ledger.batch(t.user(request.user_id), request, response)


def _stream_answers(
    t: Target, kind: str, requests: list[Any], answer: Answer, got: list[pb.HeartRateResponse]
) -> None:
    """A stream: the allowed status; OK means one answer per message, each success or a
    per-reading error with its reason."""
    _check(t, kind, "StreamHeartRate", requests, answer)
    if answer.code != Code.OK:
        assert not got, f"{t.name}: {len(got)} answers and then {answer.code.name}"
        return
    assert len(got) == len(requests), f"{len(requests)} readings sent, {len(got)} answered"
    for request, response in zip(requests, got, strict=True):
        if not response.success:
            assert response.reject_reason and response.error, response
        t.ledger.reading(t.user(request.user_id), request, response)


# --- 1. hypothesis-generated messages ---------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("rpc", UNARY)
def test_generated_messages_get_clear_answers(target: Target, rpc: str) -> None:
    """Every unary RPC over generated messages and per-call metadata."""
    t = target
    strategy = st.tuples(fuzz.requests_for(rpc, t.writes(), t.reads()), t.metadata)

    def body(example: tuple[Any, Any]) -> None:
        request, metadata = example
        answer = fuzz.unary(t.channel, rpc, request, metadata, CALL_TIMEOUT_S)
        _check(t, "generated", rpc, request, answer)
        if answer.code == Code.OK:
            _record(t, rpc, request, answer.response)

    _run(t.examples("unary"), strategy, body)


@pytest.mark.timeout(600)
def test_generated_streams_answer_every_message(target: Target) -> None:
    """Streams of 0-40 generated readings: each answered, bad ones with per-reading errors."""
    t = target
    readings = st.lists(fuzz.heart_rate_requests(t.writes()), max_size=40)

    def body(example: tuple[list[pb.HeartRateRequest], Any]) -> None:
        requests, metadata = example
        answer, got = fuzz.stream(t.channel, requests, metadata, CALL_TIMEOUT_S)
        _stream_answers(t, "generated", requests, answer, got)

    _run(t.examples("stream"), st.tuples(readings, t.metadata), body)


def test_empty_messages(target: Target) -> None:
    """The empty message of every RPC, an empty stream and a stream of empty messages."""
    t = target
    metadata = _one(t.metadata)
    for rpc in UNARY:
        request = RPCS[rpc][0]()
        answer = fuzz.unary(t.channel, rpc, request, metadata, CALL_TIMEOUT_S)
        _check(t, "empty message", rpc, request, answer)
        if answer.code == Code.OK:
            _record(t, rpc, request, answer.response)
    for requests in ([], [pb.HeartRateRequest()] * 3):
        answer, got = fuzz.stream(t.channel, requests, metadata, CALL_TIMEOUT_S)
        _stream_answers(t, "empty message", requests, answer, got)


def _one(strategy: st.SearchStrategy[Any]) -> Any:
    found: list[Any] = []
    _run(1, strategy, found.append)
    return found[0]


@pytest.mark.parametrize("target", ["jwt-garbage"], indirect=True)
def test_every_crafted_token_is_refused(target: Target) -> None:
    """Auth on: each crafted authorization value (alg none, HS256 with the public key, another
    key's signature, expired, bad kid, malformed parts, 9 KB, ...) answers UNAUTHENTICATED on a
    read, a write and a stream, and nothing is stored."""
    t = target
    assert t.tokens, "the jwt-garbage target carries the crafted tokens"
    now = fuzz.Clock.freeze() - 5_000
    for name, value in t.tokens.items():
        metadata = [("authorization", value)]
        refused = {Code.UNAUTHENTICATED}
        if len(value) > MAX_METADATA_BYTES:  # HAProxy answers before the token is looked at
            refused = {Code.INVALID_ARGUMENT}
        write = pb.HeartRateRequest(bpm=70, timestamp_ms=now, user_id=t.writers[0])
        read = pb.StatusRequest(user_id=t.writers[0])
        for rpc, request in (("SubmitHeartRate", write), ("GetHeartRateStatus", read)):
            answer = fuzz.unary(t.channel, rpc, request, metadata, CALL_TIMEOUT_S)
            TALLY.add(t.name, "crafted token", rpc, answer.code)
            assert answer.code in refused, f"{name}: {answer}"
        answer, got = fuzz.stream(t.channel, [write], metadata, CALL_TIMEOUT_S)
        TALLY.add(t.name, "crafted token", "StreamHeartRate", answer.code)
        assert answer.code in refused and not got, f"{name}: {answer} {got}"


# --- 2. raw request bodies --------------------------------------------------------------------


def _raw_check(t: Target, rpc: str, kind: str, body: bytes, answer: Answer) -> None:
    """A decodable body is answered as its message would be; an undecodable one gets a status
    without a dropped connection or a hang (recorded here; that it should be INVALID_ARGUMENT
    is test_undecodable_bodies_answer_invalid_argument, a known defect)."""
    parsed = fuzz.decodes(RPCS[rpc][0], body)
    if parsed is not None:
        _check(t, "raw, decodable", rpc, body, answer)
        if answer.code == Code.OK:
            _record(t, rpc, parsed, answer.response)
        return
    TALLY.add(t.name, f"raw, undecodable ({kind.split(':')[0]})", rpc, answer.code)
    assert answer.code not in GONE, f"{t.name} {rpc} {kind}: {answer.code.name} {answer.details!r}"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("rpc", UNARY)
def test_raw_bodies_get_a_status_and_decodable_ones_clear_answers(target: Target, rpc: str) -> None:
    """Random bytes, valid messages cut short / bit-flipped / with garbage appended, and
    hand-crafted wire errors, as the body of every unary RPC."""
    t = target
    bodies = fuzz.raw_bodies(fuzz.requests_for(rpc, t.writes(), t.reads()))

    def body(example: tuple[tuple[str, bytes], Any]) -> None:
        (kind, raw), metadata = example
        answer = fuzz.unary(t.channel, rpc, raw, metadata, CALL_TIMEOUT_S)
        _raw_check(t, rpc, kind, raw, answer)

    _run(t.examples("raw"), st.tuples(bodies, t.metadata), body)
    for name, raw in fuzz.CRAFTED.items():
        answer = fuzz.unary(t.channel, rpc, raw, _one(t.metadata), CALL_TIMEOUT_S)
        _raw_check(t, rpc, f"crafted: {name}", raw, answer)


@pytest.mark.timeout(600)
def test_raw_stream_messages(target: Target) -> None:
    """Streams whose messages are raw bodies: every one answered in order, an undecodable one
    with REJECT_REASON_INVALID_MESSAGE, and the stream goes on (never a hang or a dropped
    connection)."""
    t = target
    one = fuzz.raw_bodies(fuzz.heart_rate_requests(t.writes()))
    bodies = st.lists(one, min_size=1, max_size=12)

    def body(example: tuple[list[tuple[str, bytes]], Any]) -> None:
        items, metadata = example
        raws = [raw for _, raw in items]
        parsed: list[Any] = [fuzz.decodes(pb.HeartRateRequest, raw) for raw in raws]
        answer, got = fuzz.stream(t.channel, raws, metadata, CALL_TIMEOUT_S, raw=True)
        decodable = all(p is not None for p in parsed)
        kind = "raw stream, decodable" if decodable else "raw stream, undecodable"
        TALLY.add(t.name, kind, "StreamHeartRate", answer.code)
        assert len(got) <= len(parsed), f"{len(got)} answers for {len(parsed)} messages"
        for request, response in zip(parsed, got, strict=False):
            if request is None:
                assert not response.success
                assert response.reject_reason == pb.REJECT_REASON_INVALID_MESSAGE, response
            else:
                t.ledger.reading(t.user(request.user_id), request, response)
        assert answer.code in t.allowed, f"{answer.code.name} {answer.details!r}"
        if answer.code == Code.OK:
            assert len(got) == len(parsed), f"status OK after {len(got)} of {len(parsed)}"

    _run(t.examples("stream"), st.tuples(bodies, t.metadata), body)


def test_undecodable_stream_message_is_answered_and_the_stream_goes_on(
    target: Target, request: pytest.FixtureRequest
) -> None:
    """Contract: every stream message is answered; a bad one with an error, then the rest.
    (Without a valid token the whole call is UNAUTHENTICATED before any message is read.)"""
    t = target
    user = t.writers[2] if t.name != "jwt-valid" else t.writers[0]
    base = fuzz.Clock.freeze() - 5_000
    good = [pb.HeartRateRequest(bpm=70, timestamp_ms=base + i, user_id=user) for i in range(3)]
    raws = [good[0].SerializeToString(), fuzz.CRAFTED["overlong varint tag"]]
    raws += [g.SerializeToString() for g in good[1:]]
    answer, got = fuzz.stream(t.channel, raws, _one(t.metadata), CALL_TIMEOUT_S, raw=True)
    TALLY.add(t.name, f"stream ok,bad,ok,ok: {len(got)} answers", "StreamHeartRate", answer.code)
    for sent, response in zip([good[0]], got, strict=False):
        t.ledger.reading(t.user(sent.user_id), sent, response)
    if answer.code == Code.OK and len(got) == 4:
        for sent, response in zip(good[1:], got[2:], strict=True):
            t.ledger.reading(t.user(sent.user_id), sent, response)
    assert answer.code in t.allowed, f"{answer.code.name} {answer.details!r}"
    if answer.code == Code.OK:
        assert len(got) == 4, f"status OK after {len(got)} answers to 4 messages"
        assert not got[1].success and got[1].error


def test_undecodable_bodies_answer_invalid_argument(target: Target) -> None:
    """Contract: a body that is not a valid message answers INVALID_ARGUMENT naming it (the
    token is checked first: without a valid one, UNAUTHENTICATED)."""
    t = target
    want = "INVALID_ARGUMENT" if t.name in ("off", "jwt-valid") else "UNAUTHENTICATED"
    metadata = _one(t.metadata)
    seen = []
    for rpc in UNARY:
        for name, raw in fuzz.CRAFTED.items():
            if fuzz.decodes(RPCS[rpc][0], raw) is None:
                answer = fuzz.unary(t.channel, rpc, raw, metadata, CALL_TIMEOUT_S)
                seen.append((rpc, name, answer.code.name, answer.details))
    wrong = [s for s in seen if s[2] != want]
    if want == "INVALID_ARGUMENT":
        wrong += [s for s in seen if RPCS[s[0]][0].DESCRIPTOR.name not in s[3]]
    assert not wrong, f"{len(wrong)} of {len(seen)}: {wrong[:5]}"


# --- 3. oversized messages and metadata -------------------------------------------------------


def test_oversized_messages(target: Target) -> None:
    """A 2 000 000-reading batch (~17 MB) answers INVALID_ARGUMENT naming bpm; 20 MiB of
    garbage and a valid reading carrying 20 MiB of client metadata get a status, and the
    service goes on. (Refused tokens: 200 000 readings and 1 MiB, all UNAUTHENTICATED.)"""
    t = target
    metadata = _one(t.metadata)
    full = t.name in ("off", "jwt-valid")  # refused tokens: smaller, the answer is the same
    n = 2_000_000 if full else 200_000
    now = fuzz.Clock.freeze() - 10_000
    big = pb.HeartRateBatchRequest(
        user_id=t.writers[0], bpm=[70] * n, timestamps_ms=range(now - n, now)
    )
    answer = fuzz.unary(t.channel, "SubmitHeartRateBatch", big, metadata, CALL_TIMEOUT_S)
    _check(t, f"oversized ({n} readings)", "SubmitHeartRateBatch", f"{n} readings", answer)
    if full:
        assert answer.code == Code.INVALID_ARGUMENT and "bpm" in answer.details, answer

    garbage = os.urandom((20 if full else 1) << 20)
    answer = fuzz.unary(t.channel, "SubmitHeartRate", garbage, metadata, CALL_TIMEOUT_S)
    _raw_check(t, "SubmitHeartRate", "oversized: random", garbage, answer)

    user = t.writers[1] if t.name == "off" else t.default_user  # jwt-valid: its token's sub
    padded = pb.HeartRateRequest(bpm=72, timestamp_ms=now, user_id=user)
    padded.metadata["blob"] = "x" * ((20 if full else 1) << 20)
    answer = fuzz.unary(t.channel, "SubmitHeartRate", padded, metadata, CALL_TIMEOUT_S)
    size = f"{len(padded.metadata['blob']) >> 20} MiB"
    _check(t, f"oversized ({size} reading)", "SubmitHeartRate", f"{size} map", answer)
    if answer.code == Code.OK:
        _record(t, "SubmitHeartRate", padded, answer.response)


_HEADER_XFAIL = pytest.mark.xfail(strict=True, raises=AssertionError, reason=HEADER_DEFECT)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param([("x-fuzz", "v" * 9_000)], id="9KB"),
        pytest.param([("x-fuzz", "v" * 20_000)], id="20KB"),
        pytest.param([("x-fuzz", "v" * 100_000)], id="100KB", marks=_HEADER_XFAIL),
        pytest.param([(f"x-fuzz-{i}", "v" * 200) for i in range(200)], id="200x200B"),
        pytest.param([("authorization", "Bearer " + "a" * 20_000)], id="20KB-authorization"),
    ],
)
def test_oversized_metadata(target: Target, header: list[tuple[str, str]]) -> None:
    """Large request metadata gets a status (OK or a clear one) and the service goes on."""
    t = target
    base = _one(t.metadata) or []
    if header[0][0] == "authorization":
        base = [kv for kv in base if kv[0] != "authorization"]
    request = pb.StatusRequest(user_id=t.writers[0])
    answer = fuzz.unary(t.channel, "GetHeartRateStatus", request, base + header, CALL_TIMEOUT_S)
    TALLY.add(t.name, f"metadata {sum(len(k) + len(v) for k, v in header)} B", "GetHeartRateStatus",
              answer.code)  # fmt: skip
    clear = t.allowed | {Code.RESOURCE_EXHAUSTED, Code.INVALID_ARGUMENT}
    if header[0][0] == "authorization" and t.name != "off":
        clear = clear | {Code.UNAUTHENTICATED}
    try:  # first, and not as an AssertionError: the xfail of a known defect must not hide it
        _assert_serving(t)
    except AssertionError as error:
        pytest.fail(f"not SERVING after {answer.code.name}: {error}")
    assert answer.code in clear, f"{answer.code.name} {answer.details!r}"


# --- 4. afterwards ----------------------------------------------------------------------------


def _assert_serving(t: Target) -> None:
    check = t.channel.unary_unary(
        fuzz.HEALTH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    resp = check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert t.service.process.poll() is None, t.service.log_tail()


def _stored(t: Target, user: str) -> tuple[int, dict[int, int]]:
    """(how many readings the store holds for user, its newest <= 1000 as ts -> bpm)."""
    zone = pb.ExerciseZoneRequest(
        user_id=user, max_hr_bpm=200, resting_bpm=60, zone_model=pb.ZONE_MODEL_PERCENT_HRMAX,
        stored_range=pb.StoredRange(from_timestamp_ms=0, to_timestamp_ms=fuzz.I64_MAX),
    )  # fmt: skip
    answer = fuzz.unary(t.channel, "CalculateExerciseZones", zone, t.read_metadata, 120.0)
    if answer.code == Code.INVALID_ARGUMENT and "no stored readings" in answer.details:
        count = 0
    else:
        assert answer.code == Code.OK, f"{user!r}: {answer.code.name} {answer.details}"
        count = answer.response.reading_count
    status = pb.StatusRequest(user_id=user, recent_count=1000)
    answer = fuzz.unary(t.channel, "GetHeartRateStatus", status, t.read_metadata, 60.0)
    assert answer.code == Code.OK, f"{user!r}: {answer.code.name} {answer.details}"
    return count, {m.timestamp_ms: m.bpm for m in answer.response.recent_measurements}


def test_zz_serving_and_store_holds_exactly_the_acknowledged_readings(target: Target) -> None:
    """SERVING, no replica died, and per user the store holds as many readings as were
    acknowledged as newly stored, among them every acknowledged timestamp with its bpm."""
    t = target
    print(f"\n--- statuses observed, target {t.name} ---")
    print("\n".join(TALLY.lines(t.name)))
    _assert_serving(t)
    after = _replica_pids(t.service)
    died = {d: sorted(t.pids[d] - after[d]) for d in DEPLOYMENTS if t.pids[d] - after[d]}
    assert not died, f"replica processes gone: {died}; now {after}"

    problems = list(t.ledger.problems)
    users = t.ledger.users()
    for user in users:
        count, newest = _stored(t, user)
        known = t.ledger.known.get(user, {})
        if user not in t.loose and count != t.ledger.new[user]:
            problems.append(f"{user!r}: {t.ledger.new[user]} acknowledged, {count} stored")
        floor = min(newest) if len(newest) >= 1000 else fuzz.I64_MIN
        for ts, bpm in known.items():
            if ts >= floor and ts not in newest:
                problems.append(f"{user!r}: acknowledged reading at {ts} not stored")
            elif ts in newest and bpm is not None and newest[ts] != bpm:
                problems.append(f"{user!r} {ts}: stored bpm {newest[ts]}, acknowledged {bpm}")
    print(f"ledger {t.name}: {len(users)} users, {sum(t.ledger.new.values())} readings acked")
    assert not problems, "\n".join(problems[:20])
