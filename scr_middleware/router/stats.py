"""Delivery accounting.

Per destination and process, at every instant:
    captured + replayed_total ==
        delivered + sampled_out + dead_lettered_total + sum(dropped.values()) + in_flight
An event that exhausts its retries moves into the on-disk spool (``dead_lettered_total``);
replaying takes it back out (``replayed_total``) into ``in_flight`` and then ``delivered``.
Without replays this is the plain ``captured = delivered + sampled out + spooled + dropped +
in flight``. ``spooled`` is a gauge: what the spool file holds now, from any process.

These objects are written only by the router thread (and the capture path for the
runtime-level counters, which are GIL-atomic int increments), and read by metrics and /health.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

DROP_BUFFER_OVERFLOW = "buffer_overflow"  # ingest buffer full: the router could not keep up
DROP_SPOOL_FULL = "spool_full"  # spool at storage.spool_max_bytes or the disk refused the write
DROP_TRANSFORM_FAILED = "transform_failed"  # transform raised or returned a non-dict
DROP_SHUTDOWN = "shutdown"  # still in memory when shutdown's timeout ran out


@dataclass(slots=True)
class DestinationStats:
    name: str
    captured: int = 0
    delivered: int = 0
    sampled_out: int = 0
    spooled: int = 0
    in_flight: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dead_lettered_total: int = 0  # ever moved into the spool
    replayed_total: int = 0  # ever taken back out of the spool for delivery
    failures_total: int = 0  # failed delivery attempts (requests), retried or not
    retries_total: int = 0
    batches_total: int = 0
    state: str = "ok"  # ok | retrying | down
    last_error: str | None = None
    last_success_at: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    latency_samples_total: int = 0  # ever appended to latencies_ms (metrics consume by count)

    def observe_latency(self, ms: float) -> None:
        self.latencies_ms.append(ms)
        self.latency_samples_total += 1

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def balanced(self) -> bool:
        accounted = (
            self.delivered
            + self.sampled_out
            + self.dead_lettered_total
            + sum(self.dropped.values())
            + self.in_flight
        )
        return accounted == self.captured + self.replayed_total

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "captured": self.captured,
            "delivered": self.delivered,
            "sampled_out": self.sampled_out,
            "spooled": self.spooled,
            "in_flight": self.in_flight,
            "dropped": dict(self.dropped),
            "dead_lettered_total": self.dead_lettered_total,
            "replayed_total": self.replayed_total,
            "failures_total": self.failures_total,
            "retries_total": self.retries_total,
            "batches_total": self.batches_total,
            "last_error": self.last_error,
            "last_success_at": self.last_success_at,
            "balanced": self.balanced(),
        }


@dataclass(slots=True)
class RuntimeStats:
    captured: int = 0  # accepted by capture()
    invalid: int = 0  # rejected by capture() with InvalidEventError
    disabled: int = 0  # capture() called while SCR_ENABLED=false
    after_shutdown: int = 0  # capture() called on a runtime already shut down (dropped)
    extraction_failures: dict[str, int] = field(default_factory=dict)  # reason -> count
    # capture() latency samples in nanoseconds (ring buffer, appended on the caller's thread)
    capture_latency_ns: deque[int] = field(default_factory=lambda: deque(maxlen=8192))

    def extraction_failed(self, reason: str) -> None:
        self.extraction_failures[reason] = self.extraction_failures.get(reason, 0) + 1
