"""``scr check-config``: the guide's configs pass with a summary; broken ones name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_scr

HERE = Path(__file__).parent
# The guide's three YAML blocks, byte for byte (whitespace-only lines included).
SEED_CONFIG = (HERE / "seed_scr-config.yaml").read_text()
HIGH_THROUGHPUT = (HERE / "seed_high-throughput.yaml").read_text()
LOW_LATENCY = (HERE / "seed_low-latency.yaml").read_text()


def _write(tmp_path: Path, text: str, name: str = "scr-config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_seed_config_is_valid_and_summarised(tmp_path: Path) -> None:
    result = run_scr("check-config", _write(tmp_path, SEED_CONFIG), SCR_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "is valid" in out
    assert "capture: enabled=true batch_size=100 flush_interval_ms=1000" in out
    assert "destinations (3):" in out
    billing = next(line for line in out.splitlines() if "billing:" in line)
    for part in ("https://billing.internal", "transform=billing_v1", "retries=3", "timeout=500ms"):
        assert part in billing
    assert "/api/v1/events" not in billing  # scheme and host only
    assert "retention=2555d" in out
    assert "metrics_port=9090 health_check_port=8080" in out
    assert f"data dir: {tmp_path}" in out
    assert "environment overrides applied: SCR_DATA_DIR" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HIGH_THROUGHPUT, "scaling: replicas=10 partitioning_key=user_id"),
        (LOW_LATENCY, "optimization: async_mode=true compression=false"),
    ],
)
def test_performance_variants_are_valid(tmp_path: Path, text: str, expected: str) -> None:
    result = run_scr("check-config", _write(tmp_path, text))
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "embedded SQLite ledger" in result.stdout
    assert "ledger: sqlite: " in result.stdout


def test_secrets_are_not_printed(tmp_path: Path) -> None:
    text = """\
session_completion_runtime:
  destinations:
    - name: billing
      endpoint: https://svc:hunter2@billing.internal:8443/v1?token=abc123
      headers:
        Authorization: Bearer ${BILLING_TOKEN}
"""
    result = run_scr("check-config", _write(tmp_path, text), BILLING_TOKEN="tok-secret-9")
    assert result.returncode == 0, result.stderr
    assert "https://billing.internal:8443" in result.stdout
    for secret in ("hunter2", "abc123", "tok-secret-9", "Bearer"):
        assert secret not in result.stdout
    assert "headers=Authorization (values hidden)" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      retry_attempts: 3\n",
            "      retry_atempts: 3\n",
            "destinations[0].retry_atempts: unknown key",
        ),
        (
            "    batch_size: 100\n",
            "    batch_size: lots\n",
            "capture.batch_size: must be an integer",
        ),
        (
            "sampling_rate: 1.0",
            "sampling_rate: 1.5",
            "destinations[1].sampling_rate: must be between 0 and 1",
        ),
        (
            "transform: audit_v1",
            "transform: no_such_pkg.mod:fn",
            "destinations[2].transform: cannot import module",
        ),
        (
            "transform: billing_v1",
            "transform: billing_v9",
            "destinations[0].transform: unknown transform",
        ),
        (
            "endpoint: https://analytics.internal/ingest",
            "endpoint: ftp://x",
            "destinations[1].endpoint:",
        ),
        ("    log_level: info\n", "    log_level: [info\n", "invalid YAML"),
        ("  monitoring:\n", "  monitorin:\n", "monitorin: unknown key"),
    ],
)
def test_broken_configs_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SEED_CONFIG
    result = run_scr("check-config", _write(tmp_path, SEED_CONFIG.replace(old, new)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_unset_header_variable(tmp_path: Path) -> None:
    missing = run_scr("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: config: config file not found")
    text = """\
session_completion_runtime:
  destinations:
    - name: billing
      endpoint: https://billing.internal/events
      headers:
        Authorization: Bearer ${UNSET_TOKEN_VAR}
"""
    unset = run_scr("check-config", _write(tmp_path, text))
    assert unset.returncode == 1
    assert "destinations[0].headers.Authorization" in unset.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in ((), ("check-config",), ("demo", "--events", "-3"), ("serve", "--port", "x")):
        result = run_scr(*args)
        assert result.returncode == 2, args
        assert "error: " in result.stderr
        assert "Traceback" not in result.stderr
