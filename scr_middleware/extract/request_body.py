"""``ensure_stream_usage``: the request body rewritten to ask for the usage chunk. (The
observer keeps and parses the request body itself.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


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
