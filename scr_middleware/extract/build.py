"""Assemble the ``session.completed`` event from what the observer saw (pure functions).

The event is built directly in its canonical form (``events.py`` field names; ``start_time`` and
``end_time`` as epoch seconds, which ``normalize_event`` accepts and the router formats), so
``capture()`` has nothing to rename or parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..events import unique_id
from . import failsafe
from .extractors import SKIP, Extraction, Extractor, ResponseData, error_type_of
from .extractors.openai import openai_usage
from .identity import Identity
from .request import RequestInfo
from .stream import StreamSummary

TOKEN_KEYS: Final = ("input_tokens", "output_tokens", "total_tokens")
_NO_EXTRACTION: Final = Extraction()


def generated_session_id() -> str:
    """For responses without an id (errors, embeddings): ``scr_`` + a unique id."""
    return unique_id("scr_")


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


def _outcome(
    status: int | None,
    response_body: Any,
    found: Extraction,
    cancelled: bool,
    exception: BaseException | None,
) -> dict[str, Any]:
    outcome: dict[str, Any]
    if cancelled:
        outcome = {"status": "cancelled"}
    elif exception is not None:
        outcome = {"status": "error", "error_type": type(exception).__name__}
    elif status is not None and status >= 400:
        error_type = error_type_of(response_body) or found.error_type or f"http_{status}"
        outcome = {"status": "error", "error_type": error_type}
    elif found.status is not None:
        outcome = {"status": found.status}
        if found.error_type is not None:
            outcome["error_type"] = found.error_type
    else:
        outcome = {"status": "success"}
    if status is not None:
        outcome["http_status"] = status
    return outcome


def build_event(  # noqa: PLR0917  (once per event: positional is cheaper)
    request: RequestInfo,
    session_types: tuple[str | None, str | None],
    start_time: float,
    duration_ms: float,
    status: int | None,
    streamed: bool,
    request_body: Mapping[str, Any] | None,
    response_body: Any,
    extraction: Extraction | None,
    identity: Identity,
    failure: str | None,
    cancelled: bool = False,
    exception: BaseException | None = None,
) -> dict[str, Any]:
    """``session_types``: the route's (from the matched suffix) and the configured default."""
    found = extraction or _NO_EXTRACTION
    overrides = request.overrides
    usage: dict[str, Any] = dict(found.usage) if found.usage else {}
    model = found.model
    if model is None and request_body is not None:
        requested = request_body.get("model")
        if isinstance(requested, str):
            model = requested
    usage["model"] = model
    reported = (
        usage.get("input_tokens") is not None
        or usage.get("output_tokens") is not None
        or usage.get("total_tokens") is not None
    )
    usage["source"] = "reported" if reported else "missing"

    user_id, organization_id, identity_metadata = identity
    metadata: dict[str, Any] = {}
    if overrides is not None and overrides.metadata:
        metadata.update(overrides.metadata)
    if identity_metadata:
        metadata.update(identity_metadata)
    if found.metadata:
        metadata.update(found.metadata)
    session_id = found.session_id
    if session_id is None:
        session_id = generated_session_id()
        metadata["scr_session_id_generated"] = True
    if failure is not None:
        metadata["scr_extraction_error"] = failure

    session_type = (
        (overrides.session_type if overrides is not None else None)
        or found.session_type
        or session_types[0]
        or session_types[1]
    )
    event: dict[str, Any] = {
        "session_id": session_id,
        "session_type": session_type,
        "user_id": user_id,
        "organization_id": organization_id,
        "start_time": start_time,
        "end_time": start_time + duration_ms / 1000.0,
        "duration_ms": duration_ms,
        "usage": usage,
        "outcome": _outcome(status, response_body, found, cancelled, exception),
        "transport": "sse" if streamed else "http",
        "request": {"method": request.method, "route": request.route, "path": request.path},
        "metadata": metadata,
    }
    count = message_count(request_body)
    if count is not None:
        event["message_count"] = count
    return event


def chat_completion_event(  # noqa: PLR0917  (the hot path: positional is cheaper)
    request: RequestInfo,
    start_time: float,
    duration_ms: float,
    status: int,
    request_body: Mapping[str, Any] | None,
    body: dict[str, Any],
    identity: Identity,
    failure: str | None,
) -> dict[str, Any]:
    """``build_event`` of what the default extractor chain finds in a JSON ``chat.completion``
    body, in one pass, for the common case only: no route overrides, status below 400, not
    cancelled, no exception. The most frequent event is built without the general machinery
    (``Extraction``, five extractors, the outcome rules); tests pin that both agree."""
    return chat_event(
        request,
        start_time,
        duration_ms,
        status,
        request_body,
        body.get("id"),
        body.get("model"),
        body.get("usage"),
        identity,
        failure,
        "http",
    )


def chat_stream_event(  # noqa: PLR0917  (once per stream: positional is cheaper)
    request: RequestInfo,
    start_time: float,
    duration_ms: float,
    status: int,
    request_body: Mapping[str, Any] | None,
    stream: StreamSummary,
    first: dict[str, Any],
    identity: Identity,
    failure: str | None,
) -> dict[str, Any]:
    """``chat_completion_event`` of a streamed chat completion: what ``choices_stream`` and
    ``build_event`` make of a stream whose ``first`` ``chat.completion.chunk`` was seen and
    that had no error event, under the same conditions."""
    last = stream.last("chat.completion.chunk") or first
    session_id = first.get("id")
    if type(session_id) is not str or not session_id:
        session_id = last.get("id")
    model = last.get("model")
    if type(model) is not str or not model:
        model = first.get("model")
    with_usage = stream.last_with_usage("chat.completion.chunk")
    return chat_event(
        request,
        start_time,
        duration_ms,
        status,
        request_body,
        session_id,
        model,
        with_usage.get("usage") if with_usage else None,
        identity,
        failure,
        "sse",
    )


def chat_event(  # noqa: PLR0917  (the hot path: positional is cheaper)
    request: RequestInfo,
    start_time: float,
    duration_ms: float,
    status: int,
    request_body: Mapping[str, Any] | None,
    session_id: Any,
    model: Any,
    usage_found: Any,
    identity: Identity,
    failure: str | None,
    transport: str,
) -> dict[str, Any]:
    """The one-pass event of a successful chat completion, from the response's ``id``,
    ``model`` and ``usage`` as they came (anything but a non-empty string is no id / model)."""
    usage: dict[str, Any] = openai_usage(usage_found) or {}
    if type(model) is not str or not model:
        model = None
        if request_body is not None:
            requested = request_body.get("model")
            if isinstance(requested, str):
                model = requested
    usage["model"] = model
    usage["source"] = (
        "reported"
        if "input_tokens" in usage or "output_tokens" in usage or "total_tokens" in usage
        else "missing"
    )
    user_id, organization_id, identity_metadata = identity
    metadata: dict[str, Any] = dict(identity_metadata) if identity_metadata else {}
    if type(session_id) is not str or not session_id:
        session_id = generated_session_id()
        metadata["scr_session_id_generated"] = True
    if failure is not None:
        metadata["scr_extraction_error"] = failure
    event: dict[str, Any] = {
        "session_id": session_id,
        "session_type": "chat",
        "user_id": user_id,
        "organization_id": organization_id,
        "start_time": start_time,
        "end_time": start_time + duration_ms / 1000.0,
        "duration_ms": duration_ms,
        "usage": usage,
        "outcome": {"status": "success", "http_status": status},
        "transport": transport,
        "request": {"method": request.method, "route": request.route, "path": request.path},
        "metadata": metadata,
    }
    if request_body is not None:
        # message_count(), inline: the first of messages/input that is a list
        messages = request_body.get("messages")
        if type(messages) is list:
            event["message_count"] = len(messages)
        else:
            count = message_count(request_body)
            if count is not None:
                event["message_count"] = count
    return event
