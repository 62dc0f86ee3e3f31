"""Chunk-by-chunk ASGI assertions: every message is forwarded at once and unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scr_middleware.asgi import SessionCompletionMiddleware

from .helpers import FIXTURES, MemoryRuntime, Recorder, body_request, http_scope, run, scripted_app

CHAT = (FIXTURES / "openai_chat_completion.json").read_bytes()
STREAM = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()
REQUEST = orjson.dumps(
    {"model": "gpt-4o-mini", "user": "u-1", "messages": [{"role": "user", "content": "Hi"}]}
)


def _start(content_type: bytes = b"application/json", **extra: Any) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", content_type)],
        **extra,
    }


def _exchange(
    middleware_for: Any,
    messages: list[dict[str, Any]],
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    events_at_send: list[int] | None = None,
    runtime: MemoryRuntime | None = None,
) -> Recorder:
    log: list[tuple[str, Any]] = []
    recorder = Recorder(requests=[body_request(REQUEST)], log=log)
    if events_at_send is not None and runtime is not None:
        recorder.on_send = lambda message: events_at_send.append(runtime.capture_calls)
    app = middleware_for(scripted_app(messages, log))
    run(app(http_scope(path, method), recorder.receive, recorder.send))
    return recorder


def _assert_passed_through(recorder: Recorder, messages: list[dict[str, Any]]) -> None:
    # app, down, app, down ...: each message reached the server before the app sent the next,
    # and it is the very same object.
    assert [kind for kind, _ in recorder.log] == ["app", "down"] * len(messages)
    for (_, sent_by_app), (_, received) in zip(recorder.log[::2], recorder.log[1::2], strict=True):
        assert received is sent_by_app
    assert recorder.sent == messages


def test_json_response_forwarded_unchanged(runtime: MemoryRuntime) -> None:
    messages = [
        _start(),
        {"type": "http.response.body", "body": CHAT[:100], "more_body": True},
        {"type": "http.response.body", "body": CHAT[100:], "more_body": False},
    ]
    recorder = _exchange(
        lambda app: SessionCompletionMiddleware(app, runtime=runtime.runtime), messages
    )
    _assert_passed_through(recorder, messages)
    (event,) = runtime.events()
    assert event["session_id"] == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert event["user_id"] == "u-1"
    assert event["usage"]["total_tokens"] == 29
    assert event["request"] == {"method": "POST", "route": None, "path": "/v1/chat/completions"}


def test_stream_forwarded_chunk_by_chunk_and_captured_at_the_end(runtime: MemoryRuntime) -> None:
    blocks = [b + b"\n\n" for b in STREAM.split(b"\n\n") if b]
    messages = (
        [_start(b"text/event-stream")]
        + [{"type": "http.response.body", "body": block, "more_body": True} for block in blocks]
        + [{"type": "http.response.body", "body": b"", "more_body": False}]
    )
    captured_at_send: list[int] = []
    recorder = _exchange(
        lambda app: SessionCompletionMiddleware(app, runtime=runtime.runtime),
        messages,
        events_at_send=captured_at_send,
        runtime=runtime,
    )
    _assert_passed_through(recorder, messages)
    assert captured_at_send == [0] * len(messages)  # nothing captured before the last chunk left
    assert runtime.capture_calls == 1
    (event,) = runtime.events()
    assert event["transport"] == "sse"
    assert event["usage"]["total_tokens"] == 21


def test_pathsend_ends_the_response(runtime: MemoryRuntime) -> None:
    messages = [_start(), {"type": "http.response.pathsend", "path": "/tmp/x.json"}]
    recorder = _exchange(
        lambda app: SessionCompletionMiddleware(app, runtime=runtime.runtime), messages
    )
    _assert_passed_through(recorder, messages)
    (event,) = runtime.events()
    assert event["outcome"] == {"status": "success", "http_status": 200}
    assert event["usage"]["source"] == "missing"


def test_trailers_end_the_response_when_more_body_is_false(runtime: MemoryRuntime) -> None:
    seen: list[int] = []
    messages = [
        _start(trailers=True),
        {"type": "http.response.body", "body": CHAT, "more_body": False},
        {"type": "http.response.trailers", "headers": [(b"x-a", b"1")], "more_body": True},
        {"type": "http.response.trailers", "headers": [(b"x-b", b"2")], "more_body": False},
    ]
    recorder = _exchange(
        lambda app: SessionCompletionMiddleware(app, runtime=runtime.runtime),
        messages,
        events_at_send=seen,
        runtime=runtime,
    )
    _assert_passed_through(recorder, messages)
    assert seen == [0, 0, 0, 0]
    assert runtime.capture_calls == 1
    (event,) = runtime.events()
    assert event["usage"]["total_tokens"] == 29


def test_unknown_message_types_pass_through(runtime: MemoryRuntime) -> None:
    messages = [
        _start(),
        {"type": "http.response.debug", "info": {"x": 1}},
        {"type": "http.response.zerocopysend", "file": 3, "more_body": False},
        {"type": "http.response.body", "body": CHAT, "more_body": False},
    ]
    recorder = _exchange(
        lambda app: SessionCompletionMiddleware(app, runtime=runtime.runtime), messages
    )
    _assert_passed_through(recorder, messages)
    assert len(runtime.events()) == 1


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/models", "POST"),
        ("/v1/chat/completions", "GET"),
        ("/v1/chat/completions", "HEAD"),
        ("/health", "GET"),
    ],
)
def test_unobserved_requests_get_the_original_channels(
    runtime: MemoryRuntime, path: str, method: str
) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope=scope, receive=receive, send=send)

    recorder = Recorder()
    scope = http_scope(path, method)
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            scope, recorder.receive, recorder.send
        )
    )
    assert seen["scope"] is scope
    assert seen["receive"] == recorder.receive
    assert seen["send"] == recorder.send
    assert runtime.events() == []


def test_websocket_passes_through_untouched(runtime: MemoryRuntime) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope=scope, receive=receive, send=send)

    recorder = Recorder()
    scope = {"type": "websocket", "path": "/v1/chat/completions", "headers": []}
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            scope, recorder.receive, recorder.send
        )
    )
    assert seen == {"scope": scope, "receive": recorder.receive, "send": recorder.send}


def test_lifespan_shutdown_flushes_before_the_app_sees_it(runtime: MemoryRuntime) -> None:
    delivered_at_shutdown: list[int] = []
    runtime.runtime.capture({"session_id": "before-shutdown"})  # flush_interval is 60 s

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                delivered_at_shutdown.append(runtime.delivered())
                await send({"type": "lifespan.shutdown.complete"})
                return

    recorder = Recorder(requests=[{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            {"type": "lifespan"}, recorder.receive, recorder.send
        )
    )
    assert delivered_at_shutdown == [1]
    assert [m["type"] for m in recorder.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
