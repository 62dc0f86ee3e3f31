"""The request path's shortcuts give the general path's answers.

* Streams: with the built-in extractors the observer skims a stream (``scan.StreamScanner``)
  instead of parsing every event; a custom extractor gets every event parsed. A delegating
  extractor that runs the built-ins itself forces that full parse, so both must agree.
* JSON ``chat.completion`` bodies and streamed chat completions: ``build.chat_completion_event``
  and ``build.chat_stream_event`` stand in for the extractor chain plus ``build_event``; the
  delegating extractor forces the general path.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scr_middleware.extract import SKIP, Extraction, ObserverSettings, ResponseData, SkipType
from scr_middleware.extract.extractors import default_extractors
from scr_middleware.extract.scan import (
    FIRST_EVENTS,
    HELD_LIMIT,
    RING,
    TRIM_BYTES,
    StreamScanner,
)
from scr_middleware.extract.stream import StreamSummary
from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, rechunk, run

STREAMS = sorted(FIXTURES.glob("*.sse"))
PATHS = {
    "openai_legacy": "/v1/completions",
    "openai_responses": "/v1/responses",
    "anthropic": "/v1/messages",
}
CUTS = st.lists(st.integers(min_value=1, max_value=60000), max_size=60)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class DefaultChain:
    """The built-in extractors, run by hand: the same answers, but not a built-in, so the
    observer takes its general paths (full stream parse, no JSON shortcut)."""

    def __init__(self) -> None:
        self._chain = default_extractors()

    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        for extractor in self._chain:
            found = extractor(response)
            if found is not SKIP:
                return found
        return SKIP


GENERAL = ObserverSettings(extractors=(DefaultChain(),))
FAST = ObserverSettings()


def _path(fixture: Path) -> str:
    for prefix, path in PATHS.items():
        if fixture.name.startswith(prefix):
            return path
    return "/v1/chat/completions"


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    """The event without what differs between two runs (times, a generated session id)."""
    out = {k: v for k, v in event.items() if k not in ("start_time", "end_time", "duration_ms")}
    if event["metadata"].get("scr_session_id_generated"):
        out["session_id"] = "generated"
    return out


def _both(chunks: list[bytes], **kwargs: Any) -> tuple[Any, ...]:
    results = []
    for config in (FAST, GENERAL):
        stats = RuntimeStats()
        events, forwarded = run(chunks, config=config, stats=stats, **kwargs)
        assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))
        results.append(([_comparable(e) for e in events], stats.extraction_failures))
    return tuple(results)


def _long(fixture: Path, repeat: int) -> bytes:
    """The fixture with its middle events repeated: a long stream of the same shape."""
    blocks = [b + b"\n\n" for b in fixture.read_bytes().split(b"\n\n") if b.strip()]
    middle = blocks[2:-3]
    return b"".join(blocks[:2] + middle * repeat + blocks[2:])


@SETTINGS
@given(
    fixture=st.sampled_from(STREAMS),
    repeat=st.integers(min_value=0, max_value=40),
    cuts=CUTS,
    per_event=st.booleans(),
    gzipped=st.booleans(),
)
def test_skimmed_stream_extracts_what_the_full_parse_does(
    fixture: Path, repeat: int, cuts: list[int], per_event: bool, gzipped: bool
) -> None:
    body = _long(fixture, repeat)
    headers = []
    if gzipped:  # skimming then runs on the decoded bytes
        body = gzip.compress(body)
        headers = [(b"content-encoding", b"gzip")]
    # per_event: as servers send them, one event per chunk
    events = [b + b"\n\n" for b in body.split(b"\n\n") if b]
    chunks = events if per_event and not gzipped else rechunk(body, cuts)
    fast, general = _both(
        chunks, path=_path(fixture), content_type="text/event-stream", headers=headers
    )
    assert fast == general


@SETTINGS
@given(
    eol=st.sampled_from([b"\n", b"\r\n"]),
    cuts=CUTS,
    repeat=st.integers(min_value=0, max_value=30),
    truncate=st.integers(min_value=0, max_value=400),
)
def test_skimmed_stream_line_ends_and_truncation(
    eol: bytes, cuts: list[int], repeat: int, truncate: int
) -> None:
    body = _long(FIXTURES / "openai_chat_stream_include_usage.sse", repeat).replace(b"\n", eol)
    if truncate:
        body = body[:-truncate]
    fast, general = _both(rechunk(body, cuts), content_type="text/event-stream")
    assert fast == general


def _chat_body(data: st.DataObject) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads((FIXTURES / "openai_chat_completion.json").read_bytes())
    counts = st.one_of(st.none(), st.integers(-3, 10**6), st.floats(0, 100), st.text(max_size=3))
    usage = {
        "prompt_tokens": data.draw(counts),
        "completion_tokens": data.draw(counts),
        "total_tokens": data.draw(counts),
        "prompt_tokens_details": data.draw(st.one_of(st.none(), st.just({"cached_tokens": 4}))),
    }
    body["usage"] = data.draw(st.one_of(st.none(), st.just(usage), st.just("n/a")))
    body["id"] = data.draw(st.one_of(st.just("chatcmpl-9"), st.none(), st.just(""), st.just(7)))
    body["model"] = data.draw(st.one_of(st.just("gpt-4o"), st.none(), st.just("")))
    return body


@SETTINGS
@given(data=st.data(), status=st.sampled_from([200, 201, 302, 400, 500]))
def test_json_shortcut_builds_the_general_event(data: st.DataObject, status: int) -> None:
    body = orjson.dumps(_chat_body(data))
    request = data.draw(
        st.sampled_from(
            [
                None,
                b'{"model": "from-request", "user": "u-1", "messages": [1, 2]}',
                b'{"input": []}',
                b"not json",
            ]
        )
    )
    headers = data.draw(st.sampled_from([None, {"openai-organization": "org-1"}]))
    fast, general = _both(
        [body], status=status, request_body=request, request_headers=headers, user_id=None
    )
    assert fast == general


def test_a_long_stream_parses_only_its_ends() -> None:
    """The point of skimming: a 1000-chunk stream parses a handful of events, not 1000."""
    head = b'data: {"object":"chat.completion.chunk","id":"c","model":"m","choices":[]}\n\n'
    usage = (
        b'data: {"object":"chat.completion.chunk","id":"c","model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1000}}\n\n'
    )
    summary = StreamSummary()
    scanner = StreamScanner(summary, 1 << 20)
    for _ in range(1000):
        scanner.feed(head)
    scanner.feed(usage)
    scanner.feed(b"data: [DONE]\n\n")
    assert scanner.finish()
    assert summary.done
    last = summary.last_with_usage("chat.completion.chunk")
    assert last is not None
    assert last["usage"]["completion_tokens"] == 1000
    assert summary.events <= FIRST_EVENTS + RING


def test_full_mode_parses_every_event() -> None:
    summary = StreamSummary()
    scanner = StreamScanner(summary, 1 << 20, full=True)
    for _ in range(50):
        scanner.feed(b'data: {"object":"x"}\n\n')
    assert scanner.finish()
    assert summary.events == 50


@pytest.mark.parametrize("size", [100, 50_000, 300_000])
def test_held_bytes_stay_bounded(size: int) -> None:
    """Skimming holds at most the last blocks plus one cut's worth, whatever the chunk size."""
    event = b'data: {"object":"chat.completion.chunk","id":"c","x":"' + b"a" * size + b'"}\n\n'
    summary = StreamSummary()
    scanner = StreamScanner(summary, 1 << 24)
    for _ in range(40):
        scanner.feed(event)
        assert scanner.held_bytes <= HELD_LIMIT + TRIM_BYTES + len(event)
    assert scanner.finish()
    assert summary.first("chat.completion.chunk") is not None
