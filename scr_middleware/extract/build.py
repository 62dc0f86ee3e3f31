"""Assemble the ``session.completed`` event from what the observer saw (pure functions)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import failsafe
from .extractors import SKIP, Extraction, Extractor, ResponseData, error_type_of
from .identity import Identity
from .request import RequestInfo
from .routes import RouteMatch

TOKEN_KEYS: Final = ("input_tokens", "output_tokens", "total_tokens")


def generated_session_id() -> str:
    return "scr_" + secrets.token_hex(12)


@dataclass(slots=True)
class Seen:
    """Everything the observer gathered for one request."""

    request: RequestInfo
    match: RouteMatch
    start_time: float  # epoch seconds
    duration_ms: float
    status: int | None = None
    streamed: bool = False
    body: Any = None  # parsed JSON response body, if any
    request_body: Mapping[str, Any] | None = None
    extraction: Extraction | None = None
    identity: Identity = field(default_factory=Identity)
    cancelled: bool = False
    exception: BaseException | None = None
    failure: str | None = None  # the first extraction problem, reported in metadata


def run_extractors(
    extractors: Iterable[Extractor],
    data: ResponseData,
    stats: failsafe.FailureStats | None,
    note: Callable[[str, str], None],
) -> Extraction | None:
    """The first extractor's answer; one that raises or answers nonsense is counted and the
    next one gets its turn."""
    for extractor in extractors:
        try:
            result = extractor(data)
        except Exception as exc:
            failsafe.internal_error(failsafe.EXTRACTOR_ERROR, exc, stats)
            continue
        if result is SKIP:
            continue
        if isinstance(result, Extraction):
            return result
        note(failsafe.EXTRACTOR_ERROR, f"{extractor!r} returned {type(result).__name__}")
    return None


def message_count(body: Mapping[str, Any] | None) -> int | None:
    if body is None:
        return None
    for key in ("messages", "input"):
        value = body.get(key)
        if isinstance(value, list):
            return len(value)
    return None


def _outcome(seen: Seen, found: Extraction) -> dict[str, Any]:
    outcome: dict[str, Any]
    if seen.cancelled:
        outcome = {"status": "cancelled"}
    elif seen.exception is not None:
        outcome = {"status": "error", "error_type": type(seen.exception).__name__}
    elif seen.status is not None and seen.status >= 400:
        error_type = error_type_of(seen.body) or found.error_type or f"http_{seen.status}"
        outcome = {"status": "error", "error_type": error_type}
    elif found.status is not None:
        outcome = {"status": found.status}
        if found.error_type is not None:
            outcome["error_type"] = found.error_type
    else:
        outcome = {"status": "success"}
    if seen.status is not None:
        outcome["http_status"] = seen.status
    return outcome


def build_event(seen: Seen, default_session_type: str | None) -> dict[str, Any]:
    found = seen.extraction or Extraction()
    overrides = seen.request.overrides
    body = seen.request_body
    usage: dict[str, Any] = dict(found.usage) if found.usage else {}
    model = found.model
    if model is None and body is not None and isinstance(body.get("model"), str):
        model = body["model"]
    usage["model"] = model
    has_counts = any(usage.get(key) is not None for key in TOKEN_KEYS)
    usage["source"] = "reported" if has_counts else "missing"

    metadata: dict[str, Any] = {}
    if overrides is not None and overrides.metadata:
        metadata.update(overrides.metadata)
    if seen.identity.metadata:
        metadata.update(seen.identity.metadata)
    metadata.update(found.metadata)
    session_id = found.session_id
    if session_id is None:
        session_id = generated_session_id()
        metadata["scr_session_id_generated"] = True
    if seen.failure is not None:
        metadata["scr_extraction_error"] = seen.failure

    session_type = (
        (overrides.session_type if overrides is not None else None)
        or found.session_type
        or seen.match.session_type
        or default_session_type
    )
    request = seen.request
    event: dict[str, Any] = {
        "session_id": session_id,
        "session_type": session_type,
        "user_id": seen.identity.user_id,
        "organization_id": seen.identity.organization_id,
        "start_time": seen.start_time,
        "end_time": seen.start_time + seen.duration_ms / 1000.0,
        "duration_ms": seen.duration_ms,
        "usage": usage,
        "outcome": _outcome(seen, found),
        "transport": "sse" if seen.streamed else "http",
        "request": {"method": request.method, "route": request.route, "path": request.path},
        "metadata": metadata,
    }
    count = message_count(body)
    if count is not None:
        event["message_count"] = count
    return event
