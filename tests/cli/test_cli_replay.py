"""``scr replay``: what the spools hold goes out once the destination is back."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import Sink, run_scr

from scr_middleware.runtime import SessionCompletionRuntime


def _config(tmp_path: Path, sink: Sink) -> Path:
    path = tmp_path / "scr-config.yaml"
    path.write_text(
        f"""\
session_completion_runtime:
  capture:
    flush_interval_ms: 0
  destinations:
    - name: billing
      endpoint: {sink.url("/billing")}
      transform: billing_v1
      retry_attempts: 0
      timeout_ms: 5000
    - name: audit
      endpoint: {sink.url("/audit")}
      transform: audit_v1
      retry_attempts: 0
      timeout_ms: 5000
  storage:
    data_dir: {tmp_path / "data"}
"""
    )
    return path


def _capture_while_failing(config: Path, sink: Sink, count: int) -> None:
    sink.status = {"/billing": 503, "/audit": 400}  # billing down, audit rejects
    runtime = SessionCompletionRuntime(config=str(config))
    try:
        for i in range(count):
            runtime.capture({"session_id": f"s{i}", "event_id": f"evt_{i}", "user_id": "u1"})
        assert runtime.flush(20.0)
        stats = {s.name: s for s in runtime.router.destination_stats}
        assert stats["billing"].dead_lettered_total == count
        assert stats["audit"].dead_lettered_total == count
    finally:
        runtime.shutdown(5.0)


def test_replay_after_the_outage(tmp_path: Path) -> None:
    with Sink() as sink:
        config = _config(tmp_path, sink)
        _capture_while_failing(config, sink, 4)
        sink.status = {}  # everything is healthy again

        first = run_scr("replay", "--config", str(config))
        assert first.returncode == 0, first.stderr
        assert "billing: spool 4 (retries_exhausted: 4)" in first.stdout
        assert "audit: spool 4 (rejected: 4)" in first.stdout
        assert "billing: replayed 4, delivered 4, left in spool empty" in first.stdout
        assert "4 rejected or untransformable kept (use --include-rejected)" in first.stdout
        assert sorted(e["event_id"] for e in sink.events("/billing")) == [
            f"evt_{i}" for i in range(4)
        ]
        assert sink.events("/audit") == []

        fixed = run_scr(
            "replay", "--config", str(config), "--destination", "audit", "--include-rejected"
        )
        assert fixed.returncode == 0, fixed.stderr
        assert "audit: replayed 4, delivered 4, left in spool empty" in fixed.stdout
        assert "billing" not in fixed.stdout
        assert len(sink.events("/audit")) == 4

        again = run_scr("replay", "--config", str(config), "--include-rejected")
        assert again.returncode == 0
        assert "nothing to replay" in again.stdout
        assert len(sink.events("/billing")) == 4  # nothing sent twice


def test_replay_while_still_down_keeps_the_events_and_exits_1(tmp_path: Path) -> None:
    with Sink() as sink:
        config = _config(tmp_path, sink)
        _capture_while_failing(config, sink, 2)
        result = run_scr("replay", "--config", str(config), "--destination", "billing")
        assert result.returncode == 1
        assert "billing: replayed 2, delivered 0, left in spool 2" in result.stdout


def test_replay_unknown_destination(tmp_path: Path) -> None:
    with Sink() as sink:
        result = run_scr("replay", "--config", str(_config(tmp_path, sink)), "--destination", "x")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --destination: no destination 'x'")
