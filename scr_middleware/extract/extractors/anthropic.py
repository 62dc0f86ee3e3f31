"""Anthropic Messages API, JSON and streamed.

Public reference: https://docs.anthropic.com/en/api/messages-streaming. A stream is
``message_start`` (``message.usage``: input and cache counts), content blocks, ``ping``s,
``message_delta`` (``usage.output_tokens`` is CUMULATIVE, so the last one replaces, never adds;
newer API versions also repeat input/cache counts there), ``message_stop``; or an ``error``
event at any point.

Canonical ``input_tokens`` is every input token the model processed, as OpenAI's
``prompt_tokens`` is: Anthropic's uncached ``input_tokens`` plus ``cache_read_input_tokens``
plus ``cache_creation_input_tokens``. The two cache counts are kept as
``cached_input_tokens`` and ``cache_creation_input_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scr_middleware.extract.stream import StreamSummary

from .base import SKIP, Extraction, ResponseData, SkipType, count, error_type_of, text

_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _merge(start: Any, delta: Any) -> dict[str, int]:
    """message_start counts, each replaced by the (cumulative) message_delta count if given."""
    raw: dict[str, int] = {}
    for source in (start, delta):
        if isinstance(source, Mapping):
            for key in _FIELDS:
                value = count(source.get(key))
                if value is not None:
                    raw[key] = value
    return raw


def anthropic_usage(raw: Mapping[str, int]) -> dict[str, int] | None:
    if not raw:
        return None
    usage: dict[str, int] = {}
    cache_read = raw.get("cache_read_input_tokens")
    cache_write = raw.get("cache_creation_input_tokens")
    if "input_tokens" in raw:
        usage["input_tokens"] = raw["input_tokens"] + (cache_read or 0) + (cache_write or 0)
    if "output_tokens" in raw:
        usage["output_tokens"] = raw["output_tokens"]
    if cache_read is not None:
        usage["cached_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    return usage or None


def message_json(body: Mapping[str, Any]) -> Extraction:
    """A Messages API JSON body (its ``type`` already checked)."""
    return Extraction(
        session_type="chat",
        session_id=text(body.get("id")),
        model=text(body.get("model")),
        usage=anthropic_usage(_merge(body.get("usage"), None)),
    )


def messages_stream(stream: StreamSummary) -> Extraction | None:
    """A streamed Messages API response (None: no ``message_start``)."""
    start = stream.first("message_start")
    if start is None:
        return None
    message = start.get("message")
    message = message if isinstance(message, Mapping) else {}
    delta = stream.last_with_usage("message_delta")
    result = Extraction(
        session_type="chat",
        session_id=text(message.get("id")),
        model=text(message.get("model")),
        usage=anthropic_usage(_merge(message.get("usage"), delta.get("usage") if delta else None)),
    )
    if stream.error is not None:
        result.status = "error"
        result.error_type = error_type_of(stream.error) or "stream_error"
    return result


class AnthropicMessagesExtractor:
    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        stream = response.stream
        if stream is None:
            body = response.body
            if not isinstance(body, Mapping) or body.get("type") != "message":
                return SKIP
            return message_json(body)
        found = messages_stream(stream)
        return SKIP if found is None else found
