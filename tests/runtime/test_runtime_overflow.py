"""Bounded memory and honest accounting when things go wrong: a tiny buffer in front of a down
destination, a full or unwritable spool, an event the router cannot prepare."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import (
    MakeRuntime,
    TimedSink,
    assert_accounted,
    event,
    http,
    snapshot,
    spool_rows,
    wait_until,
)
from support.sink import closed_port

from scr_middleware import SessionCompletionRuntime


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def scr_logs() -> Iterator[Records]:
    """Records of the ``scr_middleware`` logger (a runtime turns its propagation off)."""
    handler = Records()
    logging.getLogger("scr_middleware").addHandler(handler)
    yield handler
    logging.getLogger("scr_middleware").removeHandler(handler)


def down_endpoint() -> str:
    return f"http://127.0.0.1:{closed_port()}/events"


def settle_all(receipts: list[Any]) -> Counter[str]:
    for receipt in receipts:
        assert receipt.wait(20.0), receipt
    return Counter(receipt.status for receipt in receipts)


def test_tiny_buffer_with_down_destination_spools_and_never_grows(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime(
        [http("billing", down_endpoint(), batch_size=10, retry_attempts=0)],
        buffer_max_size=20,
        flush_interval_ms=0,
    )
    receipts = []
    largest_ingest = 0
    for index in range(3000):
        receipts.append(runtime.capture(event(index)))
        largest_ingest = max(largest_ingest, runtime.router.ingest_size())
    assert largest_ingest <= 20  # the ingest buffer never exceeds buffer_max_size
    statuses = settle_all(receipts)  # every receipt settles, dropped ones included
    assert set(statuses) <= {"spooled", "dropped"}
    assert runtime.flush(20.0)
    wait_until(lambda: snapshot(runtime, "billing")["captured"] == 3000, message="fan-out")
    stats = snapshot(runtime, "billing")
    rows = sum(spool_rows(runtime, "billing").values())
    dropped = sum(stats["dropped"].values())
    assert stats["delivered"] == 0
    assert rows + dropped == 3000  # every event is on disk or counted as dropped
    assert statuses["spooled"] == rows
    assert statuses["dropped"] == dropped
    assert set(stats["dropped"]) <= {"buffer_overflow"}
    assert_accounted(runtime)


def test_full_spool_is_counted_as_dropped_and_logged_never_raised(
    make_runtime: MakeRuntime, scr_logs: Records
) -> None:
    runtime = make_runtime(
        [http("billing", down_endpoint(), batch_size=10, retry_attempts=0)],
        storage={"spool_max_bytes": 1 << 20},  # the smallest allowed: 1 MiB
        flush_interval_ms=0,
    )
    big = "x" * 20_000
    receipts = [
        runtime.capture({**event(index), "metadata": {"blob": big}}) for index in range(150)
    ]
    statuses = settle_all(receipts)
    assert runtime.flush(20.0)
    stats = snapshot(runtime, "billing")
    rows = sum(spool_rows(runtime, "billing").values())
    assert stats["dropped"]["spool_full"] > 0
    assert rows + stats["dropped"]["spool_full"] == 150
    assert statuses["dropped"] == stats["dropped"]["spool_full"]
    assert any("dead letters dropped" in message for message in scr_logs.messages())
    assert_accounted(runtime)
    runtime.shutdown(5.0)  # must not raise either


def test_unwritable_spool_location_is_counted_and_logged_never_raised(
    tmp_path: Path, scr_logs: Records
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data dir should be")
    runtime = SessionCompletionRuntime(
        config={
            "capture": {"batch_size": 5, "flush_interval_ms": 0},
            "destinations": [http("billing", down_endpoint(), batch_size=5, retry_attempts=0)],
        },
        data_dir=str(blocker / "data"),  # a constructor argument beats SCR_DATA_DIR
        timeout_ms=10_000,
    )
    try:
        receipts = [runtime.capture(event(index)) for index in range(10)]
        assert settle_all(receipts) == {"dropped": 10}
        assert runtime.flush(10.0)
        stats = snapshot(runtime, "billing")
        assert stats["dropped"] == {"spool_full": 10}
        assert stats["in_flight"] == 0
        assert any("dead letters dropped" in message for message in scr_logs.messages())
        assert_accounted(runtime)
        receipts = [runtime.capture(event(index, "later")) for index in range(5)]
        assert settle_all(receipts) == {"dropped": 5}  # the lane survived and keeps working
    finally:
        runtime.shutdown(5.0)  # raised NotADirectoryError into the caller before the fix


def test_router_survives_an_event_it_cannot_prepare(
    sink: TimedSink, make_runtime: MakeRuntime, scr_logs: Records
) -> None:
    runtime = make_runtime([http("billing", sink, batch_size=1, flush_interval_ms=0)])

    def preprocess(item: dict[str, Any]) -> dict[str, Any]:
        if item["session_id"] == "sess-1":
            raise RuntimeError("a PII pattern blew up")
        return item

    # Fault injection: a preprocessing step (PII scrubbing) that raises cannot be produced
    # from valid input any more, but the router must survive one regardless.
    runtime.router._preprocess = preprocess
    receipts = [runtime.capture(event(index)) for index in range(3)]
    assert [receipt.wait(10.0) for receipt in receipts] == [True, True, True]
    assert [receipt.status for receipt in receipts] == ["delivered", "dropped", "delivered"]
    assert runtime.router.running
    assert runtime.stats.extraction_failures == {"prepare_failed": 1}
    assert sink.event_ids() == ["evt-0", "evt-2"]
    assert any("finalize/preprocess failed" in message for message in scr_logs.messages())
