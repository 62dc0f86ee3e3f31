"""``SessionCompletionMiddleware``: per-request state lives in one new object, at once the
``start_response`` the app gets and the iterable the server gets: a ``RecordedExchange``
(recorded.py) when events go to a capture process, else an ``_Exchange`` whose ``Observer``
extracts here. Requests to other paths reach the app with the original ``environ`` and
``start_response``."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from scr_middleware.extract import failsafe
from scr_middleware.extract.observer import Observer
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import OBSERVED_METHODS, ObserverSettings

from ..extract.binding import Binding, ConfigSource
from .body import ObservedBody, Sized, content_length
from .input import read_body
from .keys import (
    ENVIRON_ENDPOINT,
    ENVIRON_EXCEPTION,
    ENVIRON_OBSERVED,
    ENVIRON_ROUTE,
    ENVIRON_USER_ID,
)
from .recorded import RecordedExchange
from .views import exempt_at_start, status_code

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from scr_middleware.runtime import SessionCompletionRuntime

__all__ = ["SessionCompletionMiddleware"]

Write = Callable[[bytes], object]


class SessionCompletionMiddleware:
    """``SessionCompletionMiddleware(app, *, config=None, runtime=None)`` (see ``Binding``)."""

    # A framework adapter's hook, called with the environ from the app's ``start_response``
    # (inside the framework, while its request context is alive): it puts what only the
    # framework knows under the ``ENVIRON_*`` keys (``scr_middleware.flask`` does).
    in_context: Callable[[WSGIEnvironment], object] | None = None

    def __init__(
        self,
        app: WSGIApplication,
        *,
        config: ConfigSource = None,
        runtime: SessionCompletionRuntime | None = None,
    ) -> None:
        self.app = app
        self.binding = binding = Binding(config, runtime)
        self.settings = settings = binding.settings
        # Decided once, not per request. ObserverSettings.match: None observes nothing.
        self._route = settings.routes.match if settings.enabled else None
        self._offload = binding.offload

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self._route
        if route is None or environ.get("REQUEST_METHOD") not in OBSERVED_METHODS:
            return self.app(environ, start_response)
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        match = route(path)
        if match is None:
            return self.app(environ, start_response)
        exchange: RecordedExchange | _Exchange
        try:
            link = self._offload  # None, or no offloader in use now: extract here
            if link is not None and (offloader := link.now()) is not None:
                key = link.key
                exchange = RecordedExchange(self, environ, path, offloader, key, start_response)
            else:
                exchange = _Exchange(self, environ, path, match, start_response)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
            return self.app(environ, start_response)
        try:
            result = self.app(environ, exchange)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        return exchange.wrap(result)


class _Exchange(ObservedBody[Observer]):
    """One request: its observer, the ``start_response`` handed to the app (``__call__``) and
    the body handed to the server (``ObservedBody``)."""

    __slots__ = (
        "disconnected",
        "environ",
        "headers",
        "in_context",
        "server_start",
        "server_write",
        "stats",
    )

    def __init__(
        self,
        middleware: SessionCompletionMiddleware,
        environ: WSGIEnvironment,
        path: str,
        match: RouteMatch,
        start_response: StartResponse,
    ) -> None:
        binding = middleware.binding
        user = environ.get("REMOTE_USER")
        observer = binding.inline_observer(
            RequestInfo.from_environ(
                environ.get("REQUEST_METHOD", ""),
                path,
                environ,
                user if isinstance(user, str) and user else None,
            ),
            match,
        )
        # The state of ObservedBody, set here rather than through two __init__ calls.
        self.observer = observer
        self.expected = None
        self.sent = 0
        self.ended = False
        self.done = False
        self.feed = None
        self._result = ()
        self.environ = environ
        self.stats = binding.stats
        self.in_context = middleware.in_context
        self.server_start = start_response
        self.server_write: Callable[[bytes], object] | None = None
        self.headers: list[tuple[str, str]] | None = None
        self.disconnected = False
        environ[ENVIRON_OBSERVED] = True
        if observer.wants_request_body():
            self._prepare_input(binding.settings)

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """What the server gets for the app's ``result``."""
        if self.done:  # an exempt view: pass everything through
            return result
        file_wrapper = self.environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # The server sends the file itself (sendfile): observed as a response without body.
            self.ended = True
            self.settle_closed()
            return result
        self._result = result
        if hasattr(result, "__len__"):
            return Sized(self, result)
        return self

    def declared_length(self) -> int | None:
        return content_length(self.headers) if self.headers is not None else None

    def failed(self, exc: BaseException) -> None:
        """``app(environ, start_response)`` raised."""
        if self.disconnected:
            self.cancel()
        else:
            self.fail(exc)

    # -- response ------------------------------------------------------------------------

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Write:
        """The app's ``start_response``."""
        server_write = (
            self.server_start(status, headers)
            if exc_info is None
            else self.server_start(status, headers, exc_info)
        )
        if self.done:
            return server_write
        try:
            if exempt_at_start(self.environ, self.in_context):
                self.skip()
                return server_write
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.stats)
        self.observer.on_response_start(status_code(status), headers)
        self.feed = self.observer.chunk_feed()
        self.headers = headers  # for declared_length(), only needed when closed early
        self.server_write = server_write
        return self._write

    def _write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: a failure here is the server losing the client."""
        server_write = self.server_write
        assert server_write is not None  # set by __call__, which returned this method
        try:
            return server_write(self.forward(data))
        except BaseException:
            self.disconnected = True
            raise

    def finish_event(self, cancelled: bool, exception: BaseException | None) -> None:
        observer = self.observer
        environ = self.environ
        try:
            request = observer.request
            if request.user_id is None:
                user = environ.get(ENVIRON_USER_ID) or environ.get("REMOTE_USER")
                if user and isinstance(user, str):
                    request.user_id = user
            endpoint = environ.get(ENVIRON_ENDPOINT)
            route = environ.get(ENVIRON_ROUTE)
            if endpoint is not None or route is not None:
                observer.set_endpoint(endpoint, route if isinstance(route, str) else None)
            if exception is None and not cancelled:
                stored = environ.get(ENVIRON_EXCEPTION)
                if (
                    stored is not None
                    and isinstance(stored, BaseException)
                    and (observer.status or 500) >= 500
                ):
                    exception = stored  # the framework turned it into its 500 page
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.stats)
        observer.finish(cancelled=cancelled, exception=exception)

    # -- request body ----------------------------------------------------------------------

    def _prepare_input(self, settings: ObserverSettings) -> None:
        """The request body for the observer (``input.read_body``); one read whole is
        rewritten for ``ensure_stream_usage``, with ``CONTENT_LENGTH`` fixed."""
        environ = self.environ
        try:
            observer = self.observer
            body = read_body(environ, settings.max_request_body_bytes, self)
            if body is None:
                return
            observer.on_request_body(body)
            if settings.ensure_stream_usage and len(body) == int(environ["CONTENT_LENGTH"]):
                new_body = observer.request_body_rewrite()
                if new_body is not None:
                    environ["CONTENT_LENGTH"] = str(len(new_body))
                    environ["wsgi.input"] = io.BytesIO(new_body)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.stats)

    def on_request_body(self, chunk: bytes) -> None:
        self.observer.on_request_body(chunk)  # a chunked body, as the app reads it (TeeInput)

    def input_failed(self) -> None:
        self.disconnected = True  # the body could not be read: the client is gone
