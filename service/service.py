"""The service core: one async method per RPC, protobuf in and out, domain errors out.

Framework-free: no Ray, no gRPC server, no Redis client here. What it needs from outside comes
through ports (service/ports.py): the validator, the zone calculator and the store. The Serve
ingress (deployments/ingress.py) and the plain baseline (loadtest/baseline_server.py) are thin
adapters over this class that map the errors to status codes (service/status_codes.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from heartrate_serve.core.alert_feed import parse_cursor, watched_users
from heartrate_serve.core.batches import ZoneJob
from heartrate_serve.core.errors import (
    InvalidRequest,
    NotFound,
    StoreUnavailable,
)
from heartrate_serve.core.profiles import UserProfile
from heartrate_serve.core.validation import canonical_user_id
from heartrate_serve.proto import heartrate_service_pb2 as pb
from heartrate_serve.service import convert
from heartrate_serve.service.access import Access
from heartrate_serve.service.auth import Authenticator, Right
from heartrate_serve.service.bands import ProfileBands
from heartrate_serve.service.health import HealthProbe, health_status
from heartrate_serve.service.metrics import current
from heartrate_serve.service.pipeline import BatchOutcome, ReadingBatch, ReadingPipeline
from heartrate_serve.service.ports import StorePort, ValidatorPort, ZonePort
from heartrate_serve.service.stamps import ServerStamps
from heartrate_serve.service.stream_answers import StreamAnswers, StreamSlots
from heartrate_serve.service.tunables import IngressTunables
from heartrate_serve.service.wire import decoded
from heartrate_serve.service.zone_query import zone_query
from heartrate_serve.service.zone_response import zone_response
from heartrate_serve.service.zone_rounds import ZoneRounds

log = logging.getLogger("heartrate_serve.service")
STORE_DOWN = "Redis is down or unreachable: readings were not stored; retry later"


def now_ms() -> int:
    """The server clock, Unix milliseconds."""
    return time.time_ns() // 1_000_000


class HeartRateService:
    """The heart-rate service's use cases, one method per RPC of heartrate.HeartRateMonitor."""

    def __init__(
        self,
        store: StorePort,
        validator: ValidatorPort,
        zones: ZonePort,
        tunables: IngressTunables | None = None,
        clock_ms: Callable[[], int] = now_ms,
        auth: Authenticator | None = None,
    ) -> None:
        """auth None: no authorization (AUTH_MODE=none); else every RPC but health needs a
        token (service/auth.py), checked here before any work."""
        self._tun = tunables or IngressTunables()
        self._access = Access(auth)
        if auth is not None:
            auth.on_failure = lambda reason: current().auth_failure(reason.value)
        self._store = store
        self._validator = validator
        self._clock_ms = clock_ms
        store.set_alert_rules(self._tun.alert_rules())
        self._bands = ProfileBands(store, self._tun.profile_cache_ttl_s)
        self._stamps = ServerStamps()
        self.pipeline = ReadingPipeline(store, validator, self._bands, clock_ms)
        self._stream_answers = StreamAnswers(self.pipeline, self._reading, self._access)
        self._slots = StreamSlots(self._tun.max_open_streams)
        self.zone_rounds = ZoneRounds(zones)
        self._zone_commit = self.zone_rounds.group_commit()
        self._apply_bounds()
        self.health = HealthProbe(store, validator, zones)

    def reconfigure(self, tunables: IngressTunables) -> None:
        """Applies new tunables (user_config) at run time."""
        self._tun = tunables
        self._store.set_alert_rules(tunables.alert_rules())
        self._bands.ttl_s = tunables.profile_cache_ttl_s
        self._apply_bounds()

    def _apply_bounds(self) -> None:
        bound = self._tun.max_queued_readings
        self.pipeline.commit.max_queued_weight = bound
        self._zone_commit.max_queued_weight = bound
        self._slots.limit = self._tun.max_open_streams

    @property
    def request_timeout_s(self) -> float | None:
        """How long a unary call may take (user_config request_timeout_s), None: no limit."""
        return self._tun.request_timeout_s or None

    # --- readings ---------------------------------------------------------------------------

    def _reading(self, request: pb.HeartRateRequest) -> ReadingBatch:
        """One request as a batch of one; raises InvalidRequest for a bad user_id."""
        batch = convert.reading_from_request(request, self._clock_ms())
        if request.timestamp or request.timestamp_ms:
            return batch
        return self._stamps.fix(batch, np.ones(1, np.bool_))  # stamped by the server

    async def _submit(self, batch: ReadingBatch, rpc: str) -> BatchOutcome:
        """Validates and stores; raises StoreUnavailable when Redis did not take the readings."""
        out = await self.pipeline.submit(batch, rpc)
        if out.store_down:
            raise StoreUnavailable(STORE_DOWN)
        return out

    async def SubmitHeartRate(
        self, request: pb.HeartRateRequest, authorization: str | None = None
    ) -> pb.HeartRateResponse:
        """Stores one reading; out-of-range readings answer success=false (not an error).

        Raises:
            InvalidRequest, StoreUnavailable, DependencyUnavailable, Unauthenticated,
            PermissionDenied.
        """
        caller = self._access.caller(authorization)
        request = decoded(request)
        request.user_id = self._access.for_user(caller, request.user_id, Right.WRITE)
        batch = self._reading(request)
        out = await self._submit(batch, "SubmitHeartRate")
        return convert.reading_response(out, 0, request.bpm, int(batch.ts_ms[0]), out.rules)

    async def StreamHeartRate(
        self, requests: AsyncIterator[pb.HeartRateRequest], authorization: str | None = None
    ) -> AsyncIterator[pb.HeartRateResponse]:
        """One answer per reading, in order; a bad reading is answered and the stream goes on.

        Beyond max_open_streams open on this replica, a new stream raises Overloaded before
        reading anything; a reading beyond the queue bound is answered REJECT_REASON_OVERLOADED.
        Auth on: a stream without a valid token raises Unauthenticated before reading anything;
        then every reading is checked (its user_id against the token, the token's exp): one the
        token may not write is answered REJECT_REASON_PERMISSION_DENIED and never stored."""
        caller = self._access.caller(authorization)
        with self._slots.claim():
            counts = {"sent": 0, "rejected": 0}
            log.info("stream opened")
            current().stream(True)
            try:
                async for resp in self._stream_answers.answers(requests, caller):
                    counts["sent"] += 1
                    counts["rejected"] += not resp.success
                    yield resp
            finally:
                current().stream(False)
                log.info("stream closed: %(sent)d readings, %(rejected)d rejected", counts)

    async def SubmitHeartRateBatch(
        self, request: pb.HeartRateBatchRequest, authorization: str | None = None
    ) -> pb.HeartRateBatchResponse:
        """Columnar ingest of a device's buffer in one group-committed write."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        request.user_id = self._access.for_user(caller, request.user_id, Right.WRITE)
        batch = convert.batch_from_request(request, self._clock_ms())
        unset = np.asarray(request.timestamps_ms or request.timestamps, dtype=np.int64) == 0
        batch = self._stamps.fix(batch, unset)
        out = await self._submit(batch, "SubmitHeartRateBatch")
        alert = out.alert
        if alert is None:
            state = await self._store.alert_state(batch.user_id)
            alert = (state.active, state.since_ms)
        return convert.batch_response(batch, out, alert, out.rules)

    # --- reads and analysis -----------------------------------------------------------------

    async def GetHeartRateStatus(
        self, request: pb.StatusRequest, authorization: str | None = None
    ) -> pb.StatusResponse:
        """The user's newest readings, their statistics and the sustained alert state."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        user = canonical_user_id(self._access.for_user(caller, request.user_id, Right.READ))
        readings = await self._store.recent(user, convert.status_limit(request.recent_count))
        state = await self._store.alert_state(user)
        band = (await self._bands.bands([user]))[user]
        limits = convert.thresholds(await self._validator.rules(), self._tun.alert_rules(), band)
        return convert.status_response(
            readings.ts_ms, readings.bpm, readings.classification, state, limits
        )

    async def CalculateExerciseZones(
        self, request: pb.ExerciseZoneRequest, authorization: str | None = None
    ) -> pb.ExerciseZoneResponse:
        """Time in zones, TRIMP and averages, from sent readings or a stored range.

        Auth on: a stored range needs read rights on the user; sent readings any valid token
        (the user's profile, for the heart-rate maximum, is then used only when the caller may
        read that user)."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        if caller is not None and request.HasField("stored_range"):
            request.user_id = self._access.for_user(caller, request.user_id, Right.READ)
        user = canonical_user_id(request.user_id or (caller.sub if caller else ""))
        readable = caller is None or caller.may(Right.READ, user)
        profile = await self._profile(user) if readable else None
        query = zone_query(request, profile, self._tun.max_gap_s)
        ts, bpm = query.ts_ms, query.bpm
        if query.stored_range is not None:
            stored = await self._store.range(user, *query.stored_range)
            ts, bpm = stored.ts_ms, stored.bpm
            if len(ts) == 0:
                raise InvalidRequest("stored_range", "no stored readings in stored_range")
        assert ts is not None and bpm is not None  # zone_query gives readings or a range
        return zone_response(await self._zone_commit.submit(ZoneJob(ts, bpm, query.params)))

    # --- alert events -----------------------------------------------------------------------

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, authorization: str | None = None
    ) -> AsyncIterator[pb.AlertEvent]:
        """The listed users' alert events: replayed after after_event_id, then live.

        Raises (before the first event): InvalidRequest (user_ids, after_event_id),
        Unauthenticated, PermissionDenied (a user the token may not read), Overloaded (as many
        streams and watches open on this replica as max_open_streams), StoreUnavailable."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        users = watched_users(list(request.user_ids))
        cursor = parse_cursor(request.after_event_id)
        for user in users:
            self._access.require(caller, Right.READ, user)
        with self._slots.claim():
            log.info("watch opened: %d users", len(users))
            try:
                async for record in self._store.watch_alerts(users, cursor):
                    self._access.still_valid(caller)
                    yield convert.alert_event(record)
            finally:
                log.info("watch closed")

    # --- profiles ---------------------------------------------------------------------------

    async def SetUserProfile(
        self, request: pb.SetUserProfileRequest, authorization: str | None = None
    ) -> pb.SetUserProfileResponse:
        """Creates or replaces a profile (validated; InvalidRequest names the bad field)."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        request.profile.user_id = self._access.for_user(
            caller, request.profile.user_id, Right.WRITE
        )
        profile = convert.profile_from_proto(request.profile)
        before = await self._store.get_profile(profile.user_id)
        await self._store.set_profile(profile.user_id, profile.to_dict())
        if profile.webhook_url and profile.webhook_url != (before or {}).get("webhook_url"):
            await self._store.start_user_webhook(profile.user_id)  # events from now on
        self._bands.forget(profile.user_id)
        return pb.SetUserProfileResponse(profile=convert.profile_to_proto(profile))

    async def GetUserProfile(
        self, request: pb.GetUserProfileRequest, authorization: str | None = None
    ) -> pb.GetUserProfileResponse:
        """A user's profile; NotFound when none was set."""
        caller = self._access.caller(authorization)
        request = decoded(request)
        user = canonical_user_id(self._access.for_user(caller, request.user_id, Right.READ))
        profile = await self._profile(user)
        if profile is None:
            raise NotFound(f"no profile for user_id {user!r}")
        return pb.GetUserProfileResponse(profile=convert.profile_to_proto(profile))

    async def _profile(self, user: str) -> UserProfile | None:
        raw = await self._store.get_profile(user)
        return None if raw is None else UserProfile.from_dict(raw)

    # --- health -----------------------------------------------------------------------------

    async def health_status(self, service: str) -> int | None:
        """grpc.health.v1 status for `service`; None for an unknown service name."""
        return await health_status(self.health, service)

    async def aclose(self) -> None:
        """Closes the store's connections."""
        await self._store.aclose()
