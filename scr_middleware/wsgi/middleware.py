"""``SessionCompletionMiddleware``: per-request state lives in one new ``_Exchange``, which is
at once the ``start_response`` the app gets and the iterable the server gets; requests to
other paths reach the app with the original ``environ`` and ``start_response``."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from scr_middleware.extract import failsafe
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import OBSERVED_METHODS, ObserverSettings

from ..extract.binding import Binding, ConfigSource
from .body import ObservedBody
from .input import Prefixed, TeeInput, read_rest
from .views import is_exempt

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from scr_middleware.runtime import SessionCompletionRuntime

__all__ = [
    "ENVIRON_ENDPOINT",
    "ENVIRON_EXCEPTION",
    "ENVIRON_OBSERVED",
    "ENVIRON_ROUTE",
    "ENVIRON_USER_ID",
    "SessionCompletionMiddleware",
]

# Set by the middleware on observed requests only, so inner hooks can return at once otherwise.
ENVIRON_OBSERVED: Final = "scr_middleware.observed"
# Set by inner frameworks, read when the response finishes.
ENVIRON_USER_ID: Final = "scr_middleware.user_id"  # str: the authenticated user
ENVIRON_ENDPOINT: Final = "scr_middleware.endpoint"  # the view (for @scr_exempt / @scr_route)
ENVIRON_ROUTE: Final = "scr_middleware.route"  # str: the route template
ENVIRON_EXCEPTION: Final = "scr_middleware.exception"  # the exception behind a 5xx response

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
        self.binding = Binding(config, runtime)
        self.settings = self.binding.settings

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in OBSERVED_METHODS:
            return self.app(environ, start_response)
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        match = self.settings.match(path)
        if match is None:
            return self.app(environ, start_response)
        try:
            exchange = _Exchange(self, environ, path, match, start_response)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
            return self.app(environ, start_response)
        try:
            result = self.app(environ, exchange)
        except BaseException as exc:
            if exchange.disconnected:
                exchange.cancel()
            else:
                exchange.fail(exc)
            raise
        return exchange.wrap(result)


def _content_length(headers: Iterable[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Exchange(ObservedBody):
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
        observer = binding.observer(
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
            return _Sized(self, result)
        return self

    def declared_length(self) -> int | None:
        return _content_length(self.headers) if self.headers is not None else None

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
        environ = self.environ
        try:
            if self.in_context is not None:
                self.in_context(environ)
            endpoint = environ.get(ENVIRON_ENDPOINT)
            if endpoint is not None and is_exempt(endpoint):
                self.skip()
                return server_write
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.stats)
        try:
            code = int(status[:3])
        except ValueError:
            code = 0
        self.observer.on_response_start(code, headers)
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
        """A body of declared length within the cap is read whole before the app, observed
        and put back as a ``BytesIO`` (rewritten for ``ensure_stream_usage``, with
        ``CONTENT_LENGTH`` fixed): one read, and nothing between the app and its reads. A
        body without a length (chunked) is copied to the observer as the app reads it."""
        environ = self.environ
        try:
            stream = environ.get("wsgi.input")
            length = environ.get("CONTENT_LENGTH")
            if stream is None:
                return
            if not (length and length.isdecimal()):
                environ["wsgi.input"] = TeeInput(stream, self.observer, self._input_failed)
                return
            size = int(length)
            if not 0 < size <= settings.max_request_body_bytes:
                return  # empty, or over the cap (the observer would drop it): nothing to see
            try:
                body: bytes | None = stream.read(size)
            except Exception:
                environ["wsgi.input"] = Prefixed(b"", stream)
                body = None
            else:
                if body and len(body) < size:  # a short read: the rest follows
                    body = read_rest(environ, stream, body, size)
            if body is None:
                self.disconnected = True  # the client went away mid-body
                return
            observer = self.observer
            observer.on_request_body(body)
            if settings.ensure_stream_usage and len(body) == size:
                new_body = observer.request_body_rewrite()
                if new_body is not None:
                    body = new_body
                    environ["CONTENT_LENGTH"] = str(len(new_body))
            environ["wsgi.input"] = io.BytesIO(body)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.stats)

    def _input_failed(self) -> None:
        self.disconnected = True  # the body could not be read: the client is gone


class _Sized:
    """Keeps ``len()`` for servers that use it (wsgiref sets Content-Length for one block)."""

    __slots__ = ("_body", "_result")

    def __init__(self, body: _Exchange, result: Any) -> None:
        self._body = body
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._result)

    def close(self) -> None:
        self._body.close()
