"""The framework-free response observer: one instance per request, never shared.

Adapters feed it the request body as the app reads it, the response start and every body
chunk, and call ``finish()`` once the last chunk went out (or the app raised, or the client
left). It never holds a chunk back: ``on_chunk`` returns the very object it was given, except
in ``ensure_stream_usage`` mode where it drops the usage event it asked for (and holds only an
unfinished event's bytes until the event completes). Every method is failsafe.

It runs on the request path, so it does the least it can there: chunks are kept by reference
(JSON) or skimmed (SSE, see ``scan``), and everything else happens once, in ``finish()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from time import perf_counter, time
from types import FunctionType
from typing import Any, Final, Protocol

import orjson

from scr_middleware.routes_options import RouteOptions
from scr_middleware.routes_options import endpoint_options as _endpoint_options

from . import failsafe
from .build import build_event, chat_completion_event, chat_stream_event, run_extractors
from .extractors import Extraction, Extractor, ResponseData, builtin_json, builtin_stream
from .failsafe import FailureStats
from .request import RequestInfo
from .request_body import keep_piece, with_stream_usage
from .response_body import ResponseBody, unusual_json
from .routes import RouteMatch
from .settings import ObserverSettings
from .stream import StreamSummary, loads

__all__ = ["Observer", "RequestInfo"]

_NO_BODY_STATUSES: Final = frozenset({204, 205, 304})
_UNPARSED: Final[Any] = object()

# ``endpoint_options`` per endpoint function/class: they are decorated once, at import, and
# looking through four attributes per request is measurable. Bounded, in case an app makes
# endpoints per request; only plain functions and classes (identity equality) are cached.
_OPTIONS_CACHE: dict[object, tuple[bool, RouteOptions | None]] = {}
_OPTIONS_CACHE_MAX: Final = 1024
_CACHEABLE: Final = (FunctionType, type)


class Holder(Protocol):
    """Where an adapter may put a body chunk without a call: while ``held`` is not None,
    append the chunk to it and subtract its length from ``room``; when ``room`` drops below
    zero, call ``cut()`` (which may set ``held`` to None: then call the chunk feed again).
    Exactly what the chunk feed would do with that chunk."""

    held: list[bytes] | None
    room: int

    def cut(self) -> None: ...


def endpoint_options(endpoint: object) -> tuple[bool, RouteOptions | None]:
    """``routes_options.endpoint_options``, cached per endpoint function or class."""
    found = _OPTIONS_CACHE.get(endpoint) if type(endpoint) in _CACHEABLE else None
    if found is None:
        found = _endpoint_options(endpoint)
        if type(endpoint) in _CACHEABLE and len(_OPTIONS_CACHE) < _OPTIONS_CACHE_MAX:
            _OPTIONS_CACHE[endpoint] = found
    return found


def apply_endpoint(request: RequestInfo, endpoint: object, route: str | None) -> bool:
    """Late route information on ``request``: the route template, and the ``@scr_route``
    options of the endpoint the framework resolved; True when it is ``@scr_exempt``."""
    if route is not None:
        request.route = route
    if endpoint is None:
        return False
    exempt, options = endpoint_options(endpoint)
    if options is not None and request.overrides is None:
        request.overrides = options
    return exempt


def parse_request_body(parts: list[bytes] | None) -> dict[str, Any] | None:
    """The request's JSON object from the pieces ``on_request_body`` kept; None when there are
    none, or it is not JSON or not an object."""
    if not parts:
        return None
    raw = parts[0] if len(parts) == 1 else b"".join(parts)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = loads(raw)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def response_headers(
    headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]],
) -> tuple[str, str, bool]:
    """``(content type in lower case, content encoding, has a Content-Length)`` of response
    headers: three names, bytes or str, any case."""
    content_type = encoding = ""
    has_length = False
    for raw_name, value in headers:
        name = raw_name if type(raw_name) is bytes else _name_bytes(raw_name)
        size = len(name)
        if size == 12:
            if name == b"content-type" or name.lower() == b"content-type":
                content_type = (
                    value.decode("latin-1") if type(value) is bytes else _text(value)
                ).lower()
        elif size == 14:
            has_length = (
                has_length or name == b"content-length" or name.lower() == b"content-length"
            )
        elif size == 16 and name.lower() == b"content-encoding":
            encoding = _text(value)
    return content_type, encoding, has_length


def plain_encoding(encoding: str) -> bool:
    """No content coding: the body is kept as it comes (else it goes through a decoder)."""
    return not encoding or encoding.strip().lower() == "identity"


def _name_bytes(name: object) -> bytes:
    if isinstance(name, bytearray | memoryview):
        return bytes(name)
    return str(name).encode("latin-1", "replace")


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class Observer:
    __slots__ = (
        "_body_len",
        "_body_parsed",
        "_body_parts",
        "_content_type",
        "_emit",
        "_emit_built",
        "_exempt",
        "_failure",
        "_finished",
        "_injected",
        "_match",
        "_no_body",
        "_response",
        "_settings",
        "_start",
        "_stats",
        "_status",
        "_t0",
        "held",
        "request",
        "room",
    )

    def __init__(
        self,
        settings: ObserverSettings,
        request: RequestInfo,
        emit: Callable[[dict[str, Any]], object],
        stats: FailureStats | None = None,
        match: RouteMatch | None = None,
        *,
        emit_built: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        self._t0 = perf_counter()
        self._start = time()
        self._settings = settings
        self.request = request
        self._emit = emit
        # For events the one-pass builders made (their shape is right by construction, so
        # the runtime checks less: SessionCompletionRuntime.capture_built).
        self._emit_built = emit if emit_built is None else emit_built
        self._stats = stats
        self._match = match if match is not None else settings.match(request.path)
        self._finished = False
        self._exempt = False
        self._failure: str | None = None
        self._body_parts: list[bytes] | None = None  # the request body, up to the cap
        self._body_len = 0  # -1: over the cap, dropped
        self._body_parsed: Any = _UNPARSED
        self._injected = False
        self._status: int | None = None
        self._content_type = ""
        self._no_body = request.method == "HEAD"
        # Set when a body is due and observed: a plain JSON body (the common case) is held
        # here, by reference, up to ``room`` more bytes (see ``Holder``); any other body goes
        # through a ResponseBody.
        self.held: list[bytes] | None = None
        self.room = 0
        self._response: ResponseBody | None = None

    def carry_on(
        self,
        t0: float,
        start: float,
        body_parts: list[bytes] | None,
        body_len: int,
        exempt: bool,
    ) -> None:
        """For an adapter that followed the request itself until now (the ASGI fast path)
        and hands it over: when it started (``perf_counter()`` and ``time()``), the request
        body as ``on_request_body`` would have kept it, and whether the endpoint is exempt."""
        self._t0 = t0
        self._start = start
        self._body_parts = body_parts
        self._body_len = body_len
        self._exempt = exempt

    def carry_request_body(self, parsed: Mapping[str, Any] | None) -> None:
        """The request body, already parsed (``parse_request_body``) by the adapter."""
        self._body_parts = None
        self._body_parsed = parsed

    # -- request -------------------------------------------------------------------------

    def wants_request_body(self) -> bool:
        return self._match is not None and self._settings.max_request_body_bytes > 0

    def on_request_body(self, chunk: bytes) -> None:
        """Copies ``chunk`` (by reference when it is ``bytes``) up to the request body cap;
        past the cap the body is dropped (identity and ``message_count`` go without it)."""
        try:
            if self._body_parsed is not _UNPARSED or self._match is None:
                return
            self._body_parts, self._body_len = keep_piece(
                self._body_parts, self._body_len, chunk, self._settings.max_request_body_bytes
            )
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def request_body(self) -> Mapping[str, Any] | None:
        """The request's JSON object, parsed once; None when empty, over the cap, not JSON or
        not an object."""
        parsed = self._body_parsed
        if parsed is _UNPARSED:
            parsed = self._body_parsed = parse_request_body(self._body_parts)
            self._body_parts = None
        return parsed  # type: ignore[no-any-return]

    def may_rewrite_request(self) -> bool:
        """True when ``ensure_stream_usage`` could rewrite this request: the adapter then reads
        the whole request body before the app does."""
        if not self._settings.ensure_stream_usage:
            return False
        match = self._match
        return (
            match is not None
            and match.session_type in ("chat", "completion")
            and not self.request.path.rstrip("/").endswith("/messages")
            and self.wants_request_body()
        )

    def request_body_rewrite(self) -> bytes | None:
        """With ``ensure_stream_usage``: the request body with ``stream_options.include_usage``
        added, for a streamed chat/completions request that lacks it; else None."""
        try:
            if not self.may_rewrite_request():
                return None
            rewritten = with_stream_usage(self.request_body())
            self._injected = rewritten is not None
            return rewritten
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            self._injected = False
            return None

    # -- response ------------------------------------------------------------------------

    @property
    def status(self) -> int | None:
        """The response status once ``on_response_start`` ran."""
        return self._status

    def on_response_start(
        self, status: int, headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]
    ) -> None:
        try:
            self._status = status
            content_type, encoding, has_length = response_headers(headers)
            self._content_type = content_type
            if status in _NO_BODY_STATUSES:
                self._no_body = True
            if self._match is None or self._no_body:
                return
            settings = self._settings
            streamed = content_type.startswith("text/event-stream")
            if not streamed and not self._injected:
                if plain_encoding(encoding):
                    self.held = []
                    self.room = settings.max_body_bytes
                else:
                    self._response = ResponseBody(
                        content_type, encoding, settings.max_body_bytes, self._note
                    )
                return
            overrides = self.request.overrides
            self._response = ResponseBody(
                content_type,
                encoding,
                settings.max_body_bytes,
                self._note,
                streamed,
                # A Content-Length pins the bytes: then the extra chunk cannot be removed.
                self._injected and not has_length and status < 300,
                # A custom extractor may ask about any event of a stream.
                not settings.builtin_extractors
                or (overrides is not None and overrides.extractor is not None),
                self.internal_error,
            )
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def on_chunk(self, chunk: bytes, last: bool = False) -> bytes:
        """Observe one body chunk; returns the bytes to forward (``chunk`` itself unless an
        injected usage event is being stripped). ``last`` is ASGI's ``more_body=False``."""
        try:
            if self.held is not None:
                return self._feed_json(chunk, last)
            response = self._response
            if response is None:
                return chunk
            return response.feed(chunk, last)
        except Exception as exc:
            return self.chunk_failed(exc, chunk)

    def _feed_json(self, chunk: bytes, last: bool = False) -> bytes:
        """A plain JSON body's chunk feed: a reference to ``chunk``, up to ``max_body_bytes``."""
        held = self.held
        if chunk and held is not None:
            held.append(chunk if type(chunk) is bytes else bytes(chunk))
            self.room -= len(chunk)
            if self.room < 0:
                self.cut()
        return chunk

    def cut(self) -> None:
        """``Holder.cut`` of a plain JSON body: over ``max_body_bytes``, it is abandoned."""
        if self.held is not None:
            self.held = None  # not extracted
            self._note(failsafe.BODY_TOO_LARGE)

    def chunk_holder(self) -> Holder | None:
        """For an adapter's per-chunk loop, after ``on_response_start``: where a chunk may be
        held without calling the chunk feed (see ``Holder``): this observer for a plain JSON
        body, the scanner of a plain stream, else None. Not failsafe: the adapter catches what
        ``cut()`` raises, hands it to ``chunk_failed`` and stops using both."""
        if self.held is not None:
            return self
        response = self._response
        return response.holder() if response is not None else None

    def chunk_feed(self) -> Callable[[bytes, bool], bytes] | None:
        """For an adapter's per-chunk loop, after ``on_response_start``: the callable that
        ``on_chunk`` would call, without the layer around it (None: nothing to observe). It
        is not failsafe: the adapter catches what it raises, hands it to ``chunk_failed`` and
        stops calling it."""
        if self.held is not None:
            return self._feed_json
        response = self._response
        if response is None:
            return None
        if response.stripping:
            return self.on_chunk  # its failure path forwards what the stripper held
        return response.feed

    def chunk_failed(self, exc: Exception, chunk: bytes) -> bytes:
        """A chunk feed raised: stop observing the body, count it; returns ``chunk``."""
        self.held = None
        response = self._response
        if response is not None:
            response.stop_stripping()  # observe no further
        self.internal_error(exc)
        return chunk

    def internal_error(self, exc: Exception) -> None:
        """Count (and log once) an unexpected exception met on behalf of this request."""
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def _note(self, reason: str, detail: str = "") -> None:
        """An expected extraction problem: counted, logged once, reported in metadata."""
        if self._failure is None:
            self._failure = reason
        failsafe.record_failure(reason, self._stats, detail)

    # -- end -----------------------------------------------------------------------------

    def set_endpoint(self, endpoint: object, route: str | None = None) -> None:
        """Late route information: the endpoint the framework resolved (for ``@scr_exempt`` /
        ``@scr_route``) and the route template."""
        try:
            self._exempt = apply_endpoint(self.request, endpoint, route) or self._exempt
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def finish(
        self,
        *,
        cancelled: bool = False,
        exception: BaseException | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """The response ended (or the app raised, or the client left). ``duration_ms``: for
        a replay (``offload.record``), the duration measured when the exchange happened."""
        self._end(cancelled, exception, _UNPARSED, duration_ms)

    def body_over_cap(self) -> None:
        """For a replay: the body went on past ``max_body_bytes`` (its recorder kept none of
        the rest), so it is abandoned as the chunk feed would have abandoned it."""
        if self.held is not None:
            self.cut()
        elif self._response is not None:
            self._response.too_large()

    def finish_json(self, body: Any) -> None:
        """``finish()`` of a response that completed, for an adapter that parsed the plain
        JSON body itself (with ``orjson.loads``, from what the chunk feed would have held):
        the same event, without parsing the body again."""
        self._end(False, None, body)

    def _end(
        self,
        cancelled: bool,
        exception: BaseException | None,
        parsed: Any,
        duration_ms: float | None = None,
    ) -> None:
        if self._finished:
            return
        self._finished = True
        response = self._response
        parts = self.held
        self._response = self.held = None  # chunks after the end are not observed
        try:
            event, built = self._build(
                response, parts, cancelled, exception, parsed=parsed, duration_ms=duration_ms
            )
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            return
        if event is None:
            return
        try:
            (self._emit_built if built else self._emit)(event)
        except Exception as exc:
            failsafe.internal_error(failsafe.EMIT_ERROR, exc, self._stats)

    def _build(
        self,
        response: ResponseBody | None,
        parts: list[bytes] | None,
        cancelled: bool,
        exception: BaseException | None,
        *,
        parsed: Any = _UNPARSED,
        duration_ms: float | None = None,
    ) -> tuple[dict[str, Any] | None, bool]:
        """The event (None when none is due) and whether a one-pass builder made it."""
        if duration_ms is None:
            duration_ms = (perf_counter() - self._t0) * 1000.0
        match = self._match
        if match is None or self._exempt:
            return None, False
        settings = self._settings
        request = self.request
        request_body = self.request_body()
        body: Any = None
        summary: StreamSummary | None = None
        observed = False  # a body to extract from
        if parsed is not _UNPARSED:  # a plain JSON body the adapter parsed
            body = parsed
            observed = body is not None
        elif parts:  # a plain JSON body
            raw = parts[0] if len(parts) == 1 else b"".join(parts)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = unusual_json(raw, self._content_type, self._note)
            observed = body is not None
        elif response is not None:
            body = response.finish(cut_short=cancelled or exception is not None)
            summary = response.summary
            observed = not response.skip and (body is not None or summary is not None)
        status = self._status
        if (
            observed
            and settings.default_extractors
            and request.overrides is None
            and status is not None
            and status < 400
            and not cancelled
            and exception is None
        ):
            # The common cases, one pass (the general path below gives the same event).
            event: dict[str, Any] | None = None
            if type(body) is dict:
                if body.get("object") == "chat.completion":
                    event = chat_completion_event(
                        request,
                        self._start,
                        duration_ms,
                        status,
                        request_body,
                        body,
                        settings.identity.resolve(request, request_body, self._stats),
                        self._failure,
                    )
            elif summary is not None and summary.error is None:
                first = summary.first("chat.completion.chunk")
                if first is not None:
                    event = chat_stream_event(
                        request,
                        self._start,
                        duration_ms,
                        status,
                        request_body,
                        summary,
                        first,
                        settings.identity.resolve(request, request_body, self._stats),
                        self._failure,
                    )
            if event is not None:
                if event["usage"]["source"] == "missing":
                    failsafe.record_failure(failsafe.MISSING_USAGE, self._stats)
                return event, True
        found = self._extract(body, summary, request_body) if observed else None
        event = build_event(
            request,
            (match.session_type, settings.session_type),
            self._start,
            duration_ms,
            status,
            self._content_type.startswith("text/event-stream"),
            request_body,
            body,
            found,
            settings.identity.resolve(request, request_body, self._stats),
            self._failure,
            cancelled,
            exception,
        )
        if (
            event["usage"]["source"] == "missing"
            and event["outcome"]["status"] == "success"
            and not self._no_body
        ):
            failsafe.record_failure(failsafe.MISSING_USAGE, self._stats)
        return event, False

    def _extractors(self) -> tuple[Extractor, ...]:
        overrides = self.request.overrides
        if overrides is None or overrides.extractor is None:
            return self._settings.extractors
        found = self._settings.route_extractor(overrides.extractor)
        if found is None:
            self._note(failsafe.EXTRACTOR_ERROR, f"cannot resolve {overrides.extractor!r}")
            return ()
        return (found,)

    def _extract(
        self,
        body: Any,
        summary: StreamSummary | None,
        request_body: Mapping[str, Any] | None,
    ) -> Extraction | None:
        match = self._match
        session_type = match.session_type if match is not None else None
        overrides = self.request.overrides
        if self._settings.default_extractors and (overrides is None or overrides.extractor is None):
            if summary is None:
                return builtin_json(body, session_type)
            return builtin_stream(summary)
        data = ResponseData(
            method=self.request.method,
            path=self.request.path,
            status=self._status or 0,
            content_type=self._content_type,
            request_body=request_body,
            body=body,
            stream=summary,
            route_session_type=session_type,
        )
        return run_extractors(self._extractors(), data, self._stats, self._note)
