"""Incremental Server-Sent Events parser (WHATWG rules), fed arbitrary byte chunks.

Events may be split anywhere across chunks, including between the CR and LF of a CRLF. Lines
end in CRLF, LF or CR; ``data:`` lines accumulate with "\\n"; comment lines (``:``) and empty
keep-alive blocks dispatch nothing. Data stays ``bytes`` (orjson parses bytes directly; invalid
UTF-8 is the JSON layer's problem, not the framing's).

With ``keep_raw`` each returned event carries the exact bytes of its block, and blocks that
dispatch nothing are returned too (``data is None``): ``ensure_stream_usage`` needs that to
forward every byte except one event's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_EOL: Final = re.compile(rb"\r\n|\r|\n")
_BOM: Final = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SSEEvent:
    event: str  # the ``event:`` field, "" when absent
    data: bytes | None  # None only for non-dispatching blocks in keep_raw mode
    id: str | None = None
    raw: bytes = b""  # the block's exact bytes, in keep_raw mode only
    # keep_raw: an LF that completed a CRLF split across chunks, after its block was returned
    continuation: bool = False


class SSEParser:
    """``feed()`` returns the events completed by each chunk; nothing is ever re-parsed."""

    __slots__ = (
        "_data",
        "_discard",
        "_event",
        "_id",
        "_keep_raw",
        "_max_line",
        "_partial",
        "_partial_len",
        "_raw",
        "_skip_lf",
        "_started",
        "overflowed",
    )

    def __init__(self, *, max_line_bytes: int = 10 * 1024 * 1024, keep_raw: bool = False) -> None:
        self._keep_raw = keep_raw
        self._max_line = max_line_bytes
        self._partial: list[bytes] = []  # the unterminated line, in pieces (no quadratic joins)
        self._partial_len = 0
        self._data: list[bytes] = []
        self._event = ""
        self._id: str | None = None
        self._raw: list[bytes] = []
        self._skip_lf = False  # the previous chunk ended in CR; a leading LF completes a CRLF
        self._started = False
        self._discard = False  # dropping the rest of an over-long line
        self.overflowed = False  # a line exceeded max_line_bytes and was dropped

    @property
    def pending(self) -> bool:
        """True while a block is unfinished (no blank line yet)."""
        return bool(self._partial or self._data or self._event or self._discard)

    @property
    def at_boundary(self) -> bool:
        """Between blocks: nothing pending, and no CR that a leading LF could complete."""
        return not (self._partial or self._data or self._event or self._discard or self._skip_lf)

    def held(self) -> list[bytes]:
        """keep_raw mode: a snapshot of the bytes held for the unfinished block."""
        return list(self._raw)

    def pending_raw(self) -> bytes:
        """keep_raw mode: hand out the bytes held for the unfinished block (its parse state
        stays, so ``close()`` can still complete it)."""
        held = b"".join(self._raw)  # includes the partial line
        self._raw.clear()
        return held

    def close(self) -> list[SSEEvent]:
        """The stream ended: complete the last block as if a blank line followed.

        Browsers drop an unterminated last event; extraction is more useful if it keeps one
        whose data is complete (``data: [DONE]`` without its blank line). The caller decides
        whether a flushed event's data is usable (a truncated JSON document is not).
        """
        out: list[SSEEvent] = []
        if self._discard:
            self._discard = False
        elif self._partial:
            line = b"".join(self._partial)
            self._partial.clear()
            self._partial_len = 0
            self._line(line, out)
        if self._data or self._event:
            self._dispatch(out)
        return out

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if not chunk:
            return out
        if not self._started:
            self._started = True
            if chunk.startswith(_BOM):
                if self._keep_raw:
                    self._raw.append(_BOM)
                chunk = chunk[3:]
        pos = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                pos = 1
                if self._keep_raw:
                    if self._raw:  # the CR ended a line inside the current block
                        self._raw.append(b"\n")
                    else:  # the CR ended a block that was already returned
                        out.append(SSEEvent("", None, None, b"\n", continuation=True))
        if not self._keep_raw and 13 not in chunk:  # LF line ends only: split in C
            self._feed_lf(chunk[pos:] if pos else chunk, out)
            return out
        size = len(chunk)
        while pos < size:
            match = _EOL.search(chunk, pos)
            if match is None:
                self._hold(chunk[pos:])
                break
            end = match.end()
            if end == size and match.group() == b"\r":
                self._skip_lf = True
            line = chunk[pos : match.start()]
            if self._partial:
                line = b"".join(self._partial) + line
                self._partial.clear()
                self._partial_len = 0
            if self._keep_raw:
                self._raw.append(chunk[pos:end])
            if self._discard:
                self._discard = False
            else:
                self._line(line, out)
            pos = end
        return out

    def _feed_lf(self, chunk: bytes, out: list[SSEEvent]) -> None:
        if chunk[-2:] == b"\n\n" and not (
            self._partial or self._data or self._event or self._discard
        ):
            # Whole blocks, from a block boundary: the usual "data: <json>" block is one
            # slice, without the line loop.
            blocks = chunk.split(b"\n\n")
            blocks.pop()  # b"" after the last blank line
            for block in blocks:
                if block[:6] == b"data: " and 10 not in block:
                    out.append(SSEEvent("", block[6:], self._id))
                else:
                    self._feed_lines(block + b"\n\n", out)
            return
        self._feed_lines(chunk, out)

    def _feed_lines(self, chunk: bytes, out: list[SSEEvent]) -> None:
        lines = chunk.split(b"\n")
        rest = lines.pop()  # after the last LF: an unterminated line, or b""
        data = self._data
        for piece in lines:
            line = piece
            if self._partial:
                line = b"".join(self._partial) + piece
                self._partial.clear()
                self._partial_len = 0
            if self._discard:
                self._discard = False
            elif not line:
                self._dispatch(out)
            elif line[:6] == b"data: ":  # the common line, without the general parse
                data.append(line[6:])
            else:
                self._line(line, out)
        if rest:
            self._hold(rest)

    def _hold(self, piece: bytes) -> None:
        if self._keep_raw:
            self._raw.append(piece)
        if self._discard:
            return
        if self._partial_len + len(piece) > self._max_line:
            self.overflowed = True
            self._discard = True
            self._partial.clear()
            self._partial_len = 0
            return
        self._partial.append(piece)
        self._partial_len += len(piece)

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == 58:  # b":" comment / keep-alive
            return
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")

    def _dispatch(self, out: list[SSEEvent]) -> None:
        raw = b""
        if self._keep_raw:
            raw = b"".join(self._raw)
            self._raw.clear()
        if self._data:
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            out.append(SSEEvent(self._event, data, self._id, raw))
        elif self._keep_raw:
            out.append(SSEEvent(self._event, None, None, raw))
        self._data.clear()
        self._event = ""
