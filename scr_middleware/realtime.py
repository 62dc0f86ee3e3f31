"""Realtime API sessions (voice or multimodal): the seed's ``captureRealtimeSessionCompletion``.

``capture_realtime_session_completion(...)`` is the one-call form for code that already knows
the totals. ``RealtimeSessionTracker`` is for a server-side WebSocket proxy: feed it every
server event from the Realtime API; it sums ``response.done`` usage exactly and captures once
on ``close()``. Both return the runtime's receipt: not awaiting it costs nothing, awaiting it
waits for delivery exactly like ``await scr.capture(...)``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

from .extract import failsafe
from .observability.logs import get_logger, log_once
from .router.receipt import Receipt
from .runtime import SessionCompletionRuntime, get_runtime

__all__ = ["RealtimeSessionTracker", "capture_realtime_session_completion"]

logger = get_logger("realtime")

TimeValue = datetime | int | float | str | None

# response.done usage detail names -> canonical detail fields (the rest go to metadata).
_INPUT_DETAILS = {"cached_tokens": "cached_input_tokens", "audio_tokens": "audio_input_tokens"}
_OUTPUT_DETAILS = {"audio_tokens": "audio_output_tokens"}


def _outcome(outcome: str | Mapping[str, Any]) -> str | dict[str, Any]:
    return outcome if isinstance(outcome, str) else dict(outcome)


def _build_event(
    *,
    session_id: str,
    user_id: str | None,
    organization_id: str | None,
    start_time: TimeValue,
    end_time: TimeValue,
    usage: dict[str, Any],
    outcome: str | Mapping[str, Any],
    input_modality: str | None,
    transport: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "session.completed",
        "session_id": session_id,
        "session_type": "realtime",
        "user_id": user_id,
        "organization_id": organization_id,
        "usage": usage,
        "outcome": _outcome(outcome),
        "metadata": metadata,
    }
    # Datetimes, epoch seconds or ms and RFC 3339 strings are all accepted by the event model,
    # which derives duration_ms from the pair on the router thread.
    if start_time is not None:
        event["start_time"] = start_time
    if end_time is not None:
        event["end_time"] = end_time
    if input_modality is not None:
        event["input_modality"] = input_modality
    if transport is not None:
        event["transport"] = transport
    return event


def capture_realtime_session_completion(
    *,
    session_id: str,
    user_id: str | None = None,
    organization_id: str | None = None,
    start_time: TimeValue = None,
    end_time: TimeValue = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    model: str | None = None,
    outcome: str | Mapping[str, Any] = "success",
    input_modality: str | None = None,
    transport: str | None = None,
    runtime: SessionCompletionRuntime | None = None,
    **extra: Any,
) -> Receipt:
    """Capture a Realtime session (``session_type`` "realtime"); returns at once.

    ``start_time``/``end_time``: datetime, epoch seconds or milliseconds, or RFC 3339.
    Extra keyword arguments go into ``metadata`` (merged with an explicit ``metadata=``).
    Raises ``InvalidEventError`` for invalid values, like ``capture()``.
    """
    metadata = dict(extra.pop("metadata", None) or {})
    metadata.update(extra)
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "model": model,
    }
    event = _build_event(
        session_id=session_id,
        user_id=user_id,
        organization_id=organization_id,
        start_time=start_time,
        end_time=end_time,
        usage=usage,
        outcome=outcome,
        input_modality=input_modality,
        transport=transport,
        metadata=metadata,
    )
    return (runtime if runtime is not None else get_runtime()).capture(event)


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


class RealtimeSessionTracker:
    """Sums a Realtime session's usage from its server events; ``close()`` captures once.

    Feed every server event (``feed(event)``: a dict, or the raw JSON text/bytes frame).
    Thread-safe, and never raises from ``feed``: a proxy must keep relaying whatever happens.
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        user_id: str | None = None,
        organization_id: str | None = None,
        model: str | None = None,
        input_modality: str | None = None,
        transport: str | None = "websocket",
        runtime: SessionCompletionRuntime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.organization_id = organization_id
        self.model = model
        self.input_modality = input_modality
        self.transport = transport
        self.metadata = dict(metadata or {})
        self.start_time = datetime.now(UTC)
        self.receipt: Receipt | None = None
        self._runtime = runtime
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._text: dict[str, int] = {}
        self._responses = 0
        self._responses_with_usage = 0
        self._statuses: dict[str, int] = {}
        self._last_error: str | None = None
        self._closed = False

    # --- feeding ------------------------------------------------------------------------
    def feed(self, event: Mapping[str, Any] | str | bytes) -> None:
        """Account one server event; unknown types are ignored."""
        try:
            parsed = orjson.loads(event) if isinstance(event, str | bytes) else event
            if isinstance(parsed, Mapping):
                self._handle(parsed)
        except orjson.JSONDecodeError:
            log_once(logger, "realtime:json", logging.WARNING, "ignored a non-JSON Realtime frame")
        except Exception as exc:
            if failsafe.RAISE_INTERNAL_ERRORS:  # the test suite: bugs must fail tests
                raise
            log_once(
                logger,
                "realtime:feed",
                logging.WARNING,
                "could not account a Realtime event; the session is unaffected",
                error=repr(exc),
            )

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("session.created", "session.updated"):
            session = event.get("session")
            if isinstance(session, Mapping):
                with self._lock:
                    if self.session_id is None and isinstance(session.get("id"), str):
                        self.session_id = session["id"]
                    if isinstance(session.get("model"), str):
                        self.model = session["model"]
        elif kind == "response.done":
            response = event.get("response")
            if isinstance(response, Mapping):
                self._response_done(response)
        elif kind == "error":
            error = event.get("error")
            if isinstance(error, Mapping):
                with self._lock:
                    self._last_error = str(error.get("type") or error.get("code") or "error")

    def _response_done(self, response: Mapping[str, Any]) -> None:
        usage = response.get("usage")
        status = response.get("status")
        with self._lock:
            self._responses += 1
            if isinstance(status, str):
                self._statuses[status] = self._statuses.get(status, 0) + 1
            if not isinstance(usage, Mapping):
                return
            self._responses_with_usage += 1
            totals = self._totals
            tokens_in = _count(usage.get("input_tokens"))
            tokens_out = _count(usage.get("output_tokens"))
            total = usage.get("total_tokens")
            totals["input_tokens"] = totals.get("input_tokens", 0) + tokens_in
            totals["output_tokens"] = totals.get("output_tokens", 0) + tokens_out
            reported_total = _count(total) if type(total) is int else tokens_in + tokens_out
            totals["total_tokens"] = totals.get("total_tokens", 0) + reported_total
            for container, names, text_key in (
                ("input_token_details", _INPUT_DETAILS, "input_text_tokens"),
                ("output_token_details", _OUTPUT_DETAILS, "output_text_tokens"),
            ):
                details = usage.get(container)
                if not isinstance(details, Mapping):
                    continue
                for name, target in names.items():
                    totals[target] = totals.get(target, 0) + _count(details.get(name))
                self._text[text_key] = self._text.get(text_key, 0) + _count(
                    details.get("text_tokens")
                )

    # --- results ----------------------------------------------------------------------------
    @property
    def usage(self) -> dict[str, int]:
        """The summed usage so far (canonical names)."""
        with self._lock:
            return dict(self._totals)

    @property
    def responses(self) -> int:
        return self._responses

    @property
    def closed(self) -> bool:
        return self._closed

    def _modality(self) -> str | None:
        # Instructions count as input text in every session, so any audio input makes it an
        # audio session (the guide's inputModality: "audio").
        if self.input_modality is not None:
            return self.input_modality
        if self._totals.get("audio_input_tokens", 0):
            return "audio"
        return "text" if self._text.get("input_text_tokens", 0) else None

    def _default_outcome(self) -> str | dict[str, Any]:
        if self._last_error is not None:
            return {"status": "error", "error_type": self._last_error}
        return "success"

    def close(
        self, outcome: str | Mapping[str, Any] | None = None, *, error_type: str | None = None
    ) -> Receipt | None:
        """Capture the session once; later calls return the first receipt.

        ``outcome`` defaults to "success", or "error" when the server sent an ``error`` event.
        Returns None only if the session id was never known (no ``session.created`` seen and
        none given), which is logged.
        """
        with self._lock:
            if self._closed:
                return self.receipt
            self._closed = True
            chosen = self._default_outcome() if outcome is None else _outcome(outcome)
            if error_type is not None:
                chosen = {"status": chosen} if isinstance(chosen, str) else dict(chosen)
                if chosen.get("status", "success") == "success":
                    chosen["status"] = "error"
                chosen["error_type"] = error_type
            event = self._event(chosen)
        if event is None:
            log_once(
                logger,
                "realtime:no-session-id",
                logging.WARNING,
                "Realtime session closed before its id was known; nothing captured",
            )
            return None
        self.receipt = (self._runtime if self._runtime is not None else get_runtime()).capture(
            event
        )
        return self.receipt

    def _event(self, outcome: str | dict[str, Any]) -> dict[str, Any] | None:
        """Called with the lock held."""
        if not self.session_id:
            return None
        reporting = self._responses_with_usage
        if reporting == 0:
            usage: dict[str, Any] = {"model": self.model, "source": "missing"}
        else:
            usage = {
                **self._totals,
                "model": self.model,
                "source": "reported" if reporting == self._responses else "estimated",
            }
        realtime: dict[str, Any] = {"responses": self._responses, **self._text}
        if self._statuses:
            realtime["response_statuses"] = dict(self._statuses)
        return _build_event(
            session_id=self.session_id,
            user_id=self.user_id,
            organization_id=self.organization_id,
            start_time=self.start_time,
            end_time=datetime.now(UTC),
            usage=usage,
            outcome=outcome,
            input_modality=self._modality(),
            transport=self.transport,
            metadata={**self.metadata, "realtime": realtime},
        )

    # --- context manager: capture even when the proxy loop fails ---------------------------
    def __enter__(self) -> RealtimeSessionTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.close()
            elif issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt):
                self.close("cancelled")
            else:
                self.close("error", error_type=exc_type.__name__)
        except Exception as error:
            log_once(
                logger,
                "realtime:close",
                logging.WARNING,
                "capturing the Realtime session failed",
                error=repr(error),
            )

    def __repr__(self) -> str:
        return f"<RealtimeSessionTracker {self.session_id} responses={self._responses}>"
