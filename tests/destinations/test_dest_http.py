"""HttpDestination against a real HTTP sink on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from unittest import mock

import httpx
import pytest
from dest_helpers import build, deliver, make_records, send_expecting
from sink import HttpSink, closed_port

from scr_middleware.destinations import (
    HttpDestination,
    PermanentDeliveryError,
    Record,
    TransientDeliveryError,
)
from scr_middleware.destinations.http import parse_retry_after, redact_url


def test_json_array_body_and_headers(sink: HttpSink) -> None:
    batch = make_records(3)
    destination, _ = build(sink.url)
    assert isinstance(destination, HttpDestination)
    deliver(destination, (batch, "bat_one"))

    (request,) = sink.wait_for_requests(1)
    assert request.method == "POST"
    assert request.path == "/events"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "bat_one"
    assert request.headers["x-scr-batch-id"] == "bat_one"
    assert request.headers["x-scr-event-count"] == "3"
    assert request.headers["user-agent"].startswith("scr-middleware/")
    assert "content-encoding" not in request.headers
    body = json.loads(request.raw_body)
    assert body == [record.payload for record in batch]
    assert [item["event_id"] for item in body] == [record.event_id for record in batch]


def test_ndjson_body(sink: HttpSink) -> None:
    batch = make_records(2)
    destination, _ = build(sink.url, format="ndjson")
    deliver(destination, (batch, "bat_nd"))

    (request,) = sink.wait_for_requests(1)
    assert request.headers["content-type"] == "application/x-ndjson"
    lines = request.raw_body.decode().splitlines()
    assert [json.loads(line) for line in lines] == [record.payload for record in batch]
    assert request.raw_body.endswith(b"\n")


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_prepared_records_send_the_same_body_as_dicts(sink: HttpSink, fmt: str) -> None:
    """Queued records hold ``prepare()``'s JSON bytes; a dict payload still works, and
    both give the very bytes one JSON serialisation of the payloads would."""
    batch = make_records(3)
    destination, _ = build(sink.url, format=fmt)
    assert isinstance(destination, HttpDestination)
    prepared = [Record(r.event_id, destination.prepare(r.payload, None)) for r in batch]
    mixed = [prepared[0], batch[1], prepared[2]]
    deliver(destination, (mixed, "bat_mixed"), (batch, "bat_dicts"))

    first, second = sink.wait_for_requests(2)
    assert first.raw_body == second.raw_body
    payloads = [r.payload for r in batch]
    if fmt == "json":
        assert json.loads(first.raw_body) == payloads
    else:
        assert [json.loads(line) for line in first.raw_body.splitlines()] == payloads
        assert first.raw_body.endswith(b"\n")


@pytest.mark.parametrize("size", [2, 400])  # small inline, large compressed off the loop
def test_gzip_when_compression_is_on(sink: HttpSink, size: int) -> None:
    batch = make_records(size, metadata={"note": "x" * 300})
    destination, _ = build(sink.url, compression=True)
    deliver(destination, (batch, "bat_gz"))

    (request,) = sink.wait_for_requests(1)
    assert request.headers["content-encoding"] == "gzip"
    assert gzip.decompress(request.raw_body) == request.body
    assert len(request.raw_body) < len(request.body)
    assert json.loads(request.body) == [record.payload for record in batch]


def test_idempotency_key_is_stable_across_resends_of_a_batch(sink: HttpSink) -> None:
    batch = make_records(2)
    other = make_records(1)
    destination, _ = build(sink.url)
    deliver(destination, (batch, "bat_same"), (batch, "bat_same"), (other, "bat_other"))

    first, second, third = sink.wait_for_requests(3)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "bat_same"
    assert first.raw_body == second.raw_body
    assert third.headers["idempotency-key"] == "bat_other"
    # One pooled client: the three sends reuse one keep-alive connection.
    assert first.client == second.client == third.client


def test_configured_headers_expand_environment(
    sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_TEST_TOKEN", "s3cret")
    destination, _ = build(
        sink.url,
        headers={"Authorization": "Bearer ${SCR_TEST_TOKEN}", "X-Team": "billing"},
    )
    deliver(destination, (make_records(1), "bat_h"))

    (request,) = sink.wait_for_requests(1)
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-team"] == "billing"


def test_configured_headers_cannot_override_batch_headers(sink: HttpSink) -> None:
    destination, _ = build(
        sink.url, headers={"Idempotency-Key": "fixed", "Content-Type": "text/plain"}
    )
    deliver(destination, (make_records(1), "bat_real"))

    (request,) = sink.wait_for_requests(1)
    assert request.headers["idempotency-key"] == "bat_real"
    assert request.headers["content-type"] == "application/json"


def test_odd_payload_values_are_serialised(sink: HttpSink) -> None:
    payload = {
        "event_id": "evt_odd",
        "amount": Decimal("1.50"),
        "when": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        "tags": {"a"},
        "huge": 2**80,
        1: "int key",
    }
    destination, _ = build(sink.url)
    deliver(destination, ([Record("evt_odd", payload)], "bat_odd"))

    (request,) = sink.wait_for_requests(1)
    (item,) = request.json()
    assert item == {
        "event_id": "evt_odd",
        "amount": "1.50",
        "when": "2025-01-02T03:04:05+00:00",
        "tags": "{'a'}",
        "huge": str(2**80),
        "1": "int key",
    }


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(sink: HttpSink, status: int) -> None:
    sink.fail_next(1, status=status, body=b"try later")
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert error.status == status
    assert "try later" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 301])
def test_other_statuses_are_permanent(sink: HttpSink, status: int) -> None:
    sink.fail_next(1, status=status, headers={"Location": "http://127.0.0.1:1/"})
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), PermanentDeliveryError)
    assert error.status == status


def test_permanent_400_from_sink(sink: HttpSink) -> None:
    sink.reject_next()
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), PermanentDeliveryError)
    assert error.status == 400
    assert "bad request" in str(error)


def test_429_retry_after_seconds(sink: HttpSink) -> None:
    sink.fail_next(1, status=429, headers={"Retry-After": "7"})
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert error.status == 429
    assert error.retry_after == 7.0


def test_503_retry_after_http_date(sink: HttpSink) -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    sink.fail_next(1, status=503, headers={"Retry-After": format_datetime(later, usegmt=True)})
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert error.retry_after is not None
    assert 60 < error.retry_after <= 121


def test_parse_retry_after() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 10) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 99) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_timeout_is_transient(sink: HttpSink) -> None:
    sink.hang_next(30.0)
    destination, _ = build(sink.url, timeout_ms=1000)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert "timed out" in str(error).lower() or "timeout" in str(error).lower()
    assert sink.wait_for_requests(1)[0].action == "hang"


def test_connection_refused_is_transient() -> None:
    destination, _ = build(f"http://127.0.0.1:{closed_port()}/events")
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert "ConnectError" in str(error)


def test_connection_closed_without_response_is_transient(sink: HttpSink) -> None:
    sink.close_next()
    destination, _ = build(sink.url)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert error.status is None
    assert sink.wait_for_requests(1)[0].action == "close"


def test_recovers_after_transient_failures(sink: HttpSink) -> None:
    """The router retries the same batch; the destination must work on the next call."""
    sink.fail_next(2, status=503)
    destination, _ = build(sink.url)
    batch = make_records(2)
    outcomes: list[str] = []

    async def scenario() -> None:
        await destination.open()
        for _ in range(3):
            try:
                await destination.send(batch, "bat_retry")
                outcomes.append("ok")
            except TransientDeliveryError:
                outcomes.append("transient")
        await destination.close()

    asyncio.run(scenario())
    assert outcomes == ["transient", "transient", "ok"]
    assert sink.payloads() == [record.payload for record in batch]


def test_describe_hides_password() -> None:
    destination, _ = build("https://svc:hunter2@billing.example:8443/api", format="ndjson")
    described = destination.describe()
    assert "hunter2" not in json.dumps(described)
    assert described["endpoint"] == "https://svc:***@billing.example:8443/api"
    assert described["format"] == "ndjson"
    assert redact_url("https://a.example/x") == "https://a.example/x"
    assert redact_url("http://u:p@[::1]:8080/x") == "http://u:***@[::1]:8080/x"


def test_seed_style_mocked_post_reads_only_status_code() -> None:
    """The seed's unit test patches AsyncClient.post and sets only ``status_code``."""
    destination, _ = build("http://localhost:8080/v1/events")
    with mock.patch("httpx.AsyncClient.post") as mock_post:
        mock_post.return_value.status_code = 200
        deliver(destination, (make_records(1, session_id="test_123"), "bat_mock"))
    mock_post.assert_called_once()
    assert "test_123" in str(mock_post.call_args)


def test_seed_style_mocked_timeout_then_success() -> None:
    destination, _ = build("http://localhost:8080/v1/events")
    batch = make_records(1, session_id="test_456")
    with mock.patch("httpx.AsyncClient.post") as mock_post:
        # The seed raises the bare class; instantiating it fails, which must still be transient.
        mock_post.side_effect = [httpx.TimeoutException, httpx.Response(200)]
        send_expecting(destination, batch, TransientDeliveryError)
        deliver(destination, (batch, "bat_mock"))
    assert mock_post.call_count == 2
