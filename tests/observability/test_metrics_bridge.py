"""MetricsBridge: deltas into counters, gauges, quantiles, histogram, exact exposed names."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from scr_middleware.observability import BufferState, MetricsBridge
from scr_middleware.observability.process import CpuMeter, rss_bytes
from scr_middleware.router.stats import (
    DROP_BUFFER_OVERFLOW,
    DROP_SPOOL_FULL,
    DestinationStats,
    RuntimeStats,
)

from .helpers import parse_samples, value

EMPTY = BufferState(size_events=0, size_bytes=0, max_events=100)


def scrape(bridge: MetricsBridge) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = bridge.render()
    assert content_type.startswith("text/plain")
    return parse_samples(body.decode())


def capture(runtime: RuntimeStats, n: int, latency_ms: float = 1.0) -> None:
    for _ in range(n):
        runtime.captured += 1
        runtime.capture_latency_ns.append(int(latency_ms * 1_000_000))


def test_counter_adds_deltas_not_totals() -> None:
    runtime = RuntimeStats()
    bridge = MetricsBridge()
    capture(runtime, 5)
    bridge.sync(runtime, [], EMPTY)
    assert value(scrape(bridge), "scr_events_captured_total") == 5

    capture(runtime, 3)
    bridge.sync(runtime, [], EMPTY)
    bridge.sync(runtime, [], EMPTY)  # nothing new: must not add again
    assert value(scrape(bridge), "scr_events_captured_total") == 8


def test_exposed_text_uses_the_seed_names() -> None:
    runtime = RuntimeStats()
    capture(runtime, 5)
    bridge = MetricsBridge()
    bridge.sync(runtime, [DestinationStats("billing")], EMPTY)
    text = bridge.render()[0].decode()
    # The seed's integration check greps for this exact sample line.
    assert re.search(r"^scr_events_captured_total 5\.0$", text, re.M)
    for name in (
        "scr_events_captured_per_second",
        "scr_capture_latency_ms",
        'scr_events_routed_total{destination="billing"}',
        'scr_routing_failures_total{destination="billing"}',
        'scr_routing_latency_ms_count{destination="billing"}',
        "scr_buffer_size_bytes",
        "scr_buffer_utilization_percent",
        "scr_memory_usage_bytes",
        "scr_cpu_usage_percent",
    ):
        assert re.search(rf"^{re.escape(name)}[ {{]", text, re.M), name
    assert "scr_events_captured_total_total" not in text


def test_quantile_gauges_exist_before_any_capture_and_track_samples() -> None:
    bridge = MetricsBridge()
    samples = scrape(bridge)
    labels = {dict(key[1])["quantile"] for key in samples if key[0] == "scr_capture_latency_ms"}
    assert labels == {"0.5", "0.95", "0.99"}

    runtime = RuntimeStats()
    for ms in range(1, 101):  # 1..100 ms
        runtime.captured += 1
        runtime.capture_latency_ns.append(ms * 1_000_000)
    bridge.sync(runtime, [], EMPTY)
    samples = scrape(bridge)
    assert value(samples, "scr_capture_latency_ms", quantile="0.5") == 50
    assert value(samples, "scr_capture_latency_ms", quantile="0.95") == 95
    assert value(samples, "scr_capture_latency_ms", quantile="0.99") == 99


def test_destination_counters_and_gauges() -> None:
    dest = DestinationStats("billing", captured=20, delivered=10, sampled_out=2, in_flight=3)
    dest.failures_total = 4
    dest.drop(DROP_BUFFER_OVERFLOW, 2)
    dest.dead_lettered_total = 3
    dest.spooled = 3
    bridge = MetricsBridge()
    bridge.sync(RuntimeStats(), [dest], EMPTY)

    dest.delivered += 5
    dest.drop(DROP_BUFFER_OVERFLOW)
    dest.drop("custom_reason", 2)
    dest.replayed_total = 1
    dest.spooled = 2
    dest.state = "down"
    bridge.sync(RuntimeStats(), [dest], EMPTY)

    s = scrape(bridge)
    assert value(s, "scr_events_routed_total", destination="billing") == 15
    assert value(s, "scr_routing_failures_total", destination="billing") == 4
    assert value(s, "scr_events_sampled_out_total", destination="billing") == 2
    assert value(s, "scr_events_dead_lettered_total", destination="billing") == 3
    assert value(s, "scr_events_replayed_total", destination="billing") == 1
    dropped = "scr_events_dropped_total"
    assert value(s, dropped, destination="billing", reason=DROP_BUFFER_OVERFLOW) == 3
    assert value(s, dropped, destination="billing", reason="custom_reason") == 2
    # Known reasons exist at 0 so increase() sees the first drop.
    assert value(s, dropped, destination="billing", reason=DROP_SPOOL_FULL) == 0
    assert value(s, "scr_events_in_flight", destination="billing") == 3
    assert value(s, "scr_events_spooled", destination="billing") == 2
    assert value(s, "scr_destination_up", destination="billing") == 0


def test_runtime_loss_counters() -> None:
    runtime = RuntimeStats(invalid=2)
    runtime.extraction_failed("no_usage")
    bridge = MetricsBridge()
    bridge.sync(runtime, [], EMPTY)
    runtime.extraction_failed("no_usage")
    runtime.extraction_failed("bad_json")
    runtime.invalid += 1
    bridge.sync(runtime, [], EMPTY)
    s = scrape(bridge)
    assert value(s, "scr_events_invalid_total") == 3
    assert value(s, "scr_extraction_failures_total", reason="no_usage") == 2
    assert value(s, "scr_extraction_failures_total", reason="bad_json") == 1


def test_routing_latency_observes_each_sample_once() -> None:
    dest = DestinationStats("audit")
    bridge = MetricsBridge()
    for ms in (0.5, 7.0, 700.0):
        dest.observe_latency(ms)
    bridge.sync(RuntimeStats(), [dest], EMPTY)
    bridge.sync(RuntimeStats(), [dest], EMPTY)
    s = scrape(bridge)
    assert value(s, "scr_routing_latency_ms_count", destination="audit") == 3
    assert value(s, "scr_routing_latency_ms_sum", destination="audit") == pytest.approx(707.5)
    assert value(s, "scr_routing_latency_ms_bucket", destination="audit", le="1.0") == 1
    assert value(s, "scr_routing_latency_ms_bucket", destination="audit", le="10.0") == 2

    dest.observe_latency(20.0)
    bridge.sync(RuntimeStats(), [dest], EMPTY)
    s = scrape(bridge)
    assert value(s, "scr_routing_latency_ms_count", destination="audit") == 4
    assert value(s, "scr_routing_latency_ms_sum", destination="audit") == pytest.approx(727.5)


def test_replaced_stats_object_is_counted_afresh() -> None:
    bridge = MetricsBridge()
    first = RuntimeStats()
    capture(first, 10)
    bridge.sync(first, [], EMPTY)
    second = RuntimeStats()  # e.g. rebuilt after a fork
    capture(second, 12)  # more than before: a plain "went down" check would miss it
    bridge.sync(second, [], EMPTY)
    assert value(scrape(bridge), "scr_events_captured_total") == 22


def test_bridges_sharing_a_registry_add_up() -> None:
    registry = CollectorRegistry()
    a, b = MetricsBridge(registry), MetricsBridge(registry)
    ra, rb = RuntimeStats(), RuntimeStats()
    capture(ra, 2)
    capture(rb, 3)
    a.sync(ra, [], EMPTY)
    b.sync(rb, [], EMPTY)
    assert value(scrape(a), "scr_events_captured_total") == 5


def test_buffer_gauges() -> None:
    bridge = MetricsBridge()
    bridge.sync(RuntimeStats(), [], BufferState(size_events=25, size_bytes=4096, max_events=100))
    s = scrape(bridge)
    assert value(s, "scr_buffer_size_bytes") == 4096
    assert value(s, "scr_buffer_utilization_percent") == 25
    bridge.sync(RuntimeStats(), [], BufferState(size_events=3, size_bytes=1, max_events=0))
    assert value(scrape(bridge), "scr_buffer_utilization_percent") == 0


def test_rate_and_cpu_over_a_window() -> None:
    runtime = RuntimeStats()
    bridge = MetricsBridge()
    capture(runtime, 10)
    bridge.sync(runtime, [], EMPTY)  # window not yet 1 s: rate stays unset
    assert value(scrape(bridge), "scr_events_captured_per_second") == 0
    deadline = time.monotonic() + 1.1
    while time.monotonic() < deadline:  # burn CPU so the window shows some
        sum(range(1000))
    bridge.sync(runtime, [], EMPTY)
    s = scrape(bridge)
    assert 0 < value(s, "scr_events_captured_per_second") <= 10
    assert value(s, "scr_cpu_usage_percent") > 0
    assert value(s, "scr_memory_usage_bytes") > 1_000_000


def test_sync_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    bridge = MetricsBridge()
    caplog.set_level(logging.WARNING, logger="scr_middleware")
    bridge.sync(None, [], EMPTY)  # type: ignore[arg-type]
    bridge.sync(None, [], EMPTY)  # type: ignore[arg-type]
    failures = [r for r in caplog.records if r.getMessage() == "metrics sync failed"]
    assert len(failures) == 1  # logged once, not on every sync


def test_process_readers() -> None:
    psutil = pytest.importorskip("psutil")
    rss = rss_bytes()
    assert rss is not None
    assert rss == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
    meter = CpuMeter()
    sum(range(200_000))
    assert meter.sample() >= 0


FORK_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from scr_middleware.observability import BufferState, MetricsBridge, get_logger, log_once
    from scr_middleware.observability import logs
    from scr_middleware.router.stats import RuntimeStats

    bridge = MetricsBridge()
    # Held at fork() time, as if the router thread were mid-sync and a request mid-log_once.
    bridge._lock.acquire()
    logs._once_lock.acquire()
    pid = os.fork()
    if pid == 0:
        bridge.sync(RuntimeStats(captured=2), [], BufferState())
        log_once(get_logger("t"), "k", "info", "m")
        ok = b"scr_events_captured_total 2.0" in bridge.render()[0]
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit(os.waitstatus_to_exitcode(status))
        time.sleep(0.05)
    os.kill(pid, 9)
    sys.exit("child deadlocked")
    """
)


def test_sync_works_in_a_child_forked_while_locks_were_held() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", FORK_CHILD],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
