"""The ASGI middleware's recorder: one exchange, kept by reference for a capture process.

With a capture process (``middleware.offload``, docs/offload.md) an observed request is
followed by a ``Recorder`` instead of a ``_Responder``: it keeps the request body and the
response's start and chunks as they pass, by reference, and when the response ends hands one
flat tuple (``offload.record``) to the ``Offloader``. Nothing is parsed here. The capture
process replays the tuple through the same ``Observer`` the inline path uses.

Past ``max_body_bytes`` a stream is handed to an in-process ``Observer`` (told everything seen
so far, as the inline path's fast path does), so memory stays bounded however long it runs;
any other body past the cap is dropped and replayed as "over the cap", as the observer would
have abandoned it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from .extract import failsafe
from .extract.observer import Observer, endpoint_options, response_headers
from .extract.request import RequestInfo
from .extract.request_body import keep_piece
from .offload.record import END_CANCELLED, END_COMPLETE, END_EXCEPTION, END_NO_RESPONSE

if TYPE_CHECKING:
    from .asgi import SessionCompletionMiddleware
    from .offload import Offloader

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class NoResponseSent(Exception):
    """Outcome marker: the app returned without starting a response (the server sends 500)."""


def user_id_of(scope: Scope) -> str | None:
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


def is_disconnect(exc: BaseException) -> bool:
    # ClientDisconnect (Starlette) is matched by name so this module never imports Starlette.
    return isinstance(exc, OSError | asyncio.CancelledError) or type(exc).__name__ in (
        "ClientDisconnect",
        "ClientDisconnected",
    )


class Recorder:
    """One request's record in the making (slots: read for every message)."""

    __slots__ = (
        "body_done",
        "body_len",
        "body_parts",
        "chunks",
        "complete",
        "disconnected",
        "headers",
        "inner_receive",
        "inner_send",
        "key",
        "method",
        "mw",
        "observer",
        "offloader",
        "over_cap",
        "path",
        "room",
        "scope",
        "start",
        "status",
        "t0",
        "trailers",
    )

    def __init__(  # noqa: PLR0917  (once per request: positional is cheaper)
        self,
        mw: SessionCompletionMiddleware,
        offloader: Offloader,
        key: int,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        path: str,
    ) -> None:
        self.t0 = perf_counter()
        self.start = time()
        self.mw = mw
        self.offloader = offloader
        self.key = key
        self.scope = scope
        self.inner_receive = receive
        self.inner_send = send
        self.method = method
        self.path = path
        self.body_parts: list[bytes] | None = None
        self.body_len = 0  # -1: over max_request_body_bytes, dropped
        self.status: Any = None
        self.headers: Any = None
        self.chunks: list[bytes] | None = None  # set when the response starts
        self.room = 0
        self.over_cap = False
        self.observer: Observer | None = None  # a stream past the cap, followed in-process
        self.trailers = False
        self.body_done = False
        self.complete = False
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self.inner_receive()
        kind = message.get("type")
        if kind == "http.request":
            body = message.get("body", b"")
            if self.body_parts is None and type(body) is bytes and self.body_len == 0:
                # The usual request: its whole body in one message (keep_piece, inlined).
                if body:
                    if len(body) > self.mw._max_request:
                        self.body_len = -1
                    else:
                        self.body_parts = [body]
                        self.body_len = len(body)
            else:
                self.body_parts, self.body_len = keep_piece(
                    self.body_parts, self.body_len, body, self.mw._max_request
                )
        elif kind == "http.disconnect":
            self.disconnected = True
        return message

    def send(self, message: Message) -> Awaitable[None]:
        """The app's ``send``. A plain function returning the server's awaitable for the
        start and every chunk but the last: no coroutine of its own per message (a server's
        error on those reaches the app, and ``failed``, unchanged)."""
        # Only http.response.body has more_body: the hot path, every chunk but the last.
        if message.get("more_body"):
            chunks = self.chunks
            if chunks is not None:
                try:
                    body = message["body"]
                except KeyError:  # optional in the spec; present in practice
                    body = b""
                if type(body) is not bytes:
                    body = bytes(body)  # a bytearray or memoryview may change after the send
                chunks.append(body)
                room = self.room - len(body)
                self.room = room
                if room < 0:
                    self._past_cap()
            elif self.observer is not None:
                self._observe_chunk(message.get("body", b""), False)
            return self.inner_send(message)
        kind = message.get("type")
        if kind == "http.response.body":
            return self._send_last(message)
        if kind == "http.response.start":
            self.status = message.get("status")
            self.headers = message.get("headers") or []
            self.trailers = message.get("trailers", False) is True
            self.chunks = []
            self.room = self.mw._max_body
            return self.inner_send(message)
        return self._send_other(message, kind)

    async def _send_last(self, message: Message) -> None:
        """The last body message: the record is complete once it went out."""
        chunks = self.chunks
        if chunks is not None:
            body = message.get("body", b"")
            if body:
                chunks.append(body if type(body) is bytes else bytes(body))
                self.room -= len(body)
                if self.room < 0:
                    self._past_cap()
        elif self.observer is not None:
            self._observe_chunk(message.get("body", b""), True)
        try:
            await self.inner_send(message)
        except BaseException as exc:
            self._send_failed(exc)
            raise
        self.body_done = True
        if not self.trailers:
            self.finish(END_COMPLETE)

    async def _send_other(self, message: Message, kind: object) -> None:
        try:
            await self.inner_send(message)
        except BaseException as exc:
            self._send_failed(exc)
            raise
        if kind == "http.response.trailers":
            if not message.get("more_trailers", False):
                self.finish(END_COMPLETE)
        elif kind == "http.response.pathsend":  # a file the server sends itself: no body seen
            self.finish(END_COMPLETE)

    def _send_failed(self, exc: BaseException) -> None:
        if is_disconnect(exc):  # ASGI 2.4 servers raise OSError once the client is gone
            self.disconnected = True

    # --- past max_body_bytes ------------------------------------------------------------------
    def _past_cap(self) -> None:
        try:
            content_type = response_headers(self.headers)[0]
            if not content_type.startswith("text/event-stream"):
                self.chunks = None  # abandoned, as the observer abandons such a body
                self.over_cap = True
                return
            observer = self.mw._binding.inline_observer(
                RequestInfo.from_raw(self.method, self.path, self.scope.get("headers"), None),
                self.mw.settings.observes(self.method, self.path),
            )
            observer.carry_on(self.t0, self.start, self.body_parts, self.body_len, False)
            observer.on_response_start(self.status, self.headers)
            for chunk in self.chunks or ():
                observer.on_chunk(chunk)
            self.observer = observer
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)
            self.over_cap = True
        self.chunks = None

    def _observe_chunk(self, chunk: bytes, last: bool) -> None:
        observer = self.observer
        assert observer is not None
        observer.on_chunk(chunk, last)  # failsafe itself

    # --- the end --------------------------------------------------------------------------
    def failed(self, exc: BaseException) -> None:
        """The app raised (or was cancelled), maybe after the response (a background task)."""
        if self.complete:
            return
        if self.disconnected or is_disconnect(exc):
            self.finish(END_CANCELLED)
        else:
            self.finish(END_EXCEPTION, type(exc).__name__)

    def returned(self) -> None:
        """The app returned before the response was complete."""
        if self.body_done:  # trailers were announced but never sent
            self.finish(END_COMPLETE)
        elif self.disconnected or self.status is not None:
            # Starlette's StreamingResponse returns quietly when the client goes away.
            self.finish(END_CANCELLED)
        else:
            self.finish(END_NO_RESPONSE)

    def finish(self, end: int, error_name: str | None = None) -> None:
        """Hand the record over (or finish the in-process observer of a long stream)."""
        if self.complete:
            return
        self.complete = True
        duration_ms = (perf_counter() - self.t0) * 1000.0
        try:
            self._hand_over(end, error_name, duration_ms)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.mw._stats)

    def _hand_over(self, end: int, error_name: str | None, duration_ms: float) -> None:
        scope = self.scope
        # What the app put in the scope: Starlette's router sets endpoint and route and
        # AuthenticationMiddleware sets user, on the same dict.
        endpoint = scope.get("endpoint")
        options: tuple[Any, Any, Any] | None = None
        if endpoint is not None:
            exempt, found = endpoint_options(endpoint)
            if exempt:
                return
            if found is not None:
                metadata = found.metadata
                options = (
                    found.session_type,
                    found.extractor,
                    dict(metadata) if metadata is not None else None,
                )
        route = getattr(scope.get("route"), "path", None)
        if not isinstance(route, str):
            route = None
        user_id = None
        if "user" in scope:
            user_id = user_id_of(scope)
        observer = self.observer
        if observer is not None:
            self._finish_observer(
                observer, end, error_name, route=route, user_id=user_id, endpoint=endpoint
            )
            return
        chunks = self.chunks
        offloader = self.offloader
        record = (
            self.key, offloader.next_seq(), self.method, self.path, route, scope.get("headers"),
            user_id, options, self.body_parts, self.body_len, self.status, self.headers,
            chunks if chunks is not None else [], self.over_cap, self.start, duration_ms, end,
            error_name,
        )  # fmt: skip
        self.chunks = None
        if not offloader.put(record):
            self.mw._binding.replay_inline(record)

    def _finish_observer(
        self,
        observer: Observer,
        end: int,
        error_name: str | None,
        *,
        route: str | None,
        user_id: str | None,
        endpoint: object,
    ) -> None:
        observer.request.user_id = user_id
        observer.set_endpoint(endpoint, route)
        if end == END_COMPLETE:
            observer.finish()
        elif end == END_CANCELLED:
            observer.finish(cancelled=True)
        else:
            from .offload.record import recorded_error

            error = recorded_error(error_name) if error_name else NoResponseSent()
            observer.finish(exception=error)
