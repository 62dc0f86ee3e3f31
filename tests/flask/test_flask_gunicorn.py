"""End to end: the Flask gateway under real gunicorn (sync with --preload, and gthread), called
with the official openai client; events read back from the SQLite ledger the workers write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import scr_fake_llm as fake
import scr_live as live

pytestmark = pytest.mark.slow

FLASK_TESTS = Path(__file__).resolve().parent
APP = "flask_gateway:served_app()"
MESSAGES = [{"role": "user", "content": "count these five words"}]
REQUEST = {"model": fake.MODEL, "messages": MESSAGES}


class Gateways:
    def __init__(self, base: Path) -> None:
        config, self.ledger = live.write_config(base / "sync", max_body_bytes=1024 * 1024)
        threaded, self.threaded_ledger = live.write_config(
            base / "gthread", ensure_stream_usage=True, max_body_bytes=1024 * 1024
        )
        sync = ("-w", "2", "--preload", "-k", "sync")
        self.observed, self.plain, self.threaded = live.start(
            (live.gunicorn(APP, *sync), self.env(config, True), base / "observed"),
            (live.gunicorn(APP, *sync), self.env(config, False), base / "plain"),
            (
                live.gunicorn(APP, "-w", "1", "-k", "gthread", "--threads", "4"),
                self.env(threaded, True),
                base / "threaded",
            ),
        )

    @staticmethod
    def env(config: Path, extension: bool) -> dict[str, str]:
        return live.test_env(
            [FLASK_TESTS],
            SCR_CONFIG_FILE=str(config),
            SCR_TEST_EXTENSION="1" if extension else "0",
        )

    def stop(self) -> None:
        for server in (self.observed, self.plain, self.threaded):
            server.stop()


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    servers = Gateways(tmp_path_factory.mktemp("flask-gunicorn"))
    yield servers
    servers.stop()


def client(server: live.Server, user: str = "user-42") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=user, max_retries=0)


def test_openai_client_json_and_streams_under_sync_workers(gateways: Gateways) -> None:
    llm = client(gateways.observed)
    completion = llm.chat.completions.create(
        model=fake.MODEL, messages=MESSAGES, extra_headers={"X-Test-Id": "oa-json"}
    )
    assert completion.usage is not None
    with_usage = list(
        llm.chat.completions.create(
            model=fake.MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Test-Id": "oa-stream-usage"},
        )
    )
    without_usage = list(
        llm.chat.completions.create(
            model=fake.MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Test-Id": "oa-stream-plain"},
        )
    )
    streamed_usage = with_usage[-1].usage
    assert streamed_usage is not None
    assert all(chunk.usage is None for chunk in without_usage)

    (json_event,) = live.wait_for_events(gateways.ledger, live.by_session("chatcmpl-oa-json"))
    assert json_event["usage"]["input_tokens"] == completion.usage.prompt_tokens
    assert json_event["usage"]["output_tokens"] == completion.usage.completion_tokens
    assert json_event["user_id"] == "42"  # g.user, from the client's api key
    assert json_event["request"]["route"] == "/v1/chat/completions"
    assert json_event["transport"] == "http"

    (stream_event,) = live.wait_for_events(
        gateways.ledger, live.by_session("chatcmpl-oa-stream-usage")
    )
    assert stream_event["transport"] == "sse"
    assert stream_event["usage"]["total_tokens"] == streamed_usage.total_tokens
    assert stream_event["usage"]["source"] == "reported"

    (plain_event,) = live.wait_for_events(
        gateways.ledger, live.by_session("chatcmpl-oa-stream-plain")
    )
    assert plain_event["usage"]["source"] == "missing"
    assert plain_event["outcome"]["status"] == "success"


def test_gthread_workers_with_ensure_stream_usage(gateways: Gateways) -> None:
    llm = client(gateways.threaded, "user-7")
    chunks = list(
        llm.chat.completions.create(
            model=fake.MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Test-Id": "gt-stream"},
        )
    )
    assert all(chunk.usage is None for chunk in chunks)  # the added usage chunk was dropped
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(fake.WORDS)
    (event,) = live.wait_for_events(gateways.threaded_ledger, live.by_session("chatcmpl-gt-stream"))
    assert event["usage"]["source"] == "reported"
    assert event["usage"]["input_tokens"] == fake.prompt_tokens(REQUEST)
    assert event["user_id"] == "7"


def raw(server: live.Server, method: str, path: str, **kwargs: Any) -> tuple[int, list[Any], bytes]:
    """Status, headers (without Date) and the undecoded body bytes, as they came off the wire."""
    with (
        httpx.Client(timeout=30.0) as http,
        http.stream(method, server.url + path, **kwargs) as response,
    ):
        body = b"".join(response.iter_raw())
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
        return response.status_code, headers, body


CHAT = "/v1/chat/completions"
BIG_REQUEST = {**REQUEST, "messages": [{"role": "user", "content": "w " * (5 * 1024 * 1024 // 2)}]}
SCENARIOS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("json", "POST", CHAT, {"json": REQUEST}),
    ("stream", "POST", CHAT, {"json": {**REQUEST, "stream": True}}),
    (
        "stream-usage",
        "POST",
        CHAT,
        {"json": {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}},
    ),
    ("malformed", "POST", CHAT, {"json": REQUEST}),
    ("truncated", "POST", CHAT, {"json": {**REQUEST, "stream": True}}),
    ("gzip", "POST", CHAT, {"json": REQUEST}),
    ("big", "POST", CHAT, {"json": REQUEST}),
    ("no-content", "POST", CHAT, {"json": REQUEST}),
    ("not-modified", "POST", CHAT, {"json": REQUEST}),
    ("boom", "POST", CHAT, {"json": REQUEST}),
    ("head", "HEAD", CHAT, {}),
    ("5mb-request", "POST", CHAT, {"content": json.dumps(BIG_REQUEST).encode()}),
    ("bad-request-json", "POST", CHAT, {"content": b'{"model": "x", "messa'}),
    ("exempt", "POST", "/v1/exempt/chat/completions", {"json": REQUEST}),
    ("agent", "POST", "/v1/agent/chat/completions", {"json": REQUEST}),
]


def extraction_error(reason: str) -> Any:
    return lambda event: event["metadata"].get("scr_extraction_error") == reason


# What each scenario leaves in the observed server's ledger (exactly one matching event).
EXPECTED: dict[str, Any] = {
    "json": live.by_session("chatcmpl-bytes-json"),
    "stream": live.by_session("chatcmpl-bytes-stream"),
    "stream-usage": live.by_session("chatcmpl-bytes-stream-usage"),
    "malformed": extraction_error("invalid_json"),
    "truncated": extraction_error("truncated_sse"),
    "big": extraction_error("body_too_large"),
    "gzip": live.by_session("chatcmpl-bytes-gzip"),
    "boom": lambda e: e["outcome"].get("error_type") == "RuntimeError",
    "no-content": lambda e: e["outcome"].get("http_status") == 204,
    "not-modified": lambda e: e["outcome"].get("http_status") == 304,
    "5mb-request": live.by_session("chatcmpl-bytes-5mb-request"),
    "bad-request-json": live.by_session("chatcmpl-bytes-bad-request-json"),
    "agent": live.by_session("chatcmpl-bytes-agent"),
}


@pytest.mark.parametrize(
    ("scenario", "method", "path", "kwargs"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_bytes_identical_with_and_without_the_extension(
    gateways: Gateways, scenario: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    headers = {"X-Scenario": scenario, "X-Test-Id": f"bytes-{scenario}"}
    observed = raw(gateways.observed, method, path, headers=headers, **kwargs)
    plain = raw(gateways.plain, method, path, headers=headers, **kwargs)
    assert observed == plain
    statuses = {"boom": 500, "no-content": 204, "not-modified": 304, "head": 405}
    assert observed[0] == statuses.get(scenario, 200)
    if scenario not in EXPECTED:
        return
    (event,) = live.wait_for_events(gateways.ledger, EXPECTED[scenario])
    outcome = event["outcome"]
    assert outcome["status"] == ("error" if scenario == "boom" else "success")
    assert outcome["http_status"] == observed[0]
    if scenario in ("json", "gzip", "stream-usage", "5mb-request", "agent"):
        assert event["usage"]["source"] == "reported"
        assert event["usage"]["output_tokens"] == len(fake.WORDS)
    if scenario == "agent":
        assert event["session_type"] == "agent"
        assert event["metadata"]["team"] == "search"


def test_nothing_for_exempt_views_or_head(gateways: Gateways) -> None:
    server, ledger = gateways.threaded, gateways.threaded_ledger  # one process: events in order
    raw(server, "POST", "/v1/exempt/chat/completions", headers={"X-Test-Id": "x-ex"}, json=REQUEST)
    raw(server, "HEAD", CHAT, headers={"X-Test-Id": "x-head"})
    raw(server, "POST", CHAT, headers={"X-Test-Id": "x-marker"}, json=REQUEST)
    live.wait_for_events(ledger, live.by_session("chatcmpl-x-marker"))
    sessions = {event["session_id"] for event in live.ledger(ledger)}
    assert "chatcmpl-x-ex" not in sessions
    assert all(event["request"]["method"] == "POST" for event in live.ledger(ledger))


def test_failures_are_counted_in_the_worker(gateways: Gateways) -> None:
    for scenario in ("malformed", "truncated"):
        raw(gateways.threaded, "POST", CHAT, headers={"X-Scenario": scenario}, json=REQUEST)
    with httpx.Client(timeout=10.0) as http:
        failures = http.get(gateways.threaded.url + "/_scr/failures").json()
    assert failures.get("invalid_json") == 1
    assert failures.get("truncated_sse") == 1


@pytest.mark.parametrize("which", ["observed", "threaded"])
def test_client_disconnect_mid_stream_is_cancelled(gateways: Gateways, which: str) -> None:
    server: live.Server = getattr(gateways, which)
    ledger = gateways.ledger if which == "observed" else gateways.threaded_ledger
    test_id = f"gone-{which}"
    headers = {"X-Scenario": "slow", "X-Test-Id": test_id}
    with (
        httpx.Client(timeout=30.0) as http,
        http.stream("POST", server.url + CHAT, json=REQUEST, headers=headers) as response,
    ):
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
    # The client is gone; the worker's next write fails and gunicorn closes the iterable.
    (event,) = live.wait_for_events(ledger, live.by_session(f"chatcmpl-{test_id}"))
    assert event["outcome"]["status"] == "cancelled"
    assert event["transport"] == "sse"
