"""Settings from the environment, and the deployments' user_config tunables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from heartrate_serve.core.alerts import AlertRules
from heartrate_serve.core.errors import InvalidRequest, SettingsError
from heartrate_serve.core.validation import ValidationRules
from heartrate_serve.service.tunables import IngressTunables, ValidatorTunables, ZoneTunables
from heartrate_serve.settings import ENV_NAMES, Settings, packaged_serve_config

# --- Settings.from_env --------------------------------------------------------------------------


def test_defaults() -> None:
    """An empty environment gives the documented defaults."""
    s = Settings.from_env({})
    assert (s.grpc_port, s.metrics_port, s.redis_url) == (50051, 8080, None)
    assert s.data_dir == Path("data")
    assert (s.redis_fsync, s.redis_pool_size, s.redis_timeout_s) == ("everysec", 64, 5.0)
    assert (s.retention_days, s.ingress_mode, s.log_level) == (30, "haproxy", "WARNING")
    assert s.instance_dir is None
    assert s.serve_config == packaged_serve_config()


def test_default_serve_config_is_an_existing_file() -> None:
    """The default SERVE_CONFIG is the packaged serve_config.yaml, which exists."""
    path = Settings.from_env({}).serve_config
    assert path.is_file() and path.name == "serve_config.yaml"
    assert "applications" in yaml.safe_load(path.read_text())


def test_every_field_has_an_environment_variable() -> None:
    """ENV_NAMES covers exactly the model's fields."""
    assert set(ENV_NAMES) == set(Settings.model_fields)


@pytest.mark.parametrize(
    ("var", "raw", "attr", "value"),
    [
        ("GRPC_PORT", "6000", "grpc_port", 6000),
        ("GRPC_PORT", "1", "grpc_port", 1),
        ("GRPC_PORT", "65535", "grpc_port", 65535),
        ("METRICS_PORT", "9100", "metrics_port", 9100),
        ("REDIS_URL", "redis://10.0.0.1:6380/2", "redis_url", "redis://10.0.0.1:6380/2"),
        ("DATA_DIR", "/var/lib/hr", "data_dir", Path("/var/lib/hr")),
        ("LOG_DIR", "/var/log/hr", "log_dir", Path("/var/log/hr")),
        ("REDIS_FSYNC", "always", "redis_fsync", "always"),
        ("REDIS_FSYNC", "no", "redis_fsync", "no"),
        ("REDIS_FSYNC", "ALWAYS", "redis_fsync", "always"),
        ("REDIS_FSYNC", "EverySec", "redis_fsync", "everysec"),
        ("REDIS_POOL_SIZE", "8", "redis_pool_size", 8),
        ("REDIS_TIMEOUT_S", "0.5", "redis_timeout_s", 0.5),
        ("REDIS_TIMEOUT_S", "3", "redis_timeout_s", 3.0),
        ("RETENTION_DAYS", "7", "retention_days", 7),
        ("INGRESS_MODE", "proxy", "ingress_mode", "proxy"),
        ("INGRESS_MODE", "HAProxy", "ingress_mode", "haproxy"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_LEVEL", "Info", "log_level", "INFO"),
        ("LOG_MAX_BYTES", "1024", "log_max_bytes", 1024),
        ("LOG_BACKUPS", "0", "log_backups", 0),
        ("INSTANCE_DIR", "/tmp/hrs-x", "instance_dir", Path("/tmp/hrs-x")),
        ("SERVE_CONFIG", "/etc/hr/serve.yaml", "serve_config", Path("/etc/hr/serve.yaml")),
    ],
)
def test_each_variable_is_parsed(var: str, raw: str, attr: str, value: object) -> None:
    """Each environment variable sets its field, typed (and normalised where documented)."""
    assert getattr(Settings.from_env({var: raw}), attr) == value


def test_relative_log_dir_becomes_absolute() -> None:
    """LOG_DIR relative to the working directory is made absolute."""
    s = Settings.from_env({"LOG_DIR": "rel/logs"})
    assert s.log_dir.is_absolute() and s.log_dir == Path.cwd() / "rel" / "logs"


def test_empty_variable_means_unset() -> None:
    """A variable set to "" keeps the default."""
    assert Settings.from_env({"GRPC_PORT": "", "REDIS_URL": ""}) == Settings.from_env({})


def test_unrelated_variables_are_ignored() -> None:
    """Variables the service does not know are ignored."""
    assert Settings.from_env({"PATH": "/bin", "grpc_port": "1"}) == Settings.from_env({})


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an env mapping, os.environ is read."""
    for var in ENV_NAMES.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRPC_PORT", "6100")
    monkeypatch.setenv("REDIS_FSYNC", "always")
    s = Settings.from_env()
    assert (s.grpc_port, s.redis_fsync) == (6100, "always")


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("GRPC_PORT", "abc"),
        ("GRPC_PORT", "70000"),
        ("GRPC_PORT", "0"),
        ("GRPC_PORT", "-1"),
        ("GRPC_PORT", "50051.5"),
        ("METRICS_PORT", "65536"),
        ("REDIS_FSYNC", "sometimes"),
        ("REDIS_POOL_SIZE", "0"),
        ("REDIS_POOL_SIZE", "10001"),
        ("REDIS_TIMEOUT_S", "0"),
        ("REDIS_TIMEOUT_S", "-1"),
        ("REDIS_TIMEOUT_S", "soon"),
        ("RETENTION_DAYS", "0"),
        ("RETENTION_DAYS", "36501"),
        ("INGRESS_MODE", "nginx"),
        ("LOG_MAX_BYTES", "1023"),
        ("LOG_BACKUPS", "-1"),
        ("LOG_BACKUPS", "1001"),
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable(var: str, raw: str) -> None:
    """A bad value raises SettingsError (a ValueError) naming the variable and the value."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: raw})
    assert isinstance(info.value, ValueError)
    text = str(info.value)
    assert text.startswith(f"{var}: ")
    assert repr(raw) in text


@pytest.mark.parametrize("raw", ["loud", "verbose", "warnings"])
def test_unknown_log_level_raises_settings_error(raw: str) -> None:
    """A LOG_LEVEL logging does not know raises SettingsError naming LOG_LEVEL."""
    with pytest.raises(SettingsError, match="^LOG_LEVEL: "):
        Settings.from_env({"LOG_LEVEL": raw})


def test_first_bad_variable_is_reported() -> None:
    """With several bad values, the error names one of them (the first field's)."""
    with pytest.raises(SettingsError, match="^GRPC_PORT: "):
        Settings.from_env({"GRPC_PORT": "x", "LOG_BACKUPS": "-5"})


def test_overrides_win_over_the_environment() -> None:
    """Keyword overrides replace environment values; None overrides are ignored."""
    env = {"GRPC_PORT": "6000", "REDIS_URL": "redis://a:1/0"}
    s = Settings.from_env(env, grpc_port=7000, redis_url=None)
    assert (s.grpc_port, s.redis_url) == (7000, "redis://a:1/0")


def test_bad_override_raises_settings_error() -> None:
    """An override is validated like the environment."""
    with pytest.raises(SettingsError, match="^GRPC_PORT: "):
        Settings.from_env({}, grpc_port=0)


def test_unknown_override_is_refused() -> None:
    """An override that is not a setting raises SettingsError naming it."""
    with pytest.raises(SettingsError, match="^bogus: "):
        Settings.from_env({}, bogus=1)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after construction."""
    s = Settings.from_env({})
    with pytest.raises(ValidationError):
        s.grpc_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"REDIS_URL": "redis://127.0.0.1:6390/0", "INSTANCE_DIR": "/tmp/hrs-abc"},
        {
            "GRPC_PORT": "6001",
            "METRICS_PORT": "6002",
            "DATA_DIR": "/srv/data",
            "LOG_DIR": "logs",
            "REDIS_FSYNC": "no",
            "REDIS_POOL_SIZE": "3",
            "REDIS_TIMEOUT_S": "0.25",
            "RETENTION_DAYS": "365",
            "INGRESS_MODE": "proxy",
            "LOG_LEVEL": "error",
            "LOG_MAX_BYTES": "4096",
            "LOG_BACKUPS": "9",
            "SERVE_CONFIG": "/etc/hr/serve.yaml",
        },
    ],
    ids=["defaults", "some", "all"],
)
def test_as_env_round_trip(env: dict[str, str]) -> None:
    """Settings.from_env(s.as_env()) == s."""
    s = Settings.from_env(env)
    assert Settings.from_env(s.as_env()) == s


def test_as_env_leaves_out_unset_values() -> None:
    """Unset optional settings (REDIS_URL, INSTANCE_DIR, TLS and auth files...) are not
    exported, nor is the CLI's HEARTRATE_TOKEN even when set."""
    out = Settings.from_env({"HEARTRATE_TOKEN": "secret"}).as_env()
    assert "REDIS_URL" not in out and "INSTANCE_DIR" not in out
    unset = {"REDIS_URL", "INSTANCE_DIR", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"}
    unset |= {"AUTH_MODE", "AUTH_JWT_PUBLIC_KEY_FILE", "AUTH_JWT_SECRET_FILE"}
    unset |= {"AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE", "HEARTRATE_TOKEN"}
    unset |= {"WEBHOOK_URL", "WEBHOOK_SECRET_FILE"}
    assert set(out) == set(ENV_NAMES.values()) - unset
    assert all(isinstance(v, str) for v in out.values())


# --- tunables -----------------------------------------------------------------------------------

TUNABLES = [IngressTunables, ValidatorTunables, ZoneTunables]


@pytest.mark.parametrize("cls", TUNABLES)
@pytest.mark.parametrize("config", [None, {}])
def test_tunables_default_without_config(cls: type[Any], config: dict[str, Any] | None) -> None:
    """No user_config (None or {}) gives the defaults."""
    assert cls.from_config(config) == cls()


def test_ingress_tunables_defaults_and_alert_rules() -> None:
    """Ingress defaults match core/constants; alert_rules() converts seconds to ms."""
    t = IngressTunables.from_config({})
    assert (t.alert_sustain_s, t.alert_clear_readings, t.max_gap_s) == (0, 3, 30)
    assert t.profile_cache_ttl_s == 5.0
    assert t.alert_rules() == AlertRules()
    custom = IngressTunables.from_config({"alert_sustain_s": 12, "alert_clear_readings": 4})
    assert custom.alert_rules() == AlertRules(sustain_ms=12_000, clear_readings=4)


def test_validator_tunables_give_rules() -> None:
    """Validator tunables become ValidationRules, with retention from the settings."""
    t = ValidatorTunables.from_config({"valid_max_bpm": 200, "max_future_s": 60})
    assert t.rules(retention_days=7) == ValidationRules(
        valid_max_bpm=200, max_future_ms=60_000, retention_ms=7 * 86_400_000
    )
    assert ValidatorTunables().rules(30) == ValidationRules()


def test_validator_tunables_with_inconsistent_bands_fail_in_rules() -> None:
    """Bands that contradict each other raise InvalidRequest naming the band."""
    t = ValidatorTunables.from_config({"normal_low_bpm": 160})
    with pytest.raises(InvalidRequest, match="normal_low_bpm"):
        t.rules(30)


@pytest.mark.parametrize(
    ("cls", "config", "key"),
    [
        (IngressTunables, {"alert_sustain": 5}, "alert_sustain"),
        (IngressTunables, {"valid_max_bpm": 200}, "valid_max_bpm"),
        (ValidatorTunables, {"max_future_ms": 1}, "max_future_ms"),
        (ValidatorTunables, {"alert_sustain_s": 1}, "alert_sustain_s"),
        (ZoneTunables, {"max_gap_s": 30}, "max_gap_s"),
        (ZoneTunables, {"anything": 1}, "anything"),
    ],
)
def test_tunables_refuse_unknown_keys(cls: type[Any], config: dict[str, Any], key: str) -> None:
    """An unknown user_config key raises ValueError naming the key and the deployment's model."""
    with pytest.raises(ValueError) as info:
        cls.from_config(config)
    text = str(info.value)
    assert f"{key}:" in text and cls.__name__ in text


@pytest.mark.parametrize(
    ("cls", "config", "key"),
    [
        (IngressTunables, {"alert_sustain_s": -1}, "alert_sustain_s"),
        (IngressTunables, {"alert_clear_readings": 0}, "alert_clear_readings"),
        (IngressTunables, {"alert_clear_readings": "three"}, "alert_clear_readings"),
        (IngressTunables, {"profile_cache_ttl_s": -0.5}, "profile_cache_ttl_s"),
        (IngressTunables, {"max_gap_s": 2.5}, "max_gap_s"),
        (ValidatorTunables, {"valid_min_bpm": 0}, "valid_min_bpm"),
        (ValidatorTunables, {"valid_max_bpm": None}, "valid_max_bpm"),
        (ValidatorTunables, {"normal_high_bpm": [150]}, "normal_high_bpm"),
        (ValidatorTunables, {"max_future_s": -1}, "max_future_s"),
    ],
)
def test_tunables_refuse_bad_values(cls: type[Any], config: dict[str, Any], key: str) -> None:
    """A bad user_config value raises ValueError naming the key."""
    with pytest.raises(ValueError) as info:
        cls.from_config(config)
    assert f"{key}:" in str(info.value)


def test_tunables_report_every_bad_key() -> None:
    """All problems of one user_config are named in the one error."""
    with pytest.raises(ValueError) as info:
        IngressTunables.from_config({"alert_sustain_s": -1, "typo": 1})
    assert "alert_sustain_s:" in str(info.value) and "typo:" in str(info.value)


def test_tunables_accept_numeric_strings() -> None:
    """Values given as numeric strings (e.g. from an env-templated YAML) are accepted."""
    assert IngressTunables.from_config({"max_gap_s": "45"}).max_gap_s == 45


def test_tunables_are_frozen() -> None:
    """Tunables cannot be changed after parsing."""
    t = IngressTunables.from_config({})
    with pytest.raises(ValidationError):
        t.max_gap_s = 1  # type: ignore[misc]


def test_serve_config_user_configs_are_valid_tunables() -> None:
    """Every deployment's user_config in serve_config.yaml parses with its tunables model."""
    config = yaml.safe_load(packaged_serve_config().read_text())
    models = {
        "HeartRateIngress": IngressTunables,
        "Validator": ValidatorTunables,
        "ZoneCalculator": ZoneTunables,
    }
    seen = set()
    for app in config["applications"]:
        for d in app["deployments"]:
            model = models[d["name"]]
            parsed = model.from_config(d.get("user_config"))
            seen.add(d["name"])
            if isinstance(parsed, ValidatorTunables):
                parsed.rules(30)  # consistent bands
    assert seen == set(models)


def test_app_args_refuse_unknown_keys() -> None:
    """serve_config.yaml `args` with a misspelt key fails the deploy instead of being ignored."""
    from heartrate_serve.deployments.app import AppArgs

    assert AppArgs.model_validate({"redis_url": "redis://127.0.0.1:1"}).redis_url == (
        "redis://127.0.0.1:1"
    )
    assert AppArgs.model_validate({}).redis_url is None
    with pytest.raises(ValidationError, match="redis_ulr"):
        AppArgs.model_validate({"redis_ulr": "redis://127.0.0.1:1"})
