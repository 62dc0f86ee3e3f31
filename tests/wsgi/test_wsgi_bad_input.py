"""Bad responses through the WSGI middleware: the bytes the server gets are the app's, and
every extraction problem is counted by reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
import scr_fake_llm as fake
from wsgi_kit import REQUEST, SSE_HEADERS, Recorder, app_returning, environ

from scr_middleware.wsgi import SessionCompletionMiddleware

JSON = [("Content-Type", "application/json")]
STREAM_REQUEST = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}


def serve(app: Any, env: dict[str, Any]) -> tuple[list[Any], bytes]:
    recorder = Recorder()
    result = app(env, recorder)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return recorder.calls, body + b"".join(recorder.written)


def both(inner: Any, env: dict[str, Any], runtime: Any) -> tuple[list[Any], bytes]:
    """Serve with and without the middleware; assert the server saw the same thing."""
    plain = serve(inner, environ(body=env["wsgi.input"].getvalue(), method=env["REQUEST_METHOD"]))
    observed = serve(SessionCompletionMiddleware(inner, runtime=runtime), env)
    assert observed == plain
    return observed


CASES = [
    pytest.param([fake.MALFORMED], JSON, "200 OK", "invalid_json", id="malformed-json"),
    pytest.param(
        fake.truncated_stream(STREAM_REQUEST), SSE_HEADERS, "200 OK", "truncated_sse", id="sse"
    ),
    pytest.param(
        [fake.completion(REQUEST, "huge", pad=5 * 1024 * 1024)],
        JSON,
        "200 OK",
        "body_too_large",
        id="5mb-response",
    ),
    pytest.param(
        [fake.gzipped(fake.completion(REQUEST))[:10] + b"\xff not deflate data \xff" * 4],
        [*JSON, ("Content-Encoding", "gzip")],
        "200 OK",
        "decode_error",
        id="corrupt-gzip",
    ),
]


@pytest.mark.parametrize(("chunks", "headers", "status", "reason"), CASES)
def test_bad_bodies_are_counted_and_bytes_unchanged(
    captured: Any, chunks: list[bytes], headers: list[tuple[str, str]], status: str, reason: str
) -> None:
    cap = captured({"max_body_bytes": 1024 * 1024})
    inner = app_returning(chunks, status, headers)
    _, body = both(inner, environ(body=json.dumps(REQUEST).encode()), cap.runtime)
    assert body == b"".join(chunks)
    (event,) = cap.events(1)
    assert cap.failures.get(reason) == 1, cap.failures
    assert event["metadata"]["scr_extraction_error"] == reason
    assert event["usage"]["source"] == "missing"


def test_gzip_body_is_decoded_for_usage_and_forwarded_compressed(captured: Any) -> None:
    cap = captured()
    payload = fake.gzipped(fake.completion(REQUEST, "gz"))
    inner = app_returning(
        [payload[:20], payload[20:]], headers=[*JSON, ("Content-Encoding", "gzip")]
    )
    _, body = both(inner, environ(), cap.runtime)
    assert body == payload
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-gz"
    assert event["usage"]["input_tokens"] == 4
    assert cap.failures == {}


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(captured: Any, status: str) -> None:
    cap = captured()
    _, body = both(app_returning([], status, []), environ(), cap.runtime)
    assert body == b""
    (event,) = cap.events(1)
    assert event["outcome"]["http_status"] == int(status[:3])
    assert cap.failures == {}  # no body is not a missing usage


def test_head_is_not_observed(captured: Any) -> None:
    cap = captured()
    inner = app_returning([b""], headers=JSON, read_input=False)
    _, body = both(inner, environ(method="HEAD", body=b""), cap.runtime)
    assert body == b""
    assert cap.settled() == []


def test_stream_without_usage_is_counted_missing(captured: Any) -> None:
    cap = captured()
    request = {**REQUEST, "stream": True}
    chunks = fake.stream_chunks(request)
    _, body = both(app_returning(chunks, headers=SSE_HEADERS), environ(), cap.runtime)
    assert body == b"".join(chunks)
    (event,) = cap.events(1)
    assert event["usage"]["source"] == "missing"
    assert cap.failures == {"missing_usage": 1}
