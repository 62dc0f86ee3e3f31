"""A real gunicorn with two workers: one /metrics port, counts summed over both workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .helpers import free_port, parse_samples, value

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    """
    import os
    from scr_middleware.observability import BufferState, MetricsBridge, MonitoringServer
    from scr_middleware.router.stats import RuntimeStats

    _state = {}

    def _worker_state():
        # What the shared runtime does once per process: every worker tries the same port.
        if _state.get("pid") != os.getpid():
            bridge = MetricsBridge()
            server = MonitoringServer(
                int(os.environ["SCR_TEST_METRICS_PORT"]), 0, "127.0.0.1",
                bridge.render, lambda: (True, {}),
            )
            server.start()
            _state.update(pid=os.getpid(), bridge=bridge, runtime=RuntimeStats())
        return _state

    def app(environ, start_response):
        state = _worker_state()
        state["runtime"].captured += 1
        state["bridge"].sync(state["runtime"], [], BufferState(0, 0, 100))
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


@pytest.mark.slow
def test_two_workers_share_one_metrics_port_and_add_up(tmp_path: Path) -> None:
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("gunicorn not installed")
    (tmp_path / "scr_test_app.py").write_text(APP)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "gauge_livesum_999999.db").write_bytes(b"stale")  # a previous run's file
    app_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "SCR_TEST_METRICS_PORT": str(metrics_port),
    }
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{app_port}",
            "-c",
            "python:scr_middleware.observability.gunicorn_hooks",
            "scr_test_app:app",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        pids: set[str] = set()
        requests = 0
        deadline = time.monotonic() + 30
        # Keep asking (new connection each time) until both workers have served.
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            try:
                resp = httpx.get(f"http://127.0.0.1:{app_port}/", headers={"Connection": "close"})
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            pids.add(resp.text)
            requests += 1
        assert not (metrics_dir / "gauge_livesum_999999.db").exists()  # on_starting hook

        samples = parse_samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
        assert value(samples, "scr_events_captured_total") == requests
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        try:
            _, stderr = gunicorn.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
            _, stderr = gunicorn.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    # child_exit marked both workers dead: no live gauge files remain.
    assert not list(metrics_dir.glob("gauge_live*.db"))
