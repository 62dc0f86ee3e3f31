"""The request body: its pieces kept up to a cap (``keep_piece``), and for
``ensure_stream_usage`` rewritten to ask for the usage chunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def keep_piece(
    parts: list[bytes] | None, size: int, chunk: bytes, cap: int
) -> tuple[list[bytes] | None, int]:
    """Keep one piece of a request body (by reference when it is ``bytes``) while the body
    stays within ``cap`` bytes: returns the pieces and the size so far; past the cap, None and
    -1 (the body is dropped, and stays dropped)."""
    if not chunk or size < 0:
        return parts, size
    size += len(chunk)
    if size > cap:
        return None, -1
    piece = chunk if type(chunk) is bytes else bytes(chunk)  # a bytearray may change
    if parts is None:
        return [piece], size
    parts.append(piece)
    return parts, size


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
