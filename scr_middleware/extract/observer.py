"""The framework-free response observer: one instance per request, never shared.

Adapters feed it the request body as the app reads it, the response start and every body
chunk, and call ``finish()`` once the last chunk went out (or the app raised, or the client
left). It never holds a chunk back: ``on_chunk`` returns the very object it was given, except
in ``ensure_stream_usage`` mode where it drops the usage event it asked for (and holds only an
unfinished event's bytes until the event completes). Every method is failsafe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from . import failsafe
from .build import Seen, build_event
from .decoding import BodyDecoder, DecodedTooLarge, DecodeError
from .extractors import SKIP, Extraction, Extractor, ResponseData
from .failsafe import FailureStats
from .identity import Identity
from .request import RequestInfo
from .routes import RouteMatch
from .settings import ObserverSettings
from .sse import SSEParser
from .stream import StreamSummary, loads
from .usage_strip import UsageStripper

__all__ = ["Observer", "RequestInfo"]

_NO_BODY_STATUSES = frozenset({204, 205, 304})


def _header_items(headers: Iterable[Any]) -> Iterable[tuple[str, str]]:
    for name, value in headers:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        yield key.lower(), text


class Observer:
    __slots__ = (
        "_body_len",
        "_body_parts",
        "_content_type",
        "_decoder",
        "_emit",
        "_exempt",
        "_failure",
        "_finished",
        "_injected",
        "_match",
        "_no_body",
        "_parser",
        "_req_len",
        "_req_parsed",
        "_req_parts",
        "_settings",
        "_skip",
        "_start",
        "_stats",
        "_status",
        "_stripper",
        "_summary",
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
        self._req_parts: list[bytes] = []
        self._req_len = 0
        self._req_parsed: Mapping[str, Any] | bool | None = False  # False: not parsed yet
        self._injected = False
        self._status: int | None = None
        self._content_type = ""
        self._no_body = request.method == "HEAD"
        self._decoder: BodyDecoder | None = None
        self._parser: SSEParser | None = None
        self._summary: StreamSummary | None = None
        self._stripper: UsageStripper | None = None
        self._body_parts: list[bytes] = []
        self._body_len = 0
        self._skip = False  # extraction abandoned for this response (reason already counted)

    # -- request -------------------------------------------------------------------------

    def wants_request_body(self) -> bool:
        return self._match is not None and self._settings.max_request_body_bytes > 0

    def on_request_body(self, chunk: bytes) -> None:
        try:
            if not chunk or self._req_len < 0 or not self.wants_request_body():
                return
            self._req_len += len(chunk)
            if self._req_len > self._settings.max_request_body_bytes:
                self._req_len = -1  # over the cap: identity and message_count go without it
                self._req_parts.clear()
                return
            self._req_parts.append(bytes(chunk))
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def _request_json(self) -> Mapping[str, Any] | None:
        parsed = self._req_parsed
        if parsed is False:
            parsed = None
            if self._req_parts:
                try:
                    value = loads(b"".join(self._req_parts))
                except ValueError:
                    value = None
                parsed = value if isinstance(value, dict) else None
            self._req_parts.clear()
            self._req_parsed = parsed
        return parsed if isinstance(parsed, Mapping) else None

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
            body = self._request_json()
            if body is None or body.get("stream") is not True:
                return None
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, Mapping) else {}
            if options.get("include_usage") is True:
                return None
            options["include_usage"] = True
            self._injected = True
            return orjson.dumps({**body, "stream_options": options})
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
            try:
                self._decoder = BodyDecoder(encoding, self._settings.max_body_bytes)
            except DecodeError as exc:
                self._abandon(failsafe.UNSUPPORTED_ENCODING, str(exc))
            if self._content_type.startswith("text/event-stream"):
                self._summary = StreamSummary()
                plain = self._decoder is not None and self._decoder.passthrough
                if self._injected and plain and not has_length and status < 300:
                    self._stripper = UsageStripper(self._settings.max_body_bytes)
                else:
                    self._parser = SSEParser(max_line_bytes=self._settings.max_body_bytes)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)

    def on_chunk(self, chunk: bytes, *, last: bool = False) -> bytes:
        """Observe one body chunk; returns the bytes to forward (``chunk`` itself unless an
        injected usage event is being stripped). ``last`` is ASGI's ``more_body=False``."""
        stripper = self._stripper
        if stripper is not None:
            try:
                return stripper.feed(chunk, self._summary, last=last)  # type: ignore[arg-type]
            except Exception as exc:
                self._stripper = None
                failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
                return stripper.release() + chunk
        if not chunk or self._skip or self._finished or self._match is None or self._no_body:
            return chunk
        try:
            self._observe(chunk)
        except DecodedTooLarge:
            self._abandon(failsafe.BODY_TOO_LARGE)
        except DecodeError as exc:
            self._abandon(failsafe.DECODE_ERROR, str(exc))
        except Exception as exc:
            self._skip = True
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
        return chunk

    def _observe(self, chunk: bytes) -> None:
        decoder = self._decoder
        if decoder is None:
            return
        data = decoder.decode(chunk)
        if self._summary is not None and self._parser is not None:
            for event in self._parser.feed(data):
                self._summary.add(event)
            return
        self._body_len += len(data)
        if self._body_len > self._settings.max_body_bytes:
            self._abandon(failsafe.BODY_TOO_LARGE)
            return
        self._body_parts.append(data if type(data) is bytes else bytes(data))

    def _abandon(self, reason: str, detail: str = "") -> None:
        self._skip = True
        self._body_parts.clear()
        self._parser = None
        self._note(reason, detail)

    def _note(self, reason: str, detail: str = "") -> None:
        if self._failure is None:
            self._failure = reason
        failsafe.record_failure(reason, self._stats, detail)

    # -- end -----------------------------------------------------------------------------

    def set_endpoint(self, endpoint: object, route: str | None = None) -> None:
        """Late route information: the endpoint the framework resolved (for ``@scr_exempt`` /
        ``@scr_route``) and the route template."""
        try:
            from scr_middleware.routes_options import endpoint_options

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
        if self._stripper is not None:
            self._stripper.release()  # bytes still held were never due: the app stopped
        seen = Seen(
            request=self.request,
            match=match,
            start_time=self._start,
            duration_ms=duration_ms,
            status=self._status,
            streamed=self._summary is not None,
            request_body=self._request_json(),
            cancelled=cancelled,
            exception=exception,
        )
        seen.body = self._parse_body()
        self._check_stream(seen)
        seen.extraction = self._extract(seen)
        seen.identity = self._identity(seen.request_body)
        seen.failure = self._failure
        event = build_event(seen, self._settings.session_type)
        if (
            event["usage"]["source"] == "missing"
            and event["outcome"]["status"] == "success"
            and not self._no_body
        ):
            failsafe.record_failure(failsafe.MISSING_USAGE, self._stats)
        return event

    def _parse_body(self) -> Any:
        if self._summary is not None or self._skip or not self._body_parts:
            return None
        raw = b"".join(self._body_parts)
        self._body_parts.clear()
        if not raw.strip():
            return None
        try:
            return loads(raw)
        except ValueError:
            looks_json = "json" in self._content_type or raw.lstrip()[:1] in (b"{", b"[")
            self._note(failsafe.INVALID_JSON if looks_json else failsafe.NON_JSON_BODY)
            return None

    def _check_stream(self, seen: Seen) -> None:
        summary = self._summary
        if summary is None or self._skip:
            return
        if self._stripper is not None:
            truncated = self._stripper.truncated or self._stripper.parser.overflowed
        elif self._parser is not None:
            complete = summary.add_final(self._parser.close())
            truncated = self._parser.overflowed or not complete
        else:
            return
        if seen.cancelled or seen.exception is not None:
            return  # a cut-off stream is expected then, not an extraction failure
        if truncated:
            self._note(failsafe.TRUNCATED_SSE)
        elif summary.invalid:
            self._note(failsafe.INVALID_JSON)

    def _extractors(self) -> tuple[Extractor, ...]:
        overrides = self.request.overrides
        if overrides is None or overrides.extractor is None:
            return self._settings.extractors
        found = self._settings.route_extractor(overrides.extractor)
        if found is None:
            self._note(failsafe.EXTRACTOR_ERROR, f"cannot resolve {overrides.extractor!r}")
            return ()
        return (found,)

    def _extract(self, seen: Seen) -> Extraction | None:
        if self._skip or (seen.body is None and self._summary is None):
            return None
        data = ResponseData(
            method=self.request.method,
            path=self.request.path,
            status=seen.status or 0,
            content_type=self._content_type,
            request_body=seen.request_body,
            body=seen.body,
            stream=self._summary,
            route_session_type=seen.match.session_type,
        )
        for extractor in self._extractors():
            try:
                result = extractor(data)
            except Exception as exc:
                failsafe.internal_error(failsafe.EXTRACTOR_ERROR, exc, self._stats)
                continue
            if result is SKIP:
                continue
            if isinstance(result, Extraction):
                return result
            self._note(failsafe.EXTRACTOR_ERROR, f"{extractor!r} returned {type(result).__name__}")
        return None

    def _identity(self, body: Mapping[str, Any] | None) -> Identity:
        resolver = self._settings.identity
        found = resolver.from_sources(self.request, body)
        try:
            custom = resolver.from_callable(self.request, body)
        except Exception as exc:
            failsafe.internal_error(failsafe.IDENTITY_ERROR, exc, self._stats)
            return found
        if custom is None:
            return found
        return Identity(
            custom.user_id or found.user_id,
            custom.organization_id or found.organization_id,
            custom.metadata,
        )
