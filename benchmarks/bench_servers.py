"""5. Servers under load from a separate process: throughput with vs without the middleware.

* uvicorn (one process) serving the Starlette app: bare, with ``SessionCompletionMiddleware``,
  and with a no-op ``BaseHTTPMiddleware`` (the anchor for what a wrapper usually costs);
* gunicorn (sync workers, ``-w 2``) serving the Flask app and the Django project, bare and
  with the middleware.

Every variant of a framework runs at once, each server on its own port; load comes from
``wrk`` (or ``benchmarks.loadgen``) in rounds that visit the variants in rotating order, so
drift on the machine hits all alike. Each round is ``seconds`` long, after one warm-up run per
variant; the ratio is the median over rounds of (with / without) requests per second
(target >= 0.97x), shown next to the median requests per second of each. Capture stays on:
the default router and its embedded SQLite ledger in a temporary ``SCR_DATA_DIR``; the
ledger's row count after the run shows the middleware did capture.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from .harness import (
    BenchResult,
    Scale,
    Target,
    clean_env,
    median,
    python,
    scrub_scr_env,
    stop_process,
)
from .loadgen import LoadResult, run_load, tool
from .workload import chat_request_body

NAME = "servers"
RATIO_TARGET = 0.97
# The anchors on its reference machine: bare 1.0x, naive capture 0.88x, target 0.97x.
# As time added per request that is 3.1% against the naive capture's 13.6%: the target scaled
# by the naive capture measured in the same run is this fraction of its added time.
ADDED_VS_NAIVE_TARGET = (1 / RATIO_TARGET - 1) / (1 / 0.88 - 1)
VARIANT_LABELS = {
    "scr": "SCR middleware",
    "basehttp": "BaseHTTPMiddleware no-op",
    "naive": "naive capture middleware",
}
PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Variant:
    framework: str
    name: str
    command: tuple[str, ...]  # "{port}" is replaced
    env: tuple[tuple[str, str], ...] = ()


def _uvicorn(factory: str) -> tuple[str, ...]:
    return (
        python(), "-m", "uvicorn", "--factory", f"benchmarks.apps.starlette_app:{factory}",
        "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
        "--log-level", "warning", "--no-access-log",
    )  # fmt: skip


def _gunicorn(app: str) -> tuple[str, ...]:
    return (
        python(), "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", "127.0.0.1:{port}",
        "--log-level", "warning", app,
    )  # fmt: skip


VARIANTS = (
    Variant("starlette", "bare", _uvicorn("bare")),
    Variant("starlette", "scr", _uvicorn("scr")),
    Variant("starlette", "basehttp", _uvicorn("basehttp")),
    Variant("starlette", "naive", _uvicorn("naive")),
    Variant("flask", "bare", _gunicorn('benchmarks.apps.flask_app:create_app("bare")')),
    Variant("flask", "scr", _gunicorn('benchmarks.apps.flask_app:create_app("scr")')),
    Variant(
        "django", "bare", _gunicorn("benchmarks.apps.django_app:application"),
        (("BENCH_VARIANT", "bare"),),
    ),
    Variant(
        "django", "scr", _gunicorn("benchmarks.apps.django_app:application"),
        (("BENCH_VARIANT", "scr"),),
    ),
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    body = chat_request_body()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.args!r}")
        try:
            if httpx.post(url, content=body, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready within {timeout:g}s")


@contextlib.contextmanager
def _serving(variants: list[Variant], data_dir: str) -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for variant in variants:
            port = _free_port()
            command = [part.replace("{port}", str(port)) for part in variant.command]
            env = clean_env(SCR_DATA_DIR=data_dir, **dict(variant.env))
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            procs.append(proc)
            urls[variant.name] = f"http://127.0.0.1:{port}{PATH}"
        for variant, proc in zip(variants, procs, strict=True):
            _wait_serving(urls[variant.name], proc)
        yield urls
    finally:
        for proc in procs:
            stop_process(proc, grace=15.0)


def _ledger_rows(data_dir: str) -> int:
    path = Path(data_dir) / "ledger.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _framework(framework: str, scale: Scale) -> dict[str, object]:
    variants = [v for v in VARIANTS if v.framework == framework]
    rounds = scale.pick(5, 2, 1)
    seconds = scale.pick(3.0, 2.0, 1.0)
    connections = 32 if framework == "starlette" else 8
    runs: dict[str, list[LoadResult]] = {v.name: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as data_dir:
        with _serving(variants, data_dir) as urls:
            warm_requests = 0
            if scale.name != "smoke":
                for variant in variants:  # warm-up: imports, the router, the ledger file
                    warm = run_load(urls[variant.name], 1.0, connections)
                    warm_requests += warm.requests if variant.name == "scr" else 0
            for index in range(rounds):
                order = variants[index % len(variants) :] + variants[: index % len(variants)]
                for variant in order:
                    runs[variant.name].append(run_load(urls[variant.name], seconds, connections))
        ledger = _ledger_rows(data_dir)  # servers stopped: their runtimes flushed at exit
    if not ledger:
        raise RuntimeError(f"{framework}: the middleware captured nothing; its cost is not real")
    errors = sum(r.errors for results in runs.values() for r in results)
    bare = runs["bare"]
    ratios = {
        name: median([w.requests_per_s / b.requests_per_s for w, b in zip(res, bare, strict=True)])
        for name, res in runs.items()
        if name != "bare"
    }
    return {
        "rps": {name: [r.requests_per_s for r in res] for name, res in runs.items()},
        "ratios": ratios,
        "errors": errors,
        "ledger_rows": ledger,
        "scr_requests": warm_requests + sum(r.requests for r in runs["scr"]),
        "rounds": rounds,
        "seconds": seconds,
        "connections": connections,
    }


def run(scale: Scale) -> BenchResult:
    scrub_scr_env()
    result = BenchResult(NAME, scale.name, details={"load_generator": tool()})
    labels = {
        "starlette": "uvicorn + Starlette",
        "flask": "gunicorn -w 2 + Flask",
        "django": "gunicorn -w 2 + Django",
    }
    for framework, label in labels.items():
        data = _framework(framework, scale)
        result.details[framework] = data
        rps = data["rps"]
        assert isinstance(rps, dict)
        ratios = data["ratios"]
        assert isinstance(ratios, dict)
        for name in ratios:
            is_scr = name == "scr"
            figure = result.add(
                f"{label}, {VARIANT_LABELS[name]}",
                median(rps[name]),
                "req/s",
                anchor="without",
                anchor_value=median(rps["bare"]),
                target=Target(">=", RATIO_TARGET, "ratio") if is_scr else None,
                paired_ratio=ratios[name],
            )
            if is_scr:
                figure.note = (
                    f"{data['ledger_rows']:,} events for {data['scr_requests']:,} requests"
                )
            if data["errors"]:
                figure.note += f"; {data['errors']} errors"
        if "naive" in ratios:
            result.add(
                f"{label}, time added per request (scaled target: "
                f"{ADDED_VS_NAIVE_TARGET:.2f}x the naive capture's)",
                100.0 * (1 / ratios["scr"] - 1),
                "% of bare",
                anchor="naive capture middleware",
                anchor_value=100.0 * (1 / ratios["naive"] - 1),
                target=Target("<=", round(ADDED_VS_NAIVE_TARGET, 3), "ratio"),
            )
    return result
