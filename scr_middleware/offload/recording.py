"""``RecordingObserver``: an ``Observer`` stand-in that records instead of extracting.

``Binding.observer`` hands one to an adapter (WSGI, Flask, Django) when events go to a
capture process. It takes the same calls the adapter would make on an ``Observer``, keeps
what it is told by reference, and at ``finish`` hands one record (``record.Record``) to the
``Offloader``; the capture process replays it through a real ``Observer``. The adapters do
not know the difference.

Past ``max_body_bytes`` a stream is handed to a real ``Observer`` here (told everything seen
so far), so memory stays bounded however long it runs; any other body is abandoned there, as
the observer abandons it, and its record says so.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from scr_middleware.extract import failsafe
from scr_middleware.extract.observer import Observer, apply_endpoint, response_headers
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.request_body import keep_piece
from scr_middleware.extract.routes import RouteMatch

from .record import END_CANCELLED, END_COMPLETE, END_EXCEPTION

if TYPE_CHECKING:
    from scr_middleware.extract.binding import Binding

    from .channel import Offloader

__all__ = ["RecordingObserver"]


class RecordingObserver:
    """One request's record in the making (see the module docstring)."""

    __slots__ = (
        "_binding",
        "_body_len",
        "_body_parts",
        "_chunks",
        "_exempt",
        "_finished",
        "_headers",
        "_key",
        "_match",
        "_observer",
        "_offloader",
        "_over_cap",
        "_room",
        "_start",
        "_status",
        "_t0",
        "request",
    )

    def __init__(
        self,
        binding: Binding,
        offloader: Offloader,
        key: int,
        request: RequestInfo,
        match: RouteMatch | None,
    ) -> None:
        self._t0 = perf_counter()
        self._start = time()
        self._binding = binding
        self._offloader = offloader
        self._key = key
        self.request = request
        self._match = match
        self._body_parts: list[bytes] | None = None
        self._body_len = 0  # -1: over the request body cap, dropped
        self._status: int | None = None
        self._headers: Any = None
        self._chunks: list[bytes] | None = None
        self._room = 0
        self._over_cap = False
        self._observer: Observer | None = None  # a stream past the cap, followed here
        self._exempt = False
        self._finished = False

    # --- request ----------------------------------------------------------------------------
    def wants_request_body(self) -> bool:
        return self._match is not None and self._binding.settings.max_request_body_bytes > 0

    def on_request_body(self, chunk: bytes) -> None:
        self._body_parts, self._body_len = keep_piece(
            self._body_parts, self._body_len, chunk, self._binding.settings.max_request_body_bytes
        )

    def request_body_rewrite(self) -> bytes | None:
        return None  # ensure_stream_usage requests are observed in-process (Binding)

    # --- response ---------------------------------------------------------------------------
    @property
    def status(self) -> int | None:
        return self._status

    def on_response_start(self, status: int, headers: Any) -> None:
        self._status = status
        self._headers = list(headers) if not isinstance(headers, list) else headers
        self._chunks = []
        self._room = self._binding.settings.max_body_bytes

    def chunk_feed(self) -> Callable[[bytes, bool], bytes] | None:
        return self.on_chunk

    def on_chunk(self, chunk: bytes, last: bool = False) -> bytes:
        chunks = self._chunks
        if chunks is not None:
            if chunk:
                chunks.append(chunk if type(chunk) is bytes else bytes(chunk))
                self._room -= len(chunk)
                if self._room < 0:
                    self._past_cap()
            return chunk
        observer = self._observer
        if observer is not None:
            return observer.on_chunk(chunk, last)
        return chunk

    def chunk_failed(self, exc: Exception, chunk: bytes) -> bytes:
        self._chunks = None
        self._observer = None
        self._over_cap = True
        self.internal_error(exc)
        return chunk

    def internal_error(self, exc: Exception) -> None:
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._binding.stats)

    def _past_cap(self) -> None:
        chunks = self._chunks
        self._chunks = None
        try:
            content_type = response_headers(self._headers or ())[0]
            if not content_type.startswith("text/event-stream"):
                self._over_cap = True  # abandoned, as the observer abandons such a body
                return
            observer = self._binding.inline_observer(self.request, self._match)
            observer.carry_on(self._t0, self._start, self._body_parts, self._body_len, False)
            observer.on_response_start(self._status or 0, self._headers or ())
            for chunk in chunks or ():
                observer.on_chunk(chunk)
            self._observer = observer
        except Exception as exc:
            self._over_cap = True
            self.internal_error(exc)

    # --- end ----------------------------------------------------------------------------------
    def set_endpoint(self, endpoint: object, route: str | None = None) -> None:
        try:
            self._exempt = apply_endpoint(self.request, endpoint, route) or self._exempt
        except Exception as exc:
            self.internal_error(exc)

    def finish(
        self,
        *,
        cancelled: bool = False,
        exception: BaseException | None = None,
        duration_ms: float | None = None,
    ) -> None:
        if self._finished:
            return
        self._finished = True
        if duration_ms is None:
            duration_ms = (perf_counter() - self._t0) * 1000.0
        if self._match is None or self._exempt:
            return
        observer = self._observer
        if observer is not None:  # a long stream, followed here
            observer.finish(cancelled=cancelled, exception=exception, duration_ms=duration_ms)
            return
        try:
            self._hand_over(cancelled, exception, duration_ms)
        except Exception as exc:
            self.internal_error(exc)

    def _hand_over(
        self, cancelled: bool, exception: BaseException | None, duration_ms: float
    ) -> None:
        request = self.request
        options = request.overrides
        chunks = self._chunks
        if exception is not None:
            end, error_name = END_EXCEPTION, type(exception).__name__
        else:
            end, error_name = (END_CANCELLED if cancelled else END_COMPLETE), None
        offloader = self._offloader
        record = (
            self._key,
            offloader.next_seq(),
            request.method,
            request.path,
            request.route,
            self._binding.header_pairs(request),
            request.user_id,
            None
            if options is None
            else (
                options.session_type,
                options.extractor,
                dict(options.metadata) if options.metadata is not None else None,
            ),
            self._body_parts,
            self._body_len,
            self._status,
            self._headers,
            chunks if chunks is not None else [],
            self._over_cap,
            self._start,
            duration_ms,
            end,
            error_name,
        )
        self._chunks = None
        if not offloader.put(record):
            self._binding.replay_inline(record)
