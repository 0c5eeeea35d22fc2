"""What the live dashboard (dashboard/) shows, read through the service core.

Framework-free like the rest of service/: the dashboard's HTTP adapter calls these with the
request's `Authorization` header value and turns the results (protobuf messages and readings) and
the domain errors into JSON and HTTP statuses.

- A user's view: GetHeartRateStatus (which checks the token's read right on the user first: the
  alert state, the thresholds in force, the newest reading), the user's stored readings of the
  last hour (or since a given time within it), and CalculateExerciseZones over today's stored
  range (kept ZONES_TTL_S per user and day: a page polls every second, a day's zones need not
  be recomputed that often).
- Which users a token may read, for the list of active alerts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from heartrate_serve.core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    Overloaded,
)
from heartrate_serve.core.validation import canonical_user_id
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service.auth import Authenticator, Principal, Right
from heartrate_serve.service.ports import StorePort
from heartrate_serve.service.service import HeartRateService, now_ms
from heartrate_serve.store.store import Readings

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Readings a device stamped ahead of the server clock still show (the service accepts up to
# max_future_s, 300 s by default, ahead).
AHEAD_MS = 300_000
# How long a user's zones for a day are reused before they are computed again, s.
ZONES_TTL_S = 10.0
ZONES_CACHE_USERS = 1000
NO_AGE = "Age must be a positive integer"


@dataclass(frozen=True)
class Zones:
    """Today's time in zones, or why there are none (note)."""

    response: pb.ExerciseZoneResponse | None
    note: str
    computed_at_ms: int
    day_start_ms: int


@dataclass(frozen=True)
class UserView:
    """Everything the user page shows at one moment."""

    user_id: str
    now_ms: int
    status: pb.StatusResponse  # alert state, thresholds, the newest reading
    readings: Readings  # from_ms <= ts_ms, ascending
    from_ms: int
    zones: Zones


class DashboardReads:
    """The dashboard's reads, authorized like the RPCs (same tokens, same rights)."""

    def __init__(
        self,
        service: HeartRateService,
        store: StorePort,
        auth: Authenticator | None,
        clock_ms: Callable[[], int] = now_ms,
        zones_ttl_s: float = ZONES_TTL_S,
    ) -> None:
        """auth None: AUTH_MODE=none (everyone may read everything)."""
        self._service = service
        self._store = store
        self._auth = auth
        self._clock_ms = clock_ms
        self._zones_ttl_s = zones_ttl_s
        self._zones: OrderedDict[tuple[str, int], tuple[float, Zones]] = OrderedDict()

    @property
    def auth_on(self) -> bool:
        """True when requests need a token."""
        return self._auth is not None

    def readable(self, authorization: str | None, users: Iterable[str]) -> list[str]:
        """The users (in order) the caller may read: all with auth off, else those of the
        token's sub and users claim (all for heartrate:admin). Raises Unauthenticated without a
        valid token, PermissionDenied when the token has no read scope at all."""
        users = list(users)
        if self._auth is None:
            return users
        caller: Principal = self._auth.authenticate(authorization)
        self._auth.require(caller, Right.READ, caller.sub)  # the read scope, for anyone
        return [u for u in users if caller.may(Right.READ, u)]

    async def user_view(
        self,
        user_id: str,
        authorization: str | None,
        *,
        since_ms: int | None = None,
        day_start_ms: int | None = None,
    ) -> UserView:
        """The user's page at this moment. Readings from since_ms on (within the last hour;
        None: the whole hour); zones from day_start_ms (the viewer's midnight, within the last
        48 h; None: UTC midnight) until now.

        Raises InvalidRequest (user_id, since_ms, day_start_ms), Unauthenticated,
        PermissionDenied, NotFound (no readings and no profile stored for the user),
        StoreUnavailable, DependencyUnavailable (the Validator, for the thresholds)."""
        if user_id == "":
            raise InvalidRequest("user_id", "user_id is empty: name a user")
        user = canonical_user_id(user_id)
        status = await self._service.GetHeartRateStatus(
            pb.StatusRequest(user_id=user, recent_count=1), authorization
        )
        now = self._clock_ms()
        from_ms = now - HOUR_MS
        if since_ms is not None:
            if since_ms < 0:
                raise InvalidRequest("since_ms", "since_ms must be Unix milliseconds >= 0")
            from_ms = max(from_ms, since_ms)
        day = _day_start(now, day_start_ms)
        if not status.recent_measurements and await self._store.get_profile(user) is None:
            raise NotFound(f"no readings and no profile stored for user_id {user!r}")
        readings = await self._store.range(user, from_ms, now + AHEAD_MS)
        zones = await self._zones_of(user, day, now, authorization)
        return UserView(user, now, status, readings, from_ms, zones)

    async def _zones_of(self, user: str, day: int, now: int, authorization: str | None) -> Zones:
        key = (user, day)
        cached = self._zones.get(key)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        request = pb.ExerciseZoneRequest(
            user_id=user,
            stored_range=pb.StoredRange(from_timestamp_ms=day, to_timestamp_ms=now),
            session_end_timestamp_ms=now,  # the newest reading counts until now (max gap)
        )
        try:
            response = await self._service.CalculateExerciseZones(request, authorization)
            zones = Zones(response, "", now, day)
        except InvalidRequest as error:
            zones = Zones(None, _zones_note(error), now, day)
        except (DependencyUnavailable, Overloaded) as error:  # the page still shows the rest
            return Zones(None, f"time in zones unavailable right now: {error}", now, day)
        self._zones[key] = (time.monotonic() + self._zones_ttl_s, zones)
        self._zones.move_to_end(key)
        while len(self._zones) > ZONES_CACHE_USERS:
            self._zones.popitem(last=False)
        return zones


def _day_start(now: int, day_start_ms: int | None) -> int:
    """The start of 'today': the viewer's midnight when sent, else UTC midnight."""
    if day_start_ms is None:
        return now - now % DAY_MS
    if not now - 2 * DAY_MS < day_start_ms <= now:
        raise InvalidRequest(
            "day_start_ms", "day_start_ms must be within the last 48 hours (the viewer's midnight)"
        )
    return day_start_ms


def _zones_note(error: InvalidRequest) -> str:
    """Why there are no zones today, for people."""
    text = str(error)
    if NO_AGE in text:
        return (
            "time in zones needs the user's age: set it in the profile "
            "(heartrate --user <id> profile set --age N)"
        )
    if "no stored readings" in text:
        return "no readings today"
    return f"time in zones unavailable: {text}"
