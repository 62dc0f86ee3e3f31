"""Handler exceptions, disconnects and config errors at the ASGI level."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scr_middleware.asgi import SessionCompletionMiddleware
from scr_middleware.errors import ConfigError

from .helpers import FIXTURES, MemoryRuntime, Recorder, body_request, http_scope, run

STREAM = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}


class Boom(Exception):
    pass


@pytest.mark.parametrize("after_start", [False, True])
def test_handler_exception_is_reraised_unchanged(runtime: MemoryRuntime, after_start: bool) -> None:
    error = Boom("handler failed")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if after_start:
            await send(START)
        raise error

    recorder = Recorder(requests=[body_request(b"{}")])
    with pytest.raises(Boom) as info:
        run(
            SessionCompletionMiddleware(app, runtime=runtime.runtime)(
                http_scope(), recorder.receive, recorder.send
            )
        )
    assert info.value is error
    (event,) = runtime.events()
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "Boom"
    assert event["outcome"].get("http_status") == (200 if after_start else None)


def test_client_disconnect_seen_by_the_app_is_cancelled(runtime: MemoryRuntime) -> None:
    blocks = [b + b"\n\n" for b in STREAM.split(b"\n\n") if b]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(START)
        for block in blocks[:2]:
            await send({"type": "http.response.body", "body": block, "more_body": True})
        if (await receive())["type"] == "http.disconnect":  # Starlette stops streaming quietly
            return

    recorder = Recorder(requests=[body_request(b"{}"), {"type": "http.disconnect"}])
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            http_scope(), recorder.receive, recorder.send
        )
    )
    (event,) = runtime.events()
    assert event["outcome"] == {"status": "cancelled", "http_status": 200}
    assert event["session_id"] == "chatcmpl-123"
    assert runtime.failures == {}


@pytest.mark.parametrize("error", [OSError("client gone"), ConnectionResetError("reset")])
def test_send_raising_oserror_is_cancelled_and_propagates(
    runtime: MemoryRuntime, error: OSError
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(START)
        await send({"type": "http.response.body", "body": STREAM[:50], "more_body": True})

    recorder = Recorder(requests=[body_request(b"{}")], send_error=error)
    with pytest.raises(OSError) as info:
        run(
            SessionCompletionMiddleware(app, runtime=runtime.runtime)(
                http_scope(), recorder.receive, recorder.send
            )
        )
    assert info.value is error
    (event,) = runtime.events()
    assert event["outcome"]["status"] == "cancelled"


def test_task_cancellation_is_cancelled(runtime: MemoryRuntime) -> None:
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(START)
        started.set()
        await asyncio.sleep(30)

    async def main() -> None:
        recorder = Recorder(requests=[body_request(b"{}")])
        middleware = SessionCompletionMiddleware(app, runtime=runtime.runtime)
        task = asyncio.create_task(middleware(http_scope(), recorder.receive, recorder.send))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (event,) = runtime.events()
    assert event["outcome"]["status"] == "cancelled"


def test_app_that_never_responds(runtime: MemoryRuntime) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    recorder = Recorder(requests=[body_request(b"{}")])
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            http_scope(), recorder.receive, recorder.send
        )
    )
    (event,) = runtime.events()
    assert event["outcome"] == {"status": "error", "error_type": "NoResponseSent"}


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "alice"),
        (
            type("U", (), {"is_authenticated": True, "identity": "id-1", "username": "bob"})(),
            "id-1",
        ),
        (type("U", (), {"is_authenticated": True, "username": "bob"})(), "bob"),
        (type("U", (), {"is_authenticated": False, "username": "anon"})(), None),
    ],
)
def test_scope_user(runtime: MemoryRuntime, user: Any, expected: str | None) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["user"] = user  # what AuthenticationMiddleware does inside the app
        await receive()
        await send({**START, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    recorder = Recorder(requests=[body_request(b'{"user": "body-user"}')])
    run(
        SessionCompletionMiddleware(app, runtime=runtime.runtime)(
            http_scope(), recorder.receive, recorder.send
        )
    )
    (event,) = runtime.events()
    assert event["user_id"] == (expected or "body-user")


@pytest.mark.parametrize(
    ("config", "path"),
    [
        (
            {"middleware": {"extractors": ["openai_chat", "no.such.module:fn"]}},
            "middleware.extractors[1]",
        ),
        ({"middleware": {"include_routes": ["re:("]}}, "middleware.include_routes[0]"),
        ({"middleware": {"user_id_sources": ["query:user"]}}, "middleware.user_id_sources[0]"),
        ({"middleware": {"no_such_key": 1}}, "middleware.no_such_key"),
    ],
)
def test_config_errors_at_start_up(
    runtime: MemoryRuntime, config: dict[str, Any], path: str
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    with pytest.raises(ConfigError) as info:
        SessionCompletionMiddleware(app, config=config, runtime=runtime.runtime)
    assert info.value.path == path


def test_scr_enabled_false_passes_everything_through(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scr_middleware.runtime import SessionCompletionRuntime

    monkeypatch.setenv("SCR_ENABLED", "false")
    disabled = SessionCompletionRuntime(config={"storage": {"data_dir": str(tmp_path)}})
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(receive=receive, send=send)

    recorder = Recorder(requests=[body_request(b"{}")])
    try:
        middleware = SessionCompletionMiddleware(app, runtime=disabled)
        run(middleware(http_scope(), recorder.receive, recorder.send))
    finally:
        disabled.shutdown(5.0)
    assert seen == {"receive": recorder.receive, "send": recorder.send}
    assert disabled.stats.disabled == 0  # not even a capture() call
