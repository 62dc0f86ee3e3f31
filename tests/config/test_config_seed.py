"""The seed's configuration file and its two tuning variants load exactly as written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from scr_middleware import SessionCompletionRuntime
from scr_middleware.config import load_config
from scr_middleware.config_model import DestinationConfig

SEED_DIR = Path(__file__).parent / "seed"


def test_seed_file_is_the_verbatim_block() -> None:
    """Guards the copy itself: the comments and blank-ish lines of the seed are all there."""
    text = (SEED_DIR / "scr-config.yaml").read_text()
    assert text.startswith("# scr-config.yaml\nsession_completion_runtime:\n")
    assert "      sampling_rate: 1.0  # 100% of events\n" in text
    assert "      retention_days: 2555  # 7 years\n" in text


def test_seed_config_loads_with_every_value(seed_file: Path) -> None:
    config = load_config(seed_file, env={})
    assert config.capture.enabled is True
    assert config.capture.batch_size == 100
    assert config.capture.flush_interval_ms == 1000
    assert config.capture.buffer_max_size == 10000
    assert config.destinations == (
        DestinationConfig(
            name="billing",
            endpoint="https://billing.internal/api/v1/events",
            transform="billing_v1",
            retry_attempts=3,
            timeout_ms=500,
        ),
        DestinationConfig(
            name="analytics",
            endpoint="https://analytics.internal/ingest",
            transform="analytics_v2",
            retry_attempts=2,
            timeout_ms=200,
            sampling_rate=1.0,
        ),
        DestinationConfig(
            name="audit",
            endpoint="https://compliance.internal/audit",
            transform="audit_v1",
            retry_attempts=5,
            timeout_ms=1000,
            retention_days=2555,
        ),
    )
    assert config.monitoring.metrics_port == 9090
    assert config.monitoring.health_check_port == 8080
    assert config.monitoring.log_level == "info"
    assert config.source == str(seed_file)


def test_seed_config_builds_a_runtime_without_starting_anything(seed_file: Path) -> None:
    runtime = SessionCompletionRuntime(config=seed_file)
    try:
        assert [d.name for d in runtime.destinations] == ["billing", "analytics", "audit"]
        assert runtime.enabled
        assert not runtime.router.running  # started lazily, on the first capture
        assert not any(t.name == "scr-router" and t.is_alive() for t in threading.enumerate())
    finally:
        runtime.shutdown()


def test_seed_config_as_a_dict_is_the_same_config(seed_file: Path) -> None:
    from_file = load_config(seed_file, env={})
    from_dict = load_config(yaml.safe_load(seed_file.read_text()), env={})
    assert from_dict.destinations == from_file.destinations
    assert from_dict.capture == from_file.capture
    assert from_dict.monitoring == from_file.monitoring


def test_scr_config_file_env_var_points_at_the_seed_file(
    seed_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_CONFIG_FILE", str(seed_file))
    runtime = SessionCompletionRuntime()
    try:
        assert [d.transform for d in runtime.destinations] == [
            "billing_v1",
            "analytics_v2",
            "audit_v1",
        ]
    finally:
        runtime.shutdown()


def test_high_throughput_variant_loads() -> None:
    config = load_config(SEED_DIR / "high-throughput.yaml", env={})
    assert config.capture.batch_size == 1000
    assert config.capture.flush_interval_ms == 100
    assert config.capture.buffer_max_size == 100000
    assert config.scaling.replicas == 10
    assert config.scaling.partitioning_key == "user_id"
    runtime = SessionCompletionRuntime(config=SEED_DIR / "high-throughput.yaml")
    try:  # no destinations: the embedded ledger in the data dir
        assert [d.name for d in runtime.destinations] == ["ledger"]
        assert runtime.destinations[0].endpoint.startswith("sqlite:///")
    finally:
        runtime.shutdown()


def test_low_latency_variant_loads() -> None:
    config = load_config(SEED_DIR / "low-latency.yaml", env={})
    assert config.capture.batch_size == 1
    assert config.capture.flush_interval_ms == 0
    assert config.optimization.async_mode is True
    assert config.optimization.compression is False
    SessionCompletionRuntime(config=SEED_DIR / "low-latency.yaml").shutdown()


def test_defaults_without_file_or_env_match_the_seed_table() -> None:
    config = load_config(None, env={})
    assert config.timeout_ms == 100  # SCR_TIMEOUT_MS
    assert config.capture.enabled is True  # SCR_ENABLED
    assert config.capture.batch_size == 100  # SCR_BATCH_SIZE
    assert config.capture.flush_interval_ms == 1000  # SCR_FLUSH_INTERVAL_MS
    assert config.destinations == ()
    assert config.source == "defaults"
