"""Memory stays bounded while the only destination is down, and nothing goes unaccounted."""

from __future__ import annotations

import gc

import psutil  # type: ignore[import-untyped]  # no stubs in the dev extras
import pytest
from runtime_kit import MakeRuntime, assert_accounted, http, snapshot, spool_rows, wait_until
from support.sink import closed_port

MB = 1024 * 1024


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


@pytest.mark.slow
def test_200k_events_to_a_down_destination_keep_rss_bounded(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(
        [
            http(
                "billing",
                f"http://127.0.0.1:{closed_port()}/events",
                batch_size=500,
                retry_attempts=0,
                timeout_ms=1000,
            )
        ],
        buffer_max_size=2000,
        flush_interval_ms=100,
    )

    def capture(start: int, stop: int) -> None:
        for index in range(start, stop):
            runtime.capture(
                {
                    "event_id": f"mem-{index}",
                    "session_id": f"s-{index}",
                    "user_id": "u",
                    "usage": {"input_tokens": index, "output_tokens": 1, "model": "gpt-4"},
                }
            )

    capture(0, 50_000)
    assert runtime.flush(60.0)
    after_50k = rss()
    capture(50_000, 200_000)
    assert runtime.flush(60.0)
    after_200k = rss()
    assert after_200k - after_50k < 30 * MB, (after_50k // MB, after_200k // MB)

    wait_until(
        lambda: (
            snapshot(runtime, "billing")["captured"] == 200_000
            and snapshot(runtime, "billing")["in_flight"] == 0
        ),
        timeout=60.0,
        message="every event to reach the destination's accounting",
    )
    stats = snapshot(runtime, "billing")
    rows = sum(spool_rows(runtime, "billing").values())
    dropped = sum(stats["dropped"].values())
    assert stats["delivered"] + rows + dropped == 200_000
    assert runtime.stats.captured == 200_000
    assert_accounted(runtime)


def test_queued_events_are_held_as_bytes_not_dicts(make_runtime: MakeRuntime) -> None:
    """While a destination is down its queue holds each event as JSON bytes plus one small
    item: nothing the garbage collector must traverse per nested field (with dicts, every
    collection walked the whole queue and cost more than delivery itself)."""
    runtime = make_runtime(
        [
            http(
                "billing",
                f"http://127.0.0.1:{closed_port()}/events",
                batch_size=100,
                retry_attempts=50,
                timeout_ms=1000,
            )
        ],
        buffer_max_size=20_000,
        flush_interval_ms=50,
    )
    runtime.capture_nowait({"session_id": "warm-up", "usage": {"input_tokens": 1}})
    wait_until(lambda: snapshot(runtime, "billing")["failures_total"] > 0)
    count = 5000
    gc.collect()
    before = len(gc.get_objects())
    for index in range(count):
        runtime.capture_nowait(
            {
                "session_id": f"s-{index}",
                "user_id": "u",
                "usage": {"input_tokens": index, "output_tokens": 1, "model": "gpt-4"},
                "outcome": {"status": "success", "http_status": 200},
                "metadata": {"route": "chat"},
            }
        )
    wait_until(lambda: snapshot(runtime, "billing")["captured"] == count + 1)
    gc.collect()
    growth = len(gc.get_objects()) - before
    assert snapshot(runtime, "billing")["in_flight"] == count + 1  # all still queued
    assert growth < 1.5 * count, f"{growth / count:.1f} tracked objects per queued event"
