"""ExerciseZoneResponse from a core SessionAnalysis."""

from __future__ import annotations

from heartrate_serve.core.zones import SessionAnalysis
from heartrate_serve.proto import heartrate_service_pb2 as pb


def _s(ms: int) -> int:
    """Whole seconds for the original int32 fields (rounded to nearest)."""
    return int(round(ms / 1000))


def zone_response(a: SessionAnalysis) -> pb.ExerciseZoneResponse:
    """The response message: legacy fields with their original meaning, then the additions."""
    z1, z2, z3 = a.legacy_zone_ms
    return pb.ExerciseZoneResponse(
        zone1_time=_s(z1),
        zone2_time=_s(z2),
        zone3_time=_s(z3),
        total_duration=_s(a.total_ms),
        average_heart_rate=a.average_bpm,
        zones=[
            pb.ZoneTime(
                index=z.index, lower_bpm=z.lower_bpm, upper_bpm=z.upper_bpm, seconds=z.ms / 1000
            )
            for z in a.zones
        ],
        hr_max_bpm=a.hr_max_bpm,
        no_data_seconds=a.no_data_ms / 1000,
        below_zones_seconds=a.below_ms / 1000,
        banister_trimp=a.banister_trimp,
        edwards_trimp=a.edwards_trimp,
        zone_model=a.zone_model,  # type: ignore[arg-type]
        reading_count=a.reading_count,
    )
