"""The extractor protocol: plain callables, options in ``__init__``, a pure ``__call__``.

An extractor looks at one finished response and returns an ``Extraction``, or ``SKIP`` when
the response is not a shape it knows; the observer tries the configured extractors in order and
uses the first answer. Extractors never see raw bytes: JSON bodies arrive parsed, streams as a
bounded ``StreamSummary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, final, runtime_checkable

from scr_middleware.extract.stream import StreamSummary


@final
class _Skip:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"

    def __reduce__(self) -> str:
        return "SKIP"


SKIP: Final = _Skip()
SkipType = _Skip


@dataclass(frozen=True, slots=True)
class ResponseData:
    """One finished response, as extractors see it."""

    method: str
    path: str
    status: int
    content_type: str
    request_body: Mapping[str, Any] | None  # the parsed JSON request, when captured
    body: Any = None  # the parsed JSON body of a non-streamed response
    stream: StreamSummary | None = None  # set for text/event-stream responses
    route_session_type: str | None = None  # implied by the matched path suffix

    @property
    def is_stream(self) -> bool:
        return self.stream is not None


@dataclass(slots=True)
class Extraction:
    """What an extractor found. ``usage`` uses the canonical names (``input_tokens``,
    ``output_tokens``, ``total_tokens``, ``cached_input_tokens``,
    ``cache_creation_input_tokens``, ``reasoning_tokens``, ``audio_input_tokens``,
    ``audio_output_tokens``); None means the response reported no usage."""

    session_type: str | None = None
    session_id: str | None = None
    model: str | None = None
    usage: dict[str, int] | None = None
    status: str | None = None  # outcome override, e.g. "error" for a streamed error event
    error_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Extractor(Protocol):
    def __call__(self, response: ResponseData, /) -> Extraction | SkipType: ...


def count(value: Any) -> int | None:
    """A token count as reported, or None for anything that is not a non-negative integer."""
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def text(value: Any) -> str | None:
    return value if (type(value) is str or isinstance(value, str)) and value else None


def put(usage: dict[str, int], key: str, value: Any) -> None:
    if type(value) is int:  # the common case, without the call
        if value >= 0:
            usage[key] = value
        return
    counted = count(value)
    if counted is not None:
        usage[key] = counted


def error_type_of(body: Any) -> str | None:
    """The error type from an OpenAI ``{"error": {"type": ...}}`` or Anthropic
    ``{"type": "error", "error": {"type": ...}}`` body, or a streamed error event."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        return text(error.get("type")) or text(error.get("code")) or "error"
    if isinstance(error, str) and error:
        return error
    if body.get("type") == "error":  # Responses API stream: {"type": "error", "code": ...}
        return text(body.get("code")) or "error"
    return None
