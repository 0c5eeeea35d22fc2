"""Hostile input for tests/e2e/test_fuzz.py: hypothesis strategies for every request message
(extreme ints, odd unicode user_ids, empty messages, repeated fields up to and past their
limits), raw request bodies (garbage, truncated, bit-flipped, hand-crafted wire errors),
crafted bearer tokens, the rule for which answers are clear, and the ledger of the readings
the service acknowledged as stored.

Timestamps that the service accepts are drawn well inside its windows (GUARD_PAST_MS before
"now" down to VALID_PAST_MS, or FUTURE_OK_MS ahead), so that no acknowledged reading can leave
the retention window during a run and no explicit timestamp can meet a server-stamped one
(timestamp 0 readings are stamped with the server clock, made unique per user).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from heartrate_serve.core.constants import USER_ID_PATTERN
from heartrate_serve.proto import heartrate_service_pb2 as pb

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
DAY_MS = 86_400_000
MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01, the oldest timestamp the service accepts
GUARD_PAST_MS = 2_000
VALID_PAST_MS = 20 * DAY_MS  # retention is 30 days
FUTURE_OK_MS = (120_000, 280_000)  # the service accepts up to 300 s ahead of its clock
BATCH_MAX = 100_000  # service/convert.py BATCH_MAX_READINGS
STAMPED_MAX = 64  # longest batch that may carry timestamp-0 readings (server stamps stay near now)
SERVICE = "/heartrate.HeartRateMonitor/"
HEALTH = "/grpc.health.v1.Health/Check"
_USER_RE = re.compile(USER_ID_PATTERN)

# Request and response types of every RPC; streams are the one method with a stream.
RPCS: dict[str, tuple[type[Message], type[Message]]] = {
    "SubmitHeartRate": (pb.HeartRateRequest, pb.HeartRateResponse),
    "StreamHeartRate": (pb.HeartRateRequest, pb.HeartRateResponse),
    "GetHeartRateStatus": (pb.StatusRequest, pb.StatusResponse),
    "CalculateExerciseZones": (pb.ExerciseZoneRequest, pb.ExerciseZoneResponse),
    "SubmitHeartRateBatch": (pb.HeartRateBatchRequest, pb.HeartRateBatchResponse),
    "SetUserProfile": (pb.SetUserProfileRequest, pb.SetUserProfileResponse),
    "GetUserProfile": (pb.GetUserProfileRequest, pb.GetUserProfileResponse),
}
UNARY = [name for name in RPCS if name != "StreamHeartRate"]


def now_ms() -> int:
    """The wall clock, Unix milliseconds (the service runs on the same host)."""
    return time.time_ns() // 1_000_000


class Clock:
    """The "now" strategies draw timestamps around, frozen per test (freeze() at its start):
    hypothesis replays an example to shrink it, so a strategy must not read the wall clock."""

    now = now_ms()

    @classmethod
    def freeze(cls) -> int:
        cls.now = now_ms()
        return cls.now


# --- numbers ----------------------------------------------------------------------------------

_I32_EDGES = [0, 1, -1, I32_MIN, I32_MAX, I32_MIN + 1, I32_MAX - 1, 2**15, -(2**15), 2**16]
_I64_EDGES = [0, 1, -1, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1, 2**62, -(2**62), 2**53]


def int32s() -> st.SearchStrategy[int]:
    """Any int32, edges often."""
    return st.one_of(st.sampled_from(_I32_EDGES), st.integers(I32_MIN, I32_MAX))


def int64s() -> st.SearchStrategy[int]:
    """Any int64, edges often."""
    return st.one_of(st.sampled_from(_I64_EDGES), st.integers(I64_MIN, I64_MAX))


def bpms() -> st.SearchStrategy[int]:
    """Heart rates: valid (40-180) half the time, band edges, and any int32."""
    return st.one_of(
        st.integers(40, 180),
        st.sampled_from([39, 40, 49, 50, 150, 151, 180, 181, 0, 255, 300]),
        int32s(),
    )


def small_enums() -> st.SearchStrategy[int]:
    """Enum fields: known values, just past them, and any int32 (proto3 enums are open)."""
    return st.one_of(st.integers(0, 5), int32s())


def wrap_seconds(target_ms: int) -> int:
    """Unix seconds whose value x 1000 wraps around int64 onto target_ms (rounded to a
    multiple of 8, and never a multiple of 1000 so the plain quotient is not the answer): far
    in the future as sent, but "now" after an unchecked int64 multiplication."""
    t = target_ms - target_ms % 8
    if t % 1000 == 0:
        t -= 8
    return (t // 8) * pow(125, -1, 2**61) % 2**61


@st.composite
def timestamps_ms(draw: st.DrawFn, zero: bool = True) -> int:
    """A Unix-milliseconds value: 0 (now), accepted past or near future, too old, too far
    ahead, before 2000, int64 edges, anything."""
    kinds = ["past", "future_ok", "future_bad", "old", "edge", "any"] + (["zero"] if zero else [])
    kind = draw(st.sampled_from(kinds))
    now = Clock.now
    if kind == "zero":
        return 0
    if kind == "past":
        return now - draw(st.integers(GUARD_PAST_MS, VALID_PAST_MS))
    if kind == "future_ok":
        return now + draw(st.integers(*FUTURE_OK_MS))
    if kind == "future_bad":
        return now + draw(st.integers(400_000, 10_000 * 365 * DAY_MS))
    if kind == "old":
        return now - draw(st.integers(35 * DAY_MS, now - MIN_TIMESTAMP_MS + 10 * 365 * DAY_MS))
    if kind == "edge":
        return draw(st.sampled_from([*_I64_EDGES, MIN_TIMESTAMP_MS - 1, MIN_TIMESTAMP_MS]))
    return draw(st.integers(I64_MIN, I64_MAX))


@st.composite
def timestamps_s(draw: st.DrawFn, zero: bool = True) -> int:
    """A Unix-seconds value, the same kinds as timestamps_ms, plus seconds that wrap around
    int64 onto now when multiplied by 1000."""
    if draw(st.integers(0, 9)) == 0:
        return wrap_seconds(Clock.now - draw(st.integers(10_000, 100_000)))
    ms = draw(timestamps_ms(zero))
    if abs(ms) > 10**15:  # edges and garbage: as they are, in seconds
        return ms
    return ms // 1000 if ms >= 0 else -((-ms) // 1000)


@st.composite
def timestamp_pairs(draw: st.DrawFn) -> tuple[int, int]:
    """(timestamp seconds, timestamp_ms) as a client may send them: one, the other, both, none."""
    which = draw(st.sampled_from(["s", "ms", "both", "none"]))
    s = draw(timestamps_s()) if which in ("s", "both") else 0
    ms = draw(timestamps_ms()) if which in ("ms", "both") else 0
    return s, ms


# --- user ids ---------------------------------------------------------------------------------

ODD_VALID_IDS = [".", "-", ":", "@", "_", "a" * 128, "0", "x.y:z@w-v_u"]  # not "default"
ODD_INVALID_IDS = [
    "a" * 129, "bad user", "ü", "用户", "\x00", "a\nb", "{x}", "*", "🫀" * 10, "../../etc",
    "default\n", " ", "a\u200bb", "\ufeff", "tab\t", "a" * 10_000, "%s%n", "${jndi:x}",
]  # fmt: skip


def invalid_user_ids() -> st.SearchStrategy[str]:
    """user_ids the service must refuse: odd unicode, control characters, too long, empty-ish."""
    text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=160)
    return st.one_of(st.sampled_from(ODD_INVALID_IDS), text.filter(lambda s: not is_valid_id(s)))


def is_valid_id(user_id: str) -> bool:
    """True when the service accepts user_id as a (non-default) user."""
    return _USER_RE.fullmatch(user_id) is not None


def user_ids(writable: Sequence[str], extra_valid: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Mostly the tracked users, else odd valid ids and invalid ones."""
    return st.one_of(
        st.sampled_from(list(writable)),
        st.sampled_from(list(writable) + list(extra_valid) + ODD_VALID_IDS),
        invalid_user_ids(),
    )


# --- request messages -------------------------------------------------------------------------


def metadata_maps() -> st.SearchStrategy[dict[str, str]]:
    """HeartRateRequest.metadata: empty, a few odd entries, or one large entry."""
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    return st.one_of(
        st.just({}),
        st.dictionaries(text, text, max_size=5),
        st.integers(1, 300_000).map(lambda n: {"blob": "x" * n}),
    )


@st.composite
def heart_rate_requests(draw: st.DrawFn, users: st.SearchStrategy[str]) -> pb.HeartRateRequest:
    """One reading: any bpm, any timestamps, any user, sometimes client metadata."""
    s, ms = draw(timestamp_pairs())
    req = pb.HeartRateRequest(bpm=draw(bpms()), timestamp=s, timestamp_ms=ms, user_id=draw(users))
    if draw(st.integers(0, 4)) == 0:
        req.metadata.update(draw(metadata_maps()))
    return req


def status_requests(users: st.SearchStrategy[str]) -> st.SearchStrategy[pb.StatusRequest]:
    """recent_count anywhere in int32 (negative, 0, capped), any user."""
    counts = st.one_of(st.sampled_from([0, 1, 10, 999, 1000, 1001, -1]), int32s())
    return st.builds(lambda n, u: pb.StatusRequest(recent_count=n, user_id=u), counts, users)


def _lengths(big: Sequence[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 40), st.sampled_from(list(big)))


def _bpm_column(draw: st.DrawFn, n: int) -> list[int]:
    if n <= 40:
        return draw(st.lists(bpms(), min_size=n, max_size=n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["valid", "any", "edges"]))
    if kind == "valid":
        col = rng.integers(40, 181, n)
    elif kind == "any":
        col = rng.integers(I32_MIN, I32_MAX, n, endpoint=True)
    else:
        col = rng.choice(np.array(_I32_EDGES + [40, 180], dtype=np.int64), n)
    return [int(v) for v in col.tolist()]


def _ts_column(draw: st.DrawFn, n: int, unit_s: bool, zero: bool) -> list[int]:
    """n timestamps in ms (or s): element-wise drawn when short, else a pattern."""
    one = timestamps_s(zero) if unit_s else timestamps_ms(zero)
    if n <= 40:
        return draw(st.lists(one, min_size=n, max_size=n))
    kind = draw(st.sampled_from(["spread", "same", "any"]))
    now = Clock.now
    if kind == "same":
        return [draw(one)] * n
    if kind == "any":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return [int(v) for v in rng.integers(I64_MIN, I64_MAX, n, endpoint=True).tolist()]
    step = 1000 if unit_s else draw(st.sampled_from([1, 7, 1000]))
    newest = now - GUARD_PAST_MS - draw(st.integers(0, DAY_MS))
    ms = [newest - i * step for i in range(n)]
    return [t // 1000 for t in ms] if unit_s else ms


@st.composite
def batch_requests(
    draw: st.DrawFn, users: st.SearchStrategy[str], big: Sequence[int] = (BATCH_MAX,)
) -> pb.HeartRateBatchRequest:
    """A columnar batch: 0-40 readings drawn one by one or a long patterned one (up to and past
    the 100 000-reading limit); timestamps in ms, in s, both, neither, or of another length."""
    n = draw(_lengths(big))
    zero = n <= STAMPED_MAX
    req = pb.HeartRateBatchRequest(user_id=draw(users), bpm=_bpm_column(draw, n))
    layout = draw(st.sampled_from(["ms", "s", "both", "none", "short", "long"]))
    if layout in ("ms", "both", "short", "long"):
        m = n + {"short": -1, "long": 1}.get(layout, 0)
        req.timestamps_ms.extend(_ts_column(draw, max(m, 0), False, zero))
    if layout in ("s", "both"):
        req.timestamps.extend(_ts_column(draw, n, True, zero))
    return req


@st.composite
def zone_requests(
    draw: st.DrawFn, users: st.SearchStrategy[str], big: Sequence[int] = (150_001,)
) -> pb.ExerciseZoneRequest:
    """A zone request with any parameters over sent readings (measurements or columns, any
    timestamps) or a stored range; or, half the time, a plausible one."""
    if draw(st.integers(0, 2)):
        return draw(plausible_zone_requests(users, big))
    fields: dict[str, Any] = dict(  # enums as any int32: proto3 enums are open
        age=draw(st.one_of(st.integers(0, 130), int32s())),
        user_id=draw(users),
        zone_model=draw(small_enums()),
        hr_max_formula=draw(small_enums()),
        max_hr_bpm=draw(st.one_of(st.sampled_from([0, 0, 150, 200]), int32s())),
        resting_bpm=draw(st.one_of(st.sampled_from([0, 0, 60]), int32s())),
        sex=draw(small_enums()),
        session_end_timestamp=draw(st.one_of(st.just(0), timestamps_s())),
        session_end_timestamp_ms=draw(st.one_of(st.just(0), timestamps_ms())),
    )
    req = pb.ExerciseZoneRequest(**fields)
    lows = draw(
        st.one_of(
            st.just([]),
            st.lists(st.one_of(st.integers(30, 250), int32s()), max_size=12),
            st.sampled_from([11, 1000, 100_000]).map(lambda n: list(range(1, n + 1))),
        )
    )
    req.custom_zone_lower_bpm.extend(lows)
    gap = draw(st.one_of(st.none(), st.sampled_from([0, 30]), int32s()))
    if gap is not None:
        req.max_gap_seconds = gap
    source = draw(st.sampled_from(["measurements", "columns_ms", "columns_s", "range", "none"]))
    if source == "range":
        req.stored_range.from_timestamp_ms = draw(st.one_of(st.just(0), timestamps_ms()))
        req.stored_range.to_timestamp_ms = draw(st.one_of(st.just(I64_MAX), timestamps_ms()))
    elif source == "measurements":
        for _ in range(draw(st.integers(0, 30))):
            s, ms = draw(timestamp_pairs())
            req.measurements.add(bpm=draw(bpms()), timestamp=s, timestamp_ms=ms)
    elif source.startswith("columns"):
        n = draw(_lengths(big))
        req.bpm.extend(_bpm_column(draw, n))
        ts = _ts_column(draw, n + draw(st.sampled_from([0, 0, 0, -1, 1])), False, True)
        target = req.timestamps if source == "columns_s" else req.timestamps_ms
        target.extend([t // 1000 for t in ts] if source == "columns_s" else ts)
    return req


@st.composite
def plausible_zone_requests(
    draw: st.DrawFn, users: st.SearchStrategy[str], big: Sequence[int] = (150_001,)
) -> pb.ExerciseZoneRequest:
    """A zone request a device could send: parameters in range, readings a second apart."""
    model = draw(st.integers(0, 3))
    user = draw(users)
    fields: dict[str, Any] = dict(
        age=draw(st.integers(0, 120)),
        user_id=user if is_valid_id(user) else "",
        zone_model=model,
        hr_max_formula=draw(st.integers(0, 4)),
        max_hr_bpm=draw(st.one_of(st.just(0), st.integers(120, 230))),
        resting_bpm=draw(st.one_of(st.just(0), st.integers(35, 90))),
        sex=draw(st.integers(0, 2)),
    )
    req = pb.ExerciseZoneRequest(**fields)
    if model == 3 or draw(st.booleans()):
        lows = draw(st.lists(st.integers(60, 220), min_size=1, max_size=10, unique=True))
        req.custom_zone_lower_bpm.extend(sorted(lows))
    if draw(st.booleans()):
        req.max_gap_seconds = draw(st.integers(0, 600))
    if draw(st.integers(0, 4)) == 0:
        req.stored_range.from_timestamp_ms = Clock.now - draw(st.integers(0, VALID_PAST_MS))
        req.stored_range.to_timestamp_ms = Clock.now + 300_000
        return req
    n = draw(st.one_of(st.integers(1, 40), st.sampled_from(list(big))))
    step = draw(st.sampled_from([250, 1000, 5000]))
    start = Clock.now - n * step - draw(st.integers(0, DAY_MS))
    req.bpm.extend(_bpm_column(draw, n))
    req.timestamps_ms.extend(range(start, start + n * step, step))
    if draw(st.booleans()):
        req.session_end_timestamp_ms = start + n * step + draw(st.integers(0, 60_000))
    return req


@st.composite
def profiles(draw: st.DrawFn, users: st.SearchStrategy[str]) -> pb.SetUserProfileRequest:
    """A profile with every field near its range, at int32 edges, or anything."""

    def near(lo: int, hi: int) -> st.SearchStrategy[int]:
        return st.one_of(st.just(0), st.integers(lo - 5, hi + 5), int32s())

    lows = draw(
        st.one_of(
            st.just([]),
            st.lists(st.integers(25, 255), max_size=12),
            st.lists(int32s(), max_size=12),
            st.just(list(range(30, 30 + 50_000))),
        )
    )
    fields: dict[str, Any] = dict(  # enums as any int32: proto3 enums are open
        user_id=draw(users),
        age=draw(near(1, 120)),
        sex=draw(small_enums()),
        resting_bpm=draw(near(25, 120)),
        max_hr_bpm=draw(near(100, 250)),
        zone_model=draw(small_enums()),
        hr_max_formula=draw(small_enums()),
        normal_low_bpm=draw(near(40, 180)),
        normal_high_bpm=draw(near(40, 180)),
        custom_zone_lower_bpm=lows,
    )
    profile = pb.UserProfile(**fields)
    if draw(st.integers(0, 9)) == 0:
        return pb.SetUserProfileRequest()  # no profile at all
    return pb.SetUserProfileRequest(profile=profile)


def get_profile_requests(users: st.SearchStrategy[str]) -> st.SearchStrategy[Message]:
    return st.builds(lambda u: pb.GetUserProfileRequest(user_id=u), users)


def requests_for(
    rpc: str, users: st.SearchStrategy[str], read_users: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    """The request strategy of a unary RPC (writes to `users`, reads of `read_users`)."""
    if rpc == "SubmitHeartRate":
        return heart_rate_requests(users)
    if rpc == "GetHeartRateStatus":
        return status_requests(read_users)
    if rpc == "CalculateExerciseZones":
        return zone_requests(read_users)
    if rpc == "SubmitHeartRateBatch":
        return batch_requests(users)
    if rpc == "SetUserProfile":
        return profiles(users)
    if rpc == "GetUserProfile":
        return get_profile_requests(read_users)
    raise KeyError(rpc)


# --- raw bodies -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


CRAFTED: dict[str, bytes] = {
    "empty": b"",
    "overlong varint tag": b"\xff" * 11,
    "overlong varint value": _tag(1, 0) + b"\xff" * 10 + b"\x01",
    "length past the end": _tag(1, 2) + b"\xff\xff\xff\xff\x0f" + b"abc",
    "invalid utf-8 in field 1": _tag(1, 2) + b"\x03\xff\xfe\xfd",
    "invalid utf-8 in field 2": _tag(2, 2) + b"\x03\xc3\x28\xa0",
    "invalid utf-8 in field 3": _tag(3, 2) + b"\x02\xed\xa0",
    "invalid utf-8 in field 4": _tag(4, 2) + b"\x04\xf0\x28\x8c\x28",
    "field number 0": b"\x00\x01",
    "wire type 6": _tag(1, 6) + b"\x00",
    "wire type 7": _tag(5, 7) + b"\x00",
    "end group without start": _tag(7, 4),
    "groups nested 150 deep": _tag(99, 3) * 150 + _tag(99, 4) * 150,
    "packed field cut short": _tag(2, 2) + b"\x05\x01\x02",
    "fixed64 cut short": _tag(9, 1) + b"\x01\x02",
    "nested message cut short": _tag(15, 2) + b"\x05" + _tag(1, 0),
    "unknown field, 1 MiB": _tag(500, 2) + _varint(1 << 20) + b"\x00" * (1 << 20),
    "1 MiB of 0xff": b"\xff" * (1 << 20),
}


@st.composite
def raw_bodies(draw: st.DrawFn, valid: st.SearchStrategy[Message]) -> tuple[str, bytes]:
    """(kind, body): random bytes, a valid message cut short or with one byte flipped, a valid
    message followed by garbage, or a hand-crafted wire error."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "appended", "crafted"]))
    if kind == "random":
        return kind, draw(st.binary(max_size=600))
    if kind == "crafted":
        name = draw(st.sampled_from(sorted(CRAFTED)))
        return f"crafted: {name}", CRAFTED[name]
    body = draw(valid).SerializeToString()
    if kind == "appended":
        return kind, body + draw(st.binary(min_size=1, max_size=64))
    if not body:
        return "random", draw(st.binary(min_size=1, max_size=64))
    i = draw(st.integers(0, len(body) - 1))
    if kind == "truncated":
        return kind, body[:i]
    flip = draw(st.integers(1, 255))
    return kind, body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]


def decodes(kind: type[Message], body: bytes) -> Message | None:
    """body parsed as kind, None when it is not a valid message of that type."""
    try:
        return kind.FromString(body)
    except (DecodeError, RuntimeError, ValueError):
        return None


# --- bearer tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict[str, Any], claims: Any, signature: bytes = b"sig") -> str:
    return ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature))
    )


def crafted_tokens(
    sub: str, issue: Callable[..., str], foreign_issue: Callable[..., str]
) -> dict[str, str]:
    """`authorization` values that must all be refused: each named for the report."""
    later = int(time.time()) + 3600
    claims = {"sub": sub, "scope": "heartrate:admin", "exp": later}
    good = issue(user=sub, scopes=["heartrate:admin"])
    head, body, sig = good.split(".")
    return {
        "empty": "",
        "Bearer alone": "Bearer",
        "Bearer and spaces": "Bearer    ",
        "Basic scheme": "Basic " + _b64(b"admin:admin"),
        "token without scheme": good,
        "alg none": "Bearer " + _jwt({"alg": "none", "typ": "JWT"}, claims, b""),
        "alg none, no signature part": "Bearer " + _jwt({"alg": "none"}, claims)[:-4],
        "HS256 claimed": "Bearer " + _jwt({"alg": "HS256", "typ": "JWT"}, claims),
        "unknown kid": "Bearer " + _jwt({"alg": "ES256", "kid": "nope"}, claims),
        "kid not a string": "Bearer " + _jwt({"alg": "ES256", "kid": {"a": 1}}, claims),
        "header not an object": "Bearer " + _b64(b"[1,2]") + "." + body + "." + sig,
        "header not json": "Bearer " + _b64(b"\xff\xfe") + "." + body + "." + sig,
        "claims not json": "Bearer " + head + "." + _b64(b"{{{") + "." + sig,
        "claims a list": "Bearer " + head + "." + _b64(b"[]") + "." + sig,
        "signature flipped": "Bearer " + head + "." + body + "." + sig[::-1],
        "signature cut": "Bearer " + good[: len(good) - 10],
        "claims swapped in": "Bearer " + head + "." + _b64(json.dumps(claims).encode()) + "." + sig,
        "signed by another key": "Bearer " + foreign_issue(user=sub, scopes=["heartrate:admin"]),
        "expired": "Bearer " + issue(user=sub, scopes=["heartrate:admin"], ttl_s=-3600),
        "not a jwt": "Bearer not-a-jwt",
        "four parts": "Bearer a.b.c.d",
        "9 KB token": "Bearer " + "a" * 9000,
        "non-ascii escaped": "Bearer %C3%BC.%00.%FF",
    }


def garbage_authorizations() -> st.SearchStrategy[str]:
    """Printable-ASCII authorization values (what may legally travel in gRPC metadata)."""
    printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    text = st.text(printable, max_size=300)
    jwtish = st.lists(
        st.text(st.sampled_from("ABCxyz019-_=."), max_size=60), min_size=3, max_size=3
    )
    return st.one_of(
        text,
        text.map(lambda t: "Bearer " + t),
        jwtish.map(lambda parts: "Bearer " + ".".join(parts)),
    )


# --- answers ----------------------------------------------------------------------------------


def field_names(descriptor: Any, seen: set[str] | None = None) -> set[str]:
    """Every field name of a message type and of the message types it contains."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    if descriptor.full_name in seen:
        return names
    seen.add(descriptor.full_name)
    for f in descriptor.fields:
        names.add(f.name)
        if f.message_type is not None and not f.message_type.GetOptions().map_entry:
            names |= field_names(f.message_type, seen)
    return names


def names_a_field(details: str, request_type: type[Message]) -> bool:
    """True when details name a field of the request (as a whole word; case-insensitive, since
    the replaced service's texts start with a capital, e.g. "Age must be a positive integer")."""
    return any(
        re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", details, re.IGNORECASE)
        for name in field_names(request_type.DESCRIPTOR)
    )


@dataclass(frozen=True)
class Answer:
    """What one call got back: a status code and its details, the response when OK."""

    code: grpc.StatusCode
    details: str
    response: Any = None


def unary(
    channel: grpc.Channel,
    rpc: str,
    request: Message | bytes,
    metadata: Sequence[tuple[str, str]] | None,
    timeout_s: float,
) -> Answer:
    """One unary call (a message, or raw bytes sent as they are); never raises for a status."""
    raw = isinstance(request, bytes)
    call: Any = channel.unary_unary(
        SERVICE + rpc,
        request_serializer=None if raw else type(request).SerializeToString,
        response_deserializer=None if raw else RPCS[rpc][1].FromString,
    )
    try:
        response = call(request, metadata=metadata, timeout=timeout_s)
    except grpc.RpcError as error:
        return Answer(error.code(), error.details() or "")  # type: ignore[attr-defined]
    if raw:
        response = RPCS[rpc][1].FromString(response)
    return Answer(grpc.StatusCode.OK, "", response)


def stream(
    channel: grpc.Channel,
    requests: Iterable[Message | bytes],
    metadata: Sequence[tuple[str, str]] | None,
    timeout_s: float,
    raw: bool = False,
) -> tuple[Answer, list[pb.HeartRateResponse]]:
    """A StreamHeartRate call: its final status and every answer that came back."""
    call: Any = channel.stream_stream(
        SERVICE + "StreamHeartRate",
        request_serializer=None if raw else pb.HeartRateRequest.SerializeToString,
        response_deserializer=pb.HeartRateResponse.FromString,
    )
    got: list[pb.HeartRateResponse] = []
    try:
        for response in call(iter(requests), metadata=metadata, timeout=timeout_s):
            got.append(response)
    except grpc.RpcError as error:
        return Answer(error.code(), error.details() or ""), got  # type: ignore[attr-defined]
    return Answer(grpc.StatusCode.OK, ""), got


@dataclass
class Tally:
    """Statuses seen, per (target, kind of input, RPC, status); printed for the report."""

    counts: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)

    def add(self, target: str, kind: str, rpc: str, code: grpc.StatusCode) -> None:
        self.counts[(target, kind, rpc, code.name)] += 1

    def lines(self, target: str) -> list[str]:
        rows = sorted((k, n) for k, n in self.counts.items() if k[0] == target)
        return [f"{t:12} {kind:28} {rpc:24} {code:20} {n}" for (t, kind, rpc, code), n in rows]


# --- the ledger of acknowledged readings ------------------------------------------------------


def resolved_ms(timestamp_s: int, timestamp_ms: int) -> int | None:
    """The timestamp a reading is stored under, as the contract says (None: server-stamped)."""
    if timestamp_ms:
        return timestamp_ms
    if timestamp_s:
        return timestamp_s * 1000
    return None


@dataclass
class Ledger:
    """Per user: how many readings the service acknowledged as newly stored, and the timestamp
    (with bpm, when it is certain) of each one whose timestamp the client knows."""

    new: Counter[str] = field(default_factory=Counter)
    known: dict[str, dict[int, int | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def reading(
        self, user: str, request: pb.HeartRateRequest, response: pb.HeartRateResponse
    ) -> None:
        """Records one answered reading (unary or stream)."""
        if not response.success:
            if not response.reject_reason or not response.error:
                self.problems.append(f"rejected without reason/error: {response}")
            return
        expected = resolved_ms(request.timestamp, request.timestamp_ms)
        if expected is not None and response.timestamp_ms != expected:
            self.problems.append(
                f"reading {request.timestamp=} {request.timestamp_ms=} acknowledged under "
                f"timestamp_ms {response.timestamp_ms} (user {user!r})"
            )
        if response.duplicate:
            self.known.setdefault(user, {}).setdefault(response.timestamp_ms, None)
            return
        self.new[user] += 1
        known = self.known.setdefault(user, {})
        if response.timestamp_ms in known:
            self.problems.append(f"{user!r} {response.timestamp_ms}: stored twice as new")
        known[response.timestamp_ms] = request.bpm

    def batch(
        self, user: str, request: pb.HeartRateBatchRequest, response: pb.HeartRateBatchResponse
    ) -> None:
        """Records an answered batch: accepted readings are new; every non-rejected reading
        with a client-known timestamp is stored (its bpm when the batch proves it new)."""
        n = len(request.bpm)
        rejected = {r.index for r in response.results if not r.success}
        if response.accepted + response.rejected + response.duplicate != n:
            self.problems.append(f"batch of {n}: counts {response.accepted=} "
                                 f"{response.rejected=} {response.duplicate=}")  # fmt: skip
        if len(rejected) != response.rejected:
            self.problems.append(f"batch: {response.rejected} rejected, results {len(rejected)}")
        self.new[user] += response.accepted
        column = request.timestamps_ms if len(request.timestamps_ms) else request.timestamps
        scale = 1 if len(request.timestamps_ms) else 1000
        known = self.known.setdefault(user, {})
        fresh: dict[int, int] = {}
        stamped = 0
        for i in range(n):
            if i in rejected:
                continue
            ts = column[i] * scale
            if ts == 0:
                stamped += 1
            elif ts not in known and ts not in fresh:
                fresh[ts] = request.bpm[i]
        # When the never-seen timestamps and the server-stamped readings account for all the
        # accepted ones, each of those is new with the bpm sent; else (one met a reading whose
        # timestamp the client never learnt) they are only known to be stored.
        exact = len(fresh) + stamped == response.accepted
        for ts, bpm in fresh.items():
            known[ts] = bpm if exact else None

    def users(self) -> list[str]:
        return sorted(set(self.new) | set(self.known))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]
