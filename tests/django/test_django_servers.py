"""End to end: the Django site under gunicorn (WSGI, sync views and generators) and uvicorn
(ASGI, async views and async generators), called with the openai client; events read back
from the SQLite ledger; responses compared byte for byte with the site served without the
middleware."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import scr_fake_llm as fake
import scr_live as live

pytestmark = pytest.mark.slow

DJANGO_TESTS = Path(__file__).resolve().parent
MESSAGES = [{"role": "user", "content": "count these five words"}]
REQUEST = {"model": fake.MODEL, "messages": MESSAGES}
Predicate = Callable[[dict[str, Any]], bool]


class Site:
    def __init__(self, observed: live.Server, plain: live.Server, ledger: Path, chat: str):
        self.observed, self.plain, self.ledger, self.chat = observed, plain, ledger, chat


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:
    base = tmp_path_factory.mktemp("django-servers")
    wsgi_config, wsgi_ledger = live.write_config(base / "wsgi", max_body_bytes=1024 * 1024)
    asgi_config, asgi_ledger = live.write_config(base / "asgi", max_body_bytes=1024 * 1024)

    def env(config: Path, middleware: bool) -> dict[str, str]:
        return live.test_env(
            [DJANGO_TESTS],
            DJANGO_SETTINGS_MODULE="scr_django_site.settings",
            SCR_CONFIG_FILE=str(config),
            SCR_TEST_MIDDLEWARE="1" if middleware else "0",
        )

    gunicorn = live.gunicorn("scr_django_site.wsgi:application", "-w", "2", "--preload")
    uvicorn = live.uvicorn("scr_django_site.asgi:application")
    servers = live.start(
        (gunicorn, env(wsgi_config, True), base / "wsgi-observed"),
        (gunicorn, env(wsgi_config, False), base / "wsgi-plain"),
        (uvicorn, env(asgi_config, True), base / "asgi-observed"),
        (uvicorn, env(asgi_config, False), base / "asgi-plain"),
    )
    yield {
        "wsgi": Site(servers[0], servers[1], wsgi_ledger, "/v1/chat/completions"),
        "asgi": Site(servers[2], servers[3], asgi_ledger, "/v1/async/chat/completions"),
    }
    for server in servers:
        server.stop()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_openai_client(sites: dict[str, Site], kind: str) -> None:
    site = sites[kind]
    base_url = site.observed.url + site.chat.removesuffix("/chat/completions")
    llm = openai.OpenAI(base_url=base_url, api_key="user-42", max_retries=0)
    completion = llm.chat.completions.create(
        model=fake.MODEL, messages=MESSAGES, extra_headers={"X-Test-Id": f"{kind}-json"}
    )
    chunks = list(
        llm.chat.completions.create(
            model=fake.MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Test-Id": f"{kind}-stream"},
        )
    )
    plain = list(
        llm.chat.completions.create(
            model=fake.MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Test-Id": f"{kind}-stream-plain"},
        )
    )
    assert completion.usage is not None
    assert chunks[-1].usage is not None
    assert all(chunk.usage is None for chunk in plain)

    (event,) = live.wait_for_events(site.ledger, live.by_session(f"chatcmpl-{kind}-json"))
    assert event["usage"]["input_tokens"] == completion.usage.prompt_tokens
    assert event["usage"]["output_tokens"] == completion.usage.completion_tokens
    assert event["user_id"] == "42"
    assert event["request"]["route"] == site.chat.lstrip("/")
    (streamed,) = live.wait_for_events(site.ledger, live.by_session(f"chatcmpl-{kind}-stream"))
    assert streamed["transport"] == "sse"
    assert streamed["usage"]["total_tokens"] == chunks[-1].usage.total_tokens
    assert streamed["user_id"] == "42"
    (no_usage,) = live.wait_for_events(
        site.ledger, live.by_session(f"chatcmpl-{kind}-stream-plain")
    )
    assert no_usage["usage"]["source"] == "missing"


def raw(server: live.Server, method: str, path: str, **kwargs: Any) -> tuple[int, list[Any], bytes]:
    with (
        httpx.Client(timeout=30.0) as http,
        http.stream(method, server.url + path, **kwargs) as response,
    ):
        body = b"".join(response.iter_raw())
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
        return response.status_code, headers, body


def error(reason: str) -> Predicate:
    return lambda event: event["metadata"].get("scr_extraction_error") == reason


def status_is(code: int) -> Predicate:
    return lambda event: event["outcome"].get("http_status") == code


def no_body_200(event: dict[str, Any]) -> bool:
    return (
        event["outcome"].get("http_status") == 200
        and event["transport"] == "http"
        and bool(event["metadata"].get("scr_session_id_generated"))
        and "scr_extraction_error" not in event["metadata"]
    )


BIG_REQUEST = {**REQUEST, "messages": [{"role": "user", "content": "w " * (5 * 1024 * 1024 // 2)}]}
STREAM = {**REQUEST, "stream": True}
# (scenario, method, path (None: the site's chat path), request kwargs, status, ledger match)
SCENARIOS: list[tuple[str, str, str | None, dict[str, Any], int, Predicate | None]] = [
    ("json", "POST", None, {"json": REQUEST}, 200, live.by_session("chatcmpl-b-json")),
    ("stream", "POST", None, {"json": STREAM}, 200, live.by_session("chatcmpl-b-stream")),
    ("malformed", "POST", None, {"json": REQUEST}, 200, error("invalid_json")),
    ("truncated", "POST", None, {"json": STREAM}, 200, error("truncated_sse")),
    ("gzip", "POST", None, {"json": REQUEST}, 200, live.by_session("chatcmpl-b-gzip")),
    ("big", "POST", None, {"json": REQUEST}, 200, error("body_too_large")),
    ("file", "POST", None, {"json": REQUEST}, 200, no_body_200),
    ("no-content", "POST", None, {"json": REQUEST}, 204, status_is(204)),
    ("not-modified", "POST", None, {"json": REQUEST}, 304, status_is(304)),
    ("boom", "POST", None, {"json": REQUEST}, 500, status_is(500)),
    ("head", "HEAD", None, {}, 200, None),
    (
        "5mb-request",
        "POST",
        None,
        {"content": json.dumps(BIG_REQUEST).encode()},
        200,
        live.by_session("chatcmpl-b-5mb-request"),
    ),
    ("exempt", "POST", "/v1/exempt/chat/completions", {"json": REQUEST}, 200, None),
    (
        "agent",
        "POST",
        "/v1/agent/chat/completions",
        {"json": REQUEST},
        200,
        live.by_session("chatcmpl-b-agent"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize(
    ("scenario", "method", "path", "kwargs", "status", "expected"),
    SCENARIOS,
    ids=[s[0] for s in SCENARIOS],
)
def test_bytes_identical_and_events(
    sites: dict[str, Site],
    kind: str,
    scenario: str,
    method: str,
    path: str | None,
    kwargs: dict[str, Any],
    status: int,
    expected: Predicate | None,
) -> None:
    site = sites[kind]
    headers = {"X-Scenario": scenario, "X-Test-Id": f"b-{scenario}"}
    target = path or site.chat
    observed = raw(site.observed, method, target, headers=headers, **kwargs)
    assert observed == raw(site.plain, method, target, headers=headers, **kwargs)
    assert observed[0] == status
    if expected is None:
        return
    (event,) = live.wait_for_events(site.ledger, expected)
    assert event["outcome"]["http_status"] == status
    if scenario == "boom":
        assert event["outcome"]["error_type"] == "RuntimeError"
    if scenario == "agent":
        assert event["session_type"] == "agent"  # @scr_route on the class-based view
    if scenario in ("json", "gzip", "5mb-request", "agent"):
        assert event["usage"]["output_tokens"] == len(fake.WORDS)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_client_disconnect_mid_stream_is_cancelled(sites: dict[str, Site], kind: str) -> None:
    site = sites[kind]
    headers = {"X-Scenario": "slow", "X-Test-Id": f"gone-{kind}"}
    with (
        httpx.Client(timeout=30.0) as http,
        http.stream("POST", site.observed.url + site.chat, json=REQUEST, headers=headers) as r,
    ):
        assert next(r.iter_raw()).startswith(b"data: ")
    (event,) = live.wait_for_events(site.ledger, live.by_session(f"chatcmpl-gone-{kind}"))
    assert event["outcome"]["status"] == "cancelled"


def test_failures_are_counted_in_the_asgi_process(sites: dict[str, Site]) -> None:
    site = sites["asgi"]  # one uvicorn process: its counters are the whole story

    def failures() -> dict[str, int]:
        with httpx.Client(timeout=10.0) as http:
            return http.get(site.observed.url + "/_scr/failures").json()  # type: ignore[no-any-return]

    before = failures()
    for scenario, body in (("malformed", REQUEST), ("truncated", STREAM)):
        raw(site.observed, "POST", site.chat, headers={"X-Scenario": scenario}, json=body)
    after = failures()
    assert after.get("invalid_json", 0) - before.get("invalid_json", 0) == 1
    assert after.get("truncated_sse", 0) - before.get("truncated_sse", 0) == 1
