"""The middleware's fast path gives the observer's answers.

The responder follows the common request itself (a plain JSON response that turns out to be a
``chat.completion``) and hands anything else over to an ``Observer`` told what it saw so far.
Each exchange here runs three ways, and all three must agree on the forwarded messages, the
event and the counted failures:

* ``fast``: the middleware as configured by default;
* ``observer``: the same middleware with its fast path off (the observer from the start);
* ``general``: the built-in extractors run by hand, so no shortcut is taken anywhere.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scr_middleware.asgi import SessionCompletionMiddleware
from scr_middleware.config import load_config
from scr_middleware.extract import SKIP, Extraction, ResponseData, SkipType
from scr_middleware.extract.extractors import default_extractors
from scr_middleware.router.stats import RuntimeStats
from scr_middleware.routes_options import scr_exempt, scr_route

from .helpers import FIXTURES

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHAT = orjson.loads((FIXTURES / "openai_chat_completion.json").read_bytes())
OTHER_BODIES = [
    (FIXTURES / name).read_bytes()
    for name in (
        "openai_embeddings.json",
        "openai_responses.json",
        "anthropic_message.json",
        "openai_error_401.json",
        "openai_legacy_completion.json",
    )
] + [b"", b"null", b"[1, 2]", b"not json", b'{"truncated": ', b"  ", b'{"a": "\xff"}']
STREAM = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()


class DefaultChain:
    """The built-in extractors, run by hand: not a built-in, so nothing is short-cut."""

    def __init__(self) -> None:
        self._chain = default_extractors()

    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        for extractor in self._chain:
            found = extractor(response)
            if found is not SKIP:
                return found
        return SKIP


class ListRuntime:
    """Just enough runtime for the middleware: its config, and events kept in a list."""

    def __init__(self, middleware: dict[str, Any]) -> None:
        self.config = load_config({"middleware": middleware})
        self.enabled = True
        self.stats = RuntimeStats()
        self.events: list[dict[str, Any]] = []

    def capture_nowait(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def capture(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return True


@scr_exempt
def exempt_endpoint() -> None:
    pass


@scr_route(session_type="agent", metadata={"team": "search"})
def routed_endpoint() -> None:
    pass


def plain_endpoint() -> None:
    pass


class Route:
    def __init__(self, path: str) -> None:
        self.path = path


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what differs between two runs (times, a generated session id)."""
    out = {k: v for k, v in event.items() if k not in ("start_time", "end_time", "duration_ms")}
    if event["metadata"].get("scr_session_id_generated"):
        out["session_id"] = "generated"
    return out


def _exchange(
    mode: str,
    middleware: dict[str, Any],
    scope_extra: dict[str, Any],
    requests: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    ending: str,
) -> tuple[Any, ...]:
    config = dict(middleware)
    if mode == "general":
        config["extractors"] = [f"{__name__}:DefaultChain"]
    runtime = ListRuntime(config)
    sent: list[dict[str, Any]] = []
    pending = list(requests)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if ending == "send_fails" and message.get("type") == "http.response.body":
            raise ConnectionResetError("gone")
        sent.append(message)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.update(scope_extra)  # what the router does inside the app
        while (await receive()).get("more_body", False):
            pass
        for message in messages:
            await send(message)
        if ending == "raise":
            raise RuntimeError("boom")
        if ending == "disconnect":
            await receive()

    wrapped = SessionCompletionMiddleware(app, runtime=cast(Any, runtime))
    if mode == "observer":
        wrapped._fast = False
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": scope_extra.pop("headers"),
    }
    raised: str | None = None
    try:
        asyncio.run(wrapped(scope, receive, send))
    except (RuntimeError, ConnectionResetError) as exc:
        raised = type(exc).__name__
    events = [_comparable(e) for e in runtime.events]
    return sent, events, dict(runtime.stats.extraction_failures), raised


def _chat_body(data: st.DataObject) -> dict[str, Any]:
    body = dict(CHAT)
    counts = st.one_of(st.none(), st.integers(-3, 10**6), st.floats(0, 100), st.text(max_size=3))
    usage = {
        "prompt_tokens": data.draw(counts),
        "completion_tokens": data.draw(counts),
        "total_tokens": data.draw(counts),
        "prompt_tokens_details": data.draw(st.one_of(st.none(), st.just({"cached_tokens": 4}))),
    }
    body["usage"] = data.draw(st.one_of(st.none(), st.just(usage), st.just(CHAT["usage"])))
    body["id"] = data.draw(st.sampled_from(["chatcmpl-9", None, "", 7]))
    body["model"] = data.draw(st.sampled_from(["gpt-4o", None, ""]))
    return body


@SETTINGS
@given(data=st.data())
def test_fast_path_gives_the_observers_answers(data: st.DataObject) -> None:
    common = data.draw(st.booleans())  # half of the examples stay near the fast path's case
    if common or data.draw(st.booleans()):
        body = orjson.dumps(_chat_body(data))
    else:
        body = data.draw(st.sampled_from(OTHER_BODIES))
    content_type = data.draw(
        st.sampled_from(
            [b"application/json"]
            if common
            else [b"application/json", b"Application/JSON", b"text/event-stream", None]
        )
    )
    if content_type == b"text/event-stream" and data.draw(st.booleans()):
        body = STREAM
    headers: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        headers.append(
            (data.draw(st.sampled_from([b"content-type", b"Content-Type"])), content_type)
        )
    encoding = data.draw(
        st.sampled_from([None] if common else [None, b"identity", b"gzip", b" Identity "])
    )
    if encoding is not None:
        headers.append((b"content-encoding", encoding))
        if encoding == b"gzip":
            body = gzip.compress(body)
    headers.append((b"content-length", str(len(body)).encode()))
    status = data.draw(st.sampled_from([200] if common else [200, 201, 204, 304, 400, 500]))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    if data.draw(st.booleans()):
        pieces.append(b"")  # Starlette ends a stream with an empty body message
    trailers = not common and data.draw(st.booleans())
    messages: list[dict[str, Any]] = [
        {"type": "http.response.start", "status": status, "headers": headers, "trailers": trailers}
    ]
    for index, piece in enumerate(pieces):
        more = index < len(pieces) - 1
        messages.append({"type": "http.response.body", "body": piece, "more_body": more})
    if trailers and data.draw(st.booleans()):
        messages.append({"type": "http.response.trailers", "headers": [], "more_body": False})
    # After the messages the app returns, raises (a background task, when they were all sent)
    # or waits for the client to leave; or the server fails to send.
    ending = data.draw(
        st.sampled_from(["", "", "raise", "disconnect"] if common else ["", "send_fails"])
    )
    if not common and data.draw(st.booleans()):
        ending = data.draw(st.sampled_from(["raise", "disconnect", ""]))
        messages = messages[: data.draw(st.integers(0, len(messages) - 1))]

    request = data.draw(
        st.sampled_from(
            [
                None,
                b'{"model": "from-request", "user": "u-1", "messages": [1, 2]}',
                b'{"input": [], "user": 5}',
                b"not json",
                b'{"model": "m", "messages": []}',
            ]
        )
    )
    requests: list[dict[str, Any]] = []
    if request is not None:
        split = data.draw(st.integers(0, len(request)))
        requests = [
            {"type": "http.request", "body": request[:split], "more_body": True},
            {"type": "http.request", "body": bytearray(request[split:]), "more_body": False},
        ]
    else:
        requests = [{"type": "http.request", "body": b"", "more_body": False}]
    organization = data.draw(
        st.sampled_from(
            [
                [],
                [(b"openai-organization", b"org-1")],
                [(b"OpenAI-Organization", b"org-2")],
                [(b"openai-organization", b"a"), (b"openai-organization", b"b")],
            ]
        )
    )
    request_headers = [(b"host", b"test"), *organization]
    scope_extra: dict[str, Any] = {"headers": request_headers}
    endpoint = data.draw(
        st.sampled_from(
            [None, plain_endpoint]
            if common
            else [None, plain_endpoint, exempt_endpoint, routed_endpoint]
        )
    )
    if endpoint is not None:
        scope_extra["endpoint"] = endpoint
        scope_extra["route"] = Route("/v1/chat/{kind}")
    if data.draw(st.booleans()) and data.draw(st.booleans()):
        scope_extra["user"] = "alice"
    middleware: dict[str, Any] = {}
    if data.draw(st.booleans()) and data.draw(st.booleans()):
        middleware["max_body_bytes"] = data.draw(st.integers(0, len(body) + 2))
    if data.draw(st.booleans()) and data.draw(st.booleans()):
        middleware["max_request_body_bytes"] = data.draw(st.integers(0, 80))

    results = {
        mode: _exchange(mode, middleware, dict(scope_extra), requests, messages, ending)
        for mode in ("fast", "observer", "general")
    }
    assert results["fast"] == results["observer"]
    assert results["fast"] == results["general"]


@pytest.mark.parametrize("mode", ["fast", "observer"])
def test_the_common_request_is_one_event(mode: str) -> None:
    """The fast path's own case, spelled out: what it captures, nothing counted."""
    body = orjson.dumps(CHAT)
    sent, events, failures, raised = _exchange(
        mode,
        {},
        {"headers": [(b"openai-organization", b"org-1")]},
        [{"type": "http.request", "body": b'{"user": "u", "messages": [1]}', "more_body": False}],
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": body, "more_body": False},
        ],
        "",
    )
    assert raised is None
    assert failures == {}
    assert len(sent) == 2
    (event,) = events
    assert event["session_id"] == CHAT["id"]
    assert event["user_id"] == "u"
    assert event["organization_id"] == "org-1"
    assert event["message_count"] == 1
    assert event["usage"]["total_tokens"] == CHAT["usage"]["total_tokens"]
    assert event["outcome"] == {"status": "success", "http_status": 200}


@pytest.mark.parametrize("mode", ["fast", "observer"])
def test_a_background_task_raising_after_the_response_adds_no_event(mode: str) -> None:
    """Starlette runs background tasks after the last body message: the response was
    complete, so its event stands and the exception is not a second one."""
    sent, events, _, raised = _exchange(
        mode,
        {},
        {"headers": []},
        [{"type": "http.request", "body": b"{}", "more_body": False}],
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": orjson.dumps(CHAT), "more_body": False},
        ],
        "raise",
    )
    assert raised == "RuntimeError"
    assert len(sent) == 2
    (event,) = events
    assert event["outcome"] == {"status": "success", "http_status": 200}
