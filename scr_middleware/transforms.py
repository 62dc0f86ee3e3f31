"""Named transforms: the shape each destination receives, plus dotted-path custom transforms.

A transform takes the finalized canonical event (``events.finalize_event``) and returns a new
dict; it never mutates its input, because the router hands the same event to every destination.
Every named output carries ``event_id``, the idempotency key destinations dedupe on. Each named
output is described by a JSON Schema shipped in ``scr_middleware/schemas/<name>.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import math
from collections.abc import Callable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

import orjson

from scr_middleware.errors import ConfigError

Transform = Callable[[dict[str, Any]], dict[str, Any]]

_JSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_MAX_DEPTH: Final = 200


def _stringify_big_ints(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise TypeError("value is nested too deeply (or cyclic) to serialise as JSON")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, Mapping):
        return {key: _stringify_big_ints(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_stringify_big_ints(item, depth + 1) for item in value]
    return value


def to_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Serialise ``value`` as compact UTF-8 JSON, never failing on odd leaf objects.

    Destinations and the audit hash share this function, so what a destination writes is
    exactly what ``content_hash`` covers. Objects JSON has no type for (Decimal, set, UUID...)
    become ``str(obj)``; non-string keys become strings; NaN/Infinity become null.
    Raises ``TypeError`` only for cyclic or absurdly deep structures.
    """
    option = _JSON_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _JSON_OPTIONS
    try:
        return orjson.dumps(value, default=str, option=option)
    except TypeError:
        # orjson rejects integers beyond 64 bits without consulting ``default``.
        return orjson.dumps(_stringify_big_ints(value), default=str, option=option)


def as_json(payload: Any) -> bytes:
    """A record's payload as JSON: already bytes when its destination prepared it, else
    serialised now (``to_json``'s rules)."""
    return payload if type(payload) is bytes else to_json(payload)


_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _mapping(value: Any) -> Mapping[str, Any]:
    # type() first: isinstance against the Mapping ABC costs ~10x more, per field, per event.
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return _EMPTY


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _scalars(value: Any) -> dict[str, Any]:
    """Only the string-keyed scalar entries: what a columnar store can take as dimensions."""
    if not value:
        return {}
    return {k: v for k, v in _mapping(value).items() if isinstance(k, str) and _is_scalar(v)}


def canonical(event: dict[str, Any]) -> dict[str, Any]:
    """The canonical event as is (a shallow copy, so adding keys cannot touch the original)."""
    return dict(event)


def billing_v1(event: dict[str, Any]) -> dict[str, Any]:
    """Flat, content-free usage record for metering and invoicing."""
    usage = _mapping(event.get("usage"))
    record: dict[str, Any] = {
        "schema": "billing_v1",
        "event_id": event.get("event_id"),
        "timestamp": event.get("timestamp"),
        "session_id": event.get("session_id"),
        "session_type": event.get("session_type"),
        "user_id": event.get("user_id"),
        "organization_id": event.get("organization_id"),
        "model": usage.get("model"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cached_input_tokens": usage.get("cached_input_tokens"),
        "reasoning_tokens": usage.get("reasoning_tokens"),
        "usage_source": usage.get("source"),
        "status": _mapping(event.get("outcome")).get("status"),
        "duration_ms": event.get("duration_ms"),
    }
    tags = _mapping(event.get("metadata")).get("billing_tags")
    if tags is not None and isinstance(tags, Mapping):
        record["billing_tags"] = _scalars(tags)
    return record


def analytics_v2(event: dict[str, Any]) -> dict[str, Any]:
    """Nested record for product analytics; free-form metadata reduced to scalar ``dims``."""
    usage = _mapping(event.get("usage"))
    outcome = _mapping(event.get("outcome"))
    record: dict[str, Any] = {
        "schema": "analytics_v2",
        "event_id": event.get("event_id"),
        "event_type": event.get("event_type"),
        "occurred_at": event.get("timestamp"),
        "session": {
            "id": event.get("session_id"),
            "type": event.get("session_type"),
            "duration_ms": event.get("duration_ms"),
            "message_count": event.get("message_count"),
            "input_modality": event.get("input_modality"),
            "transport": event.get("transport"),
        },
        "actor": {
            "user_id": event.get("user_id"),
            "organization_id": event.get("organization_id"),
        },
        "model": usage.get("model"),
        "tokens": {
            "input": usage.get("input_tokens"),
            "output": usage.get("output_tokens"),
            "total": usage.get("total_tokens"),
            "cached": usage.get("cached_input_tokens"),
            "reasoning": usage.get("reasoning_tokens"),
        },
        "usage_source": usage.get("source"),
        "outcome": {
            "status": outcome.get("status"),
            "http_status": outcome.get("http_status"),
            "error_type": outcome.get("error_type"),
        },
    }
    request = event.get("request")
    if request is not None and isinstance(request, Mapping):
        record["request"] = {"method": request.get("method"), "route": request.get("route")}
    record["dims"] = _scalars(event.get("metadata"))
    return record


def _content_hash(canonical_json: bytes) -> str:
    return "sha256:" + hashlib.sha256(canonical_json).hexdigest()


def audit_v1(event: dict[str, Any]) -> dict[str, Any]:
    """The full event plus a SHA-256 over its canonical JSON (sorted keys, compact).

    ``event`` is a JSON round trip of the input, so the record holds exactly what was hashed
    (odd objects already turned into strings) and shares nothing with the caller's dict.
    """
    body = to_json(event, sort_keys=True)
    return {
        "schema": "audit_v1",
        "event_id": event.get("event_id"),
        "recorded_at": event.get("timestamp"),
        "event": orjson.loads(body),
        "content_hash": _content_hash(body),
    }


def verify_audit_record(record: Mapping[str, Any]) -> bool:
    """True when ``record`` is an intact ``audit_v1`` record.

    Detects accidental corruption and edits that did not recompute the hash; it is not a
    signature (anyone can recompute a SHA-256), so keep audit storage append-only.
    """
    if not isinstance(record, Mapping) or record.get("schema") != "audit_v1":
        return False
    event = record.get("event")
    claimed = record.get("content_hash")
    if not isinstance(event, Mapping) or not isinstance(claimed, str):
        return False
    try:
        actual = _content_hash(to_json(event, sort_keys=True))
    except TypeError:
        return False
    if not hmac.compare_digest(actual, claimed):
        return False
    # The envelope fields sit outside the hash; they must agree with the hashed event.
    return bool(
        record.get("event_id") == event.get("event_id")
        and record.get("recorded_at") == event.get("timestamp")
    )


NAMED_TRANSFORMS: Final[Mapping[str, Transform]] = {
    "canonical": canonical,
    "billing_v1": billing_v1,
    "analytics_v2": analytics_v2,
    "audit_v1": audit_v1,
}


def load_transform(spec: str, path: str) -> Transform:
    """Resolve a named transform or ``"package.module:function"`` (imported now, at start-up).

    Raises ``ConfigError`` naming ``path`` (e.g. ``destinations[0].transform``) when the name is
    unknown, the module cannot be imported, the attribute is missing or is not callable.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            path, f"must be a transform name or 'package.module:function', got {spec!r}"
        )
    named = NAMED_TRANSFORMS.get(spec)
    if named is not None:
        return named
    module_name, sep, attribute = spec.partition(":")
    if not sep:
        known = ", ".join(NAMED_TRANSFORMS)
        raise ConfigError(
            path, f"unknown transform {spec!r}; use one of {known} or 'package.module:function'"
        )
    if not module_name or not attribute:
        raise ConfigError(
            path, f"custom transform must look like 'package.module:function', got {spec!r}"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(path, f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(
            path, f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                path, f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ConfigError(path, f"{spec!r} is not callable (got {type(target).__name__})")
    transform: Transform = target
    return transform


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) shipped for ``name``: a transform name or ``"event"``."""
    if name != "event" and name not in NAMED_TRANSFORMS:
        raise KeyError(name)
    text = (
        resources.files("scr_middleware")
        .joinpath("schemas")
        .joinpath(f"{name}.json")
        .read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema
