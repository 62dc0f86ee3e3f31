"""``ensure_stream_usage``: drop the usage event the middleware asked for, and nothing else.

The request was rewritten to add ``stream_options.include_usage``, so the upstream sends one
extra final chunk (``choices: []`` plus ``usage``) and a ``"usage": null`` field in every other
chunk. The client did not ask for either, so it must not see them: the stripper drops that
chunk, removes that field, and forwards every other byte as it came. To recognise that event it
works at block granularity, so the bytes of an unfinished event wait for the rest of that event
(never a whole response); everything else is forwarded as soon as its block is complete.
"""

from __future__ import annotations

import re
from typing import Any, Final

from .sse import SSEEvent, SSEParser
from .stream import DONE, StreamSummary

# OpenAI adds "usage": null to every other chunk once usage is requested; the client did not
# ask, so that field goes too. A quote cannot appear unescaped inside a JSON string, so these
# patterns only ever match a real key.
_NULL_USAGE_AFTER: Final = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])')
_NULL_USAGE_BEFORE: Final = re.compile(rb'"usage"\s*:\s*null\s*,\s*')


def without_null_usage(raw: bytes) -> bytes:
    stripped, count = _NULL_USAGE_AFTER.subn(b"", raw, count=1)
    if count:
        return stripped
    return _NULL_USAGE_BEFORE.sub(b"", raw, count=1)


def is_usage_chunk(payload: dict[str, Any] | None) -> bool:
    return (
        payload is not None
        and payload.get("choices") == []
        and isinstance(payload.get("usage"), dict)
    )


class UsageStripper:
    __slots__ = ("_after_stripped", "_stripped", "parser", "truncated")

    def __init__(self, max_line_bytes: int) -> None:
        self.parser = SSEParser(max_line_bytes=max_line_bytes, keep_raw=True)
        self._stripped = False
        self._after_stripped = False  # the next CRLF half still belongs to the dropped block
        self.truncated = False  # the stream's last event was cut off

    def feed(self, chunk: bytes, summary: StreamSummary, *, last: bool) -> bytes:
        out: list[bytes] = []
        self._process(self.parser.feed(chunk), summary, out, final=False)
        if last:
            self._process(self.parser.close(), summary, out, final=True)
            out.append(self.parser.pending_raw())
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _process(
        self, blocks: list[SSEEvent], summary: StreamSummary, out: list[bytes], *, final: bool
    ) -> None:
        for block in blocks:
            if block.continuation:
                if not self._after_stripped:
                    out.append(block.raw)
                self._after_stripped = False
                continue
            self._after_stripped = False
            payload = summary.add(block)
            if final and payload is None and block.data not in (None, DONE):
                self.truncated = True
            if not self._stripped and is_usage_chunk(payload):
                self._stripped = True
                self._after_stripped = True
                continue
            if payload is not None and "usage" in payload and payload["usage"] is None:
                out.append(without_null_usage(block.raw))
            else:
                out.append(block.raw)

    def release(self) -> bytes:
        """Hand back whatever is held (on an internal error, or at the end)."""
        return self.parser.pending_raw()
