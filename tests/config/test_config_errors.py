# ruff: noqa: E501  (wide parametrize tables read better one case per line)
"""Every configuration error is a ``ConfigError`` naming the key path (or env var), raised
before anything starts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scr_middleware import ConfigError, SessionCompletionRuntime
from scr_middleware.config import load_config

OK = {"name": "billing", "endpoint": "https://billing.internal/api/v1/events"}
OK2 = {"name": "analytics", "endpoint": "https://analytics.internal/ingest"}


def error_for(source: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(source, env=env or {})
    return caught.value


@pytest.mark.parametrize(
    ("settings", "path", "message"),
    [
        # unknown keys: top level, nested, inside destinations[i], deeper
        ({"capturee": {}}, "capturee", "unknown key"),
        ({"capture": {"batch_sizee": 5}}, "capture.batch_sizee", "unknown key"),
        ({"destinations": [OK, {**OK2, "retry_attempt": 3}]}, "destinations[1].retry_attempt", "unknown key"),
        ({"destinations": [{**OK, "tls": {"ca": "x"}}]}, "destinations[0].tls.ca", "unknown key"),
        ({"session_completion_runtime": {}, "extra": 1}, "extra", "unknown key"),
        # wrong types
        ({"capture": {"batch_size": "100"}}, "capture.batch_size", "must be an integer, got '100'"),
        ({"capture": {"batch_size": 1.5}}, "capture.batch_size", "must be an integer, got 1.5"),
        ({"capture": {"enabled": "yes"}}, "capture.enabled", "must be true or false, got 'yes'"),
        ({"capture": {"batch_size": True}}, "capture.batch_size", "must be an integer, got True"),
        ({"capture": []}, "capture", "must be a mapping, got list"),
        ({"capture": {"batch_size": None}}, "capture.batch_size", "must not be null"),
        ({"destinations": {"billing": OK}}, "destinations", "must be a list, got dict"),
        ({"destinations": [OK, "analytics"]}, "destinations[1]", "must be a mapping, got str"),
        ({"destinations": [{**OK, "timeout_ms": "fast"}]}, "destinations[0].timeout_ms", "must be an integer"),
        ({"destinations": [{**OK, "headers": ["a"]}]}, "destinations[0].headers", "must be a mapping"),
        ({"destinations": [{"name": "billing"}]}, "destinations[0].endpoint", "is required"),
        ({"destinations": [{**OK, "name": ""}]}, "destinations[0].name", "must be a non-empty string"),
        ({"monitoring": {"log_level": "loud"}}, "monitoring.log_level", "must be one of debug"),
        ({"optimization": {"compression": "gzip"}}, "optimization.compression", "must be true or false"),
        ({"destinations": [{**OK, "format": "xml"}]}, "destinations[0].format", "must be one of json, ndjson"),
        # out of range
        ({"capture": {"batch_size": 0}}, "capture.batch_size", "must be between 1 and 100000, got 0"),
        ({"capture": {"flush_interval_ms": -1}}, "capture.flush_interval_ms", "must be between 0 and"),
        ({"destinations": [{**OK, "retry_attempts": -1}]}, "destinations[0].retry_attempts", "must be between 0 and 100"),
        ({"destinations": [{**OK, "timeout_ms": 0}]}, "destinations[0].timeout_ms", "must be between 1 and"),
        ({"monitoring": {"metrics_port": 70000}}, "monitoring.metrics_port", "must be between -1 and 65535"),
        ({"scaling": {"replicas": 0}}, "scaling.replicas", "must be between 1 and 64"),
        # cross-field rules
        ({"destinations": [OK, {**OK2, "name": "billing"}]}, "destinations[1].name", "duplicate name 'billing'"),
        ({"destinations": [{**OK, "endpoint": "http://billing.internal/e", "tls": {"verify": False}}]}, "destinations[0].tls", "only applies to https:// endpoints"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_key_path(settings: dict[str, Any], path: str, message: str) -> None:
    error = error_for(settings)
    assert error.path == path
    assert message in error.problem
    assert str(error).startswith(f"{path}: ")


def test_out_of_range_sampling_rate_has_the_exact_message() -> None:
    settings = {"destinations": [OK, {**OK2, "sampling_rate": 1.5}]}
    error = error_for(settings)
    assert str(error) == "destinations[1].sampling_rate: must be between 0 and 1, got 1.5"


def test_same_errors_from_a_yaml_file(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml(
        """
session_completion_runtime:
  destinations:
    - name: billing
      endpoint: https://billing.internal/api/v1/events
    - name: analytics
      endpoint: https://analytics.internal/ingest
      sampling_rate: 1.5
"""
    )
    with pytest.raises(ConfigError) as caught:
        SessionCompletionRuntime(config=path)
    assert str(caught.value) == "destinations[1].sampling_rate: must be between 0 and 1, got 1.5"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCR_BATCH_SIZE": "abc"}, "SCR_BATCH_SIZE: must be an integer, got 'abc'"),
        ({"SCR_BATCH_SIZE": "0"}, "SCR_BATCH_SIZE: must be between 1 and 100000, got 0"),
        ({"SCR_ENABLED": "maybe"}, "SCR_ENABLED: must be true or false, got 'maybe'"),
        ({"SCR_TIMEOUT_MS": "-1"}, "SCR_TIMEOUT_MS: must be between 1 and 600000, got -1"),
        ({"SCR_FLUSH_INTERVAL_MS": "1.5"}, "SCR_FLUSH_INTERVAL_MS: must be an integer, got '1.5'"),
        ({"SCR_LOG_LEVEL": "loud"}, "SCR_LOG_LEVEL: must be one of debug, info, warning, error, critical, got 'loud'"),
        ({"SCR_ASYNC_ROUTING": "sometimes"}, "SCR_ASYNC_ROUTING: must be true or false, got 'sometimes'"),
    ],
)  # fmt: skip
def test_bad_env_values_name_the_variable(env: dict[str, str], message: str) -> None:
    assert str(error_for(None, env)) == message


def test_bad_env_value_is_reported_even_with_a_file(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError) as caught:
        SessionCompletionRuntime(config=write_yaml("capture: {batch_size: 10}\n"))
    assert caught.value.path == "SCR_BATCH_SIZE"


def test_constructor_value_is_reported_as_itself_not_the_env_var() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"SCR_BATCH_SIZE": "5"}, overrides={"batch_size": 0})
    assert caught.value.path == "capture.batch_size"


def test_yaml_syntax_error_names_file_and_line(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml("session_completion_runtime:\n  capture:\n    batch_size: [1, 2\n")
    error = error_for(path)
    assert error.path == "config"
    assert f"invalid YAML in {path} at line" in error.problem


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    error = error_for(missing)
    assert str(error) == f"config: config file not found: {missing}"


def test_missing_file_named_by_env_var(tmp_path: Path) -> None:
    error = error_for(None, {"SCR_CONFIG_FILE": str(tmp_path / "nope.yaml")})
    assert error.path == "SCR_CONFIG_FILE"


def test_top_level_must_be_a_mapping(write_yaml: Callable[[str], Path]) -> None:
    assert "must be a mapping" in error_for(write_yaml("- a\n- b\n")).problem


def test_unknown_constructor_keyword() -> None:
    with pytest.raises(ConfigError) as caught:
        SessionCompletionRuntime(batchsize=1)
    assert caught.value.path == "batchsize"


def runtime_error(destinations: list[dict[str, Any]]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        SessionCompletionRuntime(config={"destinations": destinations})
    return caught.value


def test_missing_custom_transform_module_names_the_transform_key() -> None:
    error = runtime_error([OK, {**OK2, "transform": "no_such_module_xyz:transform"}])
    assert error.path == "destinations[1].transform"
    assert "no_such_module_xyz" in error.problem


def test_custom_transform_missing_attribute_and_unknown_name() -> None:
    error = runtime_error([{**OK, "transform": "json:no_such_function"}])
    assert error.path == "destinations[0].transform"
    assert "has no attribute" in error.problem
    error = runtime_error([OK, OK2, {**OK, "name": "audit", "transform": "billing_v9"}])
    assert error.path == "destinations[2].transform"
    assert "unknown transform 'billing_v9'" in error.problem


def test_custom_transform_loads_from_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_transforms.py").write_text(
        "def slim(event):\n    return {'id': event['event_id']}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runtime = SessionCompletionRuntime(
        config={"destinations": [{**OK, "transform": "my_transforms:slim"}]}
    )
    runtime.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("ftp://billing.internal/events", "scheme 'ftp'"),
        ("billing.internal/events", "no scheme"),
        ("https:///events", "missing host"),
        ("sqlite:///", "needs a file path"),
    ],
)
def test_unusable_endpoint_names_the_endpoint_key(endpoint: str, fragment: str) -> None:
    error = runtime_error([OK, {**OK2, "endpoint": endpoint}])
    assert error.path == "destinations[1].endpoint"
    assert fragment in error.problem


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"endpoint": "sqlite:///ledger.db", "format": "ndjson"}, "destinations[0].format"),
        ({"endpoint": "stdout:", "headers": {"X-Team": "billing"}}, "destinations[0].headers"),
        ({"headers": {"Authorization": "Bearer ${SCR_TEST_UNSET_TOKEN}"}}, "destinations[0].headers.Authorization"),
        ({"headers": {"Bad Header": "x"}}, "destinations[0].headers.Bad Header"),
        ({"tls": {"ca_file": "/nonexistent/ca.pem"}}, "destinations[0].tls.ca_file"),
    ],
)  # fmt: skip
def test_destination_settings_are_checked_at_start_up(extra: dict[str, Any], path: str) -> None:
    """Not on the first send: a typo must stop start-up, like every other key."""
    assert runtime_error([{**OK, **extra}]).path == path


def test_no_half_started_runtime_after_a_config_error() -> None:
    before = {t.ident for t in threading.enumerate()}
    runtime_error([OK, {**OK2, "transform": "no_such_module_xyz:f"}])
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert started == []
