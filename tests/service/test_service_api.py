"""POST /v1/events, /events/recent, /health and /metrics over real HTTP."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx
import orjson
import pytest
from svc_helpers import KEY, OTHER_KEY, Service, UvicornThread, start_service

from scr_middleware.errors import ConfigError
from scr_middleware.service import ServiceSettings, create_app

GATEWAY_EVENT = {
    "event_type": "session.completed",
    "session_id": "chatcmpl-1",
    "user_id": "user_1",
    "organization_id": "org_1",
    "usage": {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42, "model": "gpt-4"},
    "outcome": {"status": "success"},
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": f"{KEY}x"},
    ],
)
def test_missing_or_wrong_key_is_401(service: Service, headers: dict[str, str]) -> None:
    response = service.post(GATEWAY_EVENT, key=None, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert service.delivered() == []


def test_both_header_forms_and_rotated_keys_are_accepted(service: Service) -> None:
    first = service.post({**GATEWAY_EVENT, "event_id": "e1"})
    second = service.post(
        {**GATEWAY_EVENT, "event_id": "e2"}, key=None, headers={"X-API-Key": OTHER_KEY}
    )
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == {"accepted": 1, "duplicates": 0, "event_ids": ["e1"]}
    assert sorted(e["event_id"] for e in service.delivered()) == ["e1", "e2"]


def test_object_array_ndjson_and_gzip_bodies(service: Service) -> None:
    chat = {
        "session_id": "chat_1",
        "session_type": "chat",
        "outcome": {"status": "user_terminated"},
    }
    array = service.post([GATEWAY_EVENT, chat])
    ndjson = b"\n".join(orjson.dumps({**chat, "session_id": f"nd_{i}"}) for i in range(3)) + b"\n"
    lines = service.post(content=ndjson, headers={"Content-Type": "application/x-ndjson"})
    zipped = service.post(
        content=gzip.compress(orjson.dumps([{**chat, "session_id": "gz"}])),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert [r.status_code for r in (array, lines, zipped)] == [202, 202, 202]
    assert array.json()["accepted"] == 2
    assert lines.json()["accepted"] == 3
    assert len(array.json()["event_ids"]) == 2

    delivered = {e["session_id"]: e for e in service.delivered()}
    assert set(delivered) == {"chatcmpl-1", "chat_1", "nd_0", "nd_1", "nd_2", "gz"}
    assert delivered["chatcmpl-1"]["usage"]["total_tokens"] == 42
    assert delivered["chat_1"]["usage"]["source"] == "missing"


def test_one_invalid_event_rejects_the_whole_request(service: Service) -> None:
    bad = [
        GATEWAY_EVENT,
        {"session_id": "ok", "usage": {"input_tokens": -3}},
        {"usage": {}},
        "not an object",
    ]
    response = service.post(bad)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_events"
    assert [item["index"] for item in body["errors"]] == [1, 2, 3]
    assert body["errors"][0]["errors"][0]["field"] == "usage.input_tokens"
    assert body["errors"][1]["errors"][0] == {"field": "session_id", "problem": "is required"}
    assert service.delivered() == []
    assert service.client.get("/events/recent").json() == []


@pytest.mark.parametrize(
    ("content", "headers", "error"),
    [
        (b"", {}, "empty_body"),
        (b"{not json", {}, "invalid_json"),
        (b"42", {}, "invalid_json"),
        (b'{"session_id": "a"}\n{oops', {"Content-Type": "application/x-ndjson"}, "invalid_json"),
        (b"\x1f\x8b broken", {"Content-Encoding": "gzip"}, "invalid_encoding"),
    ],
)
def test_unusable_bodies(
    service: Service, content: bytes, headers: dict[str, str], error: str
) -> None:
    response = service.post(content=content, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_retried_events_are_not_captured_twice(service: Service) -> None:
    batch = [{**GATEWAY_EVENT, "event_id": f"evt_{i}"} for i in range(3)]
    first = service.post(batch)
    retry = service.post(batch)
    overlap = service.post([batch[0], {**GATEWAY_EVENT, "event_id": "evt_new"}, batch[0]])
    assert first.status_code == 202
    assert retry.status_code == 200
    assert retry.json() == {
        "accepted": 0,
        "duplicates": 3,
        "event_ids": ["evt_0", "evt_1", "evt_2"],
    }
    assert overlap.status_code == 202
    assert overlap.json()["accepted"] == 1
    assert overlap.json()["duplicates"] == 2
    ids = [e["event_id"] for e in service.delivered()]
    assert sorted(ids) == ["evt_0", "evt_1", "evt_2", "evt_new"]


def test_idempotency_key_makes_retries_without_event_ids_safe(service: Service) -> None:
    body = orjson.dumps([{"session_id": "no-id-1"}, {"session_id": "no-id-2"}])
    headers = {"Idempotency-Key": "batch-123", "Content-Type": "application/json"}
    first = service.post(content=body, headers=headers)
    retry = service.post(content=body, headers=headers)
    other = service.post(content=orjson.dumps([{"session_id": "x"}]), headers=headers)
    assert first.status_code == 202
    assert retry.status_code == 200
    assert retry.json()["event_ids"] == first.json()["event_ids"]
    assert other.status_code == 422
    assert len(service.delivered()) == 2


def test_recent_events_oldest_first_with_limit(service: Service) -> None:
    for i in range(5):
        service.post({**GATEWAY_EVENT, "session_id": f"s{i}"})
    everything = service.client.get("/events/recent")
    assert everything.status_code == 200
    assert [e["session_id"] for e in everything.json()] == [f"s{i}" for i in range(5)]
    newest = everything.json()[-1]  # the guide's `jq '.[-1]'`
    assert newest["session_id"] == "s4"
    assert newest["timestamp"].endswith("Z")
    assert newest["usage"]["model"] == "gpt-4"
    two = service.client.get("/events/recent", params={"limit": 2}).json()
    assert [e["session_id"] for e in two] == ["s3", "s4"]
    assert service.client.get("/events/recent", params={"limit": "-1"}).status_code == 400
    assert service.client.get("/events/recent", params={"limit": "x"}).status_code == 400


def test_health_and_metrics(service: Service) -> None:
    service.post([GATEWAY_EVENT, {**GATEWAY_EVENT, "session_id": "2"}])
    service.delivered()
    health = service.client.get("/health")
    assert health.status_code == 200
    assert health.json()["destinations"][0]["name"] == "mem"
    assert health.json()["service"]["auth"] == "api_key"
    metrics = service.client.get("/metrics")
    assert metrics.status_code == 200
    assert "text/plain" in metrics.headers["content-type"]
    assert re.search(r"^scr_events_captured_total 2(\.0)?$", metrics.text, re.MULTILINE)
    assert re.search(r'^scr_events_routed_total\{destination="mem"\} 2(\.0)?$', metrics.text, re.M)
    assert 'scr_service_requests_total{status="202"} 1.0' in metrics.text

    service.runtime.shutdown(5.0)
    assert service.client.get("/health").status_code == 503


def test_limits_and_protected_recent(tmp_path: Path) -> None:
    settings = ServiceSettings(
        api_keys=(KEY,), protect_recent=True, recent_size=2, max_body_bytes=2000
    )
    runtime, _, app = start_service(tmp_path, settings)
    try:
        with UvicornThread(app) as server, httpx.Client(base_url=server.url) as client:
            auth = {"Authorization": f"Bearer {KEY}"}
            big = [{**GATEWAY_EVENT, "session_id": f"s{i}"} for i in range(40)]
            assert client.post("/v1/events", json=big, headers=auth).status_code == 413
            bomb = gzip.compress(b" " * 100_000)
            headers = {**auth, "Content-Encoding": "gzip"}
            assert client.post("/v1/events", content=bomb, headers=headers).status_code == 413
            for i in range(3):
                client.post("/v1/events", json={"session_id": f"r{i}"}, headers=auth)
            assert client.get("/events/recent").status_code == 401
            recent = client.get("/events/recent", headers=auth).json()
            assert [e["session_id"] for e in recent] == ["r1", "r2"]
    finally:
        runtime.shutdown(5.0)


def test_no_key_configured_refuses_to_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API key configured"):
        create_app(settings=ServiceSettings())


def test_keys_come_from_scr_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCR_API_KEY", " old-key , new-key ,")
    assert ServiceSettings.from_env().api_keys == ("old-key", "new-key")
    assert ServiceSettings.from_env("cli-key").api_keys == ("cli-key",)


def test_overload_answers_503_and_the_retry_completes_exactly_once(
    service: Service,
) -> None:
    batch = [{"session_id": f"s{i}", "event_id": f"evt_{i:04d}"} for i in range(20)]
    assert service.post(batch[:5]).status_code == 202
    router = service.runtime.router
    limit = router._max_ingest
    # A full ingest buffer on demand (timing cannot make one reliably): the router's real
    # overflow path drops every event submitted while the limit is 0.
    router._max_ingest = 0
    try:
        overloaded = service.post(batch)
    finally:
        router._max_ingest = limit
    retry = service.post(batch)

    assert overloaded.status_code == 503
    assert overloaded.headers["retry-after"] == "1"
    body = overloaded.json()
    assert (body["error"], body["accepted"], body["duplicates"], body["dropped"]) == (
        "overloaded",
        0,
        5,
        15,
    )
    assert retry.status_code == 202
    assert (retry.json()["accepted"], retry.json()["duplicates"]) == (15, 5)
    delivered = sorted(e["event_id"] for e in service.delivered())
    assert delivered == [e["event_id"] for e in batch]  # every event once, none twice


def test_router_down_or_capture_disabled_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_ENABLED", "false")
    runtime, _, app = start_service(tmp_path)
    try:
        with UvicornThread(app) as server, httpx.Client(base_url=server.url) as client:
            auth = {"Authorization": f"Bearer {KEY}"}
            response = client.post("/v1/events", json=GATEWAY_EVENT, headers=auth)
            assert response.status_code == 503
            assert response.json()["error"] == "capture_disabled"
    finally:
        runtime.shutdown(5.0)


def test_unauthenticated_mode_for_local_testing(tmp_path: Path) -> None:
    runtime, _, app = start_service(tmp_path, ServiceSettings(allow_unauthenticated=True))
    try:
        with UvicornThread(app) as server:
            response = httpx.post(f"{server.url}/v1/events", json=GATEWAY_EVENT)
            assert response.status_code == 202
    finally:
        runtime.shutdown(5.0)
