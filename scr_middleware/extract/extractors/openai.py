"""OpenAI shapes: chat completions, legacy completions, embeddings, the Responses API.

Public references: https://platform.openai.com/docs/api-reference (chat object and chunk,
``stream_options.include_usage``: a last chunk with empty ``choices`` carries ``usage``;
Responses streaming events ``response.created`` ... ``response.completed`` /
``response.incomplete`` / ``response.failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scr_middleware.extract.stream import StreamSummary

from .base import SKIP, Extraction, ResponseData, SkipType, error_type_of, put, text


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def openai_usage(raw: Any) -> dict[str, int] | None:
    """Chat/completions/embeddings (``prompt_tokens``...) and Responses (``input_tokens``...)
    usage, with ``*_details`` counts, in canonical names."""
    if type(raw) is not dict and (raw is None or not isinstance(raw, Mapping)):
        return None
    # Per request, so written for the interpreter: ``in`` and ``[]`` rather than ``get``, the
    # integer case inline (``put`` handles floats and nonsense).
    usage: dict[str, int] = {}
    value = raw["prompt_tokens"] if "prompt_tokens" in raw else raw.get("input_tokens")
    if type(value) is int and value >= 0:
        usage["input_tokens"] = value
    elif value is not None:
        put(usage, "input_tokens", value)
    value = raw["completion_tokens"] if "completion_tokens" in raw else raw.get("output_tokens")
    if type(value) is int and value >= 0:
        usage["output_tokens"] = value
    elif value is not None:
        put(usage, "output_tokens", value)
    if "total_tokens" in raw:
        value = raw["total_tokens"]
        if type(value) is int and value >= 0:
            usage["total_tokens"] = value
        elif value is not None:
            put(usage, "total_tokens", value)
    details = raw.get("prompt_tokens_details")
    if not details:
        details = raw.get("input_tokens_details")
    if details and (type(details) is dict or isinstance(details, Mapping)):
        value = details.get("cached_tokens")
        if type(value) is int and value >= 0:
            usage["cached_input_tokens"] = value
        elif value is not None:
            put(usage, "cached_input_tokens", value)
        value = details.get("audio_tokens")
        if type(value) is int and value >= 0:
            usage["audio_input_tokens"] = value
        elif value is not None:
            put(usage, "audio_input_tokens", value)
    details = raw.get("completion_tokens_details")
    if not details:
        details = raw.get("output_tokens_details")
    if details and (type(details) is dict or isinstance(details, Mapping)):
        value = details.get("reasoning_tokens")
        if type(value) is int and value >= 0:
            usage["reasoning_tokens"] = value
        elif value is not None:
            put(usage, "reasoning_tokens", value)
        value = details.get("audio_tokens")
        if type(value) is int and value >= 0:
            usage["audio_output_tokens"] = value
        elif value is not None:
            put(usage, "audio_output_tokens", value)
    return usage or None


def choices_json(body: Mapping[str, Any], session_type: str) -> Extraction:
    """A chat.completion / text_completion JSON body (its ``object`` already checked)."""
    return Extraction(
        session_type,
        text(body.get("id")),
        text(body.get("model")),
        openai_usage(body.get("usage")),
    )


def embedding_json(body: Mapping[str, Any], route_session_type: str | None) -> Extraction | None:
    """An embeddings ``list`` body (its ``object`` already checked), or None: not one."""
    data = body.get("data")
    first = data[0] if isinstance(data, list) and data else None
    is_embedding = isinstance(first, Mapping) and first.get("object") == "embedding"
    if not is_embedding and route_session_type != "embedding":
        return None
    usage = openai_usage(body.get("usage"))
    if usage is not None and "input_tokens" in usage:
        usage.setdefault("output_tokens", 0)  # embeddings produce no output tokens
    return Extraction(
        session_type="embedding",
        session_id=text(body.get("id")),
        model=text(body.get("model")),
        usage=usage,
        metadata={"embeddings": len(data)} if isinstance(data, list) else {},
    )


def responses_json(body: Mapping[str, Any]) -> Extraction:
    """A Responses API ``response`` object (a JSON body, or a streamed event's ``response``)."""
    result = Extraction(
        session_type="response",
        session_id=text(body.get("id")),
        model=text(body.get("model")),
        usage=openai_usage(body.get("usage")),
    )
    status = body.get("status")
    if status == "failed":
        result.status = "error"
        result.error_type = error_type_of(body) or "response_failed"
    elif status == "incomplete":
        details = body.get("incomplete_details")
        reason = text(details.get("reason")) if isinstance(details, Mapping) else None
        result.metadata["incomplete_reason"] = reason or "unknown"
    return result


def choices_stream(stream: StreamSummary, chunk_name: str, session_type: str) -> Extraction | None:
    """A streamed chat / legacy completion (None: no chunk of that kind)."""
    first = stream.first(chunk_name)
    if first is None:
        return None
    last = stream.last(chunk_name) or first
    with_usage = stream.last_with_usage(chunk_name)
    result = Extraction(
        session_type=session_type,
        session_id=text(first.get("id")) or text(last.get("id")),
        model=text(last.get("model")) or text(first.get("model")),
        usage=openai_usage(with_usage.get("usage")) if with_usage else None,
    )
    if stream.error is not None:
        result.status = "error"
        result.error_type = error_type_of(stream.error) or "stream_error"
    return result


class _ChoicesExtractor:
    """Chat completions and legacy completions share one shape, JSON and streamed."""

    object_name = ""
    chunk_name = ""
    session_type = ""

    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        stream = response.stream
        if stream is None:
            body = response.body
            if not _is_mapping(body) or body.get("object") != self.object_name:
                return SKIP
            return choices_json(body, self.session_type)
        found = choices_stream(stream, self.chunk_name, self.session_type)
        return SKIP if found is None else found


class OpenAIChatExtractor(_ChoicesExtractor):
    object_name = "chat.completion"
    chunk_name = "chat.completion.chunk"
    session_type = "chat"


class OpenAICompletionExtractor(_ChoicesExtractor):
    # Legacy /v1/completions: the same "text_completion" object names JSON and chunks.
    object_name = "text_completion"
    chunk_name = "text_completion"
    session_type = "completion"


class OpenAIEmbeddingExtractor:
    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        body = response.body
        if not _is_mapping(body) or body.get("object") != "list":
            return SKIP
        found = embedding_json(body, response.route_session_type)
        return SKIP if found is None else found


_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def responses_stream(stream: StreamSummary) -> Extraction | None:
    """A streamed Responses API response (None: neither its start nor its end seen)."""
    terminal = stream.last(*_TERMINAL)
    started = stream.first("response.created", "response.in_progress")
    if terminal is None and started is None:
        return None
    inner = (terminal or started or {}).get("response")
    result = responses_json(inner if isinstance(inner, Mapping) else {})
    if terminal is None:
        result.usage = None  # only the terminal event carries the final usage
        if stream.error is not None:
            result.status = "error"
            result.error_type = error_type_of(stream.error) or "stream_error"
    return result


class OpenAIResponsesExtractor:
    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        stream = response.stream
        if stream is None:
            body = response.body
            if not _is_mapping(body) or body.get("object") != "response":
                return SKIP
            return responses_json(body)
        found = responses_stream(stream)
        return SKIP if found is None else found
