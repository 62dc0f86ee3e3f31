"""The response body as the server pulls it: chunks forwarded one by one, unchanged, and the
event finished exactly once, at exhaustion, failure or ``close()`` (OpenTelemetry's
``_end_span_after_iterating`` pattern, as a class so that a ``close()`` before the first
``next()`` still finishes). Django's streaming wrappers share ``BodyState``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

from scr_middleware.extract.observer import Observer

__all__ = ["BodyState", "ObservedBody", "SizedObservedBody"]


class BodyState:
    """Where one response body is; ``finish(cancelled, exception)`` runs once."""

    __slots__ = ("_finish", "done", "ended", "expected", "feed", "observer", "sent")

    def __init__(
        self, observer: Observer, finish: Callable[[bool, BaseException | None], None]
    ) -> None:
        self.observer = observer
        self._finish = finish
        self.expected: int | None = None  # Content-Length, when the response declared one
        self.sent = 0
        self.ended = False  # the iterator was exhausted
        self.done = False
        # The observer's chunk feed (``started`` sets it): one call per chunk, failsafe here.
        self.feed: Callable[[bytes, bool], bytes] | None = None

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
        self.close()
        return tail

    def cancel(self) -> None:
        self._settle(True, None)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._settle(True, None)  # the server gave up on the response: client gone
        else:
            self._settle(False, exc)

    def close(self) -> None:
        # Closed before the end is a client that left, unless the declared length went out
        # (a server may stop pulling once it has sent Content-Length bytes).
        complete = self.ended or (self.expected is not None and self.sent >= self.expected)
        self._settle(not complete, None)

    def skip(self) -> None:
        """Never finish: an exempt view emits nothing."""
        self.done = True

    def _settle(self, cancelled: bool, exception: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self.feed = None
            self._finish(cancelled, exception)


class ObservedBody:
    """The iterable handed to the server (or Django's sync ``streaming_content``)."""

    __slots__ = ("_iterator", "_result", "_state")

    def __init__(self, result: Iterable[bytes], state: BodyState) -> None:
        self._result = result
        self._state = state
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> ObservedBody:
        return self

    def __next__(self) -> bytes:
        state = self._state
        while True:
            try:
                if self._iterator is None:
                    self._iterator = iter(self._result)
                chunk = next(self._iterator)
            except StopIteration:
                tail = state.end()
                if tail:
                    return tail
                raise
            except BaseException as exc:
                state.fail(exc)
                raise
            out = state.forward(chunk)
            if out or not chunk:  # only a held-back usage event yields nothing: read on
                return out

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._state.fail(exc)
            raise
        finally:
            self._state.close()


class SizedObservedBody(ObservedBody):
    """Keeps ``len()`` for servers that use it (wsgiref sets Content-Length for one block)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]
