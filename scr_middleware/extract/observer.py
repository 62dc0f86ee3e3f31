"""The framework-free response observer: one instance per request, never shared.

Adapters feed it the request body as the app reads it, the response start and every body
chunk, and call ``finish()`` once the last chunk went out (or the app raised, or the client
left). It never holds a chunk back: ``on_chunk`` returns the very object it was given, except
in ``ensure_stream_usage`` mode where it drops the usage event it asked for (and holds only an
unfinished event's bytes until the event completes). Every method is failsafe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from scr_middleware.routes_options import endpoint_options

from . import failsafe
from .build import Seen, build_event, run_extractors
from .extractors import Extraction, Extractor, ResponseData
from .failsafe import FailureStats
from .request import RequestInfo
from .request_body import RequestBody, with_stream_usage
from .response_body import ResponseBody
from .routes import RouteMatch
from .settings import ObserverSettings

__all__ = ["Observer", "RequestInfo"]

_NO_BODY_STATUSES = frozenset({204, 205, 304})


def _header_items(headers: Iterable[Any]) -> Iterable[tuple[str, str]]:
    for name, value in headers:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        yield key.lower(), text


class Observer:
    __slots__ = (
        "_content_type",
        "_emit",
        "_exempt",
        "_failure",
        "_finished",
        "_injected",
        "_match",
        "_no_body",
        "_request_body",
        "_response",
        "_settings",
        "_start",
        "_stats",
        "_status",
        "_t0",
        "request",
    )

    def __init__(
        self,
        settings: ObserverSettings,
        request: RequestInfo,
        emit: Callable[[dict[str, Any]], object],
        *,
        stats: FailureStats | None = None,
        match: RouteMatch | None = None,
    ) -> None:
        self._t0 = time.perf_counter()
        self._start = time.time()
        self._settings = settings
        self.request = request
        self._emit = emit
        self._stats = stats
        self._match = match if match is not None else settings.match(request.path)
        self._finished = False
        self._exempt = False
        self._failure: str | None = None
        self._request_body = RequestBody(settings.max_request_body_bytes)
        self._injected = False
        self._status: int | None = None
        self._content_type = ""
        self._no_body = request.method == "HEAD"
        self._response: ResponseBody | None = None  # set when a body is due and observed

    # -- request -------------------------------------------------------------------------

    def wants_request_body(self) -> bool:
        return self._match is not None and self._settings.max_request_body_bytes > 0

    def on_request_body(self, chunk: bytes) -> None:
        try:
            if self.wants_request_body():
                self._request_body.add(chunk)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def may_rewrite_request(self) -> bool:
        """True when ``ensure_stream_usage`` could rewrite this request: the adapter then reads
        the whole request body before the app does."""
        match = self._match
        return (
            self._settings.ensure_stream_usage
            and match is not None
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
            rewritten = with_stream_usage(self._request_body.parsed())
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
            encoding = ""
            has_length = False
            for name, value in _header_items(headers):
                if name == "content-type":
                    self._content_type = value.lower()
                elif name == "content-encoding":
                    encoding = value
                elif name == "content-length":
                    has_length = True
            if status in _NO_BODY_STATUSES:
                self._no_body = True
            if self._match is None or self._no_body:
                return
            self._response = ResponseBody(
                content_type=self._content_type,
                encoding=encoding,
                max_bytes=self._settings.max_body_bytes,
                note=self._note,
                # A Content-Length pins the bytes: then the extra chunk cannot be removed.
                strip_injected_usage=self._injected and not has_length and status < 300,
            )
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def on_chunk(self, chunk: bytes, *, last: bool = False) -> bytes:
        """Observe one body chunk; returns the bytes to forward (``chunk`` itself unless an
        injected usage event is being stripped). ``last`` is ASGI's ``more_body=False``."""
        response = self._response
        if response is None or self._finished:
            return chunk
        held = response.held()
        try:
            return response.feed(chunk, last=last)
        except Exception as exc:
            # Forward exactly what was held plus this chunk, and stop observing.
            response.stop_stripping()
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            return b"".join(held) + chunk if held else chunk

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
            if route is not None:
                self.request.route = route
            if endpoint is not None:
                exempt, options = endpoint_options(endpoint)
                self._exempt = self._exempt or exempt
                if options is not None and self.request.overrides is None:
                    self.request.overrides = options
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def finish(self, *, cancelled: bool = False, exception: BaseException | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            event = self._build(cancelled, exception)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            return
        if event is None:
            return
        try:
            self._emit(event)
        except Exception as exc:
            failsafe.internal_error(failsafe.EMIT_ERROR, exc, self._stats)

    def _build(self, cancelled: bool, exception: BaseException | None) -> dict[str, Any] | None:
        duration_ms = (time.perf_counter() - self._t0) * 1000.0
        match = self._match
        if match is None or self._exempt:
            return None
        seen = Seen(
            request=self.request,
            match=match,
            start_time=self._start,
            duration_ms=duration_ms,
            status=self._status,
            streamed=self._content_type.startswith("text/event-stream"),
            request_body=self._request_body.parsed(),
            cancelled=cancelled,
            exception=exception,
        )
        response = self._response
        if response is not None:
            seen.body = response.finish(cut_short=cancelled or exception is not None)
        seen.extraction = self._extract(seen, response)
        seen.identity = self._settings.identity.resolve(
            self.request, seen.request_body, self._stats
        )
        seen.failure = self._failure
        event = build_event(seen, self._settings.session_type)
        if (
            event["usage"]["source"] == "missing"
            and event["outcome"]["status"] == "success"
            and not self._no_body
        ):
            failsafe.record_failure(failsafe.MISSING_USAGE, self._stats)
        return event

    def _extractors(self) -> tuple[Extractor, ...]:
        overrides = self.request.overrides
        if overrides is None or overrides.extractor is None:
            return self._settings.extractors
        found = self._settings.route_extractor(overrides.extractor)
        if found is None:
            self._note(failsafe.EXTRACTOR_ERROR, f"cannot resolve {overrides.extractor!r}")
            return ()
        return (found,)

    def _extract(self, seen: Seen, response: ResponseBody | None) -> Extraction | None:
        if response is None or response.skip:
            return None
        if seen.body is None and response.summary is None:
            return None
        data = ResponseData(
            method=self.request.method,
            path=self.request.path,
            status=seen.status or 0,
            content_type=self._content_type,
            request_body=seen.request_body,
            body=seen.body,
            stream=response.summary,
            route_session_type=seen.match.session_type,
        )
        return run_extractors(self._extractors(), data, self._stats, self._note)
