"""Random, truncated and re-chunked bodies: nothing escapes, bytes pass through unchanged, and
the extracted usage does not depend on where the chunks were cut."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, rechunk, run

FIXTURE_FILES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".json", ".sse"))
PATHS = {
    "openai_embeddings": "/v1/embeddings",
    "openai_legacy": "/v1/completions",
    "openai_responses": "/v1/responses",
    "anthropic": "/v1/messages",
}


def _path(fixture: Path) -> str:
    for prefix, path in PATHS.items():
        if fixture.name.startswith(prefix):
            return path
    return "/v1/chat/completions"


def _content_type(fixture: Path) -> str:
    return "text/event-stream" if fixture.suffix == ".sse" else "application/json"


def _extracted(events: list[dict[str, Any]]) -> tuple[Any, ...]:
    (event,) = events
    generated = event["metadata"].get("scr_session_id_generated", False)
    return (
        event["usage"],
        event["outcome"],
        event["session_type"],
        None if generated else event["session_id"],
    )


CUTS = st.lists(st.integers(min_value=1, max_value=20000), max_size=40)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(fixture=st.sampled_from(FIXTURE_FILES), cuts=CUTS, gzipped=st.booleans())
def test_rechunking_never_changes_the_result(fixture: Path, cuts: list[int], gzipped: bool) -> None:
    body = fixture.read_bytes()
    headers = [(b"content-encoding", b"gzip")] if gzipped else []
    if gzipped:
        body = gzip.compress(body)
    kwargs: dict[str, Any] = {
        "path": _path(fixture),
        "content_type": _content_type(fixture),
        "headers": headers,
    }
    whole, _ = run([body], **kwargs)
    chunks = rechunk(body, cuts)
    pieces, forwarded = run(chunks, **kwargs)
    assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))
    assert _extracted(pieces) == _extracted(whole)


@SETTINGS
@given(
    fixture=st.sampled_from(FIXTURE_FILES),
    keep=st.floats(min_value=0.0, max_value=1.0),
    cuts=CUTS,
    cancelled=st.booleans(),
)
def test_truncated_fixtures_never_raise(
    fixture: Path, keep: float, cuts: list[int], cancelled: bool
) -> None:
    body = fixture.read_bytes()
    body = body[: int(len(body) * keep)]
    stats = RuntimeStats()
    chunks = rechunk(body, cuts)
    events, forwarded = run(
        chunks,
        path=_path(fixture),
        content_type=_content_type(fixture),
        stats=stats,
        cancelled=cancelled,
    )
    assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))
    (event,) = events
    assert event["usage"]["source"] in ("reported", "missing")
    assert set(stats.extraction_failures) <= {
        "invalid_json",
        "non_json_body",
        "truncated_sse",
        "missing_usage",
    }


@SETTINGS
@given(
    data=st.binary(max_size=3000),
    cuts=CUTS,
    content_type=st.sampled_from(["application/json", "text/event-stream", "text/plain", None]),
    encoding=st.sampled_from([None, b"gzip", b"deflate"]),
    status=st.sampled_from([200, 201, 204, 400, 500]),
)
def test_random_bytes_never_raise(
    data: bytes, cuts: list[int], content_type: str | None, encoding: bytes | None, status: int
) -> None:
    headers = [(b"content-encoding", encoding)] if encoding else []
    chunks = rechunk(data, cuts)
    events, forwarded = run(chunks, content_type=content_type, headers=headers, status=status)
    assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))
    assert len(events) == 1


@SETTINGS
@given(
    events=st.lists(
        st.one_of(
            st.just(b'data: {"object":"chat.completion.chunk","id":"c1","choices":[]}'),
            st.just(b": keep-alive"),
            st.just(b"data: [DONE]"),
            st.just(b"event: ping\ndata: {}"),
            st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
        ),
        max_size=20,
    ),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=CUTS,
)
def test_sse_noise_then_usage_always_found(
    events: list[bytes], eol: bytes, cuts: list[int]
) -> None:
    usage = (
        b'data: {"object":"chat.completion.chunk","id":"c1","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":4}}'
    )
    blocks = [*events, usage]
    body = b"".join(block.replace(b"\n", eol) + eol + eol for block in blocks)
    found, _ = run(rechunk(body, cuts), content_type="text/event-stream")
    assert found[0]["usage"]["input_tokens"] == 3
    assert found[0]["usage"]["output_tokens"] == 4
