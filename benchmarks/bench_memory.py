"""3. Memory with every destination down: RSS while 1,000,000 events are captured.

A fresh worker process captures the events as fast as it can, with the only destination an
HTTP endpoint on a closed port and the default capture settings (``buffer_max_size`` 10,000).
It records RSS before the first capture and at 10%, 50% and 100% of the events (100k, 500k
and 1M in a full run), then lets the router settle and reports where the events went and how
big the on-disk spool is. The same-run baseline is a second fresh process that keeps the
same normalised events in an unbounded in-memory queue (a list), measured at the same points.

Memory is bounded when, once the buffers are full, more events add (almost) nothing: the RSS
added over the second half of the run (500k -> 1M) is compared with what the unbounded list
adds over the same span (target: <= 0.1x). What the buffers hold follows ``buffer_max_size``;
what overflows them goes to the spool (bounded by ``storage.spool_max_bytes``) or is dropped
and counted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import BenchResult, Scale, Target, clean_env, python, scrub_scr_env
from .workload import gateway_events

NAME = "memory"
MB = 1024.0 * 1024.0
POOL = 1024


def _rss() -> int:
    """Resident set size in bytes: /proc on Linux, else psutil (a dev dependency)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        psutil: Any = importlib.import_module("psutil")
        return int(psutil.Process().memory_info().rss)


def _closed_port() -> int:
    """A port nothing listens on: bind, read the number, close (connects are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _checkpoints(total: int) -> list[int]:
    return [total // 10, total // 2, total]


def _spool_bytes(data_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(data_dir, "spool").glob("*") if p.is_file())


def worker_scr(total: int, data_dir: str) -> dict[str, Any]:
    from scr_middleware import SessionCompletionRuntime

    port = _closed_port()
    runtime = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "down", "endpoint": f"http://127.0.0.1:{port}/events"}],
            "storage": {"data_dir": data_dir},
        }
    )
    runtime.start()
    events = gateway_events(POOL)
    capture = runtime.capture
    rss = {"before": _rss()}
    started = time.perf_counter()
    done = 0
    for mark in _checkpoints(total):
        for index in range(done, mark):
            capture(events[index % POOL])
        done = mark
        rss[str(mark)] = _rss()
    capture_s = time.perf_counter() - started
    deadline = time.monotonic() + 60.0
    while runtime.router.ingest_size() and time.monotonic() < deadline:
        time.sleep(0.05)
    rss["settled"] = _rss()
    stats = runtime.destination_stats()[0].snapshot()
    spool = _spool_bytes(data_dir)
    runtime.shutdown(2.0)  # what is still queued is spooled; measured above
    return {
        "rss": rss,
        "capture_s": capture_s,
        "buffer_max_size": runtime.config.capture.buffer_max_size,
        "spool_max_bytes": runtime.config.storage.spool_max_bytes,
        "spool_bytes": spool,
        "destination": {
            key: stats[key]
            for key in ("captured", "delivered", "dead_lettered_total", "dropped", "in_flight")
        },
        "maxrss_kb": _maxrss_kb(),
    }


def worker_naive(total: int) -> dict[str, Any]:
    from scr_middleware.events import normalize_event

    events = gateway_events(POOL)
    held: list[dict[str, Any]] = []
    rss = {"before": _rss()}
    done = 0
    for mark in _checkpoints(total):
        for index in range(done, mark):
            held.append(normalize_event(events[index % POOL]))
        done = mark
        rss[str(mark)] = _rss()
    return {"rss": rss, "held": len(held), "maxrss_kb": _maxrss_kb()}


def _maxrss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _spawn(kind: str, total: int, data_dir: str, timeout: float) -> dict[str, Any]:
    command = [python(), "-m", "benchmarks.bench_memory", kind, str(total), data_dir]
    completed = subprocess.run(
        command, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"memory worker {kind} failed: {completed.stderr[-2000:]}")


def run(scale: Scale) -> BenchResult:
    scrub_scr_env()
    total = scale.pick(1_000_000, 500_000, 5_000)
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as data_dir:
        scr = _spawn("scr", total, data_dir, 180.0)
    naive = _spawn("naive", total, "-", 180.0)
    result = BenchResult(NAME, scale.name, details={"events": total, "scr": scr, "naive": naive})
    first, middle, last = (str(mark) for mark in _checkpoints(total))
    growth = {key: (scr["rss"][key] - scr["rss"]["before"]) / MB for key in scr["rss"]}
    naive_growth = {key: (naive["rss"][key] - naive["rss"]["before"]) / MB for key in naive["rss"]}
    result.add("RSS before first capture", scr["rss"]["before"] / MB, "MB")
    for mark in (first, middle, last):
        result.add(
            f"RSS growth at {int(mark):,} events",
            growth[mark],
            "MB",
            anchor="unbounded list",
            anchor_value=naive_growth[mark],
        )
    result.add(
        f"RSS added {int(middle):,} -> {int(last):,} events",
        growth[last] - growth[middle],
        "MB",
        anchor="unbounded list, same span",
        anchor_value=naive_growth[last] - naive_growth[middle],
        target=Target("<=", 0.1, "ratio"),
        note=f"buffer_max_size {scr['buffer_max_size']:,}",
    )
    result.add(
        "spool on disk",
        scr["spool_bytes"] / MB,
        "MB",
        anchor="storage.spool_max_bytes",
        anchor_value=scr["spool_max_bytes"] / MB,
        target=Target("<=", 1.0, "ratio"),
        note=_where(scr["destination"]),
    )
    return result


def _where(stats: dict[str, Any]) -> str:
    dropped = ", ".join(
        f"{count:,} dropped ({reason})" for reason, count in stats["dropped"].items()
    )
    parts = [
        f"{stats['dead_lettered_total']:,} spooled",
        dropped,
        f"{stats['in_flight']:,} in flight",
    ]
    return "; ".join(part for part in parts if part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="memory benchmark worker (internal)")
    parser.add_argument("kind", choices=("scr", "naive"))
    parser.add_argument("total", type=int)
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    os.environ.pop("SCR_DATA_DIR", None)
    result = (
        worker_scr(args.total, args.data_dir) if args.kind == "scr" else worker_naive(args.total)
    )
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
