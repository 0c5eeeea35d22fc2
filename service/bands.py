"""Per-user normal bands from profiles, cached so that a round costs no profile read per caller."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from heartrate_serve.service.ports import StorePort

MAX_CACHED_USERS = 100_000


class ProfileBands:
    """(normal_low, normal_high) per user from profiles, cached for ttl_s (a profile change on
    another replica takes effect within ttl_s); 0 means the validator's default band."""

    def __init__(self, store: StorePort, ttl_s: float) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, int, int]] = {}

    def forget(self, user_id: str) -> None:
        """Drops a cached band (after this replica changed the user's profile)."""
        self._cache.pop(user_id, None)

    async def bands(self, user_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(normal_low, normal_high) per user, 0 = server default; raises StoreUnavailable."""
        now = time.monotonic()
        missing = [u for u in set(user_ids) if self._cache.get(u, (0.0,))[0] <= now]
        if missing:
            profiles = await self._store.get_profiles(missing)
            for user in missing:
                p: dict[str, Any] = profiles.get(user) or {}
                low, high = int(p.get("normal_low_bpm", 0)), int(p.get("normal_high_bpm", 0))
                self._cache[user] = (now + self.ttl_s, low, high)
            if len(self._cache) > MAX_CACHED_USERS:  # bound memory: expired entries go first
                self._cache = {u: v for u, v in self._cache.items() if v[0] > now}
        return {u: self._cache[u][1:] for u in user_ids}
