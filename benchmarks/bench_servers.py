"""5. Servers under load from a separate process: throughput with vs without the middleware.

* uvicorn (one process) serving the Starlette app: bare, with ``SessionCompletionMiddleware``
  as shipped (``middleware.offload: auto``: a capture process extracts and delivers), with it
  set to ``offload: inline`` (all of it in the app process), with a no-op
  ``BaseHTTPMiddleware`` (the anchor for what a wrapper usually costs) and with a naive
  capture middleware;
* gunicorn (sync workers, ``-w 2``) serving the Flask app and the Django project, bare and
  with the middleware (each worker has its own capture process).

Every variant of a framework runs at once, each server on its own port; load comes from
``wrk`` (or ``benchmarks.loadgen``) in rounds that visit the variants in rotating order, so
drift on the machine hits all alike. Each round is ``seconds`` long, after one warm-up run per
variant; the ratio is the median over rounds of (with / without) requests per second
(target >= 0.97x), shown next to the median requests per second of each. Capture stays on:
the default router and its embedded SQLite ledger in a temporary ``SCR_DATA_DIR`` per
variant. The figures are refused unless each middleware variant's ledger holds an event, with
usage reported by the response, for every request the load generator counted.

Throughput alone would hide work that moved to another process. Over the measured rounds
(from a settled ledger after the warm-up to a settled ledger after the last round) the
benchmark reads the CPU time (user + system, ``psutil``) of every server process (the uvicorn
process; gunicorn's master and workers) and, apart, of their capture processes (children whose
command line runs ``scr_middleware.offload.worker``): app process CPU per request next to the
bare server's, capture process CPU per event delivered, and their sum. Each middleware
server's ``GET /_bench/offload`` tells how many records its workers replayed inline instead
(capture process behind or unavailable).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the dev extras

from .harness import (
    BenchResult,
    Scale,
    Target,
    clean_env,
    ledger_rows,
    median,
    python,
    scrub_scr_env,
    stop_process,
    usage_sources,
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
    "scr_inline": "SCR middleware, offload: inline",
    "basehttp": "BaseHTTPMiddleware no-op",
    "naive": "naive capture middleware",
}
VARIANT_NOTES = {
    "scr": "default offload: auto",
    "scr_inline": "events extracted in the app process",
}
SCR_VARIANTS = ("scr", "scr_inline")  # the ones that capture: their ledgers are checked
PATH = "/v1/chat/completions"
OFFLOAD_PATH = "/_bench/offload"
CAPTURE_WORKER = "scr_middleware.offload.worker"  # in a capture process's command line
# The inline router delivers a partial batch after capture.flush_interval_ms (1 s): a ledger
# is settled once its count has not moved for longer than that.
SETTLED_FOR_S = 1.5


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
    Variant("starlette", "scr_inline", _uvicorn("scr_inline")),
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


@dataclass
class Server:
    variant: Variant
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: str
    # pid -> CPU seconds at the start of the measured rounds, app and capture processes apart
    cpu_start: dict[str, dict[int, float]] = field(default_factory=dict)
    cpu_end: dict[str, dict[int, float]] = field(default_factory=dict)
    rows_start: int = 0
    rows_end: int = 0

    @property
    def base_url(self) -> str:
        return self.url[: -len(PATH)]


@contextlib.contextmanager
def _serving(variants: list[Variant], data_root: str) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for variant in variants:
            port = _free_port()
            command = [part.replace("{port}", str(port)) for part in variant.command]
            data_dir = os.path.join(data_root, variant.name)  # one ledger per variant
            os.makedirs(data_dir)
            env = clean_env(SCR_DATA_DIR=data_dir, **dict(variant.env))
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            url = f"http://127.0.0.1:{port}{PATH}"
            servers[variant.name] = Server(variant, proc, url, data_dir)
        for server in servers.values():
            _wait_serving(server.url, server.proc)
        yield servers
    finally:
        captures = [p for server in servers.values() for p in _processes(server)[1]]
        for server in servers.values():
            stop_process(server.proc, grace=15.0)
        # A capture process drains and delivers after its app process has gone: the ledgers
        # are complete once it exits.
        psutil.wait_procs(captures, timeout=60.0)


def _processes(server: Server) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The server's own processes (uvicorn; gunicorn's master and workers) and, apart, the
    capture processes its app processes started."""
    try:
        root = psutil.Process(server.proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return [], []
    app: list[psutil.Process] = []
    capture: list[psutil.Process] = []
    for proc in tree:
        try:
            is_capture = CAPTURE_WORKER in " ".join(proc.cmdline())
        except psutil.Error:
            continue
        (capture if is_capture else app).append(proc)
    return app, capture


def _cpu(server: Server) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for kind, procs in zip(("app", "capture"), _processes(server), strict=True):
        out[kind] = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            out[kind][proc.pid] = times.user + times.system
    return out


def _cpu_used(server: Server, kind: str) -> float:
    """CPU seconds the ``kind`` processes used over the measured rounds (a process started
    meanwhile, e.g. a restarted capture process, counts from its start; one that ended
    meanwhile is lost: see the spawns in the details)."""
    start, end = server.cpu_start.get(kind, {}), server.cpu_end.get(kind, {})
    return sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items())


def _settle(servers: list[Server], at_least: dict[str, int], timeout: float = 90.0) -> None:
    """Until every capturing server's ledger holds at least ``at_least[name]`` events and its
    count has stopped moving: the capture process (or the inline router) has caught up."""
    deadline = time.monotonic() + timeout
    for server in servers:
        name = server.variant.name
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = ledger_rows(server.data_dir)
            now = time.monotonic()
            if rows != last:
                last, since = rows, now
            elif rows >= at_least.get(name, 0) and now - since >= SETTLED_FOR_S:
                break
            time.sleep(0.1)


def _offload_stats(server: Server, workers: int) -> dict[str, Any]:
    """The workers' ``health()["offload"]``, summed (one GET per connection reaches one
    gunicorn worker: ask until each answered, within a bound)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(20 * workers):
        try:
            answer = httpx.get(server.base_url + OFFLOAD_PATH, timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            break
        seen[int(answer["pid"])] = answer.get("offload") or {}
        if len(seen) >= workers:
            break
    total: dict[str, Any] = {"workers_answered": len(seen)}
    for stats in seen.values():
        for key in ("recorded", "acknowledged", "inline", "resent", "spawns"):
            total[key] = total.get(key, 0) + int(stats.get(key) or 0)
        for reason, count in (stats.get("extraction_failures") or {}).items():
            failures = total.setdefault("extraction_failures", {})
            failures[reason] = failures.get(reason, 0) + count
    total["states"] = sorted({str(stats.get("state")) for stats in seen.values()})
    return total


def _framework(framework: str, scale: Scale) -> dict[str, Any]:
    variants = [v for v in VARIANTS if v.framework == framework]
    rounds = scale.pick(5, 2, 1)
    seconds = scale.pick(3.0, 2.0, 1.0)
    connections = 32 if framework == "starlette" else 8
    workers = 1 if framework == "starlette" else 2
    runs: dict[str, list[LoadResult]] = {v.name: [] for v in variants}
    counted = {v.name: 1 for v in variants}  # _wait_serving's request
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as data_root:
        with _serving(variants, data_root) as servers:
            capturing = [servers[name] for name in SCR_VARIANTS if name in servers]
            if scale.name != "smoke":
                for variant in variants:  # warm-up: imports, the router, the ledger file
                    warm = run_load(servers[variant.name].url, 1.0, connections)
                    counted[variant.name] += warm.requests
            _settle(capturing, counted)
            for server in servers.values():
                server.rows_start = ledger_rows(server.data_dir)
                server.cpu_start = _cpu(server)
            for index in range(rounds):
                order = variants[index % len(variants) :] + variants[: index % len(variants)]
                for variant in order:
                    load = run_load(servers[variant.name].url, seconds, connections)
                    runs[variant.name].append(load)
                    counted[variant.name] += load.requests
            _settle(capturing, counted)
            for server in servers.values():
                server.rows_end = ledger_rows(server.data_dir)
                server.cpu_end = _cpu(server)
            offload = {s.variant.name: _offload_stats(s, workers) for s in capturing}
        # Servers stopped and their capture processes exited: the ledgers are complete.
        ledgers = {s.variant.name: ledger_rows(s.data_dir) for s in capturing}
        sources = {s.variant.name: usage_sources(s.data_dir) for s in capturing}
    problems = []
    for name, rows in ledgers.items():
        if rows < counted[name]:
            problems.append(f"{name}: {rows} events in the ledger for {counted[name]} requests")
        if set(sources[name]) - {"reported"}:
            problems.append(f"{name}: usage not read from the response: {sources[name]}")
        if offload[name].get("extraction_failures"):
            problems.append(f"{name}: extraction failures {offload[name]['extraction_failures']}")
    if "scr" in offload and not offload["scr"].get("acknowledged"):
        problems.append(f"scr: no capture process captured anything ({offload['scr']})")
    if problems:
        # A middleware that loses events is cheap: refuse to report its cost as the real one.
        raise RuntimeError(f"{framework}: " + "; ".join(problems))
    errors = sum(r.errors for results in runs.values() for r in results)
    bare = runs["bare"]
    ratios = {
        name: median([w.requests_per_s / b.requests_per_s for w, b in zip(res, bare, strict=True)])
        for name, res in runs.items()
        if name != "bare"
    }
    cpu: dict[str, dict[str, float]] = {}
    for name, server in servers.items():
        served = sum(r.requests for r in runs[name])
        events = server.rows_end - server.rows_start
        app_s, capture_s = _cpu_used(server, "app"), _cpu_used(server, "capture")
        cpu[name] = {
            "requests": served,
            "events": events,
            "app_cpu_s": app_s,
            "capture_cpu_s": capture_s,
            "capture_processes": len(server.cpu_end.get("capture", {})),
            "app_us_per_request": app_s / served * 1e6 if served else math.nan,
            "capture_us_per_event": capture_s / events * 1e6 if events else math.nan,
        }
    return {
        "rps": {name: [r.requests_per_s for r in res] for name, res in runs.items()},
        "ratios": ratios,
        "errors": errors,
        "ledger_rows": ledgers,
        "requests": {name: counted[name] for name in ledgers},
        "usage_sources": sources,
        "offload": offload,
        "cpu": cpu,
        "rounds": rounds,
        "seconds": seconds,
        "connections": connections,
    }


def _cpu_figures(result: BenchResult, label: str, data: dict[str, Any]) -> None:
    """App process CPU per request (bare vs each middleware variant), capture process CPU per
    event, and their sum: the work the capture process took is moved, not removed."""
    cpu = data["cpu"]
    bare = cpu["bare"]["app_us_per_request"]
    for name in SCR_VARIANTS:
        if name not in cpu:
            continue
        result.add(
            f"{label}, app process CPU per request, {VARIANT_LABELS[name]}",
            cpu[name]["app_us_per_request"],
            "us",
            anchor="without",
            anchor_value=bare,
            note=f"{cpu[name]['requests']:,} requests",
        )
    scr = cpu["scr"]
    offload = data["offload"]["scr"]
    figure = result.add(
        f"{label}, capture process CPU per event",
        scr["capture_us_per_event"],
        "us",
        anchor="app process CPU per request without",
        anchor_value=bare,
        note=f"{scr['events']:,} events, {scr['capture_processes']} capture process(es)",
    )
    figure.note += f"; {offload.get('inline', 0):,} records replayed in the app process"
    if offload.get("spawns", 0) > offload.get("workers_answered", 0):
        figure.note += f"; {offload['spawns']} capture process starts"
    result.add(
        f"{label}, app + capture process CPU per request, SCR middleware",
        scr["app_us_per_request"] + scr["capture_us_per_event"],
        "us",
        anchor="without",
        anchor_value=bare,
    )


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
        ratios = data["ratios"]
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
            if name in data["ledger_rows"]:
                figure.note = (
                    f"{data['ledger_rows'][name]:,} events for {data['requests'][name]:,} requests"
                )
                if name in VARIANT_NOTES:
                    figure.note = f"{VARIANT_NOTES[name]}; {figure.note}"
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
        _cpu_figures(result, label, data)
    return result
