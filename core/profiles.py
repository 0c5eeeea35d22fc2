"""User profiles: personal physiology that overrides the server defaults (0 = unset)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from heartrate_serve.core.constants import (
    NORMAL_HIGH_BPM,
    NORMAL_LOW_BPM,
    VALID_MAX_BPM,
    VALID_MIN_BPM,
    HrMaxFormula,
    Sex,
    ZoneModel,
)
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.validation import canonical_user_id

AGE_RANGE = (1, 120)
RESTING_RANGE = (25, 120)
MAX_HR_RANGE = (100, 250)
CUSTOM_ZONE_COUNT = (2, 10)
CUSTOM_ZONE_BPM = (30, 250)
WEBHOOK_URL_MAX_LEN = 2048
_WEBHOOK_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")


@dataclass(frozen=True)
class UserProfile:
    """A user's profile; every numeric field 0 (or () for the custom zones) means unset."""

    user_id: str
    age: int = 0
    sex: int = 0
    resting_bpm: int = 0
    max_hr_bpm: int = 0
    zone_model: int = 0
    hr_max_formula: int = 0
    normal_low_bpm: int = 0
    normal_high_bpm: int = 0
    custom_zone_lower_bpm: tuple[int, ...] = ()
    # Alert webhook of this user (raised/cleared events are POSTed here); "" none.
    webhook_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-friendly dict (custom zones as a list)."""
        out = asdict(self)
        out["custom_zone_lower_bpm"] = list(self.custom_zone_lower_bpm)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> UserProfile:
        """The profile from to_dict's output; missing keys are unset, unknown keys ignored."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        for key in known - {"user_id", "custom_zone_lower_bpm", "webhook_url"}:
            if key in values:
                values[key] = int(values[key])
        values["user_id"] = str(values.get("user_id", ""))
        values["webhook_url"] = str(values.get("webhook_url", ""))
        values["custom_zone_lower_bpm"] = tuple(
            int(v) for v in values.get("custom_zone_lower_bpm", ())
        )
        return cls(**values)


def _check_range(field: str, value: int, bounds: tuple[int, int]) -> None:
    """Raises InvalidRequest unless value is 0 (unset) or inside bounds (inclusive)."""
    if value != 0 and not bounds[0] <= value <= bounds[1]:
        raise InvalidRequest(field, f"{field} {value} must be 0 (unset) or {bounds[0]}-{bounds[1]}")


def _check_enum(
    field: str, value: int, enum: type[Sex] | type[ZoneModel] | type[HrMaxFormula]
) -> None:
    """Raises InvalidRequest unless value is 0 (unset) or a member of enum."""
    if value != 0 and value not in {int(m) for m in enum}:
        raise InvalidRequest(field, f"{field} {value} is not a known value")


def _check_band(p: UserProfile) -> None:
    """The personal normal band: each bound 0 (the server default) or within the valid band,
    and low < high, an unset bound taking its default (NORMAL_LOW_BPM / NORMAL_HIGH_BPM)."""
    for field in ("normal_low_bpm", "normal_high_bpm"):
        value = getattr(p, field)
        if value != 0 and not VALID_MIN_BPM <= value <= VALID_MAX_BPM:
            raise InvalidRequest(
                field, f"{field} must be 0 (default) or {VALID_MIN_BPM}-{VALID_MAX_BPM}"
            )
    low = p.normal_low_bpm or NORMAL_LOW_BPM
    high = p.normal_high_bpm or NORMAL_HIGH_BPM
    if low >= high:
        field = "normal_low_bpm" if p.normal_low_bpm else "normal_high_bpm"
        raise InvalidRequest(
            field, f"normal_low_bpm ({low}) must be below normal_high_bpm ({high})"
        )


def _check_custom_zones(p: UserProfile) -> None:
    """Custom lower bounds: none, or 2-10 strictly ascending values of 30-250 bpm."""
    lows, field = p.custom_zone_lower_bpm, "custom_zone_lower_bpm"
    if not lows:
        if p.zone_model == ZoneModel.CUSTOM:
            raise InvalidRequest(field, f"{field} is required with zone_model CUSTOM")
        return
    if not CUSTOM_ZONE_COUNT[0] <= len(lows) <= CUSTOM_ZONE_COUNT[1]:
        raise InvalidRequest(field, f"{field} must hold 2-10 bounds, got {len(lows)}")
    if any(not CUSTOM_ZONE_BPM[0] <= v <= CUSTOM_ZONE_BPM[1] for v in lows):
        raise InvalidRequest(field, f"{field} values must be 30-250 bpm")
    if any(b <= a for a, b in zip(lows, lows[1:], strict=False)):
        raise InvalidRequest(field, f"{field} must be strictly ascending")


def _check_webhook(url: str) -> None:
    """ "" or an absolute http(s) URL of at most WEBHOOK_URL_MAX_LEN characters."""
    if url and (len(url) > WEBHOOK_URL_MAX_LEN or _WEBHOOK_URL.fullmatch(url) is None):
        raise InvalidRequest(
            "webhook_url",
            f"webhook_url {url[:100]!r} must be empty or an http:// or https:// URL with a host "
            f"(at most {WEBHOOK_URL_MAX_LEN} characters, no spaces)",
        )


def validate_profile(p: UserProfile) -> UserProfile:
    """Checks a profile and returns it with its user_id canonical.

    Bounds (0 always means unset): age 1-120 years; resting_bpm 25-120; max_hr_bpm 100-250 and
    above resting_bpm; sex, zone_model, hr_max_formula members of their enums; normal band both
    unset or VALID_MIN_BPM <= low < high <= VALID_MAX_BPM (40-180); custom_zone_lower_bpm empty or
    2-10 strictly ascending values of 30-250 bpm, and required when zone_model is CUSTOM;
    webhook_url empty or an http(s) URL.

    Args:
        p: The profile as sent.

    Returns:
        The same profile, user_id canonical ("" becomes the default user).

    Raises:
        InvalidRequest: naming the first offending field.
    """
    user_id = canonical_user_id(p.user_id)
    _check_range("age", p.age, AGE_RANGE)
    _check_range("resting_bpm", p.resting_bpm, RESTING_RANGE)
    _check_range("max_hr_bpm", p.max_hr_bpm, MAX_HR_RANGE)
    if p.max_hr_bpm and p.resting_bpm and p.max_hr_bpm <= p.resting_bpm:
        raise InvalidRequest("max_hr_bpm", "max_hr_bpm must be above resting_bpm")
    _check_enum("sex", p.sex, Sex)
    _check_enum("zone_model", p.zone_model, ZoneModel)
    _check_enum("hr_max_formula", p.hr_max_formula, HrMaxFormula)
    _check_band(p)
    _check_custom_zones(p)
    _check_webhook(p.webhook_url)
    return replace(p, user_id=user_id)
