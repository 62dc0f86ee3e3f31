"""OpenAI shapes: chat completions, legacy completions, embeddings, the Responses API.

Public references: https://platform.openai.com/docs/api-reference (chat object and chunk,
``stream_options.include_usage``: a last chunk with empty ``choices`` carries ``usage``;
Responses streaming events ``response.created`` ... ``response.completed`` /
``response.incomplete`` / ``response.failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import SKIP, Extraction, ResponseData, SkipType, error_type_of, put, text


def openai_usage(raw: Any) -> dict[str, int] | None:
    """Chat/completions/embeddings (``prompt_tokens``...) and Responses (``input_tokens``...)
    usage, with ``*_details`` counts, in canonical names."""
    if not isinstance(raw, Mapping):
        return None
    usage: dict[str, int] = {}
    put(usage, "input_tokens", raw.get("prompt_tokens", raw.get("input_tokens")))
    put(usage, "output_tokens", raw.get("completion_tokens", raw.get("output_tokens")))
    put(usage, "total_tokens", raw.get("total_tokens"))
    details_in = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    if isinstance(details_in, Mapping):
        put(usage, "cached_input_tokens", details_in.get("cached_tokens"))
        put(usage, "audio_input_tokens", details_in.get("audio_tokens"))
    details_out = raw.get("completion_tokens_details") or raw.get("output_tokens_details")
    if isinstance(details_out, Mapping):
        put(usage, "reasoning_tokens", details_out.get("reasoning_tokens"))
        put(usage, "audio_output_tokens", details_out.get("audio_tokens"))
    return usage or None


class _ChoicesExtractor:
    """Chat completions and legacy completions share one shape, JSON and streamed."""

    object_name = ""
    chunk_name = ""
    session_type = ""

    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        stream = response.stream
        if stream is None:
            body = response.body
            if not isinstance(body, Mapping) or body.get("object") != self.object_name:
                return SKIP
            return Extraction(
                session_type=self.session_type,
                session_id=text(body.get("id")),
                model=text(body.get("model")),
                usage=openai_usage(body.get("usage")),
            )
        first = stream.first(self.chunk_name)
        if first is None:
            return SKIP
        last = stream.last(self.chunk_name) or first
        with_usage = stream.last_with_usage(self.chunk_name)
        result = Extraction(
            session_type=self.session_type,
            session_id=text(first.get("id")) or text(last.get("id")),
            model=text(last.get("model")) or text(first.get("model")),
            usage=openai_usage(with_usage.get("usage")) if with_usage else None,
        )
        if stream.error is not None:
            result.status = "error"
            result.error_type = error_type_of(stream.error) or "stream_error"
        return result


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
        if not isinstance(body, Mapping) or body.get("object") != "list":
            return SKIP
        data = body.get("data")
        first = data[0] if isinstance(data, list) and data else None
        is_embedding = isinstance(first, Mapping) and first.get("object") == "embedding"
        if not is_embedding and response.route_session_type != "embedding":
            return SKIP
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


_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class OpenAIResponsesExtractor:
    def __call__(self, response: ResponseData, /) -> Extraction | SkipType:
        stream = response.stream
        if stream is None:
            body = response.body
            if not isinstance(body, Mapping) or body.get("object") != "response":
                return SKIP
            return self._from_response(body)
        terminal = stream.last(*_TERMINAL)
        started = stream.first("response.created", "response.in_progress")
        if terminal is None and started is None:
            return SKIP
        inner = (terminal or started or {}).get("response")
        result = self._from_response(inner if isinstance(inner, Mapping) else {})
        if terminal is None:
            result.usage = None  # only the terminal event carries the final usage
            if stream.error is not None:
                result.status = "error"
                result.error_type = error_type_of(stream.error) or "stream_error"
        return result

    @staticmethod
    def _from_response(body: Mapping[str, Any]) -> Extraction:
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
