"""Every number that matters to the physiology, in one place, with its source.

Runtime overrides (serve_config.yaml user_config, user profiles) start from these values.
"""

from __future__ import annotations

from enum import IntEnum
from fractions import Fraction

# Valid and normal bands, bpm. Source: the replaced service's documented values (valid 40-180,
# normal 50-150). A reading outside the valid band is rejected; inside it but outside the normal
# band it is stored and flagged LOW/HIGH.
VALID_MIN_BPM = 40
VALID_MAX_BPM = 180
NORMAL_LOW_BPM = 50
NORMAL_HIGH_BPM = 150

# Timestamps. 2000-01-01T00:00:00Z in Unix milliseconds: nothing older is a real wearable reading.
MIN_TIMESTAMP_MS = 946_684_800_000
# Clock skew allowed for devices ahead of the server, ms (5 minutes).
MAX_FUTURE_MS = 5 * 60 * 1000

# Alerts (hysteresis). Sustain 0 s raises at the first out-of-band reading, as the original did.
ALERT_SUSTAIN_S = 0
ALERT_CLEAR_READINGS = 3

# Zones. Sample-and-hold intervals longer than this count as no data, seconds.
DEFAULT_MAX_GAP_S = 30
# 5-zone model lower bounds, percent of HRmax (or of heart-rate reserve for Karvonen).
# Source: the common 5-zone scheme (50/60/70/80/90 %), which the original's 3 zones are cut from.
FIVE_ZONE_LOW_PCT: tuple[int, ...] = (50, 60, 70, 80, 90)
# The original service's three zones: [50, 60), [60, 70), [70, 90) percent of HRmax.
LEGACY_ZONE_EDGES_PCT: tuple[int, ...] = (50, 60, 70, 90)
DEFAULT_RESTING_BPM = 60


class HrMaxFormula(IntEnum):
    """HRmax estimates from age; values equal the proto enum HrMaxFormula."""

    FOX = 1  # 220 - age (Fox, Naughton & Haskell 1971); the original's formula.
    TANAKA = 2  # 208 - 0.7 * age (Tanaka, Monahan & Seals 2001).
    GELLISH = 3  # 207 - 0.7 * age (Gellish et al. 2007).
    GULATI = 4  # 206 - 0.88 * age (Gulati et al. 2010, women).


# (intercept, slope per year), exact, so boundaries are computed without float error.
HR_MAX_COEFFICIENTS: dict[HrMaxFormula, tuple[Fraction, Fraction]] = {
    HrMaxFormula.FOX: (Fraction(220), Fraction(1)),
    HrMaxFormula.TANAKA: (Fraction(208), Fraction(7, 10)),
    HrMaxFormula.GELLISH: (Fraction(207), Fraction(7, 10)),
    HrMaxFormula.GULATI: (Fraction(206), Fraction(88, 100)),
}


class ZoneModel(IntEnum):
    """Zone models; values equal the proto enum ZoneModel."""

    PERCENT_HRMAX = 1
    HEART_RATE_RESERVE = 2
    CUSTOM = 3


class Sex(IntEnum):
    """Values equal the proto enum Sex."""

    UNSPECIFIED = 0
    MALE = 1
    FEMALE = 2


# Banister TRIMP = sum(minutes * HRr * a * exp(b * HRr)), HRr = (HR - rest) / (HRmax - rest).
# Source: Banister 1991; a, b for men 0.64, 1.92 and for women 0.86, 1.67.
BANISTER_COEFFICIENTS: dict[Sex, tuple[float, float]] = {
    Sex.MALE: (0.64, 1.92),
    Sex.FEMALE: (0.86, 1.67),
}


class Classification(IntEnum):
    """A valid reading against the normal band; values equal the proto enum AlertType."""

    NORMAL = 0
    LOW = 1
    HIGH = 2


class RejectReason(IntEnum):
    """Why a reading was rejected; values equal the proto enum RejectReason."""

    NONE = 0
    BPM_OUT_OF_RANGE = 1
    TIMESTAMP_TOO_OLD = 2
    TIMESTAMP_IN_FUTURE = 3
    INVALID_USER_ID = 4
    STORE_UNAVAILABLE = 5
    SERVICE_UNAVAILABLE = 6
    UNAUTHENTICATED = 7
    PERMISSION_DENIED = 8
    INVALID_MESSAGE = 9
    OVERLOADED = 10


# Texts the replaced service answered, kept word for word for its clients (issue 15): the `error`
# of an out-of-range reading, and the INVALID_ARGUMENT details of CalculateExerciseZones for
# age <= 0 and for no readings. Source: the replaced service's answers (its integration tests).
ORIGINAL_OUT_OF_RANGE = "Heart rate out of typical range for an adult"
ORIGINAL_AGE_NOT_POSITIVE = "Age must be a positive integer"
ORIGINAL_NO_MEASUREMENTS = "No measurements provided"

# user_id: empty means this default user (old clients send none). "" and "default" are one user.
DEFAULT_USER_ID = "default"
USER_ID_MAX_LEN = 128
USER_ID_PATTERN = r"[A-Za-z0-9._:@-]{1,128}"

# Retention of stored readings, days.
DEFAULT_RETENTION_DAYS = 30

# Overload bounds per ingress replica (defaults of its user_config, service/tunables.py); beyond
# them work is shed with RESOURCE_EXHAUSTED instead of queued. Readings waiting for a group-commit
# round: 4 000 000 lets 32 concurrent 100 000-reading batches (3.2 M, the heavy ingest the
# transport tests send) through; 1 000 000 shed them. The flood in loadtest/flood.py measured the
# whole service at 2.0-2.1 GiB peak RSS with this bound (loadtest/RESULTS.md).
MAX_QUEUED_READINGS = 4_000_000
# Open StreamHeartRate calls per ingress replica: below its max_ongoing_requests (5000 in
# serve_config.yaml), so unary calls keep slots when all stream slots are taken.
MAX_OPEN_STREAMS = 4000
# Unary calls end DEADLINE_EXCEEDED after this long (a client's own shorter deadline wins).
# Streams are never cut by it: devices keep one open for hours.
# 120, not 30: with max_queued_readings waiting, a 100 000-reading batch waited over 30 s on 2 busy
# cores (clean-clone CI, tests/e2e/test_transport_limits.py, and the flood's 27-37 s drain).
REQUEST_TIMEOUT_S = 120.0

# WatchAlerts (issue 14): one watch names 1..MAX_WATCHED_USERS users (the bound). A watch
# counts as an open stream towards max_open_streams. A watcher that falls this many events behind
# is not cut off: its queue is dropped and it re-reads what it missed from Redis.
MAX_WATCHED_USERS = 1000
WATCH_QUEUE_EVENTS = 10_000
