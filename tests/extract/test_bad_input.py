"""Bad responses: forwarded bytes untouched, nothing raised, the event says what was missing,
and the problem counted by reason."""

from __future__ import annotations

import gzip

import orjson
import pytest

from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, rechunk, run, settings

CHAT = (FIXTURES / "openai_chat_completion.json").read_bytes()
STREAM = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()


def _assert_forwarded(chunks: list[bytes], forwarded: list[bytes]) -> None:
    assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"id": "chatcmpl-1", "object": "chat.comp', "application/json", "invalid_json"),
        (b"{not json at all}", "application/json", "invalid_json"),
        (b"Internal Server Error", "text/plain", "non_json_body"),
        (b"\xff\xfe\x00garbage\x80", None, "non_json_body"),
    ],
)
def test_broken_bodies(
    body: bytes, content_type: str | None, reason: str, stats: RuntimeStats
) -> None:
    chunks = rechunk(body, [3, 9])
    events, forwarded = run(chunks, content_type=content_type, stats=stats)
    _assert_forwarded(chunks, forwarded)
    (event,) = events
    assert event["usage"]["source"] == "missing"
    assert event["metadata"]["scr_extraction_error"] == reason
    assert event["metadata"]["scr_session_id_generated"] is True
    assert stats.extraction_failures == {reason: 1, "missing_usage": 1}


def test_non_utf8_inside_json_strings_still_extracts(stats: RuntimeStats) -> None:
    body = CHAT.replace(b"Hello! How can I assist you today?", b"caf\xe9 \xff\xfe")
    events, _ = run([body], stats=stats)
    assert events[0]["usage"]["input_tokens"] == 19
    assert stats.extraction_failures == {}


def test_truncated_sse(stats: RuntimeStats) -> None:
    cut = STREAM.index(b'"choices":[],"usage"') + 10
    events, forwarded = run([STREAM[:cut]], content_type="text/event-stream", stats=stats)
    assert forwarded[0] is not None
    (event,) = events
    assert event["session_id"] == "chatcmpl-123"
    assert event["usage"]["source"] == "missing"
    assert event["metadata"]["scr_extraction_error"] == "truncated_sse"
    assert stats.extraction_failures == {"truncated_sse": 1, "missing_usage": 1}


def test_sse_with_garbage_events(stats: RuntimeStats) -> None:
    body = b"data: not json\n\n" + STREAM
    events, _ = run([body], content_type="text/event-stream", stats=stats)
    assert events[0]["usage"]["total_tokens"] == 21
    assert stats.extraction_failures == {"invalid_json": 1}


@pytest.mark.parametrize(
    "fixture", ["openai_chat_completion.json", "openai_chat_stream_include_usage.sse"]
)
def test_gzip_bodies_are_decoded_for_extraction_only(fixture: str, stats: RuntimeStats) -> None:
    compressed = gzip.compress((FIXTURES / fixture).read_bytes())
    chunks = rechunk(compressed, range(5, len(compressed), 11))
    content_type = "text/event-stream" if fixture.endswith(".sse") else "application/json"
    events, forwarded = run(
        chunks, content_type=content_type, headers=[(b"content-encoding", b"gzip")], stats=stats
    )
    _assert_forwarded(chunks, forwarded)
    assert b"".join(forwarded) == compressed
    assert events[0]["usage"]["source"] == "reported"
    assert stats.extraction_failures == {}


def test_corrupt_gzip_and_unknown_encoding(stats: RuntimeStats) -> None:
    events, _ = run([b"\x1f\x8b\x08garbage"], headers=[(b"content-encoding", b"gzip")], stats=stats)
    assert events[0]["metadata"]["scr_extraction_error"] == "decode_error"
    events, _ = run([b"\x0b\x01\x80"], headers=[(b"content-encoding", b"br")], stats=stats)
    assert events[0]["metadata"]["scr_extraction_error"] == "unsupported_encoding"
    assert stats.extraction_failures == {
        "decode_error": 1,
        "unsupported_encoding": 1,
        "missing_usage": 2,
    }


def test_truncated_gzip_body_is_counted_as_a_decode_error(stats: RuntimeStats) -> None:
    compressed = gzip.compress(CHAT)
    cut = compressed[:-12]  # the deflate stream and its trailer never finish
    events, forwarded = run([cut], headers=[(b"content-encoding", b"gzip")], stats=stats)
    assert forwarded == [cut]
    assert events[0]["usage"]["source"] == "missing"
    assert stats.extraction_failures["decode_error"] == 1


def test_five_megabyte_body_is_extracted(stats: RuntimeStats) -> None:
    doc = orjson.loads(CHAT)
    doc["choices"][0]["message"]["content"] = "y" * (5 * 1024 * 1024)
    body = orjson.dumps(doc)
    chunks = rechunk(body, range(65536, len(body), 65536))
    events, forwarded = run(chunks, stats=stats)
    _assert_forwarded(chunks, forwarded)
    assert events[0]["usage"]["total_tokens"] == 29
    assert stats.extraction_failures == {}


def test_body_over_the_cap_is_skipped_and_counted(stats: RuntimeStats) -> None:
    body = CHAT + b" " * (11 * 1024 * 1024)  # valid JSON, but past the 10 MiB default
    chunks = rechunk(body, range(1 << 20, len(body), 1 << 20))
    events, forwarded = run(chunks, stats=stats)
    _assert_forwarded(chunks, forwarded)
    assert events[0]["metadata"]["scr_extraction_error"] == "body_too_large"
    assert events[0]["usage"]["source"] == "missing"
    assert stats.extraction_failures == {"body_too_large": 1, "missing_usage": 1}


def test_long_streams_are_not_capped(stats: RuntimeStats) -> None:
    head, usage_chunk = (
        STREAM.rsplit(b"data: {", 1)[0],
        b"data: {" + STREAM.rsplit(b"data: {", 1)[1],
    )
    body = head * 50 + usage_chunk
    events, _ = run(
        [body], content_type="text/event-stream", config=settings(max_body_bytes=4096), stats=stats
    )
    assert events[0]["usage"]["total_tokens"] == 21
    assert stats.extraction_failures == {}


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int, stats: RuntimeStats) -> None:
    events, forwarded = run([b""], status=status, content_type=None, stats=stats)
    assert forwarded == [b""]
    (event,) = events
    assert event["outcome"] == {"status": "success", "http_status": status}
    assert event["usage"]["source"] == "missing"
    assert stats.extraction_failures == {}


def test_error_status_with_empty_body(stats: RuntimeStats) -> None:
    events, _ = run([b""], status=503, stats=stats)
    assert events[0]["outcome"] == {"status": "error", "http_status": 503, "error_type": "http_503"}
    assert stats.extraction_failures == {}


def test_client_went_away_mid_stream(stats: RuntimeStats) -> None:
    cut = STREAM.index(b"data:", 200)
    events, _ = run([STREAM[:cut]], content_type="text/event-stream", cancelled=True, stats=stats)
    (event,) = events
    assert event["outcome"] == {"status": "cancelled", "http_status": 200}
    assert event["session_id"] == "chatcmpl-123"
    assert stats.extraction_failures == {}


def test_cancelled_keeps_the_usage_seen_so_far(stats: RuntimeStats) -> None:
    stream = (FIXTURES / "anthropic_message_stream.sse").read_bytes()
    cut = stream.index(b"event: message_stop")
    events, _ = run(
        [stream[:cut]],
        path="/v1/messages",
        content_type="text/event-stream",
        cancelled=True,
        stats=stats,
    )
    assert events[0]["outcome"]["status"] == "cancelled"
    assert events[0]["usage"]["output_tokens"] == 15


def test_handler_exception_before_response(stats: RuntimeStats) -> None:
    from scr_middleware.extract import Observer, RequestInfo

    events: list[dict[str, object]] = []
    observer = Observer(
        settings(), RequestInfo("POST", "/v1/chat/completions"), events.append, stats=stats
    )
    observer.on_request_body(b'{"model": "gpt-4o", "user": "u1"}')
    observer.finish(exception=ValueError("boom"))
    observer.finish(exception=ValueError("twice"))  # idempotent
    (event,) = events
    assert event["outcome"] == {"status": "error", "error_type": "ValueError"}
    assert event["usage"] == {"model": "gpt-4o", "source": "missing"}
    assert event["user_id"] == "u1"


def test_request_body_over_its_cap_is_ignored(stats: RuntimeStats) -> None:
    body = orjson.dumps({"user": "u1", "messages": [{"content": "z" * 5000}]})
    events, _ = run(
        [CHAT], request_body=body, config=settings(max_request_body_bytes=100), stats=stats
    )
    assert events[0]["user_id"] is None
    assert "message_count" not in events[0]


def test_unterminated_final_event_still_counts(stats: RuntimeStats) -> None:
    body = STREAM.replace(b"\n\ndata: [DONE]\n\n", b"")  # ends right after the usage JSON
    assert body.endswith(b"}}}")
    events, _ = run([body], content_type="text/event-stream", stats=stats)
    assert events[0]["usage"]["total_tokens"] == 21
    assert stats.extraction_failures == {}


def test_each_reason_is_logged_once_not_per_request(stats: RuntimeStats) -> None:
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("scr_middleware.extract")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        for _ in range(5):
            run([b"{broken"], stats=stats)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert stats.extraction_failures == {"invalid_json": 5, "missing_usage": 5}
    assert sorted(r.reason for r in records) == ["invalid_json", "missing_usage"]  # type: ignore[attr-defined]
