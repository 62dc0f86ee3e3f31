"""Incremental Content-Encoding decoding, for extraction only.

The bytes sent to the client are never touched; this decodes a copy so extractors can read a
gzip/deflate body or SSE stream. Output is bounded (``limit``) so a small compressed chunk
cannot expand into gigabytes (a decompression bomb) inside the host process.
"""

from __future__ import annotations

import zlib
from typing import Final


class DecodeError(Exception):
    """The body could not be decoded; extraction for this response is skipped."""


class DecodedTooLarge(Exception):
    """The decoded body passed the limit; extraction for this response is skipped."""


SUPPORTED: Final = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


class BodyDecoder:
    """``decode(chunk)`` returns the decoded bytes available so far (possibly ``b""``)."""

    __slots__ = ("_decoder", "_deflate_raw_tried", "_encoding", "_limit", "_produced")

    def __init__(self, encoding: str, limit: int) -> None:
        encoding = encoding.strip().lower()
        if encoding not in SUPPORTED:
            raise DecodeError(f"unsupported content-encoding {encoding!r}")
        self._encoding = encoding
        self._limit = limit
        self._produced = 0
        self._deflate_raw_tried = False
        self._decoder = self._new()

    @property
    def passthrough(self) -> bool:
        return self._decoder is None

    def _new(self) -> zlib._Decompress | None:
        if self._encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._encoding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS)
        return None

    def decode(self, chunk: bytes) -> bytes:
        decoder = self._decoder
        if decoder is None:
            return chunk
        pieces: list[bytes] = []
        data = chunk
        while data:
            try:
                out = decoder.decompress(data, self._limit - self._produced + 1)
            except zlib.error as exc:
                # "deflate" is zlib-wrapped by the RFC but raw in some servers: retry raw once.
                if self._encoding == "deflate" and not self._deflate_raw_tried and not pieces:
                    self._deflate_raw_tried = True
                    decoder = self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise DecodeError(str(exc)) from exc
            self._deflate_raw_tried = True
            self._produced += len(out)
            if self._produced > self._limit:
                raise DecodedTooLarge(f"decoded body exceeds {self._limit} bytes")
            pieces.append(out)
            if decoder.unconsumed_tail:
                data = decoder.unconsumed_tail
            elif decoder.eof and decoder.unused_data:
                # Concatenated gzip members are one valid body.
                data = decoder.unused_data
                decoder = self._decoder = self._new()
                if decoder is None:  # pragma: no cover - encodings above always decode
                    break
            else:
                data = b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finished_cleanly(self) -> bool:
        """False when the compressed stream stopped mid-member (a truncated body)."""
        return self._decoder is None or self._decoder.eof
