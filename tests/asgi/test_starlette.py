"""A real FastAPI app, called in-process: the response bytes match the app without the
middleware, and route-level options come from the endpoint Starlette resolved."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scr_middleware.asgi import SessionCompletionMiddleware

from .fake_openai import build_app
from .helpers import MemoryRuntime, run


async def _call(
    app: Any, path: str, json_body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, json=json_body, headers=headers)


def _pair(
    runtime: MemoryRuntime, path: str, body: Any, **config: Any
) -> tuple[httpx.Response, httpx.Response]:
    bare = build_app()
    wrapped = build_app()
    wrapped.add_middleware(
        SessionCompletionMiddleware,
        runtime=runtime.runtime,
        config={"middleware": config} if config else None,
    )
    return run(_call(bare, path, body)), run(_call(wrapped, path, body))


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert [h for h in a.headers.raw if h[0] != b"date"] == [
        h for h in b.headers.raw if h[0] != b"date"
    ]


@pytest.mark.parametrize(
    ("kind", "outcome", "failure"),
    [
        ("truncated", "success", "invalid_json"),
        ("plain", "success", "non_json_body"),
        ("gzip", "success", None),
        ("big", "success", None),
        ("nonutf8", "success", None),
        ("204", "success", None),
        ("304", "success", None),
        ("401", "error", None),
        ("truncated_sse", "success", "truncated_sse"),
        ("raise", "error", None),
    ],
)
def test_bad_responses_are_untouched(
    runtime: MemoryRuntime, kind: str, outcome: str, failure: str | None
) -> None:
    bare, wrapped = _pair(runtime, f"/bad/{kind}/v1/chat/completions", {"model": "gpt-4o"})
    _same(bare, wrapped)
    (event,) = runtime.events()
    assert event["outcome"]["status"] == outcome
    assert event["usage"]["model"] is not None  # from the response, else from the request
    assert event["request"]["route"] == "/bad/{kind}/v1/chat/completions"
    assert event["metadata"].get("scr_extraction_error") == failure
    if kind in ("gzip", "big"):
        assert event["usage"]["total_tokens"] == 29
    if kind == "raise":
        assert event["outcome"]["error_type"] == "RuntimeError"


def test_exempt_endpoint_emits_nothing(runtime: MemoryRuntime) -> None:
    bare, wrapped = _pair(runtime, "/exempt/v1/chat/completions", {})
    _same(bare, wrapped)
    assert runtime.events() == []


def test_scr_route_options_and_route_template(runtime: MemoryRuntime) -> None:
    bare, wrapped = _pair(
        runtime, "/openai/deployments/gpt4o-prod/chat/completions", {"user": "u9"}
    )
    _same(bare, wrapped)
    (event,) = runtime.events()
    assert event["session_type"] == "agent"
    assert event["metadata"] == {"team": "search"}
    assert event["usage"]["model"] == "gpt4o-prod"
    assert event["user_id"] == "u9"
    assert event["request"] == {
        "method": "POST",
        "route": "/openai/deployments/{name}/chat/completions",
        "path": "/openai/deployments/gpt4o-prod/chat/completions",
    }


def test_ensure_stream_usage_through_the_app(runtime: MemoryRuntime) -> None:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    bare = build_app()
    wrapped = build_app()
    wrapped.add_middleware(
        SessionCompletionMiddleware,
        runtime=runtime.runtime,
        config={"middleware": {"ensure_stream_usage": True}},
    )
    plain = run(_call(bare, "/v1/chat/completions", body))
    seen = run(_call(wrapped, "/v1/chat/completions", body))
    _same(plain, seen)
    assert b'"usage"' not in seen.content
    (app_body, content_length) = wrapped.state.requests[0]
    assert app_body["stream_options"] == {"include_usage": True}
    assert (
        content_length == str(len(httpx.Request("POST", "/", json=app_body).content))
        or int(content_length) > 0
    )
    (event,) = runtime.events()
    assert event["usage"]["total_tokens"] == 18
    assert event["usage"]["source"] == "reported"


def test_one_liner_feeds_the_shared_runtime(tmp_path: Any) -> None:
    from scr_middleware.testing import capture_events

    app = build_app()
    app.add_middleware(SessionCompletionMiddleware)  # no arguments: the shared runtime
    with capture_events(storage={"data_dir": str(tmp_path)}) as events:
        response = run(_call(app, "/v1/chat/completions", {"model": "gpt-4o", "user": "u5"}))
        assert response.status_code == 200
        event = events.assert_captured(
            count=1, user_id="u5", session_type="chat", usage={"total_tokens": 29}
        )
    assert event["request"]["route"] == "/v1/chat/completions"
