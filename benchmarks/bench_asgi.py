"""4. Middleware cost in-process: the same Starlette app with and without
``SessionCompletionMiddleware``, driven at the ASGI level (no server, no sockets).

Each request is ``await app(scope, receive, send)`` with a uvicorn-shaped scope (ASGI spec
2.3, so Starlette's streaming response listens for a disconnect as it does under uvicorn) and
a ``send`` that drops the messages. Variants run interleaved in rounds of ``batch`` requests;
the added cost is the median over rounds of (variant - bare) per request, so drift on the
machine cancels out. Capture stays on, with the default router and its embedded SQLite ledger
in a temporary data dir, so the real cost is measured; between rounds the benchmark waits
until at most one round of events is still queued or in delivery (no queue overflows).

The middleware runs twice, as two apps in the same rounds: as shipped (``scr``:
``middleware.offload: auto``, so each observed request is recorded and handed to a capture
process, which extracts and delivers the event) and with ``offload: inline`` (``scr_inline``:
extraction and delivery in this process, as before the capture process existed). The capture
process runs on another core: its work is not in the request path's figures, so its CPU time
per event is reported beside them (measured over the JSON rounds), next to what the inline
middleware adds per request: the work was moved, not removed.

* JSON chat completion: added us per request (target <= 2 us); anchor: a naive pure-ASGI
  capture middleware (uuid4 + isoformat + dict copy + json.dumps + Queue.put).
* SSE chat stream: added us per chunk (target <= 0.2 us), the slope between streams of
  ``short`` and ``long`` chunks (so the per-request part is not spread over the chunks).

The figures are refused (the benchmark fails) unless the ledger holds exactly one event per
request of both middleware variants, every one with usage reported by the response, and
neither process counted an extraction failure: a broken middleware is cheap.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from scr_middleware import runtime as runtime_mod

from .harness import (
    BenchResult,
    Scale,
    Target,
    ledger_rows,
    median,
    pid_cpu_seconds,
    router_settled,
    scrub_scr_env,
    usage_sources,
)
from .workload import chat_request_body

NAME = "asgi"
ADDED_TARGET_US = 2.0
PER_CHUNK_TARGET_US = 0.2
# The anchors on its reference machine: a naive capture adds 3-4 us per request and
# 0.85 us per chunk. Scaled by the naive middleware measured in the same run, the targets are
# these fractions of it (2 / 3.5 and 0.2 / 0.85), checked on the ratio.
ADDED_VS_NAIVE_TARGET = ADDED_TARGET_US / 3.5
PER_CHUNK_VS_NAIVE_TARGET = PER_CHUNK_TARGET_US / 0.85
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
# The middleware variants (starlette_app.VARIANTS): metric suffix and the note on its rows.
SCR = {
    "scr": ("", "default offload: auto; events extracted in the capture process"),
    "scr_inline": (", offload: inline", "events extracted in the app process"),
}


def _scope(path: str, query: bytes, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", b"Bearer sk-test"),
            (b"openai-organization", b"org_7"),
        ],
    }


async def _drive(app: App, path: str, query: bytes, count: int) -> float:
    """Seconds per request over ``count`` sequential requests."""
    body = chat_request_body()
    never = asyncio.Event()
    sent = 0

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal sent
        sent += 1

    pc = time.perf_counter
    started = pc()
    for _ in range(count):
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()  # like a server: no disconnect while the response streams
            return {"type": "http.disconnect"}

        await app(_scope(path, query, body), receive, send)
    elapsed = (pc() - started) / count
    if not sent:
        raise RuntimeError("the app sent nothing")
    return elapsed


def _captured(sent: Counter[str]) -> int:
    """Requests whose events belong in the ledger: those of the middleware variants."""
    return sum(sent[name] for name in SCR)


async def _wait_settled(data_dir: str, expected: int, max_in_flight: int) -> None:
    """Until this process's router holds at most ``max_in_flight`` events and the ledger
    misses at most ``max_in_flight`` of the ``expected`` events (it also receives what the
    capture process delivers): both keep working during the next round, but no queue grows
    into a spool or a backlog replayed in the app process."""
    runtime = runtime_mod.get_runtime()
    deadline = time.monotonic() + 60.0
    # Neither the router thread nor the capture process offers an awaitable signal: poll.
    while time.monotonic() < deadline:
        settled = router_settled(runtime, max_in_flight)
        if settled and ledger_rows(data_dir) >= expected - max_in_flight:
            return
        await asyncio.sleep(0.002)


async def _rounds(
    apps: Mapping[str, App],
    path: str,
    query: bytes,
    rounds: int,
    batch: int,
    sent: Counter[str],
    data_dir: str,
    warmed: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, list[float]]:
    """Per-round seconds per request of each variant, in rotating order; ``sent`` counts the
    requests each variant served (so the captured events can be checked against them).
    ``warmed`` is awaited after the warm-up, before the measured rounds."""
    names = list(apps)
    out: dict[str, list[float]] = {name: [] for name in names}
    warm = max(1, batch // 10)
    for name in names:  # warm-up: imports, caches, the ledger file, the capture process
        await _drive(apps[name], path, query, warm)
        sent[name] += warm
    if warmed is not None:
        await warmed()
    await _wait_settled(data_dir, _captured(sent), batch)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(await _drive(apps[name], path, query, batch))
            sent[name] += batch
        await _wait_settled(data_dir, _captured(sent), batch)
        gc.collect()
    return out


def offload_stats() -> dict[str, Any]:
    """``health()["offload"]`` of the shared runtime ({} when it has no capture process)."""
    return dict(runtime_mod.get_runtime().health()[1].get("offload") or {})


class CaptureCpu:
    """The capture process's CPU time and acknowledged records between two settled points
    (both after ``runtime.flush()``: everything sent was captured and delivered)."""

    def __init__(self) -> None:
        self.start: dict[str, Any] = {}
        self.end: dict[str, Any] = {}
        self.cpu_start = self.cpu_end = math.nan

    async def _settled(self) -> tuple[dict[str, Any], float]:
        await runtime_mod.get_runtime().aflush(60.0)
        stats = offload_stats()
        return stats, pid_cpu_seconds(stats.get("pid"))

    async def mark_start(self) -> None:
        self.start, self.cpu_start = await self._settled()

    async def mark_end(self) -> None:
        self.end, self.cpu_end = await self._settled()

    def summary(self) -> dict[str, Any]:
        events = self.end.get("acknowledged", 0) - self.start.get("acknowledged", 0)
        same = self.start.get("pid") is not None and self.start.get("pid") == self.end.get("pid")
        cpu = self.cpu_end - self.cpu_start if same else math.nan
        return {
            "pid": self.end.get("pid"),
            "events": events,
            "cpu_s": cpu,
            "cpu_per_event_us": cpu / events * 1e6 if events and same else math.nan,
            "restarted": not same,
            "cpu_resolution_s": 1.0 / os.sysconf("SC_CLK_TCK"),  # psutil reads clock ticks
        }


def _added_us(series: dict[str, list[float]], name: str) -> float:
    """Median over rounds of the paired difference to ``bare``, in microseconds."""
    return median([(v - b) * 1e6 for v, b in zip(series[name], series["bare"], strict=True)])


def _sse(
    short_runs: dict[str, list[float]], long_runs: dict[str, list[float]], short: int, long: int
) -> dict[str, Any]:
    span = long - short
    out: dict[str, Any] = {
        "bare_us": [median(short_runs["bare"]) * 1e6, median(long_runs["bare"]) * 1e6],
        "added_us": {},
        "per_chunk_us": {},
        "per_request_us": {},
    }
    for name in short_runs:
        if name == "bare":
            continue
        added_short, added_long = _added_us(short_runs, name), _added_us(long_runs, name)
        per_chunk = (added_long - added_short) / span
        out["added_us"][name] = [added_short, added_long]
        out["per_chunk_us"][name] = per_chunk
        out["per_request_us"][name] = added_short - short * per_chunk
    return out


async def _measure(scale: Scale, data_dir: str) -> dict[str, Any]:
    from .apps import starlette_app

    rounds = scale.pick(15, 6, 2)
    batch = scale.pick(500, 300, 20)
    streams = scale.pick(60, 30, 4)
    short, long = scale.pick((20, 200), (20, 200), (2, 10))
    json_apps = {name: factory() for name, factory in starlette_app.VARIANTS.items()}
    sse_apps = {name: json_apps[name] for name in ("bare", *SCR, "naive")}
    sent: Counter[str] = Counter()
    capture = CaptureCpu()
    json_runs = await _rounds(
        json_apps, "/v1/chat/completions", b"", rounds, batch, sent, data_dir, capture.mark_start
    )
    await capture.mark_end()
    sse_path = "/stream/v1/chat/completions"
    sse_short = await _rounds(
        sse_apps, sse_path, f"n={short}".encode(), rounds, streams, sent, data_dir
    )
    sse_long = await _rounds(
        sse_apps, sse_path, f"n={long}".encode(), rounds, streams, sent, data_dir
    )
    sse = _sse(sse_short, sse_long, short, long)
    sse.update(chunks=[short, long], streams_per_round=streams)
    return {
        "rounds": rounds,
        "batch": batch,
        "requests": {name: sent[name] for name in SCR},
        "bare_us": median(json_runs["bare"]) * 1e6,
        "added_us": {name: _added_us(json_runs, name) for name in json_apps if name != "bare"},
        "capture_process_json": capture.summary(),
        "sse": sse,
    }


def _check(m: dict[str, Any], rows: int, sources: dict[str, int], failures: dict[str, int]) -> None:
    """Refuse to report the cost of a middleware that lost or mangled events."""
    expected = sum(m["requests"].values())
    offload = m["offload"]
    problems = []
    if rows != expected:
        problems.append(f"the ledger holds {rows} events for {expected} requests {m['requests']}")
    if failures:
        problems.append(f"extraction failures: {failures}")
    if set(sources) - {"reported"}:
        problems.append(f"events whose usage was not read from the response: {sources}")
    if not offload.get("acknowledged"):
        problems.append(f"the default middleware used no capture process: {offload}")
    if problems:
        raise RuntimeError("; ".join(problems))


def run(scale: Scale) -> BenchResult:
    scrub_scr_env()
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as data_dir:
        os.environ["SCR_DATA_DIR"] = data_dir
        runtime = runtime_mod.configure(config={"storage": {"data_dir": data_dir}})
        try:
            m = asyncio.run(_measure(scale, data_dir))
            # Also flushes the capture process: what it captured is in the ledger after this.
            m["flushed"] = runtime.flush(60.0)
            m["offload"] = offload_stats()
            ledger = [stats.snapshot() for stats in runtime.destination_stats()]
            # Extraction failures: the app process's own (offload: inline, and records it
            # replayed), plus those the capture process reported with its acknowledgements.
            failures = Counter(runtime.stats.extraction_failures)
            failures.update(m["offload"].get("extraction_failures") or {})
            rows, sources = ledger_rows(data_dir), usage_sources(data_dir)
        finally:
            runtime.shutdown(30.0)
            del os.environ["SCR_DATA_DIR"]
    m["ledger"] = {"events": rows, "usage_sources": sources}
    # What this process's router delivered (the inline variant's events and replays).
    m["app_router"] = {k: ledger[0][k] for k in ("captured", "delivered", "dropped", "balanced")}
    _check(m, rows, sources, dict(failures))
    result = BenchResult(NAME, scale.name, details=m)
    added = m["added_us"]
    sse = m["sse"]
    replayed = m["offload"].get("inline", 0)
    result.add("bare Starlette request", m["bare_us"], "us")
    for name, (suffix, how) in SCR.items():
        note = how
        if name == "scr" and replayed:
            note += f"; {replayed:,} records replayed in the app process"
        result.add(
            f"added per JSON request{suffix}",
            added[name],
            "us",
            anchor="naive capture middleware",
            anchor_value=added["naive"],
            target=Target("<=", ADDED_TARGET_US),
            note=note,
        )
        result.add(
            f"added per JSON request{suffix}, scaled target (2 us of the reference's 3.5 us naive)",
            added[name],
            "us",
            anchor="naive capture middleware",
            anchor_value=added["naive"],
            target=Target("<=", round(ADDED_VS_NAIVE_TARGET, 3), "ratio"),
        )
    result.add(
        "added per JSON request, BaseHTTPMiddleware no-op",
        added["basehttp"],
        "us",
        anchor="naive capture middleware",
        anchor_value=added["naive"],
    )
    capture = m["capture_process_json"]
    result.add(
        "capture process CPU per JSON event (off the request path)",
        capture["cpu_per_event_us"],
        "us",
        anchor="added per JSON request, offload: inline",
        anchor_value=added["scr_inline"],
        note=f"pid {capture['pid']}, {capture['events']:,} events"
        + ("; restarted: not measured" if capture["restarted"] else ""),
    )
    bare_per_chunk = (sse["bare_us"][1] - sse["bare_us"][0]) / (sse["chunks"][1] - sse["chunks"][0])
    for name, (suffix, _) in SCR.items():
        result.add(
            f"added per SSE chunk{suffix}",
            sse["per_chunk_us"][name],
            "us",
            anchor="bare cost per chunk",
            anchor_value=bare_per_chunk,
            target=Target("<=", PER_CHUNK_TARGET_US),
        )
        result.add(
            f"added per SSE chunk{suffix}, scaled target (0.2 us of the reference's 0.85 us naive)",
            sse["per_chunk_us"][name],
            "us",
            anchor="naive capture middleware, per chunk",
            anchor_value=sse["per_chunk_us"]["naive"],
            target=Target("<=", round(PER_CHUNK_VS_NAIVE_TARGET, 3), "ratio"),
        )
    for name, (suffix, _) in SCR.items():
        result.add(
            f"added per SSE stream (fixed part){suffix}",
            sse["per_request_us"][name],
            "us",
            anchor="naive capture middleware",
            anchor_value=added["naive"],
        )
    return result
