"""The response body, as far as extraction needs it.

A JSON body is decoded and accumulated up to ``max_body_bytes`` and parsed once at the end; a
stream is parsed incrementally into a bounded ``StreamSummary`` and never stored. Expected
problems are reported through ``note(reason, detail)``; the observer turns unexpected
exceptions into counted internal errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import failsafe
from .decoding import BodyDecoder, DecodedTooLarge, DecodeError
from .sse import SSEParser
from .stream import StreamSummary, loads
from .usage_strip import UsageStripper

Note = Callable[[str, str], None]


class ResponseBody:
    __slots__ = (
        "_content_type",
        "_decoder",
        "_length",
        "_max_bytes",
        "_note",
        "_parser",
        "_parts",
        "_stripper",
        "skip",
        "summary",
    )

    def __init__(
        self,
        *,
        content_type: str,
        encoding: str,
        max_bytes: int,
        note: Note,
        strip_injected_usage: bool,
    ) -> None:
        self._content_type = content_type
        self._max_bytes = max_bytes
        self._note = note
        self._decoder: BodyDecoder | None = None
        self._parser: SSEParser | None = None
        self._stripper: UsageStripper | None = None
        self._parts: list[bytes] = []
        self._length = 0
        self.skip = False  # extraction abandoned (the reason was noted)
        self.summary: StreamSummary | None = None
        if content_type.startswith("text/event-stream"):
            self.summary = StreamSummary()
        try:
            self._decoder = BodyDecoder(encoding, max_bytes)
        except DecodeError as exc:
            self._abandon(failsafe.UNSUPPORTED_ENCODING, str(exc))
            return
        if self.summary is not None:
            if strip_injected_usage and self._decoder.passthrough:
                self._stripper = UsageStripper(max_bytes)
            else:
                self._parser = SSEParser(max_line_bytes=max_bytes)

    def held(self) -> list[bytes]:
        """Bytes held back by the usage stripper (none otherwise), for the failure path."""
        return self._stripper.parser.held() if self._stripper is not None else []

    def stop_stripping(self) -> None:
        self._stripper = None
        self.skip = True

    def feed(self, chunk: bytes, *, last: bool) -> bytes:
        """Observe ``chunk``; returns what to forward (``chunk`` itself unless stripping)."""
        if self._stripper is not None and self.summary is not None:
            return self._stripper.feed(chunk, self.summary, last=last)
        if not chunk or self.skip or self._decoder is None:
            return chunk
        try:
            data = self._decoder.decode(chunk)
        except DecodedTooLarge:
            self._abandon(failsafe.BODY_TOO_LARGE)
            return chunk
        except DecodeError as exc:
            self._abandon(failsafe.DECODE_ERROR, str(exc))
            return chunk
        if self.summary is not None and self._parser is not None:
            for event in self._parser.feed(data):
                self.summary.add(event)
            return chunk
        self._length += len(data)
        if self._length > self._max_bytes:
            self._abandon(failsafe.BODY_TOO_LARGE)
        else:
            self._parts.append(data if type(data) is bytes else bytes(data))
        return chunk

    def _abandon(self, reason: str, detail: str = "") -> None:
        self.skip = True
        self._parts.clear()
        self._parser = None
        self._note(reason, detail)

    def finish(self, *, cut_short: bool) -> Any:
        """The parsed JSON body (None for streams, empty or unusable bodies). ``cut_short``:
        the client left or the app raised, so an unfinished stream is not a failure."""
        if self.skip:
            return None
        if not cut_short and self._decoder is not None and not self._decoder.finished_cleanly():
            # A gzip/deflate body that stops mid-stream: say so, then extract what arrived.
            self._note(failsafe.DECODE_ERROR, "compressed body ended before its end marker")
        if self.summary is not None:
            self._finish_stream(self.summary, cut_short)
            return None
        if not self._parts:
            return None
        raw = b"".join(self._parts)
        self._parts.clear()
        if not raw.strip():
            return None
        try:
            return loads(raw)
        except ValueError:
            looks_json = "json" in self._content_type or raw.lstrip()[:1] in (b"{", b"[")
            self._note(failsafe.INVALID_JSON if looks_json else failsafe.NON_JSON_BODY, "")
            return None

    def _finish_stream(self, summary: StreamSummary, cut_short: bool) -> None:
        if self._stripper is not None:
            self._stripper.release()  # bytes still held were never due: the app stopped
            truncated = self._stripper.truncated or self._stripper.parser.overflowed
        elif self._parser is not None:
            complete = summary.add_final(self._parser.close())
            truncated = self._parser.overflowed or not complete
        else:
            return
        if cut_short:
            return
        if truncated:
            self._note(failsafe.TRUNCATED_SSE, "")
        elif summary.invalid:
            self._note(failsafe.INVALID_JSON, "")
