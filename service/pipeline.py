"""The reading pipeline: group-committed, pipelined validation and storage of readings.

Readings from every concurrent unary call, stream and batch join one GroupCommit queue. Each round
is validated by the validator port (one call per part of at most `max_readings_per_call`
readings, parts split by caller and sent at once), then written to Redis in one script call while
the next round is being validated; the answers are split back per caller. Rounds wait briefly
for callers still on their way back when the validator port asks for it (round_linger_s: a
deployment hop costs the same for 1 reading or 15). A part whose validation failed answers its
own callers with that error; the rest of the round is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.core.batches import ValidationOutput
from heartrate_serve.core.constants import RejectReason
from heartrate_serve.core.errors import StoreUnavailable
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.service.bands import ProfileBands
from heartrate_serve.service.group_commit import GroupCommit
from heartrate_serve.service.metrics import current
from heartrate_serve.service.ports import StorePort, ValidatorPort

# Readings per round: bounds one round's memory and the Redis script calls it turns into.
ROUND_MAX_READINGS = 200_000
# One round is validated while the one before it is written. Measured here (2026-11-30, 16 streams
# acking each reading): 1 validating + 1 writing gave 712 msg/s; 2+3 and 3+4 gave 554 and 535
# (more, smaller rounds: a Validator hop costs ~1.7 ms CPU in the Validator replica plus the
# ingress's side of the call); 1 open round, no overlap, gave 640.
MAX_OPEN_ROUNDS = 2
MAX_VALIDATING_ROUNDS = 1


@dataclass(frozen=True)
class ReadingBatch:
    """Readings of one user from one call (a unary call or stream message is a batch of one)."""

    user_id: str
    bpm: NDArray[np.int32]
    ts_ms: NDArray[np.int64]


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to each reading of a ReadingBatch, in its order."""

    reason: NDArray[np.uint8]
    classification: NDArray[np.uint8]
    duplicate: NDArray[np.bool_]
    # The user's (alert type, since_ms) after the batch; None when nothing reached the store.
    alert: tuple[int, int] | None
    store_down: bool
    # The rules the readings were validated under (for reject messages).
    rules: ValidationRules


# One round after validation: the clock it was validated at and, per caller, its validation or
# the error of the part it was in.
Validated = tuple[int, list[ValidationOutput | BaseException]]


class ReadingPipeline:
    """Validates (validator port) and stores (store port) readings in pipelined rounds."""

    def __init__(
        self,
        store: StorePort,
        validator: ValidatorPort,
        bands: ProfileBands,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        max_round_readings: int = ROUND_MAX_READINGS,
    ) -> None:
        self._store = store
        self._validator = validator
        self._bands = bands
        self._clock_ms = clock_ms
        self.commit: GroupCommit[ReadingBatch, Validated, BatchOutcome] = GroupCommit(
            self._validate,
            self._write,
            weight=lambda batch: len(batch.bpm),
            max_weight=max_round_readings,
            max_rounds=MAX_OPEN_ROUNDS,
            max_preparing=MAX_VALIDATING_ROUNDS,
            on_round=lambda callers, readings: current().batch(callers, readings),
            linger_s=validator.round_linger_s,
        )

    async def submit(self, batch: ReadingBatch, rpc: str = "other") -> BatchOutcome:
        """Validates and stores one caller's readings together with everyone else's; raises
        DependencyUnavailable when its part of the round could not be validated."""
        out = await self.commit.submit(batch)
        current().outcome(rpc, out.reason, out.duplicate)  # counted per RPC
        return out

    async def _validate(self, items: Sequence[ReadingBatch]) -> Validated:
        """Stage 1: the round's parts validated at once (one validator call per part)."""
        now_ms = self._clock_ms()
        try:
            bands = await self._bands.bands([it.user_id for it in items])
        except StoreUnavailable as error:
            return now_ms, [error] * len(items)
        parts = split_by_weight(
            [len(it.bpm) for it in items], self._validator.max_readings_per_call
        )
        calls = [self._validate_part([items[i] for i in part], bands, now_ms) for part in parts]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        per_item: list[ValidationOutput | BaseException] = [ValueError("unset")] * len(items)
        for part, answer in zip(parts, answers, strict=True):
            for k, i in enumerate(part):
                per_item[i] = answer if isinstance(answer, BaseException) else answer[k]
        return now_ms, per_item

    async def _validate_part(
        self, items: Sequence[ReadingBatch], bands: dict[str, tuple[int, int]], now_ms: int
    ) -> list[ValidationOutput]:
        """One validator call for consecutive callers; their outputs, split back per caller."""
        sizes = [len(it.bpm) for it in items]
        lows = np.repeat(np.array([bands[it.user_id][0] for it in items], np.int32), sizes)
        highs = np.repeat(np.array([bands[it.user_id][1] for it in items], np.int32), sizes)
        out = await self._validator.validate(
            np.concatenate([it.bpm for it in items]).astype(np.int32, copy=False),
            np.concatenate([it.ts_ms for it in items]).astype(np.int64, copy=False),
            now_ms,
            lows,
            highs,
        )
        bounds = np.cumsum([0, *sizes]).tolist()
        return [
            ValidationOutput(out.reason[lo:hi], out.classification[lo:hi], out.rules)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    async def _write(
        self, items: Sequence[ReadingBatch], validated: Validated
    ) -> list[BatchOutcome | BaseException]:
        """Stage 2: the validated readings of the round in one store write, split per caller."""
        now_ms, per_item = validated
        ok = [i for i, v in enumerate(per_item) if isinstance(v, ValidationOutput)]
        outs: list[ValidationOutput] = [per_item[i] for i in ok]  # type: ignore[misc]
        written = _Written(np.zeros(0, np.bool_), {}, False)
        n_valid: list[int] = []
        if ok:
            # Whole-round arrays, masked once (rounds of many one-reading callers: no numpy
            # call per caller).
            valid = np.concatenate([v.reason for v in outs]) == 0
            sizes = np.array([len(v.reason) for v in outs], np.int64)
            ends = np.cumsum(sizes)
            valid_before = np.zeros(len(valid) + 1, np.int64)
            np.cumsum(valid, out=valid_before[1:])
            n_valid = (valid_before[ends] - valid_before[ends - sizes]).tolist()
            users: list[str] = []
            for i, k in zip(ok, n_valid, strict=True):
                users += [items[i].user_id] * k
            if users:
                written = await self._store_round(
                    users,
                    np.concatenate([items[i].ts_ms for i in ok])[valid],
                    np.concatenate([items[i].bpm for i in ok])[valid],
                    np.concatenate([v.classification for v in outs])[valid],
                    now_ms,
                )
        results: list[BatchOutcome | BaseException] = list(per_item)  # type: ignore[arg-type]
        cursor = 0
        for i, v, k in zip(ok, outs, n_valid, strict=True):
            results[i] = _outcome(items[i], v, written, cursor, k)
            cursor += k
        return results

    async def _store_round(
        self,
        users: list[str],
        ts_ms: NDArray[np.int64],
        bpm: NDArray[np.int32],
        classification: NDArray[np.uint8],
        now_ms: int,
    ) -> _Written:
        """One store write of the round's valid readings; what it answered."""
        try:
            result = await self._store.write_batch(users, ts_ms, bpm, classification, now_ms)
        except StoreUnavailable:
            return _Written(np.zeros(len(users), np.bool_), {}, True)
        current().alerts(result.events, result.alerts)
        return _Written(result.duplicate, result.alerts, False)


@dataclass(frozen=True)
class _Written:
    """A round's store write: duplicates among the valid readings, alerts, Redis down or not."""

    duplicate: NDArray[np.bool_]
    alerts: dict[str, tuple[int, int]]
    store_down: bool


def _outcome(
    item: ReadingBatch, v: ValidationOutput, written: _Written, start: int, n_valid: int
) -> BatchOutcome:
    """One caller's outcome: its validation, and its valid readings' part of the write."""
    alert = None if written.store_down else written.alerts.get(item.user_id)
    if len(v.reason) == 1:  # a unary call or stream message: slices, no masks
        stored = n_valid == 1 and not written.store_down
        return BatchOutcome(
            _STORE_UNAVAILABLE if n_valid and written.store_down else v.reason,
            v.classification,
            written.duplicate[start : start + 1] if stored else _NOT_DUPLICATE,
            alert,
            written.store_down and n_valid > 0,
            v.rules,
        )
    valid = v.reason == 0
    reason = v.reason.copy()
    duplicate = np.zeros(len(reason), dtype=np.bool_)
    if written.store_down:
        reason[valid] = RejectReason.STORE_UNAVAILABLE
    else:
        duplicate[valid] = written.duplicate[start : start + n_valid]
    return BatchOutcome(
        reason, v.classification, duplicate, alert, written.store_down and n_valid > 0, v.rules
    )


_STORE_UNAVAILABLE = np.array([RejectReason.STORE_UNAVAILABLE], np.uint8)
_NOT_DUPLICATE = np.zeros(1, np.bool_)
_STORE_UNAVAILABLE.flags.writeable = False
_NOT_DUPLICATE.flags.writeable = False


def split_by_weight(weights: Sequence[int], limit: int) -> list[list[int]]:
    """Indices of consecutive items grouped so each group's weight is at most `limit` (an item
    heavier than `limit` forms a group of its own)."""
    groups: list[list[int]] = []
    total = 0
    for i, w in enumerate(weights):
        if groups and total + w <= limit:
            groups[-1].append(i)
            total += w
        else:
            groups.append([i])
            total = w
    return groups
