"""FastAPI / Starlette (any ASGI app): ``app.add_middleware(SessionCompletionMiddleware)``.

Pure ASGI, not ``BaseHTTPMiddleware``: responses are never buffered, each message goes out the
moment the app sends it. Per-request state lives in a new ``_Responder``, never on the
middleware. Requests to other paths reach the app with the original ``receive``/``send``.

With a capture process (``middleware.offload``, the default where the runtime allows it,
docs/offload.md) an observed request is followed by an ``asgi_record.Recorder``, which only
keeps references and hands one record to the capture process. Otherwise, inline:

The wrappers run for every message of every observed request, so they stay flat: no extra
coroutine per message, body messages tested first, chunks held without a call. The common
request (a plain JSON response that turns out to be a ``chat.completion``) is followed by the
responder alone, on a fast path that builds the event with the observer's own one-pass builder;
anything else (a stream, an encoded body, an error, an exemption, a route override, a body over
its cap, the app raising, the client leaving...) hands the request over to an ``Observer``
that is told everything seen so far, and that observer then sees the rest: one set of rules.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter, time
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import runtime as _runtime
from .asgi_record import NoResponseSent, Recorder, is_disconnect, user_id_of
from .extract import failsafe
from .extract.binding import Binding
from .extract.build import chat_event
from .extract.observer import (
    Holder,
    Observer,
    endpoint_options,
    parse_request_body,
    plain_encoding,
    response_headers,
)
from .extract.request import RequestInfo
from .extract.routes import RouteMatch
from .extract.settings import OBSERVED_METHODS

if TYPE_CHECKING:
    from .runtime import SessionCompletionRuntime

__all__ = ["SessionCompletionMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SHUTDOWN_FLUSH_TIMEOUT_S: Final = 5.0
_NO_BODY_STATUSES: Final = frozenset({204, 205, 304})


class SessionCompletionMiddleware:
    """``SessionCompletionMiddleware(app, *, config=None, runtime=None)``.

    ``config`` (a YAML path, a dict with the YAML's structure, or None) supplies the
    ``middleware:`` settings and, if the shared runtime does not exist yet, configures it.
    ``runtime`` sends events to that runtime instead of the shared one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: str | os.PathLike[str] | MutableMapping[str, Any] | None = None,
        runtime: SessionCompletionRuntime | None = None,
    ) -> None:
        self.app = app
        self._binding = binding = Binding(config, runtime)
        self.settings = settings = binding.settings
        self._stats = binding.stats
        self._capture = binding.capture
        self._capture_built = binding.capture_built
        # Decided once, not per request. ObserverSettings.observes: None observes nothing.
        self._route = settings.routes.match if settings.enabled else None
        self._rewrites = settings.ensure_stream_usage
        # The fast path builds chat.completion events the default extractor chain would; a
        # request that may be rewritten is the observer's from the start.
        self._fast = settings.default_extractors and not settings.ensure_stream_usage
        self._max_request = settings.max_request_body_bytes
        self._max_body = settings.max_body_bytes
        # With a capture process, observed requests are recorded (asgi_record) instead.
        self._offload = binding.offload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        method = scope.get("method")
        route = self._route
        if route is None or method not in OBSERVED_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        match = route(path)
        if match is None:
            await self.app(scope, receive, send)
            return
        link = self._offload
        if link is not None:
            try:
                offloader = link.offloader if link.runtime is _runtime._shared else link.current()
            except Exception as exc:
                failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
                offloader = None
            if offloader is not None:
                recorder = Recorder(self, offloader, link.key, scope, receive, send, method, path)
                try:
                    await self.app(scope, recorder.receive, recorder.send)
                except BaseException as exc:
                    recorder.failed(exc)
                    raise
                if not recorder.complete:
                    recorder.returned()
                return
        try:
            responder = _Responder(
                self,
                match,
                scope,
                receive,
                send,
                RequestInfo.from_raw(
                    method,
                    path,
                    scope.get("headers"),
                    user_id_of(scope) if "user" in scope else None,
                ),
            )
            if not self._fast:
                responder.observe()
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            await self.app(scope, receive, send)
            return
        app_receive: Receive = responder._receive
        if self._rewrites and responder.observe().may_rewrite_request():
            app_receive = await responder._read_ahead()
        try:
            await self.app(scope, app_receive, responder._send)
        except BaseException as exc:
            responder.failed(exc)
            raise
        if not responder.complete:
            responder.returned()

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await self._flush()
            return message

        return wrapped

    async def _flush(self) -> None:
        """Deliver what is buffered before the server stops, off the event loop."""
        try:
            await asyncio.to_thread(self._binding.flush, SHUTDOWN_FLUSH_TIMEOUT_S)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)


class _Responder:
    """One request: where its response is in its lifecycle, and what was observed of it.

    Until ``observe()`` hands the request over to an ``Observer`` (``observer`` is None until
    then), the responder keeps what that observer would keep (the request body, the response
    start, a plain JSON body held while it fits in ``room``) and finishes the common case
    itself. Slots: its fields are read for every message."""

    __slots__ = (
        "body_done",
        "body_len",
        "body_parts",
        "complete",
        "disconnected",
        "exempt",
        "feed",
        "headers",
        "held",
        "holder",
        "match",
        "mw",
        "observer",
        "receive",
        "request",
        "resolved",
        "room",
        "scope",
        "send",
        "start",
        "status",
        "t0",
        "trailers",
    )

    def __init__(  # noqa: PLR0917  (once per request: positional is cheaper)
        self,
        mw: SessionCompletionMiddleware,
        match: RouteMatch,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: RequestInfo,
    ) -> None:
        self.t0 = perf_counter()
        self.start = time()
        self.mw = mw
        self.match = match
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request = request
        self.observer: Observer | None = None  # the fast path while None
        self.body_parts: list[bytes] | None = None  # as Observer.on_request_body keeps them
        self.body_len = 0
        # In the fast path, once the response started: its status and headers.
        self.status: int
        self.headers: Any
        # Where a chunk goes without a call while ``held`` is not None (see Observer.Holder):
        # in the fast path the plain JSON body; then the observer's holder's list, and
        # ``room`` a copy of its room, handed back at a cut (one attribute type per site
        # keeps the interpreter's attribute caches warm: no holder.held per chunk).
        self.held: list[bytes] | None = None
        self.room = 0
        self.holder: Holder | None = None
        self.feed: Callable[[bytes, bool], bytes] | None = None  # the observer's chunk feed
        self.trailers = False  # http.response.start announced trailers
        self.body_done = False  # the last body message went out
        self.complete = False  # the response ended and the event was built
        self.disconnected = False
        self.resolved = False  # endpoint, route and user were read from the scope
        self.exempt = False

    def observe(self) -> Observer:
        """Leave the fast path (once): an Observer told everything seen so far takes over."""
        observer = self.observer
        if observer is None:
            mw = self.mw
            observer = Observer(
                mw.settings,
                self.request,
                mw._capture,
                mw._stats,
                self.match,
                emit_built=mw._capture_built,
            )
            observer.carry_on(self.t0, self.start, self.body_parts, self.body_len, self.exempt)
            self.observer = observer
            held = self.held
            if held is not None:  # the response started: a plain JSON body
                self.held = None
                observer.on_response_start(self.status, self.headers)
                for chunk in held:
                    observer.on_chunk(chunk)
                self._adopt(observer)
        return observer

    def _adopt(self, observer: Observer) -> None:
        """The observer's chunk feed and holder take over the response body."""
        self.feed = observer.chunk_feed()
        holder = self.holder = observer.chunk_holder()
        if holder is not None:
            self.held = holder.held
            self.room = holder.room
        else:
            self.held = None

    def failed(self, exc: BaseException) -> None:
        """The app raised (or was cancelled), maybe after the response (a background task)."""
        if self.complete:
            return
        self._resolve()
        observer = self._taken_over()
        if observer is None:
            return
        if self.disconnected or is_disconnect(exc):
            observer.finish(cancelled=True)
        else:
            observer.finish(exception=exc)

    def returned(self) -> None:
        """The app returned before the response was complete."""
        if self.body_done:  # trailers were announced but never sent
            self._finish()
            return
        self._resolve()
        observer = self._taken_over()
        if observer is None:
            return
        if self.disconnected or observer.status is not None:
            # Starlette's StreamingResponse returns quietly when the client goes away.
            observer.finish(cancelled=True)
        else:
            observer.finish(exception=NoResponseSent())

    def _taken_over(self) -> Observer | None:
        """``observe()``, failsafe (None: it failed and was counted)."""
        try:
            return self.observe()
        except Exception as exc:
            self.complete = True
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)
            return None

    def _cut(self) -> None:
        """``room`` went below zero: in the fast path, a JSON body over ``max_body_bytes`` is
        the observer's (which abandons it, as it would have); else the holder cuts."""
        holder = self.holder
        if holder is None:
            self.observe()
            return
        holder.room = self.room
        holder.cut()
        self.held = holder.held
        self.room = holder.room

    async def _receive(self) -> Message:
        message = await self.receive()
        kind = message.get("type")
        if kind == "http.request":
            observer = self.observer
            if observer is not None:
                observer.on_request_body(message.get("body", b""))
            else:  # Observer.on_request_body, inline
                chunk = message.get("body", b"")
                size = self.body_len
                if chunk and size >= 0:
                    try:
                        size += len(chunk)
                        if size > self.mw._max_request:
                            self.body_len = -1
                            self.body_parts = None
                        else:
                            self.body_len = size
                            piece = chunk if type(chunk) is bytes else bytes(chunk)
                            parts = self.body_parts
                            if parts is None:
                                self.body_parts = [piece]
                            else:
                                parts.append(piece)
                    except Exception as exc:
                        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)
        elif kind == "http.disconnect":
            self.disconnected = True
        return message

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.body":  # the hot path: every chunk of a stream
            more = message.get("more_body", False)
            held = self.held
            if held is not None:
                # The usual chunk: held by reference, without a call.
                body = message.get("body", b"")
                held.append(body if type(body) is bytes else bytes(body))  # a bytearray may change
                self.room -= len(body)
                if self.room < 0:
                    try:
                        self._cut()
                    except Exception as exc:
                        self._chunk_failed(exc, body)
            else:
                feed = self.feed
                if feed is not None:
                    body = message.get("body", b"")
                    try:
                        out = feed(body, not more)
                        holder = self.holder
                        if holder is not None:  # the feed may have started holding
                            self.held = holder.held
                            self.room = holder.room
                    except Exception as exc:
                        out = self._chunk_failed(exc, body)
                    if out is not body:  # only when ensure_stream_usage dropped its usage event
                        message = {**message, "body": out}
            try:
                await self.send(message)
            except BaseException as exc:
                if is_disconnect(exc):  # ASGI 2.4 servers raise OSError once the client is gone
                    self.disconnected = True
                raise
            if not more:
                self.body_done = True
                if not self.trailers:
                    self._finish()
            return
        if kind == "http.response.start":
            self._start(message)
            try:
                await self.send(message)
            except BaseException as exc:
                if is_disconnect(exc):
                    self.disconnected = True
                raise
            return
        try:
            await self.send(message)
        except BaseException as exc:
            if is_disconnect(exc):
                self.disconnected = True
            raise
        if kind == "http.response.trailers":
            if not message.get("more_body", False):
                self._finish()
        elif kind == "http.response.pathsend":  # a file the server sends itself: no body seen
            self._finish()
        # unknown or future message types pass through untouched

    def _start(self, message: Message) -> None:
        if message.get("trailers", False) is True:
            self.trailers = True
        status = message.get("status", 0)
        headers = message.get("headers") or ()
        if self.observer is None and not self.trailers:
            try:
                if self._plain_json(status, headers):  # the fast path goes on
                    self.status = status
                    self.headers = headers
                    self.held = []
                    self.room = self.mw._max_body
                    return
            except Exception as exc:
                failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)
        else:
            self._resolve()
        observer = self._taken_over()
        if observer is not None:
            observer.on_response_start(status, headers)
            self._adopt(observer)

    def _plain_json(self, status: object, headers: Any) -> bool:
        """Resolve the route (``_resolve``, inline); True when the response that starts is one
        the fast path follows: an int status with a body, not exempt, no route options, not
        a stream, no content coding (what ``Observer.on_response_start`` tells apart)."""
        self.resolved = True
        scope = self.scope
        request = self.request
        if "user" in scope and request.user_id is None:
            request.user_id = user_id_of(scope)
        route = getattr(scope.get("route"), "path", None)
        if type(route) is str or isinstance(route, str):
            request.route = route
        endpoint = scope.get("endpoint")
        if endpoint is not None:
            exempt, options = endpoint_options(endpoint)
            if exempt or options is not None:  # Observer.set_endpoint's business
                self.exempt = exempt
                if options is not None and request.overrides is None:
                    request.overrides = options
                return False
        if type(status) is not int or status in _NO_BODY_STATUSES:
            return False
        # response_headers(), for the two names that matter here
        content_type = encoding = ""
        for name, value in headers:
            if type(name) is not bytes:
                content_type, encoding, _ = response_headers(headers)
                break
            size = len(name)
            if size == 12:
                if name == b"content-type" or name.lower() == b"content-type":
                    content_type = (
                        value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    ).lower()
            elif size == 16 and name.lower() == b"content-encoding":
                encoding = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        return not content_type.startswith("text/event-stream") and (
            not encoding or plain_encoding(encoding)
        )

    def _chunk_failed(self, exc: Exception, chunk: bytes) -> bytes:
        """Observer.chunk_failed: the body is not observed further."""
        observer = self._taken_over()
        self.held = self.holder = self.feed = None
        return chunk if observer is None else observer.chunk_failed(exc, chunk)

    def _finish(self) -> None:
        if self.complete:
            return
        self.complete = True
        self.holder = self.feed = None
        if not self.resolved:
            self._resolve()
        observer = self.observer
        if observer is not None:
            self.held = None
            observer.finish()
            return
        try:
            self._finish_fast()
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)
        self.held = None  # chunks after the end are not observed

    def _finish_fast(self) -> None:
        """The response completed in the fast path: a ``chat.completion`` body is built here
        (what ``Observer._build`` does for it), anything else is the observer's."""
        duration_ms = (perf_counter() - self.t0) * 1000.0
        held = self.held
        if not held:  # no body, or a body that no longer fit: the observer's
            self._taken_over_finish()
            return
        raw = held[0] if len(held) == 1 else b"".join(held)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:  # the observer sorts out what it was
            self._taken_over_finish()
            return
        request_body = parse_request_body(self.body_parts)
        status = self.status
        if type(body) is dict and body.get("object") == "chat.completion" and status < 400:
            mw = self.mw
            request = self.request
            stats = mw._stats
            event = chat_event(  # chat_completion_event, one call fewer
                request,
                self.start,
                duration_ms,
                status,
                request_body,
                body.get("id"),
                body.get("model"),
                body.get("usage"),
                mw.settings.identity.resolve(request, request_body, stats),
                None,
                "http",
            )
            if event["usage"]["source"] == "missing":
                failsafe.record_failure(failsafe.MISSING_USAGE, stats)
            try:
                mw._capture_built(event)
            except Exception as exc:
                failsafe.internal_error(failsafe.EMIT_ERROR, exc, stats)
            return
        self.held = None  # parsed: the observer takes it as it is
        self.body_parts = None
        observer = self._taken_over()
        if observer is not None:
            observer.on_response_start(status, self.headers)
            observer.carry_request_body(request_body)
            observer.finish_json(body)

    def _taken_over_finish(self) -> None:
        observer = self._taken_over()
        if observer is not None:
            observer.finish()

    def _resolve(self) -> None:
        """Read what the app put in the scope: Starlette's router sets ``endpoint`` and
        ``route`` and AuthenticationMiddleware sets ``user`` on the same dict. Once: at the
        response start, or at the end when the app never started one."""
        if self.resolved:
            return
        self.resolved = True
        try:
            scope = self.scope
            request = self.request
            if "user" in scope and request.user_id is None:
                request.user_id = user_id_of(scope)
            route = getattr(scope.get("route"), "path", None)
            endpoint = scope.get("endpoint")
            observer = self.observer
            if observer is not None:
                if endpoint is not None or route is not None:
                    observer.set_endpoint(endpoint, route if isinstance(route, str) else None)
                return
            # Observer.set_endpoint, inline
            if type(route) is str or isinstance(route, str):
                request.route = route
            if endpoint is not None:
                exempt, options = endpoint_options(endpoint)
                if exempt:
                    self.exempt = True
                if options is not None and request.overrides is None:
                    request.overrides = options
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)

    async def _read_ahead(self) -> Receive:
        """``ensure_stream_usage``: read the whole request body before the app does, so it can
        be rewritten; the app then receives the (possibly new) body, then the live channel."""
        observer = self.observe()
        held: list[Message] = []
        complete = False
        while True:
            message = await self.receive()
            held.append(message)
            if message.get("type") != "http.request":
                self.disconnected = message.get("type") == "http.disconnect"
                break
            observer.on_request_body(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        new_body = observer.request_body_rewrite() if complete else None
        if new_body is not None:
            held = [{"type": "http.request", "body": new_body, "more_body": False}]
            length = str(len(new_body)).encode("latin-1")
            # In place, so outer middleware reading this scope later sees the same dict.
            self.scope["headers"] = [
                (name, length if name.lower() == b"content-length" else value)
                for name, value in self.scope.get("headers") or ()
            ]

        async def replay() -> Message:
            if held:
                return held.pop(0)
            return await self._receive()

        return replay
