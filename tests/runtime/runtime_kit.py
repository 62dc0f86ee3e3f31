"""Helpers for the runtime tests: a sink that timestamps arrivals, bounded waits, accounting."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.sink import HttpSink, SinkRequest

from scr_middleware import SessionCompletionRuntime

MakeRuntime = Callable[..., SessionCompletionRuntime]
WAIT_S = 20.0  # generous: the machine is shared and noisy; tests normally finish in ms


class TimedSink(HttpSink):
    """``HttpSink`` that also records when each request arrived, on the sink's own clock."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def _record(self, request: SinkRequest) -> None:
        with self._lock:  # a re-entrant Condition: the parent takes it again
            self.arrivals.append(time.monotonic())
            super()._record(request)

    def event_ids(self, *, only_ok: bool = True) -> list[str]:
        """``event_id`` of every payload received (answered 200 only, unless asked)."""
        return [payload["event_id"] for payload in self.payloads(only_ok=only_ok)]

    def batch_sizes(self) -> list[int]:
        return [len(request.json()) for request in self.requests]


def wait_until(
    predicate: Callable[[], object], timeout: float = WAIT_S, message: str = "condition"
) -> None:
    """Poll ``predicate`` until it is truthy; fail with ``message`` after ``timeout``.

    A ``LookupError`` from the predicate counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except LookupError:  # e.g. the router has not built its destinations yet
            pass
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def stay_true(predicate: Callable[[], object], seconds: float) -> None:
    """Assert ``predicate`` holds throughout ``seconds`` (for things that must NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.05)


def event(index: int, prefix: str = "evt") -> dict[str, Any]:
    return {
        "event_id": f"{prefix}-{index}",
        "session_id": f"sess-{index}",
        "user_id": f"user-{index % 7}",
        "organization_id": "org-1",
        "usage": {"input_tokens": 10 + index, "output_tokens": 5, "model": "gpt-4"},
        "outcome": {"status": "success"},
    }


def http(name: str, sink: HttpSink | str, **settings: Any) -> dict[str, Any]:
    endpoint = sink if isinstance(sink, str) else sink.url
    return {"name": name, "endpoint": endpoint, "retry_attempts": 2, "timeout_ms": 5000, **settings}


def healthy(sink: HttpSink) -> dict[str, Any]:
    """The healthy neighbour configured beside a faulty destination: sends every event at once."""
    return http("healthy", sink, batch_size=1, flush_interval_ms=0)


def snapshot(runtime: SessionCompletionRuntime, name: str) -> dict[str, Any]:
    """The destination's stats as ``/health`` shows them."""
    for destination in runtime.health()[1]["destinations"]:
        if destination["name"] == name:
            return dict(destination)
    raise KeyError(name)


def assert_accounted(runtime: SessionCompletionRuntime) -> None:
    """The accounting equation, exactly, for every destination (not just ``balanced``)."""
    for stats in runtime.health()[1]["destinations"]:
        left = stats["captured"] + stats["replayed_total"]
        right = (
            stats["delivered"]
            + stats["sampled_out"]
            + stats["dead_lettered_total"]
            + sum(stats["dropped"].values())
            + stats["in_flight"]
        )
        assert left == right, stats
        assert stats["balanced"] is True


def settled(runtime: SessionCompletionRuntime, name: str, captured: int) -> Callable[[], bool]:
    """Predicate: ``captured`` events reached the destination and none is in flight."""

    def check() -> bool:
        stats = snapshot(runtime, name)
        return bool(stats["captured"] == captured and stats["in_flight"] == 0)

    return check


def spool_rows(runtime: SessionCompletionRuntime, name: str) -> dict[str, int]:
    """Rows in the destination's spool file by reason (read with a separate connection)."""
    path = Path(runtime.router.spool_paths()[name])
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT reason, COUNT(*) FROM spool GROUP BY reason").fetchall()
    finally:
        conn.close()
    return {str(reason): int(count) for reason, count in rows}


def duplicates(ids: list[str]) -> int:
    return sum(count - 1 for count in Counter(ids).values())
