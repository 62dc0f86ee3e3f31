"""prometheus_client multiprocess mode: counts add up across worker processes.

The library picks its value class when first imported, so every process that must run in
multiprocess mode is a fresh subprocess with PROMETHEUS_MULTIPROC_DIR already set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from scr_middleware.observability import multiprocess_dir
from scr_middleware.observability.gunicorn_hooks import child_exit, on_starting
from scr_middleware.observability.metrics import render_multiprocess

from .helpers import parse_samples, value

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from scr_middleware.observability import BufferState, MetricsBridge
    from scr_middleware.router.stats import DestinationStats, RuntimeStats

    captured, delivered, buffer_bytes, utilization_events, state = json.loads(sys.argv[1])
    bridge = MetricsBridge()
    assert bridge.multiprocess, "multiprocess mode not detected"
    # A second bridge in the same process (same mmap files) must add, not overwrite: created
    # before the first one writes, so separate value objects would clobber each other.
    other = MetricsBridge()
    runtime = RuntimeStats()
    dest = DestinationStats("billing", state=state)
    buffer = BufferState(utilization_events, buffer_bytes, 100)
    runtime.captured = captured - 1
    bridge.sync(runtime, [dest], buffer)
    runtime.captured = captured  # a second sync adds only the delta
    dest.delivered = delivered
    dest.observe_latency(12.0)
    bridge.sync(runtime, [dest], buffer)
    other.sync(RuntimeStats(captured=1), [], buffer)
    print(os.getpid())
    """
)

SERVER = textwrap.dedent(
    """
    import sys
    from scr_middleware.observability import ANY_FREE_PORT, MetricsBridge, MonitoringServer
    bridge = MetricsBridge()
    server = MonitoringServer(ANY_FREE_PORT, 0, "127.0.0.1", bridge.render, lambda: (True, {}))
    server.start()
    print(server.bound_ports["metrics"], flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    server.stop()
    """
)


def run_python(code: str, directory: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def two_workers(tmp_path: Path) -> tuple[Path, int, int]:
    # (captured, delivered, buffer bytes, buffer events, destination state)
    pid_a = int(run_python(WORKER, tmp_path, json.dumps([5, 4, 1000, 10, "ok"])))
    pid_b = int(run_python(WORKER, tmp_path, json.dumps([7, 6, 3000, 60, "down"])))
    return tmp_path, pid_a, pid_b


def test_counts_add_up_across_workers(two_workers: tuple[Path, int, int]) -> None:
    directory, _, _ = two_workers
    s = parse_samples(render_multiprocess(str(directory))[0].decode())
    assert value(s, "scr_events_captured_total") == 5 + 7 + 2  # + one per second bridge
    assert value(s, "scr_events_routed_total", destination="billing") == 10
    assert value(s, "scr_routing_latency_ms_count", destination="billing") == 2
    assert value(s, "scr_buffer_size_bytes") == 4000  # livesum
    assert value(s, "scr_buffer_utilization_percent") == 60  # livemax
    assert value(s, "scr_destination_up", destination="billing") == 0  # livemin
    assert {k[0] for k in s} >= {"scr_capture_latency_ms", "scr_memory_usage_bytes"}
    assert not any(dict(k[1]).get("pid") for k in s)  # no per-pid series leak out


def test_child_exit_drops_a_dead_workers_live_gauges(
    two_workers: tuple[Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, pid_a, _ = two_workers
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    child_exit(None, SimpleNamespace(pid=pid_a))
    s = parse_samples(render_multiprocess(str(directory))[0].decode())
    assert value(s, "scr_buffer_size_bytes") == 3000
    assert value(s, "scr_events_captured_total") == 14  # counters outlive their worker


def test_monitoring_server_serves_the_aggregate(two_workers: tuple[Path, int, int]) -> None:
    directory, _, _ = two_workers
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert resp.status_code == 200
        assert value(parse_samples(resp.text), "scr_events_captured_total") == 14
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        if proc.stdout:
            proc.stdout.close()


def test_env_set_after_import_is_not_multiprocess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process imported prometheus_client without the variable: values live in memory,
    # so pretending to be multiprocess would serve an empty aggregate.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert multiprocess_dir() is None


def test_on_starting_clears_only_prometheus_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = ["counter_11.db", "gauge_livesum_11.db", "histogram_11.db", "summary_11.db"]
    for name in [*stale, "keep.txt", "notes.db"]:
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    on_starting(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "notes.db"]


def test_hooks_without_multiprocess_dir_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    on_starting(None)
    child_exit(None, SimpleNamespace(pid=12345))
