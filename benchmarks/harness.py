"""Shared timing, statistics and reporting for the benchmarks.

The machine the benchmarks run on is shared and noisy, so no figure stands alone: every
benchmark measures an anchor or baseline in the same run (interleaved with the measured code
where possible), repeats trials, and reports medians (and minimums) plus the ratio to the
anchor. A target is checked against that ratio when the target is defined relative to an
anchor, and against the raw value otherwise; both are printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil  # type: ignore[import-untyped]  # no stubs in the dev extras

T = TypeVar("T")
ScaleName = Literal["full", "quick", "smoke"]
SCALES: tuple[ScaleName, ...] = ("full", "quick", "smoke")


@dataclass(frozen=True)
class Scale:
    """How big a run is: ``full`` for the published figures, ``quick`` for a fast look,
    ``smoke`` for the test suite (tiny sizes; the numbers mean nothing, only that they exist)."""

    name: ScaleName

    def pick(self, full: T, quick: T, smoke: T) -> T:
        return {"full": full, "quick": quick, "smoke": smoke}[self.name]


@dataclass(frozen=True)
class Target:
    """``value <op> bound``, where value is the ratio (``on="ratio"``) or the raw figure."""

    op: Literal["<=", ">="]
    bound: float
    on: Literal["ratio", "value"] = "value"

    def check(self, value: float | None, ratio: float | None) -> str | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None or math.isnan(subject):
            return None
        ok = subject <= self.bound if self.op == "<=" else subject >= self.bound
        return "PASS" if ok else "MISS"

    def describe(self, unit: str) -> str:
        suffix = "x" if self.on == "ratio" else f" {unit}"
        return f"{self.op} {self.bound:g}{suffix}"


@dataclass
class Figure:
    """One reported number with its anchor, ratio and verdict."""

    metric: str
    value: float
    unit: str
    anchor: str | None = None
    anchor_value: float | None = None
    target: Target | None = None
    note: str = ""
    # The median of per-round ratios, when rounds were paired: steadier under drift than the
    # ratio of the two medians, so it is the ratio reported (and checked) when given.
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.anchor_value is None or self.anchor_value == 0:
            return None
        return self.value / self.anchor_value

    @property
    def verdict(self) -> str | None:
        return None if self.target is None else self.target.check(self.value, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_spec"] = data["target"]
        data["target"] = None if self.target is None else self.target.describe(self.unit)
        data["ratio"] = self.ratio
        data["verdict"] = self.verdict
        return data


@dataclass
class BenchResult:
    name: str
    scale: ScaleName
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": self.scale,
            "seconds": round(self.seconds, 2),
            "figures": [figure.as_dict() for figure in self.figures],
            "details": self.details,
        }


# --- statistics --------------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def trials_summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of per-trial figures (kept in the JSON details)."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {
        "median": median(values),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
    }


def timer_overhead_ns(samples: int = 20000) -> float:
    """Median cost of the ``perf_counter_ns()`` pair that brackets each timed call."""
    pc = time.perf_counter_ns
    out = [0] * samples
    for i in range(samples):
        start = pc()
        out[i] = pc() - start
    out.sort()
    return float(out[len(out) // 2])


def process_cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    times = os.times()
    return times.user + times.system


def pid_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` (all its threads, not its children), in
    clock ticks (10 ms on Linux); NaN when it is gone."""
    if pid is None:
        return math.nan
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan
    return float(times.user + times.system)


# --- the ledger the runs deliver to ---------------------------------------------------------------
LEDGER = "ledger.sqlite3"  # the embedded ledger in storage.data_dir (no destinations configured)


def _ledger_query(data_dir: str, query: str) -> list[tuple[Any, ...]] | None:
    path = Path(data_dir) / LEDGER
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            return list(conn.execute(query))
        except sqlite3.OperationalError:  # the table is not created yet
            return None


def ledger_rows(data_dir: str) -> int:
    """Events in the embedded ledger of ``data_dir`` (0 before it exists)."""
    rows = _ledger_query(data_dir, "SELECT COUNT(*) FROM events")
    return int(rows[0][0]) if rows else 0


def usage_sources(data_dir: str) -> dict[str, int]:
    """Events in the ledger per ``usage.source`` ("reported": read from the response)."""
    query = "SELECT json_extract(payload, '$.usage.source'), COUNT(*) FROM events GROUP BY 1"
    return {str(source): int(count) for source, count in _ledger_query(data_dir, query) or []}


# --- the router under test ----------------------------------------------------------------------
def router_settled(runtime: Any, max_in_flight: int) -> bool:
    """True once ``runtime``'s router has emptied its ingest buffer and holds at most
    ``max_in_flight`` events queued or in delivery. Benchmarks wait for this between rounds so
    the router keeps working while the next round runs (its GIL share is part of the cost)
    but never overflows a queue into the spool (which would benchmark the spool instead)."""
    router = runtime.router
    if router.ingest_size():
        return False
    return bool(sum(stats.in_flight for stats in router.destination_stats) <= max_in_flight)


def wait_router(runtime: Any, max_in_flight: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not router_settled(runtime, max_in_flight) and time.monotonic() < deadline:
        time.sleep(0.001)


# --- environment --------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no inherited ``SCR_*`` settings, unbuffered
    output, this checkout importable, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCR_")}
    root = repo_root()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def scrub_scr_env() -> None:
    """Drop ``SCR_*`` variables in this process so a developer's shell cannot skew a run."""
    for key in [key for key in os.environ if key.startswith("SCR_")]:
        del os.environ[key]


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine_note() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # how busy the shared machine was
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


# --- child processes ----------------------------------------------------------------------------
@contextmanager
def child_process(
    args: Sequence[str],
    *,
    ready: Callable[[str], Any],
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    cwd: str | None = None,
) -> Iterator[tuple[subprocess.Popen[str], Any]]:
    """Start ``args``, read stdout lines until ``ready(line)`` returns something not None,
    yield (process, that value), and terminate the process (by its pid) afterwards."""
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
    )
    try:
        value = _wait_ready(proc, ready, timeout)
        yield proc, value
    finally:
        stop_process(proc)


def _wait_ready(proc: subprocess.Popen[str], ready: Callable[[str], Any], timeout: float) -> Any:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{proc.args!r} exited with {proc.wait()} before it was ready")
        value = ready(line.strip())
        if value is not None:
            return value
    raise RuntimeError(f"{proc.args!r} was not ready within {timeout:g}s")


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    if proc.stdout is not None:
        proc.stdout.close()


def json_line(prefix: str) -> Callable[[str], Any]:
    """A ``ready`` callback for a child that prints ``<prefix> {json}`` once it is listening."""

    def parse(line: str) -> Any:
        if line.startswith(prefix):
            return json.loads(line[len(prefix) :])
        return None

    return parse


def python() -> str:
    return sys.executable
