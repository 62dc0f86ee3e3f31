"""``wsgi.input`` for observed requests. A body of declared length within the cap is read
whole before the app (and rewritten for ``ensure_stream_usage``); one without a length
(chunked) is copied to the observer as the app reads it."""

from __future__ import annotations

import io
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol

__all__ = ["BodySink", "Prefixed", "TeeInput", "read_body", "read_rest"]


class BodySink(Protocol):
    """The exchange an observed request's body is read for."""

    def on_request_body(self, chunk: bytes) -> None: ...

    def input_failed(self) -> None:
        """The body could not be read: the client went away."""


def read_body(environ: MutableMapping[str, Any], cap: int, sink: BodySink) -> bytes | None:
    """The request body of an observed request. One of declared length within ``cap`` is read
    whole here, in one read of that length (more only if the stream returns less), put back
    as ``wsgi.input`` (a ``BytesIO``: nothing between the app and its reads) and returned;
    ``sink`` is not told. One without a length (chunked) gets a ``TeeInput`` that copies what
    the app reads to ``sink``. None otherwise: no body, one over the cap (the observer would
    drop it), or a client that went away mid-body (``sink.input_failed()``)."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None:
        return None
    if not (length and length.isdecimal()):
        environ["wsgi.input"] = TeeInput(stream, sink)
        return None
    size = int(length)
    if not 0 < size <= cap:
        return None
    try:
        body: bytes | None = stream.read(size)
    except Exception:
        environ["wsgi.input"] = Prefixed(b"", stream)
        body = None
    else:
        if body and len(body) < size:  # a short read: the rest follows
            body = read_rest(environ, stream, body, size)
    if body is None:
        sink.input_failed()
        return None
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class TeeInput:
    """Every read method copies what it returns to the exchange (``on_request_body``); its
    ``input_failed`` is called when the underlying stream fails (the client went away
    mid-upload)."""

    __slots__ = ("_observer", "_stream")

    def __init__(self, stream: Any, observer: BodySink) -> None:
        self._stream = stream
        self._observer = observer

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BaseException:
            self._observer.input_failed()
            raise

    def read(self, *args: Any) -> bytes:
        data: bytes = self._call("read", *args)
        self._observer.on_request_body(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._call("readline", *args)
        self._observer.on_request_body(data)
        return data

    def readinto(self, buffer: Any) -> int | None:
        # Werkzeug's LimitedStream prefers readinto(); without one underneath, read() serves.
        if not hasattr(self._stream, "readinto"):
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count: int | None = self._call("readinto", buffer)
        if count:
            self._observer.on_request_body(bytes(memoryview(buffer)[:count]))
        return count

    def read1(self, *args: Any) -> bytes:
        return self.read(*args)

    def readinto1(self, buffer: Any) -> int | None:
        return self.readinto(buffer)

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._call("readlines", *args)
        for line in lines:
            self._observer.on_request_body(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the original stream."""

    def __init__(self, head: bytes, stream: Any) -> None:
        super().__init__()
        self._head = io.BytesIO(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = self._head.readinto(view)
        if count:
            return count
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


def read_rest(
    environ: MutableMapping[str, Any], stream: Any, head: bytes, length: int
) -> bytes | None:
    """After a short first read (``head``), the rest of a body of declared ``length``, or up
    to where the stream ends. None when the client failed mid-body: ``wsgi.input`` then gives
    the app what arrived, followed by the stream's own failure."""
    parts = [head]
    got = len(head)
    try:
        while got < length:
            data = stream.read(length - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
    except Exception:
        environ["wsgi.input"] = Prefixed(b"".join(parts), stream)
        return None
    return b"".join(parts)
