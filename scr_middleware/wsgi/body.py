"""The response body as the server pulls it: chunks forwarded one by one, unchanged, and the
event finished exactly once, at exhaustion, failure or ``close()`` (OpenTelemetry's
``_end_span_after_iterating`` pattern; ``close()`` before the first ``next()`` still
finishes). Django's streaming wrappers share these classes.

Subclasses implement ``finish_event``; the state lives on the wrapper itself (no callback, no
second object), so a request leaves no reference cycle behind for the garbage collector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["BodyState", "Follower", "ObservedBody", "Sized", "content_length"]


def content_length(headers: Iterable[tuple[str, str]]) -> int | None:
    """A response's declared Content-Length (asked only when it is closed before its end)."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Body(Protocol):
    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Sized:
    """Keeps ``len()`` for servers that use it (wsgiref sets Content-Length for one block):
    ``body`` wraps ``result``, which has a length."""

    __slots__ = ("_body", "_result")

    def __init__(self, body: _Body, result: Any) -> None:
        self._body = body
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._result)

    def close(self) -> None:
        self._body.close()


class Follower(Protocol):
    """What follows a body's chunks: an ``Observer``, or a ``Recording`` (Django's streams)."""

    def chunk_feed(self) -> Callable[[bytes, bool], bytes] | None: ...

    def on_chunk(self, chunk: bytes, last: bool = False) -> bytes: ...

    def chunk_failed(self, exc: Exception, chunk: bytes) -> bytes: ...


F = TypeVar("F", bound=Follower)


class BodyState(Generic[F]):
    """Where one response body is; ``finish_event(cancelled, exception)`` runs once."""

    __slots__ = ("done", "ended", "expected", "feed", "observer", "sent")

    def __init__(self, observer: F) -> None:
        self.observer = observer
        self.expected: int | None = None  # Content-Length, when the response declared one
        self.sent = 0
        self.ended = False  # the iterator was exhausted
        self.done = False
        # The observer's chunk feed (``started`` sets it): one call per chunk, failsafe here.
        self.feed: Callable[[bytes, bool], bytes] | None = None

    def finish_event(self, cancelled: bool, exception: BaseException | None) -> None:
        raise NotImplementedError

    def declared_length(self) -> int | None:
        """The response's Content-Length (asked only when closed before the end)."""
        return self.expected

    def started(self) -> None:
        """The observer saw the response start: chunks go to its feed from now on."""
        self.feed = self.observer.chunk_feed()

    def forward(self, chunk: bytes) -> bytes:
        feed = self.feed
        if feed is None:
            out = chunk
        else:
            try:
                out = feed(chunk, False)
            except Exception as exc:
                self.feed = None
                out = self.observer.chunk_failed(exc, chunk)
        self.sent += len(out)
        return out

    def end(self) -> bytes:
        """The iterator is exhausted: returns bytes still held back (ensure_stream_usage)."""
        if self.ended:
            return b""
        self.ended = True
        tail = self.observer.on_chunk(b"", last=True)
        self.sent += len(tail)
        if not self.done:
            self.done = True
            self.feed = None
            self.finish_event(False, None)
        return tail

    def cancel(self) -> None:
        self._settle(True, None)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._settle(True, None)  # the server gave up on the response: client gone
        else:
            self._settle(False, exc)

    def settle_closed(self) -> None:
        # Closed before the end is a client that left, unless the declared length went out
        # (a server may stop pulling once it has sent Content-Length bytes).
        if not self.done:
            expected = None if self.ended else self.declared_length()
            complete = self.ended or (expected is not None and self.sent >= expected)
            self._settle(not complete, None)

    def skip(self) -> None:
        """Never finish: an exempt view emits nothing."""
        self.done = True

    def _settle(self, cancelled: bool, exception: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self.feed = None
            self.finish_event(cancelled, exception)


class ObservedBody(BodyState[F]):
    """The iterable handed to the server (or Django's sync ``streaming_content``), forwarding
    the chunks of ``result`` (set by the subclass). ``__iter__`` is a generator: cheaper per
    chunk than a ``__next__`` method, and its end raises no exception."""

    __slots__ = ("_result",)

    def __init__(self, observer: F) -> None:
        super().__init__(observer)
        self._result: Iterable[bytes] = ()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._result:
                # forward(), inlined: this runs for every chunk of every observed response.
                feed = self.feed
                if feed is None:
                    out = chunk
                else:
                    try:
                        out = feed(chunk, False)
                    except Exception as exc:
                        self.feed = None
                        out = self.observer.chunk_failed(exc, chunk)
                self.sent += len(out)
                if out or not chunk:  # only a held-back usage event yields nothing: read on
                    yield out
        except GeneratorExit:
            raise  # the server dropped its iterator: close() (on the iterable) decides
        except BaseException as exc:
            self.fail(exc)
            raise
        tail = self.end()
        if tail:
            yield tail

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            if not self.done:
                self.settle_closed()
