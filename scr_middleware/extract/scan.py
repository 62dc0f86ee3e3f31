"""A cheap filter in front of the SSE parser: parse only the events extraction reads.

Parsing every event of a stream (framing plus one ``orjson.loads`` each) costs microseconds per
chunk, and even one ``bytes.find`` for a marker costs a few hundred nanoseconds per chunk. The
built-in extractors only read events at the two ends of a stream: the first ones (id, model,
``message_start``, ``response.created``) and the last ones (the usage chunk before ``[DONE]``,
the last chunk's model, ``message_delta`` before ``message_stop``, ``response.completed``, a
final ``error``). So once ``FIRST_EVENTS`` data events were parsed, a chunk that ends on a block
boundary (a blank line: ``\\n\\n`` or ``\\r\\n\\r\\n``, by its last bytes) is only put in a
ring of the latest ``RING`` segments, unparsed; the oldest segment falls out. A chunk that ends
mid-block is cut at its last boundary (one ``rfind``) and the rest waits. The ring is parsed at
the end, so the parser sees whole blocks, in stream order, and its answers about the events it
saw stay exact.

Anything unusual goes to the parser instead: a stream before its first events, a block longer
than ``PENDING_LIMIT`` (parsed until the parser is between blocks again), line ends the tail
check cannot vouch for (CR alone). ``full=True`` (a custom extractor may ask about any event)
parses everything.

What is not parsed: events in the middle of a stream. Built-in extraction reads none there; a
mid-stream error followed by more than ``RING`` segments, or invalid JSON in a skipped event,
goes unnoticed, and ``StreamSummary.events``/``types`` count parsed events only.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from .sse import SSEParser
from .stream import StreamSummary

FIRST_EVENTS: Final = 2  # response.created + response.in_progress; message_start; first chunk
RING: Final = 3  # e.g. the last content chunk, the usage chunk, [DONE]
PENDING_LIMIT: Final = 64 * 1024  # an unfinished block held longer than this gets parsed


class StreamScanner:
    """``feed(chunk)`` per decoded chunk, ``finish()`` at the end; ``parser`` and ``summary``
    hold the exact state of the events that were parsed."""

    __slots__ = ("_full", "_pending", "_pending_len", "_ring", "_skim", "parser", "summary")

    def __init__(self, summary: StreamSummary, max_line_bytes: int, *, full: bool = False) -> None:
        self.summary = summary
        self.parser = SSEParser(max_line_bytes=max_line_bytes)
        self._full = full
        self._skim = False  # at a block boundary with the first events parsed: skim chunks
        self._pending: list[bytes] = []  # skimming: bytes after the last block boundary
        self._pending_len = 0
        self._ring: deque[bytes] = deque(maxlen=RING)  # whole segments, not parsed (yet)

    def feed(self, chunk: bytes, last: bool = False) -> bytes:
        """Observe ``chunk``; returns it, so that this can be a response body's feed."""
        if self._skim and not self._pending:
            tail = chunk[-2:]
            if tail == b"\n\n" or (tail == b"\r\n" and chunk[-4:-2] == b"\r\n"):
                self._ring.append(chunk)
                return chunk
        if chunk:
            self._feed_slow(chunk if type(chunk) is bytes else bytes(chunk))
        return chunk

    def _feed_slow(self, chunk: bytes) -> None:
        if not self._skim:
            self._parse(chunk)
            return
        # Skimming, and this chunk does not end a block: cut at its last boundary, if any.
        pending = self._pending
        end = chunk.rfind(b"\n\n")
        if end >= 0:
            end += 2
        else:
            end = chunk.rfind(b"\r\n\r\n")
            if end >= 0:
                end += 4
            elif pending and chunk[:1] == b"\n" and pending[-1][-1:] == b"\n":
                end = 1  # the blank line spans the two chunks
            elif pending and chunk[:2] == b"\r\n" and pending[-1][-2:] == b"\r\n":
                end = 2
        if end < 0:
            pending.append(chunk)
            self._pending_len += len(chunk)
            if self._pending_len > PENDING_LIMIT:
                self._flush()  # parse it; skimming resumes at the next block boundary
            return
        head = chunk if end == len(chunk) else chunk[:end]
        if pending:
            pending.append(head)
            head = b"".join(pending)
            pending.clear()
        self._ring.append(head)
        if end < len(chunk):
            pending.append(chunk[end:])
            self._pending_len = len(chunk) - end
        else:
            self._pending_len = 0

    def _parse(self, data: bytes) -> None:
        summary = self.summary
        parser = self.parser
        for event in parser.feed(data):
            summary.add(event)
        self._skim = not self._full and summary.events >= FIRST_EVENTS and parser.at_boundary

    def _flush(self) -> None:
        """Parse the ring and what is pending, in stream order."""
        ring = self._ring
        while ring:
            self._parse(ring.popleft())
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
            self._parse(data)

    def finish(self) -> bool:
        """The stream ended: parse what is held, complete the last block; False when that
        block's data was unusable (cut off mid-document)."""
        self._flush()
        return self.summary.add_final(self.parser.close())
