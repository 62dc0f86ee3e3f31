"""ensure_stream_usage: ask upstream for usage, then hide that extra chunk from the client."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scr_middleware.extract import Observer, RequestInfo
from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, rechunk, settings

STREAM = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()
USAGE_BLOCK = STREAM[STREAM.rindex(b"data: {") :]  # the last JSON event: choices [] + usage
assert b'"choices":[],"usage":{' in USAGE_BLOCK
USAGE_BLOCK = USAGE_BLOCK[: USAGE_BLOCK.index(b"\n\n") + 2]
# What the client would have received without include_usage: no usage chunk, and no
# "usage": null field in the other chunks.
CLIENT_VIEW = STREAM.replace(USAGE_BLOCK, b"").replace(b',"usage":null', b"")
REQUEST = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


def _observer(
    path: str = "/v1/chat/completions", on: bool = True
) -> tuple[Observer, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    observer = Observer(
        settings(ensure_stream_usage=on),
        RequestInfo("POST", path),
        events.append,
        stats=RuntimeStats(),
    )
    return observer, events


def _stream(
    observer: Observer, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    observer.on_response_start(200, headers or [(b"content-type", b"text/event-stream")])
    out = [observer.on_chunk(c, last=i == len(chunks) - 1) for i, c in enumerate(chunks)]
    observer.finish()
    return b"".join(out)


def test_rewrite_adds_include_usage_and_keeps_other_fields() -> None:
    observer, _ = _observer()
    assert observer.may_rewrite_request()
    observer.on_request_body(orjson.dumps({**REQUEST, "stream_options": {"other": 1}}))
    new = observer.request_body_rewrite()
    assert new is not None
    assert orjson.loads(new) == {**REQUEST, "stream_options": {"other": 1, "include_usage": True}}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("step", [1, 7, 64, 100000])
def test_injected_usage_chunk_is_stripped(eol: bytes, step: int) -> None:
    stream = STREAM.replace(b"\n", eol)
    expected = CLIENT_VIEW.replace(b"\n", eol)
    observer, events = _observer()
    observer.on_request_body(orjson.dumps(REQUEST))
    assert observer.request_body_rewrite() is not None
    sent = _stream(observer, rechunk(stream, range(step, len(stream), step)))
    assert sent == expected
    assert events[0]["usage"]["total_tokens"] == 21
    assert events[0]["usage"]["source"] == "reported"


@pytest.mark.parametrize(
    ("path", "body", "on"),
    [
        ("/v1/chat/completions", {**REQUEST, "stream_options": {"include_usage": True}}, True),
        ("/v1/chat/completions", {**REQUEST, "stream": False}, True),
        ("/v1/chat/completions", REQUEST, False),
        ("/v1/messages", REQUEST, True),
        ("/v1/embeddings", REQUEST, True),
    ],
)
def test_no_rewrite(path: str, body: dict[str, Any], on: bool) -> None:
    observer, _ = _observer(path, on)
    observer.on_request_body(orjson.dumps(body))
    assert observer.request_body_rewrite() is None
    chunks = rechunk(STREAM, range(10, len(STREAM), 10))
    observer.on_response_start(200, [(b"content-type", b"text/event-stream")])
    assert all(observer.on_chunk(c) is c for c in chunks)


def test_not_stripped_when_the_client_could_not_tell_it_apart() -> None:
    # With a Content-Length the bytes cannot change; the extra chunk then reaches the client.
    observer, events = _observer()
    observer.on_request_body(orjson.dumps(REQUEST))
    assert observer.request_body_rewrite() is not None
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"content-length", str(len(STREAM)).encode()),
    ]
    assert _stream(observer, [STREAM], headers) == STREAM
    assert events[0]["usage"]["total_tokens"] == 21


def test_error_response_passes_unchanged() -> None:
    observer, events = _observer()
    observer.on_request_body(orjson.dumps(REQUEST))
    assert observer.request_body_rewrite() is not None
    body = (FIXTURES / "openai_error_401.json").read_bytes()
    observer.on_response_start(401, [(b"content-type", b"application/json")])
    assert observer.on_chunk(body, last=True) is body
    observer.finish()
    assert events[0]["outcome"]["error_type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'data: {"a":1,"usage":null}\n\n', b'data: {"a":1}\n\n'),
        (b'data: {"a":1, "usage" : null, "b":2}\n\n', b'data: {"a":1, "b":2}\n\n'),
        (b'data: {"usage": null, "a":1}\n\n', b'data: {"a":1}\n\n'),
        (
            b'data: {"a":"x\\",\\"usage\\":null","usage":null}\n\n',
            b'data: {"a":"x\\",\\"usage\\":null"}\n\n',
        ),
    ],
)
def test_null_usage_field_removal(raw: bytes, expected: bytes) -> None:
    from scr_middleware.extract.usage_strip import without_null_usage

    assert without_null_usage(raw) == expected
    assert orjson.loads(expected[6:]) == {
        k: v for k, v in orjson.loads(raw[6:]).items() if k != "usage"
    }


def test_unterminated_usage_chunk_is_still_stripped() -> None:
    stream = STREAM.replace(b"\n\ndata: [DONE]\n\n", b"")
    observer, events = _observer()
    observer.on_request_body(orjson.dumps(REQUEST))
    assert observer.request_body_rewrite() is not None
    sent = _stream(observer, rechunk(stream, range(50, len(stream), 50)))
    assert b'"usage"' not in sent
    assert sent == CLIENT_VIEW.replace(b"data: [DONE]\n\n", b"")
    assert events[0]["usage"]["total_tokens"] == 21
