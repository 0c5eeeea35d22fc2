"""core.profiles: profile validation and the store's dict form."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from heartrate_serve.core.constants import DEFAULT_USER_ID
from heartrate_serve.core.errors import InvalidRequest
from heartrate_serve.core.profiles import UserProfile, validate_profile

FULL = UserProfile(
    user_id="alice",
    age=40,
    sex=2,
    resting_bpm=55,
    max_hr_bpm=185,
    zone_model=3,
    hr_max_formula=2,
    normal_low_bpm=45,
    normal_high_bpm=160,
    custom_zone_lower_bpm=(100, 120, 140, 160),
)


@pytest.mark.parametrize(
    "profile",
    [
        UserProfile(user_id="bob"),
        FULL,
        replace(FULL, age=1, resting_bpm=25, max_hr_bpm=100),
        replace(FULL, age=120, resting_bpm=120, max_hr_bpm=250),
        replace(FULL, normal_low_bpm=40, normal_high_bpm=180),
        replace(FULL, zone_model=1, custom_zone_lower_bpm=()),
        replace(FULL, custom_zone_lower_bpm=(30, 250)),
        replace(FULL, custom_zone_lower_bpm=tuple(range(100, 200, 10))),
    ],
)
def test_valid_profiles_pass_unchanged(profile: UserProfile) -> None:
    """Unset fields and values on the documented bounds are accepted."""
    assert validate_profile(profile) == profile


def test_empty_user_id_becomes_the_default_user() -> None:
    """A profile for "" is the default user's."""
    assert validate_profile(UserProfile(user_id="")).user_id == DEFAULT_USER_ID


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"user_id": "a b"}, "user_id"),
        ({"age": -1}, "age"),
        ({"age": 121}, "age"),
        ({"resting_bpm": 24}, "resting_bpm"),
        ({"resting_bpm": 121}, "resting_bpm"),
        ({"max_hr_bpm": 99}, "max_hr_bpm"),
        ({"max_hr_bpm": 251}, "max_hr_bpm"),
        ({"resting_bpm": 110, "max_hr_bpm": 110}, "max_hr_bpm"),
        ({"sex": 3}, "sex"),
        ({"zone_model": 4}, "zone_model"),
        ({"hr_max_formula": 5}, "hr_max_formula"),
        ({"normal_low_bpm": 0, "normal_high_bpm": 45}, "normal_high_bpm"),
        ({"normal_high_bpm": 0, "normal_low_bpm": 150}, "normal_low_bpm"),
        ({"normal_low_bpm": 39}, "normal_low_bpm"),
        ({"normal_low_bpm": 160}, "normal_low_bpm"),
        ({"normal_high_bpm": 181}, "normal_high_bpm"),
        ({"custom_zone_lower_bpm": ()}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": (100,)}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": tuple(range(100, 210, 10))}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": (29, 100)}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": (100, 251)}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": (100, 100)}, "custom_zone_lower_bpm"),
        ({"custom_zone_lower_bpm": (120, 100)}, "custom_zone_lower_bpm"),
    ],
)
def test_invalid_profiles_name_the_field(changes: dict[str, Any], field: str) -> None:
    """Each out-of-bounds value raises InvalidRequest naming its field."""
    with pytest.raises(InvalidRequest) as err:
        validate_profile(replace(FULL, **changes))
    assert err.value.field == field
    assert field in str(err.value)


@pytest.mark.parametrize("profile", [FULL, UserProfile(user_id="default")])
def test_dict_round_trip_through_json(profile: UserProfile) -> None:
    """to_dict is JSON-friendly and from_dict restores the same profile."""
    raw = json.loads(json.dumps(profile.to_dict()))
    assert raw["custom_zone_lower_bpm"] == list(profile.custom_zone_lower_bpm)
    assert UserProfile.from_dict(raw) == profile


def test_from_dict_tolerates_missing_and_unknown_keys() -> None:
    """Missing keys are unset; keys from a newer version are ignored; numbers are coerced."""
    got = UserProfile.from_dict({"user_id": "carol", "age": "33", "future_field": 1})
    assert got == UserProfile(user_id="carol", age=33)
