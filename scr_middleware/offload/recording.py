"""``Recording``: one exchange of a WSGI-style adapter (WSGI, Flask, Django) kept for a capture
process instead of being extracted here.

It keeps what passed by reference (the request body, the response's status, headers and
chunks, the timings) and at the end hands one record (``record.Record``) to the ``Offloader``;
the capture process replays it through a real ``Observer``. The adapters subclass it, so that
one object per request is at once their own state and the record in the making (the WSGI
exchange, Django's ``_Recorded``).
Nothing that the capture process can compute is computed here: the request headers are
looked up only for the names its identity sources read, straight from the environ.

Past ``max_body_bytes`` a stream is handed to a real ``Observer`` here (told everything seen
so far), so memory stays bounded however long it runs; any other body is abandoned there, as
the observer abandons it, and its record says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from scr_middleware.extract import failsafe
from scr_middleware.extract.observer import Observer, response_headers
from scr_middleware.extract.request import RequestInfo, headers_from_environ
from scr_middleware.extract.request_body import keep_piece
from scr_middleware.routes_options import RouteOptions

from .record import END_CANCELLED, END_COMPLETE, END_EXCEPTION

if TYPE_CHECKING:
    from scr_middleware.extract.binding import Binding

    from .channel import Offloader

__all__ = ["Recording"]


class Recording:
    """One exchange's record in the making (see the module docstring). ``environ`` is the
    WSGI environ (Django: ``request.META``): the request headers are read from it at the end.
    ``room`` counts down from ``max_body_bytes`` once the response started, for every chunk
    (also past the cap): ``max_body_bytes - room`` is what was sent."""

    __slots__ = (
        "binding",
        "body_len",
        "body_parts",
        "chunks",
        "environ",
        "headers",
        "key",
        "method",
        "observer",
        "offloader",
        "over_cap",
        "path",
        "room",
        "start",
        "status",
        "t0",
    )

    binding: Binding
    offloader: Offloader
    key: int
    method: str
    path: str
    environ: Mapping[str, Any]
    t0: float  # perf_counter() at the start
    start: float  # time() at the start
    body_parts: list[bytes] | None
    body_len: int  # -1: over max_request_body_bytes, dropped
    status: int | None  # None: no response started
    headers: Any
    chunks: list[bytes] | None  # None before the response starts and past the cap
    room: int
    over_cap: bool
    observer: Observer | None  # a stream past the cap, followed here

    def __init__(  # noqa: PLR0917  (once per request: positional is cheaper)
        self,
        binding: Binding,
        offloader: Offloader,
        key: int,
        method: str,
        path: str,
        environ: Mapping[str, Any],
    ) -> None:
        self.t0 = perf_counter()
        self.start = time()
        self.binding = binding
        self.offloader = offloader
        self.key = key
        self.method = method
        self.path = path
        self.environ = environ
        self.body_parts = None
        self.body_len = 0
        self.status = None
        self.headers = None
        self.chunks = None
        self.room = binding.settings.max_body_bytes
        self.over_cap = False
        self.observer = None

    def on_request_body(self, chunk: bytes) -> None:
        self.body_parts, self.body_len = keep_piece(
            self.body_parts, self.body_len, chunk, self.binding.settings.max_request_body_bytes
        )

    def on_response_start(self, status: int, headers: Any) -> None:
        self.status = status
        self.headers = headers if type(headers) is list else list(headers)
        self.chunks = []
        self.room = self.binding.settings.max_body_bytes

    def on_chunk(self, chunk: bytes, last: bool = False) -> bytes:
        """Keep ``chunk`` (by reference); returns it. ``last``: the end, told to a stream
        followed past the cap."""
        self.room -= len(chunk)
        chunks = self.chunks
        if chunks is not None:
            if chunk:
                chunks.append(chunk if type(chunk) is bytes else bytes(chunk))
                if self.room < 0:
                    self.past_cap()
        elif self.observer is not None:
            self.observer.on_chunk(chunk, last)  # failsafe itself
        return chunk

    def chunk_feed(self) -> Callable[[bytes, bool], bytes]:
        """For ``wsgi.body.BodyState`` (Django's streams), as an ``Observer``'s."""
        return self.on_chunk

    def chunk_failed(self, exc: Exception, chunk: bytes) -> bytes:
        """``on_chunk`` raised (it should not): the body is abandoned; returns ``chunk``."""
        self.chunks = None
        self.observer = None
        self.over_cap = True
        self.internal_error(exc)
        return chunk

    def internal_error(self, exc: Exception) -> None:
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)

    def past_cap(self) -> None:
        """The body went past ``max_body_bytes`` (its last chunk is kept): a stream goes on
        in an in-process ``Observer``, anything else is abandoned."""
        chunks = self.chunks
        self.chunks = None
        try:
            content_type = response_headers(self.headers or ())[0]
            if not content_type.startswith("text/event-stream"):
                self.over_cap = True  # abandoned, as the observer abandons such a body
                return
            binding = self.binding
            method, path = self.method, self.path
            observer = binding.inline_observer(
                RequestInfo.from_environ(method, path, self.environ, None),
                binding.settings.observes(method, path),
            )
            observer.carry_on(self.t0, self.start, self.body_parts, self.body_len, False)
            observer.on_response_start(self.status or 0, self.headers or ())
            for chunk in chunks or ():
                observer.on_chunk(chunk)
            self.observer = observer
        except Exception as exc:
            self.over_cap = True
            self.internal_error(exc)

    def finish_record(
        self,
        cancelled: bool,
        exception: BaseException | None,
        user_id: str | None,
        route: str | None,
        options: RouteOptions | None,
    ) -> None:
        """Hand the record over (or finish the observer of a long stream), with what the
        adapter learnt late: the framework user, the route template, ``@scr_route``'s
        options. Called once; never raises."""
        duration_ms = (perf_counter() - self.t0) * 1000.0
        try:
            observer = self.observer
            if observer is not None:  # a long stream, followed here
                request = observer.request
                request.user_id = user_id
                request.route = route
                request.overrides = options
                observer.finish(cancelled=cancelled, exception=exception, duration_ms=duration_ms)
                return
            if exception is not None:
                end, error_name = END_EXCEPTION, type(exception).__name__
            else:
                end, error_name = (END_CANCELLED if cancelled else END_COMPLETE), None
            environ = self.environ
            binding = self.binding
            keys = binding.record_headers
            if keys is None:
                headers = list(headers_from_environ(environ).items())
            else:  # the ones the identity sources read (Binding.record_headers)
                headers = []
                for name, key in keys:
                    value = environ.get(key)
                    if isinstance(value, str) and value:
                        headers.append((name, value))
            chunks = self.chunks
            self.chunks = None  # the record is handed over: nothing more goes into it
            offloader = self.offloader
            record = (
                self.key, offloader.next_seq(), self.method, self.path, route, headers, user_id,
                None if options is None else _options(options), self.body_parts, self.body_len,
                self.status, self.headers, chunks if chunks is not None else [], self.over_cap,
                self.start, duration_ms, end, error_name,
            )  # fmt: skip
            if not offloader.put(record):
                binding.replay_inline(record)
        except Exception as exc:
            self.internal_error(exc)


def _options(options: RouteOptions) -> tuple[Any, Any, Any]:
    """``@scr_route`` options as a record carries them (builtins only)."""
    metadata = options.metadata
    return (
        options.session_type,
        options.extractor,
        dict(metadata) if metadata is not None else None,
    )
