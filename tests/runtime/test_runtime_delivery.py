"""Delivery to real HTTP sinks: batching, body formats, transforms, sampling, receipts."""

from __future__ import annotations

import asyncio
import gzip
import re

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev extras
import pytest
from runtime_kit import (
    MakeRuntime,
    TimedSink,
    assert_accounted,
    event,
    http,
    settled,
    snapshot,
    wait_until,
)

import scr_middleware
from scr_middleware import InvalidEventError
from scr_middleware import runtime as runtime_mod
from scr_middleware.testing import capture_events
from scr_middleware.transforms import load_schema, verify_audit_record

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_success_posts_json_array_batches_by_batch_size(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink)], batch_size=3, flush_interval_ms=60_000)
    for index in range(7):
        runtime.capture(event(index))
    sink.wait_for_requests(2)  # two full batches go without any flush
    assert runtime.flush(10.0)
    requests = sink.wait_for_requests(3)
    assert sink.batch_sizes() == [3, 3, 1]
    assert sink.event_ids() == [f"evt-{i}" for i in range(7)]
    batch_ids = set()
    for request in requests:
        assert request.method == "POST"
        assert request.path == "/events"
        assert request.raw_body.startswith(b"[")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["idempotency-key"] == request.headers["x-scr-batch-id"]
        assert request.headers["x-scr-event-count"] == str(len(request.json()))
        assert request.headers["user-agent"].startswith("scr-middleware/")
        batch_ids.add(request.headers["idempotency-key"])
    assert len(batch_ids) == 3
    payload = sink.payloads()[0]
    assert payload["event_type"] == "session.completed"
    assert payload["schema_version"] == "1"
    assert RFC3339_UTC.match(payload["timestamp"])
    assert payload["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "model": "gpt-4",
        "source": "reported",
    }
    stats = snapshot(runtime, "billing")
    assert (stats["delivered"], stats["batches_total"], stats["failures_total"]) == (7, 3, 0)
    assert_accounted(runtime)


def test_partial_batch_goes_when_flush_interval_elapses(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink)], batch_size=1000, flush_interval_ms=300)
    for index in range(5):
        runtime.capture(event(index))
    sink.wait_for_requests(1)  # no flush(): the interval sent it
    for index in range(5, 8):
        runtime.capture(event(index))
    sink.wait_for_requests(2)
    assert sink.batch_sizes() == [5, 3]
    assert_accounted(runtime)


def test_batch_size_one_and_zero_interval_send_each_event_at_once(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink)], batch_size=1, flush_interval_ms=0)
    for index in range(4):
        runtime.capture(event(index))
        sink.wait_for_requests(index + 1)  # each one arrives without a flush
    assert sink.batch_sizes() == [1, 1, 1, 1]
    assert sink.event_ids() == ["evt-0", "evt-1", "evt-2", "evt-3"]


def test_gzip_compression(sink: TimedSink, make_runtime: MakeRuntime) -> None:
    runtime = make_runtime([http("billing", sink)], compression=True)
    for index in range(20):
        runtime.capture(event(index))
    assert runtime.flush(10.0)
    (request,) = sink.wait_for_requests(1)
    assert request.headers["content-encoding"] == "gzip"
    assert request.raw_body != request.body
    assert gzip.decompress(request.raw_body) == request.body
    assert [item["event_id"] for item in request.json()] == [f"evt-{i}" for i in range(20)]


def test_ndjson_format(sink: TimedSink, make_runtime: MakeRuntime) -> None:
    runtime = make_runtime([http("billing", sink, format="ndjson")])
    for index in range(3):
        runtime.capture(event(index))
    assert runtime.flush(10.0)
    (request,) = sink.wait_for_requests(1)
    assert request.headers["content-type"] == "application/x-ndjson"
    lines = request.body.decode().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("{") for line in lines)
    assert [item["event_id"] for item in request.json()] == ["evt-0", "evt-1", "evt-2"]


def test_each_destination_gets_its_own_transform(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime(
        [
            http("billing", sink, transform="billing_v1"),
            http("audit", healthy_sink, transform="audit_v1"),
        ]
    )
    runtime.capture(event(1))
    assert runtime.flush(10.0)
    (billing,) = sink.payloads()
    (audit,) = healthy_sink.payloads()
    jsonschema.validate(billing, load_schema("billing_v1"))
    jsonschema.validate(audit, load_schema("audit_v1"))
    assert billing["schema"] == "billing_v1"
    assert (billing["event_id"], billing["model"], billing["total_tokens"]) == (
        "evt-1",
        "gpt-4",
        16,
    )
    assert billing["user_id"] == "user-1"
    assert audit["schema"] == "audit_v1"
    assert audit["event"]["usage"]["total_tokens"] == 16
    assert verify_audit_record(audit)


def test_sampling_is_deterministic_by_event_id(
    sink: TimedSink, healthy_sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    events = [event(index, prefix="sampled") for index in range(400)]
    runtimes = [
        make_runtime([http("analytics", target, sampling_rate=0.5)])
        for target in (sink, healthy_sink)
    ]
    for runtime in runtimes:
        for item in events:
            runtime.capture(item)
        assert runtime.flush(10.0)
    first, second = sink.event_ids(), healthy_sink.event_ids()
    assert set(first) == set(second)
    assert 0.35 * 400 < len(first) < 0.65 * 400
    for runtime in runtimes:
        stats = snapshot(runtime, "analytics")
        assert stats["sampled_out"] == 400 - len(first)
        assert stats["delivered"] == len(first)
        assert_accounted(runtime)


def test_sampled_out_receipt(sink: TimedSink, make_runtime: MakeRuntime) -> None:
    runtime = make_runtime([http("analytics", sink, sampling_rate=0.0)])
    receipt = runtime.capture(event(1))
    assert receipt.wait(10.0)
    assert receipt.status == "sampled_out"
    assert sink.requests == []


def test_awaited_capture_waits_for_delivery_when_not_async(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink)], batch_size=100, flush_interval_ms=60_000)

    async def main() -> tuple[str, int]:
        receipt = await runtime.capture(event(1))
        return receipt.status, len(sink.requests)

    status, requests_seen = asyncio.run(main())
    assert status == "delivered"
    assert requests_seen == 1  # delivered before await returned, despite the 60 s interval
    receipt = runtime.capture(event(2))
    assert receipt.wait(10.0)
    assert receipt.status == "delivered"
    assert receipt.delivered


def test_awaited_capture_returns_at_once_in_async_mode(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime(
        [http("billing", sink)], batch_size=100, flush_interval_ms=60_000, async_mode=True
    )

    async def main() -> tuple[scr_middleware.Receipt, str]:
        receipt = await runtime.capture(event(1))
        return receipt, receipt.status

    receipt, status = asyncio.run(main())
    assert status == "pending"
    assert sink.requests == []  # nothing sent: the awaiting caller was not waiting for it
    assert runtime.flush(10.0)
    assert receipt.status == "delivered"
    assert sink.event_ids() == ["evt-1"]


def test_disabled_by_env_makes_capture_a_no_op(
    sink: TimedSink, make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_ENABLED", "false")
    runtime = make_runtime([http("billing", sink, batch_size=1, flush_interval_ms=0)])
    receipt = runtime.capture(event(1))
    assert receipt.status == "disabled"
    assert receipt.done

    async def main() -> str:
        return (await runtime.capture(event(2))).status

    assert asyncio.run(main()) == "disabled"
    assert runtime.flush(5.0)
    assert not runtime.router.running
    assert runtime.stats.disabled == 2
    assert sink.requests == []


def test_invalid_event_raises_from_capture_and_sends_nothing(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink, batch_size=1, flush_interval_ms=0)])
    with pytest.raises(InvalidEventError) as caught:
        runtime.capture({"usage": {"input_tokens": -1}, "outcome": "finished"})
    assert {path for path, _ in caught.value.errors} == {
        "session_id",
        "usage.input_tokens",
        "outcome.status",
    }
    assert runtime.stats.invalid == 1
    runtime.capture(event(1))
    assert runtime.flush(10.0)
    assert sink.event_ids() == ["evt-1"]
    assert snapshot(runtime, "billing")["captured"] == 1


def test_capture_after_shutdown_is_dropped_and_counted_not_queued(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink, batch_size=1, flush_interval_ms=0)])
    runtime.capture(event(1))
    runtime.shutdown(5.0)
    receipt = runtime.capture(event(2))
    assert receipt.done
    assert receipt.status == "dropped"
    assert runtime.stats.after_shutdown == 1
    assert runtime.router.ingest_size() == 0
    assert sink.event_ids() == ["evt-1"]


def test_capture_nowait_delivers_and_accounts_like_capture(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime([http("billing", sink, batch_size=2, flush_interval_ms=0)])
    assert runtime.capture_nowait(event(1)) is None
    runtime.capture(event(2))
    with pytest.raises(InvalidEventError):
        runtime.capture_nowait({"usage": {}})
    assert runtime.flush(10.0)
    assert sorted(sink.event_ids()) == ["evt-1", "evt-2"]
    assert runtime.stats.invalid == 1
    assert_accounted(runtime)


def test_capture_built_delivers_what_capture_nowait_would(
    sink: TimedSink, make_runtime: MakeRuntime
) -> None:
    """The middleware's cheap path: the same payload as the general one, less the id."""
    runtime = make_runtime([http("billing", sink, batch_size=2, flush_interval_ms=0)])
    built = {
        "session_id": "chatcmpl-1",
        "session_type": "chat",
        "user_id": "u1",
        "organization_id": None,
        "start_time": 1_790_000_000.25,
        "end_time": 1_790_000_000.5,
        "duration_ms": 250.0,
        "usage": {"input_tokens": 3, "output_tokens": 4, "model": "m", "source": "reported"},
        "outcome": {"status": "success", "http_status": 200},
        "transport": "http",
        "request": {"method": "POST", "route": "/v1/chat/completions", "path": "/v1/chat"},
        "metadata": {},
        "message_count": 1,
    }
    runtime.capture_built(dict(built))
    runtime.capture_nowait(dict(built))
    assert runtime.flush(10.0)
    first, second = sink.payloads()
    for payload in (first, second):
        payload.pop("event_id")
        payload.pop("timestamp")
    assert first == second
    assert first["usage"]["total_tokens"] == 7
    assert first["start_time"] == "2026-09-21T14:13:20.250Z"
    assert_accounted(runtime)


def test_capture_events_helper_routes_the_shared_runtime_to_memory() -> None:
    before = runtime_mod._shared
    with capture_events() as events:
        assert runtime_mod._shared is events.runtime
        scr_middleware.capture(
            {
                "session_id": "s1",
                "user_id": "u1",
                "usage": {"input_tokens": 10, "output_tokens": 20},
            }
        )
        scr_middleware.capture({"session_id": "s2"})
        match = events.assert_captured(user_id="u1", usage={"total_tokens": 30})
        assert match["session_id"] == "s1"
        events.assert_captured(count=1, session_id="s2")
        assert len(events) == 2
        assert [item["session_id"] for item in events] == ["s1", "s2"]
        with pytest.raises(AssertionError, match="expected an event"):
            events.assert_captured(user_id="nobody")
        with pytest.raises(AssertionError):
            events.assert_captured(count=2, session_id="s1")
    assert runtime_mod._shared is before


def test_settled_helper_sees_the_destination(sink: TimedSink, make_runtime: MakeRuntime) -> None:
    """Guards the helper the fault tests rely on: it must wait for in-flight events."""
    runtime = make_runtime([http("billing", sink)], batch_size=2, flush_interval_ms=60_000)
    runtime.capture(event(1))
    wait_until(lambda: snapshot(runtime, "billing")["captured"] == 1, message="fan-out")
    assert not settled(runtime, "billing", 1)()  # queued, waiting for a second event
    runtime.capture(event(2))
    wait_until(settled(runtime, "billing", 2), message="delivery")
    assert snapshot(runtime, "billing")["delivered"] == 2
