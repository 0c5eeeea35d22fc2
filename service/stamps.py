"""Server-assigned timestamps for readings sent without one (timestamp 0)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from heartrate_serve.service.pipeline import ReadingBatch


class ServerStamps:
    """Server-assigned timestamps (readings sent with timestamp 0) kept strictly increasing per
    user, so two such readings in the same millisecond are not mistaken for a resubmission."""

    def __init__(self, max_users: int = 100_000) -> None:
        self._last: dict[str, int] = {}
        self._max_users = max_users

    def fix(self, batch: ReadingBatch, stamped: NDArray[np.bool_]) -> ReadingBatch:
        """Returns batch with its server-stamped readings made unique and increasing."""
        n = int(stamped.sum())
        if n == 0:
            return batch
        start = max(int(batch.ts_ms[stamped].min()), self._last.get(batch.user_id, 0) + 1)
        ts = batch.ts_ms.copy()
        ts[stamped] = start + np.arange(n, dtype=np.int64)
        if len(self._last) >= self._max_users:
            self._last.clear()  # only collisions within one millisecond depend on this memory
        self._last[batch.user_id] = start + n - 1
        return ReadingBatch(batch.user_id, batch.bpm, ts)
