"""Precedence: constructor > environment > framework settings or file > defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scr_middleware import SessionCompletionRuntime
from scr_middleware.config import ENV_VARS, load_config

FILE = """
session_completion_runtime:
  capture:
    enabled: true
    batch_size: 100
    flush_interval_ms: 1000
  optimization:
    async_mode: false
"""


def test_env_disables_capture_over_the_file(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(FILE)
    assert load_config(path, env={"SCR_ENABLED": "false"}).capture.enabled is False
    monkeypatch.setenv("SCR_ENABLED", "false")
    runtime = SessionCompletionRuntime(config=path)
    try:
        assert runtime.enabled is False
    finally:
        runtime.shutdown()


def test_seed_file_is_switched_off_by_env(seed_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCR_ENABLED", "false")
    runtime = SessionCompletionRuntime(config=seed_file)
    try:
        assert runtime.enabled is False
    finally:
        runtime.shutdown()


def test_constructor_beats_env_which_beats_file(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml(FILE)
    env = {"SCR_BATCH_SIZE": "50", "SCR_ENABLED": "false", "SCR_FLUSH_INTERVAL_MS": "250"}
    from_env = load_config(path, env=env)
    assert from_env.capture.batch_size == 50
    assert from_env.capture.flush_interval_ms == 250
    assert from_env.capture.enabled is False
    explicit = load_config(path, env=env, overrides={"batch_size": 7, "enabled": True})
    assert explicit.capture.batch_size == 7
    assert explicit.capture.enabled is True
    assert explicit.capture.flush_interval_ms == 250  # not overridden: env still wins


def test_constructor_keyword_beats_env_on_a_real_runtime(
    write_yaml: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_ENABLED", "false")
    monkeypatch.setenv("SCR_BATCH_SIZE", "50")
    runtime = SessionCompletionRuntime(config=write_yaml(FILE), enabled=True, batch_size=3)
    try:
        assert runtime.enabled is True
        assert runtime.config.capture.batch_size == 3
    finally:
        runtime.shutdown()


def test_section_override_merges_with_the_file(write_yaml: Callable[[str], Path]) -> None:
    config = load_config(write_yaml(FILE), env={}, overrides={"capture": {"buffer_max_size": 5}})
    assert config.capture.buffer_max_size == 5
    assert config.capture.batch_size == 100  # the rest of the section comes from the file


def test_env_beats_framework_settings_dict() -> None:
    settings = {"capture": {"batch_size": 10}, "optimization": {"async_mode": False}}
    config = load_config(settings, env={"SCR_BATCH_SIZE": "20", "SCR_ASYNC_ROUTING": "true"})
    assert config.capture.batch_size == 20
    assert config.optimization.async_mode is True
    assert config.source == "settings"


def test_api_key_and_endpoint_arguments_beat_env() -> None:
    env = {"SCR_API_KEY": "from-env", "SCR_ENDPOINT": "https://env.example"}
    assert load_config(None, env=env).api_key == "from-env"
    config = load_config(None, env=env, api_key="explicit", endpoint="https://arg.example")
    assert (config.api_key, config.endpoint) == ("explicit", "https://arg.example")


@pytest.mark.parametrize(
    ("var", "raw", "path", "value"),
    [
        ("SCR_TIMEOUT_MS", "250", "timeout_ms", 250),
        ("SCR_ENABLED", "0", "capture.enabled", False),
        ("SCR_ENABLED", "TRUE", "capture.enabled", True),
        ("SCR_BATCH_SIZE", " 42 ", "capture.batch_size", 42),
        ("SCR_FLUSH_INTERVAL_MS", "0", "capture.flush_interval_ms", 0),
        ("SCR_BUFFER_MAX_SIZE", "9", "capture.buffer_max_size", 9),
        ("SCR_ASYNC_ROUTING", "yes", "optimization.async_mode", True),
        ("SCR_COMPRESSION", "on", "optimization.compression", True),
        ("SCR_LOG_LEVEL", "DEBUG", "monitoring.log_level", "debug"),
        ("SCR_METRICS_PORT", "9100", "monitoring.metrics_port", 9100),
        ("SCR_DATA_DIR", "/var/lib/scr", "storage.data_dir", "/var/lib/scr"),
    ],
)
def test_each_env_var_sets_its_key(var: str, raw: str, path: str, value: object) -> None:
    assert ENV_VARS[var] == path
    target: object = load_config(None, env={var: raw})
    for part in path.split("."):
        target = getattr(target, part)
    assert target == value


def test_empty_env_value_is_ignored() -> None:
    assert load_config(None, env={"SCR_BATCH_SIZE": "  "}).capture.batch_size == 100
