"""A bounded summary of an SSE stream: what extractors need, not the content.

Each parsed event is filed under its type (``data.type``, else ``data.object``, else the SSE
``event:`` name). Per type only the first event, the last event and the last event carrying a
non-null ``usage`` are kept, and at most ``MAX_TYPES`` types, so memory stays flat however long
the stream runs: a 10,000-chunk chat stream keeps three chunks.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from .sse import SSEEvent

MAX_TYPES: Final = 64
DONE: Final = b"[DONE]"


def loads(data: bytes) -> Any:
    """orjson, tolerating invalid UTF-8 (replaced) rather than failing the whole document."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace")
        if text.encode("utf-8") == data:
            raise
        return orjson.loads(text)


def _has_usage(payload: dict[str, Any]) -> bool:
    if payload.get("usage") is not None:
        return True
    for key in ("response", "message"):  # Responses API and Anthropic message_start nest it
        inner = payload.get(key)
        if type(inner) is dict and inner.get("usage") is not None:
            return True
    return False


class StreamSummary:
    __slots__ = ("_first", "_last", "_last_usage", "done", "error", "events", "invalid")

    def __init__(self) -> None:
        self._first: dict[str, dict[str, Any]] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self._last_usage: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.invalid = 0  # data that was neither JSON nor [DONE]
        self.done = False  # saw "data: [DONE]"
        self.error: dict[str, Any] | None = None  # the first error event

    def add(self, event: SSEEvent) -> dict[str, Any] | None:
        """File one event; returns its parsed JSON object (None for [DONE] or non-JSON)."""
        data = event.data
        if data is None:
            return None
        self.events += 1
        if data == DONE:
            self.done = True
            return None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                payload = loads(data)  # invalid UTF-8 inside strings: replaced
            except orjson.JSONDecodeError:
                self.invalid += 1
                return None
        if type(payload) is not dict:
            self.invalid += 1
            return None
        kind = payload.get("type")
        if type(kind) is not str:
            kind = payload.get("object")
            if type(kind) is not str:
                kind = event.event
        if self.error is None and (
            kind == "error"
            or event.event == "error"
            or (payload.get("error") is not None and "type" not in payload)
        ):
            self.error = payload
        if kind not in self._first:
            if len(self._first) >= MAX_TYPES:
                return payload
            self._first[kind] = payload
        self._last[kind] = payload
        if _has_usage(payload):
            self._last_usage[kind] = payload
        return payload

    def add_final(self, events: list[SSEEvent]) -> bool:
        """File the events ``SSEParser.close()`` completed; False if one of them was unusable
        (its data cut off mid-document): the stream was truncated."""
        usable = True
        for event in events:
            if event.data is None:
                continue
            payload = self.add(event)
            if payload is None and event.data != DONE:
                usable = False
        return usable

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._first)

    def first(self, *kinds: str) -> dict[str, Any] | None:
        """The first event of the first listed type that occurred."""
        for kind in kinds:
            found = self._first.get(kind)
            if found is not None:
                return found
        return None

    def last(self, *kinds: str) -> dict[str, Any] | None:
        for kind in kinds:
            found = self._last.get(kind)
            if found is not None:
                return found
        return None

    def last_with_usage(self, *kinds: str) -> dict[str, Any] | None:
        for kind in kinds:
            found = self._last_usage.get(kind)
            if found is not None:
                return found
        return None
