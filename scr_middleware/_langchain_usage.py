"""Usage and outputs of LangChain LLM calls, read without importing LangChain.

Kept apart from the callback so the exact-usage rules can be read (and tested) on their own:
per call, ``llm_output["token_usage"]`` when it has counts, otherwise each prompt's
``message.usage_metadata``, never both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["call_usage", "jsonable"]

# OpenAI ``token_usage`` / Anthropic ``usage`` names -> canonical detail field.
_OUTPUT_DETAILS = {
    "prompt_tokens_details": {
        "cached_tokens": "cached_input_tokens",
        "audio_tokens": "audio_input_tokens",
    },
    "completion_tokens_details": {
        "reasoning_tokens": "reasoning_tokens",
        "audio_tokens": "audio_output_tokens",
    },
}
_FLAT_DETAILS = {
    "cache_read_input_tokens": "cached_input_tokens",
    "cache_creation_input_tokens": "cache_creation_input_tokens",
}
# ``usage_metadata`` detail names -> canonical detail field.
_METADATA_DETAILS = {
    "input_token_details": {
        "cache_read": "cached_input_tokens",
        "cache_creation": "cache_creation_input_tokens",
        "audio": "audio_input_tokens",
    },
    "output_token_details": {"reasoning": "reasoning_tokens", "audio": "audio_output_tokens"},
}


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _add(counts: dict[str, int], key: str, value: Any) -> None:
    number = _int(value)
    if number is not None:
        counts[key] = counts.get(key, 0) + number


def _from_token_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    _add(counts, "input_tokens", usage.get("prompt_tokens", usage.get("input_tokens")))
    _add(counts, "output_tokens", usage.get("completion_tokens", usage.get("output_tokens")))
    _add(counts, "total_tokens", usage.get("total_tokens"))
    for container, names in _OUTPUT_DETAILS.items():
        inner = usage.get(container)
        if isinstance(inner, Mapping):
            for name, target in names.items():
                _add(counts, target, inner.get(name))
    for name, target in _FLAT_DETAILS.items():
        _add(counts, target, usage.get(name))
    return counts


def _from_usage_metadata(usage: Mapping[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        _add(counts, key, usage.get(key))
    for container, names in _METADATA_DETAILS.items():
        inner = usage.get(container)
        if isinstance(inner, Mapping):
            for name, target in names.items():
                _add(counts, target, inner.get(name))
    return counts


def _has_tokens(counts: Mapping[str, int]) -> bool:
    return any(key in counts for key in ("input_tokens", "output_tokens", "total_tokens"))


def call_usage(response: Any) -> tuple[dict[str, int] | None, str | None]:
    """Usage and model of one LLM call; usage None when the call reported none."""
    llm_output = response.llm_output if isinstance(response.llm_output, Mapping) else {}
    model = llm_output.get("model_name") or llm_output.get("model")
    token_usage = llm_output.get("token_usage", llm_output.get("usage"))
    counts: dict[str, int] | None = None
    if isinstance(token_usage, Mapping):
        parsed = _from_token_usage(token_usage)
        if _has_tokens(parsed):
            counts = parsed
    metadata_counts: dict[str, int] = {}
    reported = False
    for prompt in response.generations:
        # One usage per prompt: providers report the usage of all n candidates once.
        for generation in prompt:
            message = getattr(generation, "message", None)
            if model is None and message is not None:
                meta = getattr(message, "response_metadata", None) or {}
                model = meta.get("model_name") or meta.get("model")
            usage = getattr(message, "usage_metadata", None) if message is not None else None
            if isinstance(usage, Mapping):
                for key, value in _from_usage_metadata(usage).items():
                    metadata_counts[key] = metadata_counts.get(key, 0) + value
                reported = True
                break
    if counts is None and reported:
        counts = metadata_counts
    if counts is None and token_usage == {}:
        # LLMResult.flatten() empties token_usage on every prompt but the first, which
        # carries the whole call's usage: this prompt's tokens are already counted.
        counts = {}
    return counts, model if isinstance(model, str) else None


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of chain outputs (messages, pydantic models, nested containers)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth > 20:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, depth + 1) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(), depth + 1)
        except Exception:
            return repr(value)
    return str(value)
