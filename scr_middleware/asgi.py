"""FastAPI / Starlette (any ASGI app): ``app.add_middleware(SessionCompletionMiddleware)``.

Pure ASGI, not ``BaseHTTPMiddleware``: responses are never buffered, each message goes out the
moment the app sends it. Per-request state lives in a new ``_Responder``, never on the
middleware. Requests to other paths reach the app with the original ``receive``/``send``.

The wrappers run for every message of every observed request, so they stay flat: no extra
coroutine per message, body messages tested first, the observer's work deferred to ``finish``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .extract import failsafe
from .extract.binding import Binding
from .extract.observer import Observer
from .extract.request import RequestInfo

if TYPE_CHECKING:
    from .runtime import SessionCompletionRuntime

__all__ = ["SessionCompletionMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SHUTDOWN_FLUSH_TIMEOUT_S: Final = 5.0


class NoResponseSent(Exception):
    """Outcome marker: the app returned without starting a response (the server sends 500)."""


def _user_id(scope: Scope) -> str | None:
    """Starlette's AuthenticationMiddleware puts a user in ``scope["user"]``."""
    user = scope.get("user")
    if user is None or getattr(user, "is_authenticated", True) is False:
        return None
    if isinstance(user, str | int):
        return str(user)
    for attribute in ("identity", "username"):
        try:
            value = getattr(user, attribute, None)
        except NotImplementedError:  # starlette.authentication.BaseUser.identity
            continue
        if isinstance(value, str | int) and value != "":
            return str(value)
    return None


def _is_disconnect(exc: BaseException) -> bool:
    # ClientDisconnect (Starlette) is matched by name so this module never imports Starlette.
    return isinstance(exc, OSError | asyncio.CancelledError) or type(exc).__name__ in (
        "ClientDisconnect",
        "ClientDisconnected",
    )


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
        self._binding = Binding(config, runtime)
        self.settings = self._binding.settings
        self._stats = self._binding.stats
        self._observes = self.settings.observes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        match = self._observes(scope.get("method", ""), scope.get("path", ""))
        if match is None:
            await self.app(scope, receive, send)
            return
        responder = _Responder()
        responder.scope = scope
        responder.receive = receive
        responder.send = send
        try:
            request = RequestInfo.from_raw(
                scope.get("method", ""),
                scope.get("path", ""),
                scope.get("headers"),
                _user_id(scope) if "user" in scope else None,
            )
            responder.observer = observer = self._binding.observer(request, match)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self._stats)
            await self.app(scope, receive, send)
            return
        app_receive: Receive = responder._receive
        if self.settings.ensure_stream_usage and observer.may_rewrite_request():
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
    """One request's state: its observer and where the response is in its lifecycle. Set
    up by the middleware; the flags start from the class defaults (no stores per request)."""

    scope: Scope
    receive: Receive
    send: Send
    observer: Observer
    feed: Callable[[bytes, bool], bytes] | None = None  # the observer's, once the response starts
    trailers = False  # http.response.start announced trailers
    body_done = False  # the last body message went out
    complete = False  # the response ended and the observer finished
    disconnected = False
    resolved = False  # endpoint, route and user were read from the scope

    def failed(self, exc: BaseException) -> None:
        """The app raised (or was cancelled)."""
        self._resolve()
        if self.disconnected or _is_disconnect(exc):
            self.observer.finish(cancelled=True)
        else:
            self.observer.finish(exception=exc)

    def returned(self) -> None:
        """The app returned before the response was complete."""
        if self.body_done:  # trailers were announced but never sent
            self._finish()
            return
        self._resolve()
        if self.disconnected or self.observer.status is not None:
            # Starlette's StreamingResponse returns quietly when the client goes away.
            self.observer.finish(cancelled=True)
        else:
            self.observer.finish(exception=NoResponseSent())

    async def _receive(self) -> Message:
        message = await self.receive()
        kind = message.get("type")
        if kind == "http.request":
            self.observer.on_request_body(message.get("body", b""))
        elif kind == "http.disconnect":
            self.disconnected = True
        return message

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.body":  # the hot path: every chunk of a stream
            body = message.get("body", b"")
            more = message.get("more_body", False)
            feed = self.feed
            if feed is not None:
                try:
                    out = feed(body, not more)
                except Exception as exc:
                    self.feed = None
                    out = self.observer.chunk_failed(exc, body)
                if out is not body:  # only when ensure_stream_usage dropped its usage event
                    message = {**message, "body": out}
        elif kind == "http.response.start":
            self.trailers = message.get("trailers", False) is True
            self._resolve()  # the router set endpoint and route before the endpoint ran
            observer = self.observer
            observer.on_response_start(message.get("status", 0), message.get("headers") or ())
            self.feed = observer.chunk_feed()
        try:
            await self.send(message)
        except BaseException as exc:
            if _is_disconnect(exc):  # ASGI 2.4 servers raise OSError once the client is gone
                self.disconnected = True
            raise
        if kind == "http.response.body":
            if not more:
                self.body_done = True
                if not self.trailers:
                    self._finish()
        elif kind == "http.response.trailers":
            if not message.get("more_body", False):
                self._finish()
        elif kind == "http.response.pathsend":  # a file the server sends itself: no body seen
            self._finish()
        # unknown or future message types pass through untouched

    def _finish(self) -> None:
        if not self.complete:
            self.complete = True
            self.feed = None
            if not self.resolved:
                self._resolve()
            self.observer.finish()

    def _resolve(self) -> None:
        """Read what the app put in the scope: Starlette's router sets ``endpoint`` and
        ``route`` and AuthenticationMiddleware sets ``user`` on the same dict. Once: at the
        response start, or at the end when the app never started one."""
        if self.resolved:
            return
        self.resolved = True
        try:
            scope = self.scope
            observer = self.observer
            if observer.request.user_id is None and "user" in scope:
                observer.request.user_id = _user_id(scope)
            route = getattr(scope.get("route"), "path", None)
            endpoint = scope.get("endpoint")
            if endpoint is not None or route is not None:
                observer.set_endpoint(endpoint, route if isinstance(route, str) else None)
        except Exception as exc:
            self.observer.internal_error(exc)

    async def _read_ahead(self) -> Receive:
        """``ensure_stream_usage``: read the whole request body before the app does, so it can
        be rewritten; the app then receives the (possibly new) body, then the live channel."""
        held: list[Message] = []
        complete = False
        while True:
            message = await self.receive()
            held.append(message)
            if message.get("type") != "http.request":
                self.disconnected = message.get("type") == "http.disconnect"
                break
            self.observer.on_request_body(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        new_body = self.observer.request_body_rewrite() if complete else None
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
