"""Request bodies for ``POST /v1/events``: read with a size limit, decode, parse, validate.

A body is one event object, a JSON array of events, or NDJSON (one event per line), optionally
gzip-compressed (``Content-Encoding: gzip``, as the http destination sends with
``optimization.compression``). Validation is all-or-nothing: one invalid event rejects the
whole request, so a client never has to work out which part of a batch got in.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from ..errors import InvalidEventError
from ..events import normalize_event

__all__ = ["BodyError", "parse_events", "read_body", "validate_events"]


class BodyError(Exception):
    """The request body cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, or ``BodyError(413)`` as soon as it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"request body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding``; the decompressed size is bounded too (gzip bombs)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    wbits = 47 if encoding != "deflate" else zlib.MAX_WBITS  # 47: gzip or zlib header
    decompressor = zlib.decompressobj(wbits)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, "invalid_encoding", f"cannot decompress body: {exc}") from None
    if len(data) > limit or decompressor.unconsumed_tail:
        raise BodyError(413, "body_too_large", f"decompressed body exceeds {limit} bytes")
    return data


def parse_events(body: bytes, content_type: str) -> list[Any]:
    """A JSON object, a JSON array, or NDJSON -> the list of items (not yet validated)."""
    if not body.strip():
        raise BodyError(400, "empty_body", "the body must hold an event, an array or NDJSON")
    ndjson = "ndjson" in content_type or "jsonlines" in content_type
    if not ndjson:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in body.strip():
                raise BodyError(400, "invalid_json", f"invalid JSON: {exc}") from None
            ndjson = True  # several lines without the NDJSON content type
        else:
            if isinstance(data, list):
                return data
            if isinstance(data, dict):
                return [data]
            raise BodyError(400, "invalid_json", "the body must be an event object or an array")
    items: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BodyError(400, "invalid_json", f"line {number}: invalid JSON: {exc}") from None
    return items


def validate_events(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Normalise every item; returns (events, errors). Any error means: accept nothing."""
    events: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            problem = f"must be an event object, got {type(item).__name__}"
            errors.append({"index": index, "errors": [{"field": "", "problem": problem}]})
            continue
        try:
            events.append(normalize_event(item))
        except InvalidEventError as exc:
            fields = [{"field": path, "problem": problem} for path, problem in exc.errors]
            errors.append({"index": index, "errors": fields})
    return events, errors
