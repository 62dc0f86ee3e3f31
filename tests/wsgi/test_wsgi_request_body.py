"""How the request body reaches the observer: a body of declared length within the cap is read
once before the app and handed back as a ``BytesIO``; one over the cap is left alone; one
without a length (chunked) is copied as the app reads it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import scr_fake_llm as fake
from wsgi_kit import JSON_HEADERS, REQUEST, Recorder, app_returning, environ

from scr_middleware.wsgi import SessionCompletionMiddleware
from scr_middleware.wsgi.input import TeeInput


class CountingInput:
    """A server's input stream: records every read and hands out at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._step = step
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        if self._step is not None and (size < 0 or size > self._step):
            size = self._step
        return self._data.read(size)


def test_body_within_the_cap_is_read_once_before_the_app(captured: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    raw = json.dumps({**REQUEST, "user": "u-1"}).encode()
    seen: dict[str, Any] = {}
    env = environ(body=raw)
    stream = CountingInput(raw)
    env["wsgi.input"] = stream

    def app(env: dict[str, Any], start_response: Any) -> Any:
        seen["reads_before"] = list(stream.reads)
        seen["input"] = env["wsgi.input"]
        seen["body"] = env["wsgi.input"].read()
        start_response("200 OK", list(JSON_HEADERS))
        return [fake.completion(REQUEST, "once")]

    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder()))
    assert seen["reads_before"] == [len(raw)]  # one read, of the declared length
    assert isinstance(seen["input"], io.BytesIO)  # nothing between the app and its reads
    assert seen["body"] == raw
    assert env["CONTENT_LENGTH"] == str(len(raw))
    (event,) = cap.events(1)
    assert event["user_id"] == "u-1"
    assert event["message_count"] == 1


def test_short_reads_are_completed_up_to_the_declared_length(captured: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    raw = json.dumps({**REQUEST, "user": "u-short"}).encode()
    seen: dict[str, Any] = {}
    env = environ(body=raw)
    env["wsgi.input"] = CountingInput(raw, step=5)
    list(
        SessionCompletionMiddleware(
            app_returning([fake.completion(REQUEST, "short")], seen=seen), runtime=cap.runtime
        )(env, Recorder())
    )
    assert seen["body"] == raw
    assert cap.events(1)[0]["user_id"] == "u-short"


def test_body_the_app_never_reads_is_still_observed(captured: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    raw = json.dumps({**REQUEST, "user": "u-unread"}).encode()
    app = app_returning([fake.completion(REQUEST, "unread")], read_input=False)
    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(environ(body=raw), Recorder()))
    assert cap.events(1)[0]["user_id"] == "u-unread"


def test_body_over_the_cap_is_left_alone(captured: Any) -> None:
    cap = captured({"max_request_body_bytes": 16})
    raw = json.dumps(REQUEST).encode()
    env = environ(body=raw)
    stream = env["wsgi.input"]
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> Any:
        seen["input"] = env["wsgi.input"]
        seen["body"] = env["wsgi.input"].read()
        start_response("200 OK", list(JSON_HEADERS))
        return [fake.completion(REQUEST, "big")]

    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder()))
    assert seen["input"] is stream
    assert seen["body"] == raw
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-big"
    assert "message_count" not in event  # the observer would have dropped it anyway


def test_body_without_a_length_is_copied_as_the_app_reads_it(captured: Any) -> None:
    cap = captured({"user_id_sources": ["body:user"]})
    raw = json.dumps({**REQUEST, "user": "u-chunked"}).encode()
    env = environ(body=raw)
    del env["CONTENT_LENGTH"]
    env["wsgi.input_terminated"] = True  # a chunked upload: the stream ends with the body
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> Any:
        seen["input"] = env["wsgi.input"]
        parts = []
        while part := env["wsgi.input"].read(7):
            parts.append(part)
        seen["body"] = b"".join(parts)
        start_response("200 OK", list(JSON_HEADERS))
        return [fake.completion(REQUEST, "chunked")]

    list(SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder()))
    assert isinstance(seen["input"], TeeInput)
    assert seen["body"] == raw
    assert cap.events(1)[0]["user_id"] == "u-chunked"


class GoneInput:
    """A client that went away before sending any of its body."""

    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError("client went away")


def test_client_gone_before_the_body_is_cancelled(captured: Any) -> None:
    cap = captured()
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> Any:
        try:
            env["wsgi.input"].read()
        except ConnectionResetError as exc:
            seen["error"] = exc
            raise

    env = environ()
    env["wsgi.input"] = GoneInput()
    with pytest.raises(ConnectionResetError):
        SessionCompletionMiddleware(app, runtime=cap.runtime)(env, Recorder())
    assert "error" in seen  # the app met the stream's own failure
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "cancelled"
