"""The seed's monitoring snippets, run as written against a real runtime's servers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scr_middleware import SessionCompletionRuntime
from scr_middleware.monitoring import seed_compatible

SEED_CHECK = """
EVENT_COUNT=$(curl -s http://localhost:{port}/metrics | grep 'scr_events_captured_total' | awk '{{print $2}}')

if [ "$EVENT_COUNT" -gt 0 ]; then
  echo "✓ Integration test passed"
  exit 0
else
  echo "✗ Integration test failed: no events captured"
  exit 1
fi
"""  # noqa: E501  (the seed's script, verbatim)


@pytest.fixture
def runtime(tmp_path: Path) -> Any:
    rt = SessionCompletionRuntime(
        config={
            "capture": {"batch_size": 1, "flush_interval_ms": 0},
            "destinations": [{"name": "ledger", "endpoint": f"sqlite:///{tmp_path}/l.db"}],
            "monitoring": {"metrics_port": -1, "health_check_port": -1, "host": "127.0.0.1"},
        }
    )
    yield rt
    rt.shutdown(5)


def _ports(rt: SessionCompletionRuntime) -> dict[str, int]:
    rt.start()
    assert rt._observability is not None
    assert rt._observability.server is not None
    return rt._observability.server.bound_ports


@pytest.mark.skipif(shutil.which("curl") is None, reason="the seed's script uses curl")
def test_seed_integration_script_passes_once_events_are_captured(runtime: Any) -> None:
    port = _ports(runtime)["metrics"]
    script = SEED_CHECK.format(port=port)
    before = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert before.returncode == 1, before.stdout + before.stderr  # zero captured: fails
    runtime.capture({"session_id": "s1", "usage": {"total_tokens": 100}})
    runtime.flush(5)
    after = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "Integration test passed" in after.stdout


def test_exposition_still_parses_and_counts(runtime: Any) -> None:
    ports = _ports(runtime)
    for i in range(3):
        runtime.capture({"session_id": f"s{i}", "usage": {"input_tokens": 1, "output_tokens": 1}})
    runtime.flush(5)
    text = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("scr_events_captured_total", ())] == 3
    assert samples[("scr_events_routed_total", (("destination", "ledger"),))] == 3
    quantiles = {
        q
        for (name, labels), _ in samples.items()
        if name == "scr_capture_latency_ms"
        for _, q in labels
    }
    assert quantiles == {"0.5", "0.95", "0.99"}
    health = httpx.get(f"http://127.0.0.1:{ports['health']}/health")
    assert health.status_code == 200
    assert health.json()["destinations"][0]["balanced"] is True


def test_seed_compatible_only_touches_the_captured_family_and_whole_numbers() -> None:
    body = (
        b"# HELP scr_events_captured_total Events accepted\n"
        b"# TYPE scr_events_captured_total counter\n"
        b"scr_events_captured_total 5.0\n"
        b"# HELP scr_events_routed_total Events delivered\n"
        b"# TYPE scr_events_routed_total counter\n"
        b'scr_events_routed_total{destination="a"} 2.0\n'
        b'scr_capture_latency_ms{quantile="0.5"} 0.0125\n'
    )
    assert seed_compatible(body) == (
        b"scr_events_captured_total 5\n"
        b"# HELP scr_events_routed_total Events delivered\n"
        b"# TYPE scr_events_routed_total counter\n"
        b'scr_events_routed_total{destination="a"} 2\n'
        b'scr_capture_latency_ms{quantile="0.5"} 0.0125\n'
    )
