"""A cheap filter in front of the SSE parser: parse only the events extraction reads.

Parsing every event of a stream (framing plus one ``orjson.loads`` each) costs microseconds per
chunk, and even one ``bytes.find`` for a marker costs a few hundred nanoseconds per chunk. The
built-in extractors only read events at the two ends of a stream: the first one (id, model,
``message_start``, ``response.created``) and the last ones (the usage chunk before ``[DONE]``,
the last chunk's model, ``message_delta`` before ``message_stop``, ``response.completed``, a
final ``error``). So once ``FIRST_EVENTS`` data events were parsed and the parser is between
blocks, a chunk is only appended to a list. Every ``TRIM_BYTES`` the held bytes are cut back
to the last ``RING`` blocks (``rfind`` of the blank line, ``\n\n`` or ``\r\n\r\n``, from the
end; any such blank line ends a block, whatever came before); at the end those are parsed. The
parser thus sees whole blocks, in stream order, and its answers about the events it saw stay
exact.

Anything unusual goes to the parser instead: a stream before its first event, more than
``HELD_LIMIT`` bytes held (a huge event, or line ends without blank-line ``\n``: CR alone);
parsing then goes on until the parser is between blocks again. ``full=True`` (a custom
extractor may ask about any event) parses everything.

What is not parsed: events in the middle of a stream. Built-in extraction reads none there; a
mid-stream error followed by more than ``RING`` blocks, or invalid JSON in a skipped event,
goes unnoticed, and ``StreamSummary.events``/``types`` count parsed events only.
"""

from __future__ import annotations

from typing import Final

from .sse import SSEParser
from .stream import StreamSummary

FIRST_EVENTS: Final = 1  # the first chunk (id, model); message_start; response.created
RING: Final = 3  # e.g. the last content chunk, the usage chunk, [DONE]
TRIM_BYTES: Final = 16 * 1024  # bytes held between two cuts
HELD_LIMIT: Final = 64 * 1024  # held bytes that cannot be cut back get parsed


def _cut(data: bytes) -> int:
    """Where the last ``RING`` blocks of ``data`` start (0: keep it all). ``data`` starts at a
    block boundary."""
    for blank in (b"\n\n", b"\r\n\r\n"):
        pos = data.rfind(blank)
        if pos < 0:
            continue
        for _ in range(RING):
            pos = data.rfind(blank, 0, pos)
            if pos < 0:
                return 0
        return pos + len(blank)
    return 0


class StreamScanner:
    """``feed(chunk)`` per decoded chunk, ``finish()`` at the end; ``parser`` and ``summary``
    hold the exact state of the events that were parsed.

    While skimming, ``held`` is the list chunks are held in (None otherwise) and ``room`` the
    bytes that may still be added before ``cut()``: an adapter's per-chunk loop may do what
    ``feed`` does then (append, subtract, ``cut()`` below zero) without calling it."""

    __slots__ = ("_full", "held", "parser", "room", "summary")

    def __init__(self, summary: StreamSummary, max_line_bytes: int, *, full: bool = False) -> None:
        self.summary = summary
        self.parser = SSEParser(max_line_bytes=max_line_bytes)
        self._full = full
        # Skimming (between blocks, the first event parsed): whole blocks, then a block's
        # beginning, unparsed.
        self.held: list[bytes] | None = None
        self.room = TRIM_BYTES

    @property
    def held_bytes(self) -> int:
        return sum(len(piece) for piece in self.held or ())

    def feed(self, chunk: bytes, last: bool = False) -> bytes:
        """Observe ``chunk``; returns it, so that this can be a response body's feed."""
        held = self.held
        if held is not None:
            held.append(chunk)
            self.room -= len(chunk)
            if self.room < 0:
                self.cut()
        elif chunk:
            self._parse(chunk if type(chunk) is bytes else bytes(chunk))
        return chunk

    def cut(self) -> None:
        """Keep the last ``RING`` blocks held and what follows them."""
        data = b"".join(self.held or ())
        start = _cut(data)
        if start:
            data = data[start:]
        self.room = TRIM_BYTES  # (memory stays under HELD_LIMIT + TRIM_BYTES + a chunk)
        if len(data) > HELD_LIMIT:
            self.held = None
            self._parse(data)  # skimming resumes once the parser is between blocks
        else:
            self.held = [data]

    def _parse(self, data: bytes) -> None:
        summary = self.summary
        parser = self.parser
        for event in parser.feed(data):
            summary.add(event)
        if not self._full and summary.events >= FIRST_EVENTS and parser.at_boundary:
            self.held = []
            self.room = TRIM_BYTES

    def finish(self) -> bool:
        """The stream ended: parse the last blocks, complete the last one; False when its data
        was unusable (cut off mid-document)."""
        held = self.held
        if held:
            data = b"".join(held)
            self.held = None
            self._parse(data[_cut(data) :])
        return self.summary.add_final(self.parser.close())
