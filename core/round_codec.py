"""A validation round as flat bytes, for the hop between the ingress and the Validator.

Serve pickles a call's arguments and answer (cloudpickle). For a round of a few readings that
costs more than the validation: ~60 us for the four arrays and ~100 us for a ValidationOutput
(its dataclasses go through cloudpickle's class checks), on each side of the hop. Bytes pickle in
~3 us. Layout (native byte order, both ends run the same code):

  request: bpm int32[n] | ts_ms int64[n] | normal_low int32[n] | normal_high int32[n]  (20n bytes)
  answer:  six int64 rules fields | reason uint8[n] | classification uint8[n]         (48 + 2n)

The rules' retention_ms of None (keep forever) travels as -1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.batches import ValidationOutput
from heartrate_serve.core.validation import ValidationRules

REQUEST_BYTES_PER_READING = 20  # int32 + int64 + int32 + int32
_RULES_BYTES = 6 * 8
_NO_RETENTION = -1

Arrays = tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int32], NDArray[np.int32]]


def pack_request(
    bpm: NDArray[np.int32],
    ts_ms: NDArray[np.int64],
    normal_low: NDArray[np.int32],
    normal_high: NDArray[np.int32],
) -> bytes:
    """The round's four columns as one bytes object (ValueError when their lengths differ)."""
    n = len(bpm)
    if not len(ts_ms) == len(normal_low) == len(normal_high) == n:
        raise ValueError("bpm, ts_ms, normal_low and normal_high must have the same length")
    return b"".join(
        (
            np.ascontiguousarray(bpm, np.int32).tobytes(),
            np.ascontiguousarray(ts_ms, np.int64).tobytes(),
            np.ascontiguousarray(normal_low, np.int32).tobytes(),
            np.ascontiguousarray(normal_high, np.int32).tobytes(),
        )
    )


def unpack_request(payload: bytes) -> Arrays:
    """The four columns of a packed request (read-only views of payload)."""
    if len(payload) % REQUEST_BYTES_PER_READING:
        raise ValueError(
            f"a packed round is {REQUEST_BYTES_PER_READING} bytes per reading; got {len(payload)}"
        )
    n = len(payload) // REQUEST_BYTES_PER_READING
    bpm = np.frombuffer(payload, np.int32, n, 0)
    ts_ms = np.frombuffer(payload, np.int64, n, 4 * n)
    low = np.frombuffer(payload, np.int32, n, 12 * n)
    high = np.frombuffer(payload, np.int32, n, 16 * n)
    return bpm, ts_ms, low, high


def pack_output(out: ValidationOutput) -> bytes:
    """A ValidationOutput (with its rules) as one bytes object."""
    r = out.rules
    retention = _NO_RETENTION if r.retention_ms is None else r.retention_ms
    head = np.array(
        [
            r.valid_min_bpm,
            r.valid_max_bpm,
            r.normal_low_bpm,
            r.normal_high_bpm,
            r.max_future_ms,
            retention,
        ],
        np.int64,
    )
    return b"".join(
        (
            head.tobytes(),
            np.ascontiguousarray(out.reason, np.uint8).tobytes(),
            np.ascontiguousarray(out.classification, np.uint8).tobytes(),
        )
    )


def unpack_output(payload: bytes, rules_cache: ValidationRules | None = None) -> ValidationOutput:
    """The ValidationOutput of a packed answer. rules_cache: the last rules seen, returned as
    they are when the answer carries the same ones (no new object per call)."""
    body = len(payload) - _RULES_BYTES
    if body < 0 or body % 2:
        raise ValueError(f"a packed validation answer cannot be {len(payload)} bytes long")
    n = body // 2
    head = np.frombuffer(payload, np.int64, 6, 0).tolist()
    retention = None if head[5] == _NO_RETENTION else head[5]
    fields = (head[0], head[1], head[2], head[3], head[4], retention)
    rules = rules_cache
    if rules is None or fields != (
        rules.valid_min_bpm,
        rules.valid_max_bpm,
        rules.normal_low_bpm,
        rules.normal_high_bpm,
        rules.max_future_ms,
        rules.retention_ms,
    ):
        rules = ValidationRules(*fields)
    reason = np.frombuffer(payload, np.uint8, n, _RULES_BYTES)
    classification = np.frombuffer(payload, np.uint8, n, _RULES_BYTES + n)
    return ValidationOutput(reason, classification, rules)
