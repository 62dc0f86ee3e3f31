"""Each benchmark runs end to end with tiny sizes and produces numbers.

No thresholds: the figures at smoke size mean nothing (and the machine is noisy); this only
proves that ``python -m benchmarks`` still runs every benchmark against the current code, so
``make bench`` does not rot between releases.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ("capture", "router", "memory", "asgi", "servers", "instructions")
# Rows a benchmark must report: the middleware as shipped (capture process) and inline, and
# the capture process's CPU beside the app's (the work is moved, not removed).
REQUIRED_ROWS = {
    "asgi": (
        "added per JSON request",
        "added per JSON request, offload: inline",
        "capture process CPU per JSON event",
        "added per SSE chunk, offload: inline",
    ),
    "instructions": (
        "added per JSON request",
        "added per JSON request, offload: inline",
        "added per JSON request, naive capture middleware",
    ),
    "servers": (
        "uvicorn + Starlette, SCR middleware, offload: inline",
        "uvicorn + Starlette, app process CPU per request, SCR middleware",
        "uvicorn + Starlette, capture process CPU per event",
        "gunicorn -w 2 + Flask, capture process CPU per event",
        "gunicorn -w 2 + Django, capture process CPU per event",
    ),
}


def _run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name == "servers" else name
        for name in BENCHMARKS
    ],
)
def test_benchmark_produces_figures(name: str, tmp_path: Path) -> None:
    if name == "instructions" and shutil.which("valgrind") is None:
        pytest.skip("the instructions benchmark counts with valgrind, which is not installed")
    out = tmp_path / "result.json"
    # Each of the instruction benchmark's eight runs starts Python under valgrind.
    timeout = 420.0 if name == "instructions" else 120.0
    done = _run("--smoke", "--only", name, "--json", str(out), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["machine"]["cpus"] >= 1
    [result] = data["results"]
    assert result["name"] == name
    assert result["scale"] == "smoke"
    assert result["figures"], "a benchmark must report at least one figure"
    for figure in result["figures"]:
        assert _finite(figure["value"]), figure
        if figure["anchor"] is not None:
            assert _finite(figure["anchor_value"]), figure
            assert _finite(figure["ratio"]), figure
        if figure["target"] is not None:
            assert figure["verdict"] in ("PASS", "MISS"), figure
    # The console table names every figure of the run.
    for figure in result["figures"]:
        assert figure["metric"] in done.stdout
    metrics = [figure["metric"] for figure in result["figures"]]
    for required in REQUIRED_ROWS.get(name, ()):
        assert any(metric.startswith(required) for metric in metrics), (required, metrics)


def test_unknown_benchmark_is_a_usage_error() -> None:
    done = _run("--only", "no-such-benchmark", timeout=30.0)
    assert done.returncode == 2
    assert "unknown benchmark" in done.stderr


def test_list_names_every_benchmark() -> None:
    done = _run("--list", timeout=30.0)
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert listed == list(BENCHMARKS)
