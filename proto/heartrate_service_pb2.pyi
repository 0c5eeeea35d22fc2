from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_BPM_OUT_OF_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_TIMESTAMP_TOO_OLD: _ClassVar[RejectReason]
    REJECT_REASON_TIMESTAMP_IN_FUTURE: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_USER_ID: _ClassVar[RejectReason]
    REJECT_REASON_STORE_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_SERVICE_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_UNAUTHENTICATED: _ClassVar[RejectReason]
    REJECT_REASON_PERMISSION_DENIED: _ClassVar[RejectReason]
    REJECT_REASON_INVALID_MESSAGE: _ClassVar[RejectReason]
    REJECT_REASON_OVERLOADED: _ClassVar[RejectReason]

class AlertType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[AlertType]
    LOW_HEART_RATE: _ClassVar[AlertType]
    HIGH_HEART_RATE: _ClassVar[AlertType]

class ZoneModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZONE_MODEL_UNSPECIFIED: _ClassVar[ZoneModel]
    ZONE_MODEL_PERCENT_HRMAX: _ClassVar[ZoneModel]
    ZONE_MODEL_HEART_RATE_RESERVE: _ClassVar[ZoneModel]
    ZONE_MODEL_CUSTOM: _ClassVar[ZoneModel]

class HrMaxFormula(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HR_MAX_FORMULA_UNSPECIFIED: _ClassVar[HrMaxFormula]
    HR_MAX_FORMULA_FOX: _ClassVar[HrMaxFormula]
    HR_MAX_FORMULA_TANAKA: _ClassVar[HrMaxFormula]
    HR_MAX_FORMULA_GELLISH: _ClassVar[HrMaxFormula]
    HR_MAX_FORMULA_GULATI: _ClassVar[HrMaxFormula]

class Sex(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEX_UNSPECIFIED: _ClassVar[Sex]
    SEX_MALE: _ClassVar[Sex]
    SEX_FEMALE: _ClassVar[Sex]
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_BPM_OUT_OF_RANGE: RejectReason
REJECT_REASON_TIMESTAMP_TOO_OLD: RejectReason
REJECT_REASON_TIMESTAMP_IN_FUTURE: RejectReason
REJECT_REASON_INVALID_USER_ID: RejectReason
REJECT_REASON_STORE_UNAVAILABLE: RejectReason
REJECT_REASON_SERVICE_UNAVAILABLE: RejectReason
REJECT_REASON_UNAUTHENTICATED: RejectReason
REJECT_REASON_PERMISSION_DENIED: RejectReason
REJECT_REASON_INVALID_MESSAGE: RejectReason
REJECT_REASON_OVERLOADED: RejectReason
NONE: AlertType
LOW_HEART_RATE: AlertType
HIGH_HEART_RATE: AlertType
ZONE_MODEL_UNSPECIFIED: ZoneModel
ZONE_MODEL_PERCENT_HRMAX: ZoneModel
ZONE_MODEL_HEART_RATE_RESERVE: ZoneModel
ZONE_MODEL_CUSTOM: ZoneModel
HR_MAX_FORMULA_UNSPECIFIED: HrMaxFormula
HR_MAX_FORMULA_FOX: HrMaxFormula
HR_MAX_FORMULA_TANAKA: HrMaxFormula
HR_MAX_FORMULA_GELLISH: HrMaxFormula
HR_MAX_FORMULA_GULATI: HrMaxFormula
SEX_UNSPECIFIED: Sex
SEX_MALE: Sex
SEX_FEMALE: Sex

class HeartRateRequest(_message.Message):
    __slots__ = ("bpm", "timestamp", "metadata", "user_id", "timestamp_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BPM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    bpm: int
    timestamp: int
    metadata: _containers.ScalarMap[str, str]
    user_id: str
    timestamp_ms: int
    def __init__(self, bpm: _Optional[int] = ..., timestamp: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., user_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class HeartRateResponse(_message.Message):
    __slots__ = ("success", "error", "alert_triggered", "alert_type", "reject_reason", "duplicate", "timestamp_ms", "error_detail")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ALERT_TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    alert_triggered: bool
    alert_type: AlertType
    reject_reason: RejectReason
    duplicate: bool
    timestamp_ms: int
    error_detail: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., alert_triggered: _Optional[bool] = ..., alert_type: _Optional[_Union[AlertType, str]] = ..., reject_reason: _Optional[_Union[RejectReason, str]] = ..., duplicate: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ..., error_detail: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("recent_count", "user_id")
    RECENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    recent_count: int
    user_id: str
    def __init__(self, recent_count: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("recent_measurements", "alert_active", "alert_type", "stats", "alert_since", "alert_since_ms", "thresholds")
    RECENT_MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    ALERT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ALERT_SINCE_FIELD_NUMBER: _ClassVar[int]
    ALERT_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    recent_measurements: _containers.RepeatedCompositeFieldContainer[HeartRateMeasurement]
    alert_active: bool
    alert_type: AlertType
    stats: HeartRateStats
    alert_since: int
    alert_since_ms: int
    thresholds: Thresholds
    def __init__(self, recent_measurements: _Optional[_Iterable[_Union[HeartRateMeasurement, _Mapping]]] = ..., alert_active: _Optional[bool] = ..., alert_type: _Optional[_Union[AlertType, str]] = ..., stats: _Optional[_Union[HeartRateStats, _Mapping]] = ..., alert_since: _Optional[int] = ..., alert_since_ms: _Optional[int] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("valid_min_bpm", "valid_max_bpm", "normal_low_bpm", "normal_high_bpm", "alert_sustain_seconds", "alert_clear_readings")
    VALID_MIN_BPM_FIELD_NUMBER: _ClassVar[int]
    VALID_MAX_BPM_FIELD_NUMBER: _ClassVar[int]
    NORMAL_LOW_BPM_FIELD_NUMBER: _ClassVar[int]
    NORMAL_HIGH_BPM_FIELD_NUMBER: _ClassVar[int]
    ALERT_SUSTAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALERT_CLEAR_READINGS_FIELD_NUMBER: _ClassVar[int]
    valid_min_bpm: int
    valid_max_bpm: int
    normal_low_bpm: int
    normal_high_bpm: int
    alert_sustain_seconds: int
    alert_clear_readings: int
    def __init__(self, valid_min_bpm: _Optional[int] = ..., valid_max_bpm: _Optional[int] = ..., normal_low_bpm: _Optional[int] = ..., normal_high_bpm: _Optional[int] = ..., alert_sustain_seconds: _Optional[int] = ..., alert_clear_readings: _Optional[int] = ...) -> None: ...

class HeartRateMeasurement(_message.Message):
    __slots__ = ("bpm", "timestamp", "triggered_alert", "timestamp_ms")
    BPM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_ALERT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    bpm: int
    timestamp: int
    triggered_alert: bool
    timestamp_ms: int
    def __init__(self, bpm: _Optional[int] = ..., timestamp: _Optional[int] = ..., triggered_alert: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class HeartRateStats(_message.Message):
    __slots__ = ("average_bpm", "min_bpm", "max_bpm", "count")
    AVERAGE_BPM_FIELD_NUMBER: _ClassVar[int]
    MIN_BPM_FIELD_NUMBER: _ClassVar[int]
    MAX_BPM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    average_bpm: float
    min_bpm: int
    max_bpm: int
    count: int
    def __init__(self, average_bpm: _Optional[float] = ..., min_bpm: _Optional[int] = ..., max_bpm: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class StoredRange(_message.Message):
    __slots__ = ("from_timestamp_ms", "to_timestamp_ms")
    FROM_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TO_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    from_timestamp_ms: int
    to_timestamp_ms: int
    def __init__(self, from_timestamp_ms: _Optional[int] = ..., to_timestamp_ms: _Optional[int] = ...) -> None: ...

class ExerciseZoneRequest(_message.Message):
    __slots__ = ("age", "measurements", "user_id", "zone_model", "hr_max_formula", "max_hr_bpm", "resting_bpm", "custom_zone_lower_bpm", "max_gap_seconds", "session_end_timestamp", "session_end_timestamp_ms", "bpm", "timestamps", "timestamps_ms", "stored_range", "sex")
    AGE_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_MODEL_FIELD_NUMBER: _ClassVar[int]
    HR_MAX_FORMULA_FIELD_NUMBER: _ClassVar[int]
    MAX_HR_BPM_FIELD_NUMBER: _ClassVar[int]
    RESTING_BPM_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ZONE_LOWER_BPM_FIELD_NUMBER: _ClassVar[int]
    MAX_GAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    STORED_RANGE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    age: int
    measurements: _containers.RepeatedCompositeFieldContainer[HeartRateMeasurement]
    user_id: str
    zone_model: ZoneModel
    hr_max_formula: HrMaxFormula
    max_hr_bpm: int
    resting_bpm: int
    custom_zone_lower_bpm: _containers.RepeatedScalarFieldContainer[int]
    max_gap_seconds: int
    session_end_timestamp: int
    session_end_timestamp_ms: int
    bpm: _containers.RepeatedScalarFieldContainer[int]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    stored_range: StoredRange
    sex: Sex
    def __init__(self, age: _Optional[int] = ..., measurements: _Optional[_Iterable[_Union[HeartRateMeasurement, _Mapping]]] = ..., user_id: _Optional[str] = ..., zone_model: _Optional[_Union[ZoneModel, str]] = ..., hr_max_formula: _Optional[_Union[HrMaxFormula, str]] = ..., max_hr_bpm: _Optional[int] = ..., resting_bpm: _Optional[int] = ..., custom_zone_lower_bpm: _Optional[_Iterable[int]] = ..., max_gap_seconds: _Optional[int] = ..., session_end_timestamp: _Optional[int] = ..., session_end_timestamp_ms: _Optional[int] = ..., bpm: _Optional[_Iterable[int]] = ..., timestamps: _Optional[_Iterable[int]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ..., stored_range: _Optional[_Union[StoredRange, _Mapping]] = ..., sex: _Optional[_Union[Sex, str]] = ...) -> None: ...

class ZoneTime(_message.Message):
    __slots__ = ("index", "lower_bpm", "upper_bpm", "seconds")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LOWER_BPM_FIELD_NUMBER: _ClassVar[int]
    UPPER_BPM_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    index: int
    lower_bpm: int
    upper_bpm: int
    seconds: float
    def __init__(self, index: _Optional[int] = ..., lower_bpm: _Optional[int] = ..., upper_bpm: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class ExerciseZoneResponse(_message.Message):
    __slots__ = ("zone1_time", "zone2_time", "zone3_time", "total_duration", "average_heart_rate", "zones", "hr_max_bpm", "no_data_seconds", "below_zones_seconds", "banister_trimp", "edwards_trimp", "zone_model", "reading_count")
    ZONE1_TIME_FIELD_NUMBER: _ClassVar[int]
    ZONE2_TIME_FIELD_NUMBER: _ClassVar[int]
    ZONE3_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_HEART_RATE_FIELD_NUMBER: _ClassVar[int]
    ZONES_FIELD_NUMBER: _ClassVar[int]
    HR_MAX_BPM_FIELD_NUMBER: _ClassVar[int]
    NO_DATA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BELOW_ZONES_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BANISTER_TRIMP_FIELD_NUMBER: _ClassVar[int]
    EDWARDS_TRIMP_FIELD_NUMBER: _ClassVar[int]
    ZONE_MODEL_FIELD_NUMBER: _ClassVar[int]
    READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    zone1_time: int
    zone2_time: int
    zone3_time: int
    total_duration: int
    average_heart_rate: float
    zones: _containers.RepeatedCompositeFieldContainer[ZoneTime]
    hr_max_bpm: int
    no_data_seconds: float
    below_zones_seconds: float
    banister_trimp: float
    edwards_trimp: float
    zone_model: ZoneModel
    reading_count: int
    def __init__(self, zone1_time: _Optional[int] = ..., zone2_time: _Optional[int] = ..., zone3_time: _Optional[int] = ..., total_duration: _Optional[int] = ..., average_heart_rate: _Optional[float] = ..., zones: _Optional[_Iterable[_Union[ZoneTime, _Mapping]]] = ..., hr_max_bpm: _Optional[int] = ..., no_data_seconds: _Optional[float] = ..., below_zones_seconds: _Optional[float] = ..., banister_trimp: _Optional[float] = ..., edwards_trimp: _Optional[float] = ..., zone_model: _Optional[_Union[ZoneModel, str]] = ..., reading_count: _Optional[int] = ...) -> None: ...

class HeartRateBatchRequest(_message.Message):
    __slots__ = ("user_id", "bpm", "timestamps", "timestamps_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    bpm: _containers.RepeatedScalarFieldContainer[int]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, user_id: _Optional[str] = ..., bpm: _Optional[_Iterable[int]] = ..., timestamps: _Optional[_Iterable[int]] = ..., timestamps_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class BatchReadingResult(_message.Message):
    __slots__ = ("index", "success", "error", "reject_reason", "alert_triggered", "alert_type")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    ALERT_TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    index: int
    success: bool
    error: str
    reject_reason: RejectReason
    alert_triggered: bool
    alert_type: AlertType
    def __init__(self, index: _Optional[int] = ..., success: _Optional[bool] = ..., error: _Optional[str] = ..., reject_reason: _Optional[_Union[RejectReason, str]] = ..., alert_triggered: _Optional[bool] = ..., alert_type: _Optional[_Union[AlertType, str]] = ...) -> None: ...

class HeartRateBatchResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "duplicate", "results", "alert_active", "alert_type")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ALERT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    duplicate: int
    results: _containers.RepeatedCompositeFieldContainer[BatchReadingResult]
    alert_active: bool
    alert_type: AlertType
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., duplicate: _Optional[int] = ..., results: _Optional[_Iterable[_Union[BatchReadingResult, _Mapping]]] = ..., alert_active: _Optional[bool] = ..., alert_type: _Optional[_Union[AlertType, str]] = ...) -> None: ...

class UserProfile(_message.Message):
    __slots__ = ("user_id", "age", "sex", "resting_bpm", "max_hr_bpm", "zone_model", "hr_max_formula", "normal_low_bpm", "normal_high_bpm", "custom_zone_lower_bpm", "webhook_url")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    RESTING_BPM_FIELD_NUMBER: _ClassVar[int]
    MAX_HR_BPM_FIELD_NUMBER: _ClassVar[int]
    ZONE_MODEL_FIELD_NUMBER: _ClassVar[int]
    HR_MAX_FORMULA_FIELD_NUMBER: _ClassVar[int]
    NORMAL_LOW_BPM_FIELD_NUMBER: _ClassVar[int]
    NORMAL_HIGH_BPM_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_ZONE_LOWER_BPM_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    age: int
    sex: Sex
    resting_bpm: int
    max_hr_bpm: int
    zone_model: ZoneModel
    hr_max_formula: HrMaxFormula
    normal_low_bpm: int
    normal_high_bpm: int
    custom_zone_lower_bpm: _containers.RepeatedScalarFieldContainer[int]
    webhook_url: str
    def __init__(self, user_id: _Optional[str] = ..., age: _Optional[int] = ..., sex: _Optional[_Union[Sex, str]] = ..., resting_bpm: _Optional[int] = ..., max_hr_bpm: _Optional[int] = ..., zone_model: _Optional[_Union[ZoneModel, str]] = ..., hr_max_formula: _Optional[_Union[HrMaxFormula, str]] = ..., normal_low_bpm: _Optional[int] = ..., normal_high_bpm: _Optional[int] = ..., custom_zone_lower_bpm: _Optional[_Iterable[int]] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class SetUserProfileRequest(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: UserProfile
    def __init__(self, profile: _Optional[_Union[UserProfile, _Mapping]] = ...) -> None: ...

class SetUserProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: UserProfile
    def __init__(self, profile: _Optional[_Union[UserProfile, _Mapping]] = ...) -> None: ...

class GetUserProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetUserProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: UserProfile
    def __init__(self, profile: _Optional[_Union[UserProfile, _Mapping]] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("user_ids", "after_event_id")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    after_event_id: str
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "alert_type", "active", "at_ms", "bpm")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    BPM_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    alert_type: AlertType
    active: bool
    at_ms: int
    bpm: int
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., alert_type: _Optional[_Union[AlertType, str]] = ..., active: _Optional[bool] = ..., at_ms: _Optional[int] = ..., bpm: _Optional[int] = ...) -> None: ...
