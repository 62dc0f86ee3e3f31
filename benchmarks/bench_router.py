"""2. Router throughput: events/s from one process to local HTTP sinks, batch_size 1000.

The sinks run in a separate process (``benchmarks.sink``: a raw asyncio HTTP/1.1 server).
A trial captures N events on the main thread as fast as it can and ends when ``flush()``
reports every event delivered, so the figure is end-to-end: capture, normalise, finalise,
transform, serialise, POST. Configuration is the seed's high-throughput block (batch 1000,
flush 100 ms, buffer 100,000), with N <= the buffer so no event is dropped or spooled.

* one sink, ``canonical`` transform: target >= 100,000 events/s;
* fan-out to three sinks with the seed's ``billing_v1``/``analytics_v2``/``audit_v1``:
  target >= 50,000 events/s (each event delivered to all three);
* baseline, same run: raw ``httpx.AsyncClient`` POSTing the very same pre-serialised batches
  (one client per sink, sinks in parallel like the router's workers), no router.

CPU: the capturing process's CPU time over wall time (100% = one core), and the part that is
not the main (capturing) thread: the router's share.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import httpx

from scr_middleware import SessionCompletionRuntime
from scr_middleware.events import finalize_event, normalize_event
from scr_middleware.transforms import load_transform, to_json

from .harness import (
    BenchResult,
    Scale,
    Target,
    child_process,
    json_line,
    median,
    process_cpu_seconds,
    python,
    scrub_scr_env,
    trials_summary,
)
from .workload import gateway_events

NAME = "router"
BATCH = 1000
BUFFER = 100_000
POOL = 1024
SINGLE_TARGET = 100_000.0
FANOUT_TARGET = 50_000.0
SEED_TRANSFORMS = ("billing_v1", "analytics_v2", "audit_v1")


def _sink_events(ports: Sequence[int]) -> dict[int, int]:
    stats = httpx.get(f"http://127.0.0.1:{ports[0]}/_stats", timeout=10.0).json()
    return {port: int(stats["events"].get(str(port), 0)) for port in ports}


def _router_trial(
    events: list[dict[str, Any]], count: int, ports: Sequence[int], transforms: Sequence[str]
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="scr-bench-") as data_dir:
        destinations = [
            {
                "name": f"sink{index}",
                "endpoint": f"http://127.0.0.1:{port}/ingest",
                "transform": transform,
                "timeout_ms": 10_000,
            }
            for index, (port, transform) in enumerate(zip(ports, transforms, strict=True))
        ]
        runtime = SessionCompletionRuntime(
            config={
                "capture": {
                    "batch_size": BATCH,
                    "flush_interval_ms": 100,
                    "buffer_max_size": BUFFER,
                },
                "destinations": destinations,
                "storage": {"data_dir": data_dir},
            }
        )
        runtime.start()
        try:
            capture = runtime.capture
            for event in events[:BATCH]:  # warm-up: connections, code paths
                capture(event)
            runtime.flush(60.0)
            before = _sink_events(ports)
            pool = len(events)
            wall0, cpu0, main0 = time.perf_counter(), process_cpu_seconds(), time.thread_time()
            for index in range(count):
                capture(events[index % pool])
            captured_at = time.perf_counter()
            delivered = runtime.flush(300.0)
            wall = time.perf_counter() - wall0
            cpu, main = process_cpu_seconds() - cpu0, time.thread_time() - main0
            after = _sink_events(ports)
            stats = [s.snapshot() for s in runtime.destination_stats()]
        finally:
            runtime.shutdown(30.0)
    received = min(after[port] - before[port] for port in ports)
    if not delivered or received != count:
        raise RuntimeError(f"router trial lost events: flushed={delivered} sink got {received}")
    if any(s["dropped"] or s["dead_lettered_total"] for s in stats):
        raise RuntimeError(f"router trial dropped or spooled events: {stats}")
    return {
        "events_per_s": count / wall,
        "capture_loop_s": captured_at - wall0,
        "wall_s": wall,
        "cpu_share": cpu / wall,
        "router_cpu_share": (cpu - main) / wall,
    }


def _bodies(events: list[dict[str, Any]], count: int, transform_name: str) -> list[bytes]:
    """The batches the router would send: normalised, finalised, transformed, serialised."""
    transform = load_transform(transform_name, "benchmark")
    now = time.time()
    pool = [finalize_event(normalize_event(event), now) for event in events]
    payloads = [to_json(transform(pool[index % len(pool)])) for index in range(count)]
    return [
        b"[" + b",".join(payloads[start : start + BATCH]) + b"]" for start in range(0, count, BATCH)
    ]


async def _post_all(port: int, bodies: list[bytes]) -> None:
    url = f"http://127.0.0.1:{port}/ingest"
    async with httpx.AsyncClient(timeout=30.0) as client:
        await client.post(url, content=bodies[0], headers={"X-SCR-Event-Count": "0"})  # warm
        for body in bodies:
            headers = {
                "Content-Type": "application/json",
                "X-SCR-Event-Count": str(body.count(b'"event_id"')),
            }
            response = await client.post(url, content=body, headers=headers)
            response.raise_for_status()


def _baseline_trial(
    count: int, ports: Sequence[int], bodies: list[list[bytes]]
) -> dict[str, float]:
    before = _sink_events(ports)

    async def post_everywhere() -> None:
        await asyncio.gather(*(_post_all(port, b) for port, b in zip(ports, bodies, strict=True)))

    wall0, cpu0 = time.perf_counter(), process_cpu_seconds()
    asyncio.run(post_everywhere())
    wall = time.perf_counter() - wall0
    cpu = process_cpu_seconds() - cpu0
    after = _sink_events(ports)
    received = min(after[port] - before[port] for port in ports)
    if received != count:
        raise RuntimeError(f"baseline lost events: sink got {received} of {count}")
    return {"events_per_s": count / wall, "wall_s": wall, "cpu_share": cpu / wall}


def run(scale: Scale) -> BenchResult:
    scrub_scr_env()
    count = scale.pick(BUFFER, 50_000, 3_000)
    trials = scale.pick(3, 2, 1)
    events = gateway_events(POOL)
    single_bodies = [_bodies(events, count, "canonical")]
    fan_bodies = [_bodies(events, count, name) for name in SEED_TRANSFORMS]
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in ("single", "base1", "fan", "base3")}
    command = [python(), "-m", "benchmarks.sink", "--ports", "3"]
    with child_process(command, ready=json_line("SINK ")) as (_, info):
        ports: list[int] = info["ports"]
        for _ in range(trials):  # interleaved, so drift on the machine hits both sides alike
            runs["single"].append(_router_trial(events, count, ports[:1], ("canonical",)))
            runs["base1"].append(_baseline_trial(count, ports[:1], single_bodies))
            runs["fan"].append(_router_trial(events, count, ports, SEED_TRANSFORMS))
            runs["base3"].append(_baseline_trial(count, ports, fan_bodies))
    result = BenchResult(NAME, scale.name)
    result.details = {
        "events_per_trial": count,
        "batch_size": BATCH,
        "trials": {
            name: {key: trials_summary([r[key] for r in rows]) for key in rows[0]}
            for name, rows in runs.items()
        },
    }
    med = {
        name: {key: median([r[key] for r in rows]) for key in rows[0]}
        for name, rows in runs.items()
    }
    for label, key, base, target in (
        ("1 sink", "single", "base1", SINGLE_TARGET),
        ("3 sinks", "fan", "base3", FANOUT_TARGET),
    ):
        result.add(
            f"events/s, {label}",
            med[key]["events_per_s"],
            "ev/s",
            anchor="raw httpx, same batches",
            anchor_value=med[base]["events_per_s"],
            target=Target(">=", target),
        )
        result.add(
            f"process CPU, {label}",
            100.0 * med[key]["cpu_share"],
            "% core",
            note=f"router threads {100.0 * med[key]['router_cpu_share']:.0f}% of a core",
        )
    return result
