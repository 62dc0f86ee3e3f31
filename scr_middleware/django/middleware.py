"""``"scr_middleware.django.SessionCompletionMiddleware"`` in ``MIDDLEWARE``.

Sync and async capable (Django picks the mode from the chain; in async mode ``__call__``
returns a coroutine, so no thread hop is added). A plain ``HttpResponse`` is observed once,
from ``response.content``; a ``StreamingHttpResponse`` gets its ``streaming_content`` wrapped
(sync iterator for sync content, async iterator for async content, exactly like Django's own
``GZipMiddleware``), so chunks still leave one by one and the event is finished when the
iterator is exhausted, fails, is cancelled or the response is closed. A ``FileResponse`` that
Django will hand to the server's ``wsgi.file_wrapper`` is observed as a response without body.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed, RequestDataTooBig
from django.utils.functional import SimpleLazyObject, empty

from scr_middleware.extract import failsafe
from scr_middleware.extract.binding import Binding
from scr_middleware.extract.observer import Observer
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import OBSERVED_METHODS
from scr_middleware.offload.recording import Recording
from scr_middleware.routes_options import RouteOptions
from scr_middleware.wsgi.body import BodyState, ObservedBody
from scr_middleware.wsgi.views import is_exempt, view_options

from .conf import conf

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

    from scr_middleware.offload import Offloader

__all__ = ["SessionCompletionMiddleware"]

GetResponse = Callable[["HttpRequest"], "HttpResponseBase"]
AsyncGetResponse = Callable[["HttpRequest"], Awaitable["HttpResponseBase"]]

# The exception ``process_exception`` saw, kept on the request for the 500 page's event.
_EXCEPTION_ATTR: Final = "_scr_exception"
# The only response headers the observer reads.
_OBSERVED_HEADERS: Final = ("content-type", "content-length", "content-encoding")


class SessionCompletionMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.binding = binding = Binding(conf.config_source())  # ConfigError at start-up
        self.settings = settings = binding.settings
        self.max_request_body = settings.max_request_body_bytes
        if not settings.enabled:
            raise MiddlewareNotUsed("scr_middleware: middleware.enabled is false")
        self._route = settings.routes.match  # ObserverSettings.observes, less one call

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        if request.method not in OBSERVED_METHODS:
            return self.get_response(request)
        match = self._route(request.path)
        if match is None:
            return self.get_response(request)
        observer = self._start(request, match)
        if observer is None:
            return self.get_response(request)
        try:
            response: HttpResponseBase = self.get_response(request)
        except BaseException as exc:  # only with DEBUG_PROPAGATE_EXCEPTIONS and the like
            observer.finish(exception=exc)
            raise
        if self._resolve(request, observer):
            _set_user(observer, self._user_id(request))
            self._observe(request, response, observer)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: AsyncGetResponse = self.get_response
        if request.method not in OBSERVED_METHODS:
            return await get_response(request)
        match = self._route(request.path)
        if match is None:
            return await get_response(request)
        observer = self._start(request, match)
        if observer is None:
            return await get_response(request)
        try:
            response = await get_response(request)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                observer.finish(cancelled=True)
            else:
                observer.finish(exception=exc)
            raise
        if self._resolve(request, observer):
            _set_user(observer, await self._auser_id(request))
            self._observe(request, response, observer)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        # Django turns the exception into its 500 page; the event reports the exception.
        setattr(request, _EXCEPTION_ATTR, exception)

    # -- per request -----------------------------------------------------------------------

    def _start(self, request: HttpRequest, match: RouteMatch) -> Observer | _Recorded | None:
        """The request's observer: a ``_Recorded`` when events go to a capture process."""
        try:
            binding = self.binding
            link = binding.offload
            observer: Observer | _Recorded
            if link is not None and (offloader := link.now()) is not None:
                observer = _Recorded(binding, offloader, link.key, request)
            else:
                method, meta = request.method or "", request.META
                info = RequestInfo.from_environ(method, request.path, meta, None)
                observer = binding.inline_observer(info, match)
            if self.max_request_body > 0:
                self._read_body(request, observer)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
            return None
        return observer

    def _read_body(self, request: HttpRequest, observer: Observer | _Recorded) -> None:
        """Read ``request.body`` before the view, when that is invisible to it: a JSON body of
        declared size within our cap (Django then serves the view's reads from memory, as it
        does after any ``request.body``). Over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, Django refuses
        before reading anything, so the view meets the same refusal."""
        meta = request.META
        if "json" not in meta.get("CONTENT_TYPE", "json"):
            return
        length = meta.get("CONTENT_LENGTH")
        if not (length and length.isdecimal() and 0 < int(length) <= self.max_request_body):
            return
        try:
            body = request.body
        except (OSError, RequestDataTooBig):  # UnreadablePostError: the client went away
            return
        observer.on_request_body(body)
        new_body = observer.request_body_rewrite() if self.settings.ensure_stream_usage else None
        if new_body is not None:
            # ensure_stream_usage: Django has no public setter for the body; these are the two
            # attributes its ``body`` property itself fills in.
            request._body = new_body
            request._stream = io.BytesIO(new_body)
            meta["CONTENT_LENGTH"] = str(len(new_body))

    def _resolve(self, request: HttpRequest, observer: Observer | _Recorded) -> bool:
        """The resolved view: False for ``@scr_exempt`` (nothing observed, nothing emitted),
        else its route and options go to the observer."""
        try:
            match = getattr(request, "resolver_match", None)
            if match is not None:
                if is_exempt(match.func):
                    return False
                route = getattr(match, "route", None)
                observer.set_endpoint(match.func, route if isinstance(route, str) else None)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
        return True

    def _user_id(self, request: HttpRequest) -> str | None:
        try:
            return _user_id(getattr(request, "user", None))  # may load it: fine off the loop
        except Exception as exc:
            failsafe.internal_error(failsafe.IDENTITY_ERROR, exc, self.binding.stats)
            return None

    async def _auser_id(self, request: HttpRequest) -> str | None:
        """``request.user`` without a database query on the event loop: an already loaded
        user, else ``await request.auser()`` (AuthenticationMiddleware)."""
        try:
            user = request.__dict__.get("user")
            if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
                auser = getattr(request, "auser", None)
                user = await auser() if auser is not None else None
            return _user_id(user)
        except Exception as exc:
            failsafe.internal_error(failsafe.IDENTITY_ERROR, exc, self.binding.stats)
            return None

    def _observe(
        self, request: HttpRequest, response: HttpResponseBase, observer: Observer | _Recorded
    ) -> None:
        try:
            observer.on_response_start(response.status_code, _headers(response))
            if not response.streaming:
                content = getattr(response, "content", b"")
                observer.on_chunk(content if isinstance(content, bytes) else b"", last=True)
                self.finish(request, observer, False, None)
            elif getattr(response, "file_to_stream", None) is not None:
                self.finish(request, observer, False, None)  # sent by wsgi.file_wrapper
            else:
                streamed: Any = response.streaming_content
                if response.is_async:
                    stream: BodyState[Observer | _Recorded] = _AsyncStream(
                        self, request, observer, streamed
                    )
                else:
                    stream = _SyncStream(self, request, observer, streamed)
                response.streaming_content = stream
                stream.started()
                length = response.get("Content-Length")
                stream.expected = int(length) if length and length.isdigit() else None
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)

    def finish(
        self,
        request: HttpRequest,
        observer: Observer | _Recorded,
        cancelled: bool,
        exception: BaseException | None,
    ) -> None:
        stored = getattr(request, _EXCEPTION_ATTR, None)
        if (
            exception is None
            and not cancelled
            and isinstance(stored, BaseException)
            and (observer.status or 500) >= 500
        ):
            exception = stored
        observer.finish(cancelled=cancelled, exception=exception)


class _Recorded(Recording):
    """Process mode: the request's record in the making (``offload.recording``), taking the
    calls this middleware makes on an ``Observer``; the late information (route,
    ``@scr_route`` options, user) is kept for ``finish``."""

    __slots__ = ("done", "options", "route", "user_id")

    def __init__(
        self, binding: Binding, offloader: Offloader, key: int, request: HttpRequest
    ) -> None:
        super().__init__(binding, offloader, key, request.method or "", request.path, request.META)
        self.route: str | None = None
        self.options: RouteOptions | None = None
        self.user_id: str | None = None
        self.done = False  # finished, or the endpoint is exempt

    def request_body_rewrite(self) -> bytes | None:
        return None  # ensure_stream_usage requests are observed in-process (Binding)

    def set_endpoint(self, endpoint: object, route: str | None = None) -> None:
        """``Observer.set_endpoint``: an exempt endpoint records nothing."""
        self.route = route
        try:
            exempt, self.options = view_options(endpoint)
        except Exception as exc:
            self.internal_error(exc)
            return
        if exempt:
            self.done = True

    def finish(self, *, cancelled: bool = False, exception: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            self.finish_record(cancelled, exception, self.user_id, self.route, self.options)


def _set_user(observer: Observer | _Recorded, user_id: str | None) -> None:
    if isinstance(observer, _Recorded):
        observer.user_id = user_id
    else:
        observer.request.user_id = user_id


def _headers(response: HttpResponseBase) -> Any:
    """The header pairs the observer reads (content type, length and encoding: see
    ``extract.observer.response_headers``), looked up in Django's header store,
    ``{lower-case name: (name, value)}``: handing it every header (security middleware adds
    several) cost more than the rest of this adapter's response path."""
    store = getattr(response.headers, "_store", None)
    if type(store) is not dict:
        return list(response.items())
    pairs = []
    for name in _OBSERVED_HEADERS:
        pair = store.get(name)
        if pair is not None:
            pairs.append(pair)
    return pairs


def _user_id(user: Any) -> str | None:
    """An authenticated user's primary key, as a string."""
    if user is None or getattr(user, "is_authenticated", False) is not True:
        return None
    pk = getattr(user, "pk", None)
    return str(pk) if pk is not None and pk != "" else None


class _SyncStream(ObservedBody["Observer | _Recorded"]):
    """Sync ``streaming_content``: the view's chunks, unchanged, one by one."""

    __slots__ = ("_middleware", "_request")

    def __init__(
        self,
        middleware: SessionCompletionMiddleware,
        request: HttpRequest,
        observer: Observer | _Recorded,
        content: Any,
    ) -> None:
        super().__init__(observer)
        self._result = content
        self._middleware = middleware
        self._request = request

    def finish_event(self, cancelled: bool, exception: BaseException | None) -> None:
        self._middleware.finish(self._request, self.observer, cancelled, exception)


class _AsyncStream(BodyState["Observer | _Recorded"]):
    """Async ``streaming_content``: the view's chunks, unchanged, one by one. Only async
    iteration is offered, so Django keeps treating the response as async."""

    __slots__ = ("_iterator", "_middleware", "_request")

    def __init__(
        self,
        middleware: SessionCompletionMiddleware,
        request: HttpRequest,
        observer: Observer | _Recorded,
        content: AsyncIterator[bytes],
    ) -> None:
        super().__init__(observer)
        self._iterator = content
        self._middleware = middleware
        self._request = request

    def finish_event(self, cancelled: bool, exception: BaseException | None) -> None:
        self._middleware.finish(self._request, self.observer, cancelled, exception)

    def __aiter__(self) -> _AsyncStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await anext(self._iterator)
            except StopAsyncIteration:
                tail = self.end()
                if tail:
                    return tail
                raise
            except BaseException as exc:  # CancelledError: the client disconnected
                self.fail(exc)
                raise
            out = self.forward(chunk)
            if out or not chunk:
                return out

    def close(self) -> None:
        # Django calls this from response.close(): a stream closed before its end was cut off.
        self.settle_closed()
