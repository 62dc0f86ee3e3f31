"""Faults at a real HTTP destination, each beside a healthy one that must not notice.

For every fault: the accounting equation holds exactly, the healthy neighbour delivers every
event exactly once, and the faulty destination ends where the contract says (delivered after
retries, spooled, or replayed).
"""

from __future__ import annotations

from typing import Any

import pytest
from runtime_kit import (
    MakeRuntime,
    TimedSink,
    assert_accounted,
    duplicates,
    event,
    healthy,
    http,
    settled,
    snapshot,
    spool_rows,
    stay_true,
    wait_until,
)
from support.sink import closed_port

from scr_middleware import SessionCompletionRuntime

N = 10


def capture_all(
    runtime: SessionCompletionRuntime, count: int = N, prefix: str = "evt"
) -> list[Any]:
    return [runtime.capture(event(index, prefix)) for index in range(count)]


def assert_healthy_unaffected(
    runtime: SessionCompletionRuntime, sink: TimedSink, count: int = N
) -> None:
    wait_until(settled(runtime, "healthy", count), message="the healthy destination")
    stats = snapshot(runtime, "healthy")
    assert stats["delivered"] == stats["captured"] == count
    assert stats["failures_total"] == 0
    assert sorted(sink.event_ids()) == sorted({*sink.event_ids()})  # exactly once
    assert len(sink.event_ids()) == count


def test_5xx_then_success_is_retried_and_delivered_once(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    sink.fail_next(2, status=503)
    runtime = make_runtime(
        [http("billing", sink, batch_size=N, retry_attempts=3), healthy(healthy_sink)]
    )
    capture_all(runtime)
    wait_until(settled(runtime, "billing", N), message="billing delivery")
    stats = snapshot(runtime, "billing")
    assert (stats["delivered"], stats["retries_total"], stats["failures_total"]) == (N, 2, 2)
    assert stats["dead_lettered_total"] == 0
    assert stats["state"] == "ok"
    requests = sink.requests
    assert [request.action for request in requests] == ["status", "status", "ok"]
    assert len({request.headers["idempotency-key"] for request in requests}) == 1
    # At-least-once on the wire: the sink saw every event three times and dedupes on event_id.
    received = sink.event_ids(only_ok=False)
    assert len(set(received)) == N
    assert duplicates(received) == 2 * N
    assert sorted(sink.event_ids()) == sorted(f"evt-{i}" for i in range(N))
    assert_healthy_unaffected(runtime, healthy_sink)
    assert_accounted(runtime)


def test_429_retry_after_is_honoured(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    sink.fail_next(1, status=429, headers={"Retry-After": "1"})
    runtime = make_runtime([http("billing", sink, batch_size=N), healthy(healthy_sink)])
    capture_all(runtime)
    wait_until(settled(runtime, "billing", N), message="billing delivery")
    assert [request.action for request in sink.requests] == ["status", "ok"]
    first, second = sink.arrivals[:2]
    assert second - first >= 1.0  # the retry waited for Retry-After (sink's clock)
    assert snapshot(runtime, "billing")["retries_total"] == 1
    assert_healthy_unaffected(runtime, healthy_sink)
    # Ordering: the neighbour had everything before the throttled retry even went out.
    assert max(healthy_sink.arrivals) < second
    assert_accounted(runtime)


@pytest.mark.slow
def test_hanging_destination_times_out_is_spooled_and_never_delays_its_neighbour(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    sink.hang_next(60.0, n=2)  # both attempts hang; the sink answers normally afterwards
    runtime = make_runtime(
        [
            http("billing", sink, batch_size=N, timeout_ms=2000, retry_attempts=1),
            healthy(healthy_sink),
        ]
    )
    capture_all(runtime)
    assert_healthy_unaffected(runtime, healthy_sink)
    # Ordering, not timing: the neighbour got everything while the first request hangs.
    hanging = snapshot(runtime, "billing")
    assert hanging["failures_total"] == 0
    assert hanging["in_flight"] == N
    wait_until(lambda: snapshot(runtime, "billing")["dead_lettered_total"] == N, message="spooling")
    stats = snapshot(runtime, "billing")
    assert (stats["failures_total"], stats["retries_total"]) == (2, 1)
    assert any(word in (stats["last_error"] or "") for word in ("timed out", "TimeoutError"))
    assert [request.action for request in sink.requests[:2]] == ["hang", "hang"]
    assert_accounted(runtime)
    # The sink answers again: the spool is replayed automatically (the first probe is prompt).
    wait_until(settled(runtime, "billing", N), message="replay")
    wait_until(lambda: snapshot(runtime, "billing")["delivered"] == N, message="replay delivery")
    wait_until(lambda: spool_rows(runtime, "billing") == {}, message="spool drained")
    assert sorted(sink.event_ids()) == sorted(f"evt-{i}" for i in range(N))
    assert snapshot(runtime, "billing")["replayed_total"] == N
    assert_accounted(runtime)


def test_connection_refused_is_retried_then_spooled(
    healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/events"
    runtime = make_runtime(
        [http("billing", down, batch_size=N, retry_attempts=2), healthy(healthy_sink)]
    )
    receipts = capture_all(runtime)
    wait_until(lambda: snapshot(runtime, "billing")["dead_lettered_total"] == N, message="spooling")
    stats = snapshot(runtime, "billing")
    assert (stats["failures_total"], stats["retries_total"], stats["delivered"]) == (3, 2, 0)
    assert stats["state"] == "down"
    assert "ConnectError" in (stats["last_error"] or "")
    assert spool_rows(runtime, "billing") == {"retries_exhausted": N}
    for receipt in receipts:
        assert receipt.wait(10.0)
        assert receipt.status == "spooled"  # the worst outcome across destinations
    assert_healthy_unaffected(runtime, healthy_sink)
    assert_accounted(runtime)


@pytest.mark.slow
def test_permanent_400_is_not_retried_not_auto_replayed_but_replayed_on_demand(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    sink.reject_next(1, status=400)
    runtime = make_runtime(
        [http("billing", sink, batch_size=5, retry_attempts=3), healthy(healthy_sink)]
    )
    capture_all(runtime, 5, prefix="rejected")
    wait_until(
        lambda: snapshot(runtime, "billing")["dead_lettered_total"] == 5, message="rejection"
    )
    assert len(sink.requests) == 1  # no retry for a permanent error
    stats = snapshot(runtime, "billing")
    assert (stats["failures_total"], stats["retries_total"]) == (1, 0)
    assert "HTTP 400" in (stats["last_error"] or "")
    assert spool_rows(runtime, "billing") == {"rejected": 5}
    # A later success does not drag rejected events back, nor does the periodic probe.
    capture_all(runtime, 5, prefix="later")
    wait_until(lambda: snapshot(runtime, "billing")["delivered"] == 5, message="later batch")
    stay_true(lambda: len(sink.requests) == 2, seconds=2.5)
    assert spool_rows(runtime, "billing") == {"rejected": 5}
    # After "fixing" the destination, an operator replays them on demand.
    assert runtime.replay(include_manual=True, timeout=20.0) == {"billing": 5, "healthy": 0}
    wait_until(lambda: spool_rows(runtime, "billing") == {}, message="spool drained")
    assert sorted(sink.event_ids()) == sorted(
        [f"rejected-{i}" for i in range(5)] + [f"later-{i}" for i in range(5)]
    )
    stats = snapshot(runtime, "billing")
    assert (stats["delivered"], stats["replayed_total"], stats["dead_lettered_total"]) == (10, 5, 5)
    assert_healthy_unaffected(runtime, healthy_sink, 10)
    assert_accounted(runtime)


@pytest.mark.slow
def test_down_destination_recovers_and_the_spool_is_replayed_automatically(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    sink.fail_next(1000, status=503)  # down until reset()
    runtime = make_runtime(
        [http("billing", sink, batch_size=N, retry_attempts=1), healthy(healthy_sink)]
    )
    capture_all(runtime)
    wait_until(lambda: snapshot(runtime, "billing")["dead_lettered_total"] >= N, message="spooling")
    # The first probe replays the spool, fails again and puts the events back on disk.
    wait_until(lambda: snapshot(runtime, "billing")["replayed_total"] >= N, message="a probe")
    wait_until(settled(runtime, "billing", N), message="the failed probe to settle")
    assert spool_rows(runtime, "billing") == {"retries_exhausted": N}
    assert snapshot(runtime, "billing")["delivered"] == 0
    assert_accounted(runtime)
    sink.reset()  # the destination recovers
    wait_until(lambda: snapshot(runtime, "billing")["delivered"] == N, message="recovery")
    wait_until(lambda: spool_rows(runtime, "billing") == {}, message="spool drained")
    assert sorted(sink.event_ids()) == sorted(f"evt-{i}" for i in range(N))
    stats = snapshot(runtime, "billing")
    assert stats["state"] == "ok"
    assert stats["replayed_total"] >= 2 * N
    assert_healthy_unaffected(runtime, healthy_sink)
    assert_accounted(runtime)


@pytest.mark.slow
def test_shutdown_spools_a_batch_still_hanging_at_its_deadline(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    """Graceful stop: whatever is not delivered by the deadline is on disk, none lost."""
    sink.hang_next(60.0)
    runtime = make_runtime(
        [http("billing", sink, batch_size=5, timeout_ms=30_000), healthy(healthy_sink)]
    )
    capture_all(runtime, 5)
    sink.wait_for_requests(1)  # the batch is on the wire, and hangs
    assert_healthy_unaffected(runtime, healthy_sink, 5)
    runtime.shutdown(1.0)
    stats = snapshot(runtime, "billing")
    assert stats["in_flight"] == 0
    assert stats["dead_lettered_total"] == 5
    assert spool_rows(runtime, "billing") == {"shutdown": 5}
    assert_accounted(runtime)
