"""What an adapter records of one exchange, and its replay through an ``Observer``.

A record is a flat tuple of builtins (so ``marshal`` can ship it): everything the observer
would have been told, in the order it would have been told, plus the exchange's timings.
Replaying it gives the event the inline path gives, because it *is* the inline path: the
same ``Observer``, fed the same calls, only later and (usually) in the capture process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from scr_middleware.extract import failsafe
from scr_middleware.extract.build import chat_event
from scr_middleware.extract.failsafe import FailureStats
from scr_middleware.extract.observer import (
    Observer,
    parse_request_body,
    plain_encoding,
    response_headers,
)
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.settings import ObserverSettings
from scr_middleware.routes_options import RouteOptions

__all__ = [
    "END_CANCELLED",
    "END_COMPLETE",
    "END_EXCEPTION",
    "END_NO_RESPONSE",
    "Record",
    "replay",
]

# Record fields, by position:
#  0 settings key (``Offloader.register``)   1 sequence number (the event id's suffix)
#  2 method  3 path  4 route template or None  5 request headers: [(name, value)] pairs
#  6 framework user id or None  7 route options: (session_type, extractor, metadata) or None
#  8 request body pieces or None  9 request body length (-1: over its cap, dropped)
# 10 response status or None (no response started)  11 response headers or None
# 12 response body chunks  13 True when chunks were dropped past max_body_bytes
# 14 start (time.time())  15 duration in ms, to the last chunk
# 16 how it ended (END_*)  17 the exception's class name (END_EXCEPTION) or None
Record = tuple[Any, ...]

END_COMPLETE: Final = 0
END_CANCELLED: Final = 1  # the client went away
END_EXCEPTION: Final = 2  # the app raised
END_NO_RESPONSE: Final = 3  # the app returned without starting a response

_NO_BODY_STATUSES: Final = frozenset({204, 205, 304})
_error_types: dict[str, type[Exception]] = {}


def recorded_error(name: str) -> Exception:
    """An exception whose class has the recorded name (the event's ``error_type``)."""
    cls = _error_types.get(name)
    if cls is None:
        cls = _error_types[name] = type(
            name if name.isidentifier() else "Exception", (Exception,), {}
        )
    return cls()


def replay(
    record: Record,
    settings: ObserverSettings,
    emit: Callable[[dict[str, Any]], object],
    emit_built: Callable[[dict[str, Any]], object],
    stats: FailureStats | None,
    *,
    event_id: str | None = None,
) -> None:
    """Tell a new ``Observer`` what the record saw; it emits the event (if one is due)."""
    (
        _key, _seq, method, path, route, headers, user_id, options, body_parts, body_len,
        status, response_headers, chunks, over_cap, start, duration_ms, end, error_name,
    ) = record  # fmt: skip
    match = settings.observes(method, path)
    if match is None:
        return
    request = RequestInfo.from_raw(method, path, headers, user_id)
    request.route = route
    if (
        end == END_COMPLETE
        and options is None
        and chunks
        and not over_cap
        and type(status) is int
        and status < 400
        and status not in _NO_BODY_STATUSES
        and settings.default_extractors
        and _chat_completion(
            request,
            settings,
            stats,
            status,
            response_headers,
            chunks,
            body_parts,
            start,
            duration_ms,
            emit_built,
            event_id,
        )
    ):
        return
    if options is not None:
        session_type, extractor, metadata = options
        request.overrides = RouteOptions(session_type, extractor, metadata)
    if event_id is not None:
        emit = _with_id(emit, event_id)
        emit_built = _with_id(emit_built, event_id)
    observer = Observer(settings, request, emit, stats, match, emit_built=emit_built)
    observer.carry_on(0.0, start, body_parts, body_len, False)
    if status is not None:
        observer.on_response_start(status, response_headers or ())
        last = len(chunks) - 1
        for index, chunk in enumerate(chunks):
            observer.on_chunk(chunk, index == last and end == END_COMPLETE and not over_cap)
        if over_cap:
            observer.body_over_cap()
    if end == END_COMPLETE:
        observer.finish(duration_ms=duration_ms)
    elif end == END_CANCELLED:
        observer.finish(cancelled=True, duration_ms=duration_ms)
    else:
        name = error_name if end == END_EXCEPTION and error_name else "NoResponseSent"
        observer.finish(exception=recorded_error(name), duration_ms=duration_ms)


def _chat_completion(  # noqa: PLR0917
    request: RequestInfo,
    settings: ObserverSettings,
    stats: FailureStats | None,
    status: int,
    headers: Any,
    chunks: list[bytes],
    body_parts: list[bytes] | None,
    start: float,
    duration_ms: float,
    emit_built: Callable[[dict[str, Any]], object],
    event_id: str | None,
) -> bool:
    """The common record, a plain JSON ``chat.completion``, built in one pass (the event the
    observer's fast path builds: the ASGI adapter's ``_finish_fast``); False: not one."""
    content_type, encoding, _ = response_headers(headers or ())
    if content_type.startswith("text/event-stream") or not plain_encoding(encoding):
        return False
    try:
        body = orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except orjson.JSONDecodeError:
        return False
    if type(body) is not dict or body.get("object") != "chat.completion":
        return False
    request_body = parse_request_body(body_parts)
    event = chat_event(
        request, start, duration_ms, status, request_body, body.get("id"), body.get("model"),
        body.get("usage"), settings.identity.resolve(request, request_body, stats), None, "http",
    )  # fmt: skip
    if event["usage"]["source"] == "missing":
        failsafe.record_failure(failsafe.MISSING_USAGE, stats)
    if event_id is not None:
        event["event_id"] = event_id
    try:
        emit_built(event)
    except Exception as exc:
        failsafe.internal_error(failsafe.EMIT_ERROR, exc, stats)
    return True


def _with_id(
    emit: Callable[[dict[str, Any]], object], event_id: str
) -> Callable[[dict[str, Any]], object]:
    def emit_with_id(event: dict[str, Any]) -> object:
        event["event_id"] = event_id
        return emit(event)

    return emit_with_id


def replay_failsafe(
    record: Record,
    settings: ObserverSettings,
    emit: Callable[[dict[str, Any]], object],
    emit_built: Callable[[dict[str, Any]], object],
    stats: FailureStats | None,
    *,
    event_id: str | None = None,
) -> None:
    """``replay``, counting (never raising) what goes wrong."""
    try:
        replay(record, settings, emit, emit_built, stats, event_id=event_id)
    except Exception as exc:
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, stats)
