"""The response body, as far as extraction needs it.

A JSON body is kept (references to the chunks, no copies) up to ``max_body_bytes`` and parsed
once at the end; a stream goes through a ``StreamScanner`` into a bounded ``StreamSummary`` and
is never stored. ``feed`` is picked once per response (plain, decoded, stripping), so a chunk
costs one call. Expected problems are reported through ``note(reason, detail)``; the observer
turns unexpected exceptions into counted internal errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from . import failsafe
from .decoding import BodyDecoder, DecodedTooLarge, DecodeError
from .scan import StreamScanner
from .stream import StreamSummary, loads
from .usage_strip import UsageStripper

Note = Callable[[str, str], None]
Feed = Callable[[bytes, bool], bytes]


def _passthrough(chunk: bytes, last: bool = False) -> bytes:
    return chunk


def unusual_json(raw: bytes, content_type: str, note: Note) -> Any:
    """A body ``orjson`` rejected: blank (None), JSON with invalid UTF-8 inside strings
    (replaced, not fatal) or unusable (noted, None)."""
    if not raw.strip():
        return None
    try:
        return loads(raw)
    except ValueError:
        looks_json = "json" in content_type or raw.lstrip()[:1] in (b"{", b"[")
        note(failsafe.INVALID_JSON if looks_json else failsafe.NON_JSON_BODY, "")
        return None


class ResponseBody:
    """``feed(chunk, last)`` observes a chunk and returns what to forward (``chunk`` itself
    unless stripping); ``finish`` ends it. One per observed response, built on the request
    path: the state a JSON body does not use stays on the class."""

    _decoder: BodyDecoder | None = None
    _scanner: StreamScanner | None = None
    _stripper: UsageStripper | None = None
    _on_error: Callable[[Exception], None] | None = None
    _length = 0
    skip = False  # extraction abandoned (the reason was noted)
    summary: StreamSummary | None = None

    def __init__(  # noqa: PLR0917  (once per response: positional is cheaper)
        self,
        content_type: str,
        encoding: str,
        max_bytes: int,
        note: Note,
        streamed: bool = False,
        strip_injected_usage: bool = False,
        full_stream: bool = False,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._content_type = content_type
        self._max_bytes = max_bytes
        self._note = note
        self._parts: list[bytes] = []
        if on_error is not None:
            self._on_error = on_error
        if encoding or streamed:
            self._set_up(encoding, streamed, strip_injected_usage, full_stream)

    def _set_up(
        self, encoding: str, streamed: bool, strip_injected_usage: bool, full_stream: bool
    ) -> None:
        max_bytes = self._max_bytes
        if streamed:
            self.summary = StreamSummary()
        if encoding.strip().lower() not in ("identity", ""):
            try:
                self._decoder = BodyDecoder(encoding, max_bytes)
            except DecodeError as exc:
                self._abandon(failsafe.UNSUPPORTED_ENCODING, str(exc))
                return
        if self.summary is not None:
            if strip_injected_usage and self._decoder is None:
                self._stripper = UsageStripper(max_bytes)
                self.feed = self._feed_strip
                return
            self._scanner = StreamScanner(self.summary, max_bytes, full=full_stream)
        if self._decoder is not None:
            self.feed = self._feed_decoded
        elif self._scanner is not None:
            self.feed = self._scanner.feed

    def holder(self) -> StreamScanner | None:
        """The scanner of a plain stream (neither decoded nor stripped): see
        ``observer.Holder``."""
        if self._decoder is None and self._stripper is None and not self.skip:
            return self._scanner
        return None

    @property
    def stripping(self) -> bool:
        return self._stripper is not None

    def stop_stripping(self) -> None:
        self._stripper = None
        self.skip = True
        self.feed = _passthrough

    # -- feeds ---------------------------------------------------------------------------

    def _feed_json(self, chunk: bytes, last: bool = False) -> bytes:
        if chunk:
            self._length += len(chunk)
            if self._length > self._max_bytes:
                if not self.skip:  # (an adapter may keep calling this feed)
                    self._abandon(failsafe.BODY_TOO_LARGE)
            else:
                self._parts.append(chunk if type(chunk) is bytes else bytes(chunk))
        return chunk

    # A plain JSON body's feed; the other kinds of body replace it on the instance.
    feed: Callable[..., bytes] = _feed_json

    def _feed_decoded(self, chunk: bytes, last: bool = False) -> bytes:
        if not chunk or self.skip:  # (an adapter may keep calling this feed)
            return chunk
        try:
            data = self._decoder.decode(chunk)  # type: ignore[union-attr]
        except DecodedTooLarge:
            self._abandon(failsafe.BODY_TOO_LARGE)
            return chunk
        except DecodeError as exc:
            self._abandon(failsafe.DECODE_ERROR, str(exc))
            return chunk
        if not data:
            return chunk
        if self._scanner is not None:
            self._scanner.feed(data)
            return chunk
        self._length += len(data)
        if self._length > self._max_bytes:
            self._abandon(failsafe.BODY_TOO_LARGE)
        else:
            self._parts.append(data)
        return chunk

    def _feed_strip(self, chunk: bytes, last: bool = False) -> bytes:
        stripper = self._stripper
        assert stripper is not None
        assert self.summary is not None
        held = stripper.parser.held()
        try:
            return stripper.feed(chunk, self.summary, last=last)
        except Exception as exc:
            # Forward exactly what was held plus this chunk, and stop observing.
            self.stop_stripping()
            if self._on_error is None:
                raise
            self._on_error(exc)
            return b"".join(held) + chunk if held else chunk

    def too_large(self) -> None:
        """The body went on past ``max_bytes`` unseen (a replay): abandon it, counted."""
        if not self.skip:
            self._abandon(failsafe.BODY_TOO_LARGE)

    def _abandon(self, reason: str, detail: str = "") -> None:
        self.skip = True
        self._parts.clear()
        self._scanner = None
        self.feed = _passthrough
        self._note(reason, detail)

    # -- end -----------------------------------------------------------------------------

    def finish(self, *, cut_short: bool) -> Any:
        """The parsed JSON body (None for streams, empty or unusable bodies). ``cut_short``:
        the client left or the app raised, so an unfinished stream is not a failure."""
        if self.skip:
            return None
        decoder = self._decoder
        if not cut_short and decoder is not None and not decoder.finished_cleanly():
            # A gzip/deflate body that stops mid-stream: say so, then extract what arrived.
            self._note(failsafe.DECODE_ERROR, "compressed body ended before its end marker")
        if self.summary is not None:
            self._finish_stream(self.summary, cut_short)
            return None
        parts = self._parts
        if not parts:
            return None
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return unusual_json(raw, self._content_type, self._note)

    def _finish_stream(self, summary: StreamSummary, cut_short: bool) -> None:
        if self._stripper is not None:
            self._stripper.release()  # bytes still held were never due: the app stopped
            truncated = self._stripper.truncated or self._stripper.parser.overflowed
        elif self._scanner is not None:
            complete = self._scanner.finish()
            truncated = self._scanner.parser.overflowed or not complete
        else:
            return
        if cut_short:
            return
        if truncated:
            self._note(failsafe.TRUNCATED_SSE, "")
        elif summary.invalid:
            self._note(failsafe.INVALID_JSON, "")
