"""Protocol-level tests: the middleware called like a server calls it, iterated by hand."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any
from wsgiref.util import FileWrapper

import pytest
import scr_fake_llm as fake
from wsgi_kit import (
    CHAT,
    JSON_HEADERS,
    REQUEST,
    SSE_HEADERS,
    Body,
    Recorder,
    app_returning,
    environ,
)

from scr_middleware import ConfigError, SessionCompletionRuntime, scr_exempt, scr_route
from scr_middleware.wsgi import (
    ENVIRON_ENDPOINT,
    ENVIRON_EXCEPTION,
    ENVIRON_USER_ID,
    SessionCompletionMiddleware,
)


def test_unobserved_requests_reach_the_app_untouched(captured: Any) -> None:
    cap = captured()
    body = Body([b"ok"])
    inner = app_returning(body, headers=[("Content-Type", "text/plain")], read_input=False)
    app = SessionCompletionMiddleware(inner, runtime=cap.runtime)
    recorder = Recorder()
    env = environ("/healthz", method="GET")
    stream = env["wsgi.input"]
    assert app(env, recorder) is body
    assert env["wsgi.input"] is stream
    env = environ(CHAT, method="GET")  # GET on an LLM path (stored completions): not a session
    assert app(env, recorder) is body
    assert cap.settled() == []


def test_json_response_chunks_pass_through_identically_and_one_event(captured: Any) -> None:
    cap = captured()
    payload = fake.completion(REQUEST, "json1")
    chunks = [payload[:40], payload[40:]]
    body = Body(chunks)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    app = SessionCompletionMiddleware(app_returning(body, headers=headers), runtime=cap.runtime)
    recorder = Recorder()
    result = app(environ(REMOTE_USER="alice"), recorder)
    assert recorder.calls == [("200 OK", headers, None)]
    out = list(result)
    assert [id(c) for c in out] == [id(c) for c in chunks]  # the very same objects
    result.close()  # type: ignore[attr-defined]
    assert body.closed
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-json1"
    assert event["user_id"] == "alice"
    assert event["usage"]["input_tokens"] == 4
    assert event["usage"]["output_tokens"] == len(fake.WORDS)
    assert event["usage"]["model"] == fake.MODEL
    assert event["outcome"]["status"] == "success"
    assert event["outcome"]["http_status"] == 200
    assert event["request"] == {"method": "POST", "route": None, "path": CHAT}
    assert event["message_count"] == 1


def test_stream_is_never_buffered(captured: Any) -> None:
    cap = captured()
    request = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    chunks = fake.stream_chunks(request, "sse1")
    body = Body(chunks)
    app = SessionCompletionMiddleware(app_returning(body, headers=SSE_HEADERS), runtime=cap.runtime)
    result = iter(app(environ(body=json.dumps(request).encode()), Recorder()))
    for index, chunk in enumerate(chunks):
        assert next(result) is chunk
        assert body.produced == index + 1  # the app was asked for exactly one more chunk
    with pytest.raises(StopIteration):
        next(result)
    (event,) = cap.events(1)  # finished at exhaustion, before any close()
    assert event["transport"] == "sse"
    assert event["session_id"] == "chatcmpl-sse1"
    assert event["usage"]["total_tokens"] == 4 + len(fake.WORDS)
    assert event["usage"]["source"] == "reported"


def test_app_exception_is_reraised_unchanged_and_reported(captured: Any) -> None:
    cap = captured()
    error = KeyError("no model")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        raise error

    with pytest.raises(KeyError) as raised:
        SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(), Recorder())
    assert raised.value is error
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "KeyError"


def test_exception_mid_stream_is_reraised_and_reported(captured: Any) -> None:
    cap = captured()
    body = Body(fake.stream_chunks(REQUEST, "midfail"), fail_at=3)
    app = SessionCompletionMiddleware(app_returning(body, headers=SSE_HEADERS), runtime=cap.runtime)
    result = app(environ(), Recorder())
    received: list[bytes] = []
    with pytest.raises(ValueError, match="upstream broke"):
        received.extend(result)
    result.close()  # type: ignore[attr-defined]
    assert received == body.chunks[:3]
    assert body.closed
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "ValueError"
    assert event["outcome"]["http_status"] == 200


@pytest.mark.parametrize("consumed", [0, 2])
def test_close_before_the_end_is_a_cancelled_session(captured: Any, consumed: int) -> None:
    """What gunicorn does when the client goes away: stop iterating, call close()."""
    cap = captured()
    body = Body(fake.stream_chunks(REQUEST, "gone"))
    app = SessionCompletionMiddleware(app_returning(body, headers=SSE_HEADERS), runtime=cap.runtime)
    result = app(environ(), Recorder())
    iterator = iter(result)
    for _ in range(consumed):
        next(iterator)
    result.close()  # type: ignore[attr-defined]
    assert body.closed
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "cancelled"


def test_close_after_declared_length_was_sent_is_complete(captured: Any) -> None:
    """A server may stop iterating once Content-Length bytes went out: not a cancellation."""
    cap = captured()
    payload = fake.completion(REQUEST, "exact")
    body = Body([payload, b""])
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    app = SessionCompletionMiddleware(app_returning(body, headers=headers), runtime=cap.runtime)
    result = app(environ(), Recorder())
    assert next(iter(result)) is payload
    result.close()  # type: ignore[attr-defined]
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "success"
    assert event["usage"]["input_tokens"] == 4


def test_file_wrapper_is_passed_through_and_observed_without_body(captured: Any) -> None:
    cap = captured()
    wrapped = FileWrapper(io.BytesIO(fake.completion(REQUEST, "file")))
    app = SessionCompletionMiddleware(app_returning(wrapped), runtime=cap.runtime)
    assert app(environ(), Recorder()) is wrapped  # the server can still use sendfile
    (event,) = cap.events(1)
    assert event["outcome"]["http_status"] == 200
    assert event["usage"]["source"] == "missing"


def test_len_is_kept_for_sized_results(captured: Any) -> None:
    cap = captured()
    payload = fake.completion(REQUEST, "sized")
    app = SessionCompletionMiddleware(app_returning([payload]), runtime=cap.runtime)
    result = app(environ(), Recorder())
    assert len(result) == 1  # type: ignore[arg-type]
    assert list(result) == [payload]
    assert cap.events(1)[0]["session_id"] == "chatcmpl-sized"


def test_legacy_write_callable_is_observed(captured: Any) -> None:
    cap = captured()
    payload = fake.completion(REQUEST, "write")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        write = start_response("200 OK", list(JSON_HEADERS))
        write(payload[:10])
        write(payload[10:])
        return []

    recorder = Recorder()
    result = SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(), recorder)
    assert list(result) == []
    assert b"".join(recorder.written) == payload
    assert cap.events(1)[0]["session_id"] == "chatcmpl-write"


def test_request_body_is_teed_as_the_app_reads_it(captured: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    request = {**REQUEST, "user": "u-77"}
    raw = json.dumps(request).encode()
    seen: dict[str, Any] = {}
    app = SessionCompletionMiddleware(
        app_returning([fake.completion(request, "tee")], seen=seen), runtime=cap.runtime
    )
    list(app(environ(body=raw), Recorder()))
    assert seen["body"] == raw
    (event,) = cap.events(1)
    assert event["user_id"] == "u-77"
    assert event["usage"]["input_tokens"] == 4


def test_the_app_reads_a_5mb_request_body_unchanged(captured: Any) -> None:
    cap = captured()
    request = {**REQUEST, "messages": [{"role": "user", "content": "x " * (5 * 1024 * 1024 // 2)}]}
    raw = json.dumps(request).encode()
    seen: dict[str, Any] = {}
    app = SessionCompletionMiddleware(
        app_returning([fake.completion(REQUEST, "big-in")], seen=seen), runtime=cap.runtime
    )
    list(app(environ(body=raw), Recorder()))
    assert seen["body"] == raw
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-big-in"
    assert "message_count" not in event  # over max_request_body_bytes: not kept


def test_ensure_stream_usage_rewrites_request_and_strips_the_added_chunk(captured: Any) -> None:
    cap = captured({"ensure_stream_usage": True})
    request = {**REQUEST, "stream": True}
    raw = json.dumps(request).encode()
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> Any:
        data = env["wsgi.input"].read(int(env["CONTENT_LENGTH"]))
        seen["request"] = json.loads(data)
        seen["content_length"] = int(env["CONTENT_LENGTH"])
        seen["length_ok"] = len(data) == seen["content_length"]
        start_response("200 OK", list(SSE_HEADERS))
        return Body(fake.stream_chunks(seen["request"], "ensure"))

    result = SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(body=raw), Recorder())
    out = b"".join(result)
    assert seen["request"]["stream_options"] == {"include_usage": True}
    assert seen["length_ok"]
    assert out == b"".join(fake.stream_chunks(request, "ensure"))  # what the client asked for
    (event,) = cap.events(1)
    assert event["usage"]["source"] == "reported"
    assert event["usage"]["output_tokens"] == len(fake.WORDS)


def test_exempt_endpoint_emits_nothing(captured: Any) -> None:
    cap = captured()

    @scr_exempt
    def view() -> None: ...

    body = Body([fake.completion(REQUEST, "exempt")])
    inner = app_returning(body)

    def app(env: dict[str, Any], start_response: Any) -> Any:
        env[ENVIRON_ENDPOINT] = view  # what scr_middleware.flask does after routing
        return inner(env, start_response)

    result = SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(), Recorder())
    assert result is body
    assert list(result) == body.chunks
    assert cap.settled() == []


def test_environ_hooks_set_identity_route_options_and_exception(captured: Any) -> None:
    cap = captured()

    @scr_route(session_type="agent", metadata={"team": "search"})
    def view() -> None: ...

    error = RuntimeError("handled by the framework")
    inner = app_returning([b"<h1>Internal Server Error</h1>"], "500 INTERNAL SERVER ERROR")

    def app(env: dict[str, Any], start_response: Any) -> Any:
        env[ENVIRON_ENDPOINT] = view
        env[ENVIRON_USER_ID] = "user-9"
        env[ENVIRON_EXCEPTION] = error
        return inner(env, start_response)

    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(), Recorder()))
    (event,) = cap.events(1)
    assert event["session_type"] == "agent"
    assert event["metadata"]["team"] == "search"
    assert event["user_id"] == "user-9"
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "RuntimeError"
    assert event["outcome"]["http_status"] == 500


def test_config_is_validated_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"middleware\.include_routes\[0\]"):
        SessionCompletionMiddleware(
            app_returning([]), config={"middleware": {"include_routes": ["re:("]}}
        )


class NoReadinto:
    """An input stream with read() only (like some servers'), to check readinto() on top."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


@pytest.mark.parametrize("stream_type", [io.BytesIO, NoReadinto])
def test_readinto_is_teed_too(captured: Any, stream_type: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    raw = json.dumps({**REQUEST, "user": "via-readinto"}).encode()
    seen = bytearray()

    def app(env: dict[str, Any], start_response: Any) -> Any:
        buffer = bytearray(16)
        while count := env["wsgi.input"].readinto(buffer):
            seen.extend(buffer[:count])
        start_response("200 OK", list(JSON_HEADERS))
        return [fake.completion(REQUEST, "readinto")]

    env = environ(body=raw)
    env["wsgi.input"] = stream_type(raw)
    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder()))
    assert bytes(seen) == raw
    assert cap.events(1)[0]["user_id"] == "via-readinto"


class BrokenInput:
    """A client that sends part of its body and goes away."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        raise ConnectionResetError("client went away")


@pytest.mark.parametrize("ensure", [False, True])
def test_client_leaving_mid_upload_is_cancelled(captured: Any, ensure: bool) -> None:
    cap = captured({"ensure_stream_usage": ensure})
    raw = json.dumps({**REQUEST, "stream": True}).encode()
    seen: list[bytes] = []

    def app(env: dict[str, Any], start_response: Any) -> Any:
        while True:
            seen.append(env["wsgi.input"].read(8))  # raises once the client is gone

    env = environ(body=raw)
    env["wsgi.input"] = BrokenInput(raw[:10])
    with pytest.raises(ConnectionResetError):
        SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder())
    assert b"".join(seen) == raw[:10]  # the app got what arrived, then the failure
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "cancelled"


def test_start_response_on_first_iteration_and_exc_info(captured: Any) -> None:
    """A generator app starts the response lazily, then replaces it with an error page."""
    cap = captured()
    payload = fake.completion(REQUEST, "lazy")

    def app(env: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", list(JSON_HEADERS))
        try:
            raise LookupError("late failure")
        except LookupError:
            start_response("502 Bad Gateway", list(JSON_HEADERS), sys.exc_info())
        yield payload

    recorder = Recorder()
    result = SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(), recorder)
    assert recorder.calls == []  # nothing started before the server iterates
    assert list(result) == [payload]
    assert [call[0] for call in recorder.calls] == ["200 OK", "502 Bad Gateway"]
    assert recorder.calls[1][2][0] is LookupError
    (event,) = cap.events(1)
    assert event["outcome"]["http_status"] == 502
    assert event["outcome"]["status"] == "error"


def test_capture_disabled_passes_everything_through(tmp_path: Any) -> None:
    """SCR_ENABLED=false (capture.enabled: false): not even an observer is created."""
    runtime = SessionCompletionRuntime(
        config={"capture": {"enabled": False}, "storage": {"data_dir": str(tmp_path)}}
    )
    try:
        body = Body([fake.completion(REQUEST)])
        env = environ()
        stream = env["wsgi.input"]
        app = SessionCompletionMiddleware(app_returning(body), runtime=runtime)
        assert app(env, Recorder()) is body
        assert env["wsgi.input"] is stream
        assert runtime.stats.disabled == 0  # capture() was never called
    finally:
        runtime.shutdown(5.0)


def test_identity_headers_are_read_from_the_environ(captured: Any, tmp_path: Any) -> None:
    """Header sources look single names up in the environ; an ``identity_callable`` still
    sees every header, lower-case."""
    module = tmp_path / "scr_wsgi_identity.py"
    module.write_text(
        "def identity(request, body):\n"
        "    return {'metadata': {'headers': sorted(request.headers.items())}}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        cap = captured(
            {
                "user_id_sources": ["header:x-user", "framework_user"],
                "organization_id_sources": ["header:x_org", "header:openai-organization"],
                "identity_callable": "scr_wsgi_identity:identity",
            }
        )
        app = SessionCompletionMiddleware(
            app_returning([fake.completion(REQUEST, "h1")]), runtime=cap.runtime
        )
        env = environ(HTTP_X_USER="u-7", HTTP_OPENAI_ORGANIZATION="org-3", HTTP_X_ORG="no")
        list(app(env, Recorder()))
        (event,) = cap.events(1)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("scr_wsgi_identity", None)
    # "x_org" cannot be told from "x-org" in an environ: only the decoded headers serve it,
    # and they have "x-org", so the next source answers.
    assert (event["user_id"], event["organization_id"]) == ("u-7", "org-3")
    headers = dict(event["metadata"]["headers"])
    assert headers["x-user"] == "u-7"
    assert headers["openai-organization"] == "org-3"
    assert headers["content-type"] == "application/json"
