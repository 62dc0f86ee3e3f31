"""Built-in extractors, and resolution of ``middleware.extractors`` at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

from scr_middleware.errors import ConfigError
from scr_middleware.extract.stream import StreamSummary

from .anthropic import AnthropicMessagesExtractor, message_json, messages_stream
from .base import (
    SKIP,
    Extraction,
    Extractor,
    ResponseData,
    SkipType,
    error_type_of,
)
from .openai import (
    OpenAIChatExtractor,
    OpenAICompletionExtractor,
    OpenAIEmbeddingExtractor,
    OpenAIResponsesExtractor,
    choices_json,
    choices_stream,
    embedding_json,
    responses_json,
    responses_stream,
)

BUILTIN: Final[dict[str, Callable[[], Extractor]]] = {
    "openai_chat": OpenAIChatExtractor,
    "openai_completion": OpenAICompletionExtractor,
    "openai_embedding": OpenAIEmbeddingExtractor,
    "openai_responses": OpenAIResponsesExtractor,
    "anthropic_messages": AnthropicMessagesExtractor,
}


_DEFAULT_TYPES: Final = tuple(BUILTIN.values())


def default_extractors() -> tuple[Extractor, ...]:
    return tuple(factory() for factory in BUILTIN.values())


def is_default_chain(extractors: Sequence[Extractor]) -> bool:
    """The built-in extractors, all of them, in their default order (``builtin_json`` may
    stand in for running them)."""
    return tuple(type(e) for e in extractors) == _DEFAULT_TYPES


def all_builtin(extractors: Sequence[Extractor]) -> bool:
    """Only built-in extractors: they read few stream events (see ``scan.StreamScanner``)."""
    return all(type(e) in _DEFAULT_TYPES for e in extractors)


def builtin_stream(stream: StreamSummary) -> Extraction | None:
    """What the default chain answers for a stream, without ``ResponseData`` (the embeddings
    extractor never answers for one)."""
    return (
        choices_stream(stream, "chat.completion.chunk", "chat")
        or choices_stream(stream, "text_completion", "completion")
        or responses_stream(stream)
        or messages_stream(stream)
    )


def builtin_json(body: Any, route_session_type: str | None) -> Extraction | None:
    """What the default chain answers for a JSON body, without building ``ResponseData`` and
    asking five extractors: their shapes are told apart by ``object`` (then ``type``)."""
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    kind = body.get("object")
    if kind == "chat.completion":
        return choices_json(body, "chat")
    if kind == "text_completion":
        return choices_json(body, "completion")
    if kind == "list":
        found = embedding_json(body, route_session_type)
        if found is not None:
            return found
    elif kind == "response":
        return responses_json(body)
    if body.get("type") == "message":
        return message_json(body)
    return None


def load_object(spec: str, key: str) -> Any:
    """Import ``"package.module:attribute"`` (dotted attributes allowed) or raise ConfigError."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(key, f"must look like 'package.module:function', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(key, f"cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(key, f"module {module_name!r} has no attribute {attr!r}") from None
    return target


def resolve_extractor(spec: str | Callable[..., Any], key: str) -> Extractor:
    """A built-in name, ``"pkg.module:function"`` or an object; classes are instantiated."""
    if isinstance(spec, str):
        factory = BUILTIN.get(spec)
        target: Any = factory() if factory is not None else load_object(spec, key)
    else:
        target = spec
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(key, f"cannot instantiate {target.__name__}: {exc}") from exc
    if not callable(target):
        raise ConfigError(key, f"must be callable, got {type(target).__name__}")
    return cast(Extractor, target)


def resolve_extractors(
    specs: Sequence[str], key: str = "middleware.extractors"
) -> tuple[Extractor, ...]:
    if not specs:
        return default_extractors()
    return tuple(resolve_extractor(spec, f"{key}[{i}]") for i, spec in enumerate(specs))


__all__ = [
    "BUILTIN",
    "SKIP",
    "AnthropicMessagesExtractor",
    "Extraction",
    "Extractor",
    "OpenAIChatExtractor",
    "OpenAICompletionExtractor",
    "OpenAIEmbeddingExtractor",
    "OpenAIResponsesExtractor",
    "ResponseData",
    "SkipType",
    "all_builtin",
    "builtin_json",
    "builtin_stream",
    "default_extractors",
    "error_type_of",
    "is_default_chain",
    "load_object",
    "resolve_extractor",
    "resolve_extractors",
]
