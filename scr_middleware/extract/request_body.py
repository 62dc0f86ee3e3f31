"""The request body, as far as extraction needs it: a capped copy, parsed once, and the
``ensure_stream_usage`` rewrite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .stream import loads


class RequestBody:
    """Copies chunks up to ``cap`` bytes; past the cap the body is dropped (identity and
    ``message_count`` then go without it) rather than held."""

    __slots__ = ("_cap", "_length", "_parsed", "_parts")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._parts: list[bytes] = []
        self._length = 0  # -1: over the cap
        self._parsed: Mapping[str, Any] | bool | None = False  # False: not parsed yet

    def add(self, chunk: bytes) -> None:
        if not chunk or self._length < 0 or self._parsed is not False:
            return
        self._length += len(chunk)
        if self._length > self._cap:
            self._length = -1
            self._parts.clear()
            return
        self._parts.append(bytes(chunk))  # bytes(): a bytearray could change under us

    def parsed(self) -> Mapping[str, Any] | None:
        """The JSON object, or None (empty, over the cap, not JSON, not an object)."""
        parsed = self._parsed
        if parsed is False:
            parsed = None
            if self._parts:
                try:
                    value = loads(b"".join(self._parts))
                except ValueError:
                    value = None
                parsed = value if isinstance(value, dict) else None
            self._parts.clear()
            self._parsed = parsed
        return parsed if isinstance(parsed, Mapping) else None


def with_stream_usage(body: Mapping[str, Any] | None) -> bytes | None:
    """``body`` re-serialised with ``stream_options.include_usage: true`` when it is a streamed
    request that does not already ask for usage; else None (nothing to rewrite)."""
    if body is None or body.get("stream") is not True:
        return None
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, Mapping) else {}
    if options.get("include_usage") is True:
        return None
    options["include_usage"] = True
    return orjson.dumps({**body, "stream_options": options})
