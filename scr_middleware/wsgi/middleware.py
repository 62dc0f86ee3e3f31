"""``SessionCompletionMiddleware``: per-request state lives in a new ``_Responder``; requests to
other paths reach the app with the original ``environ`` and ``start_response``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from scr_middleware.extract import failsafe
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import OBSERVED_METHODS
from scr_middleware.routes_options import endpoint_options

from ..extract.binding import Binding, ConfigSource
from .body import BodyState, ObservedBody, SizedObservedBody
from .input import TeeInput, read_ahead

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
            responder = _Responder(self, environ, path, match)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
            return self.app(environ, start_response)
        return responder.run(start_response)


def _content_length(headers: Iterable[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _status_code(status: str) -> int:
    try:
        return int(status[:3])
    except ValueError:
        return 0


class _Responder:
    """One request: its observer, the wrapped ``start_response`` and body."""

    __slots__ = (
        "app",
        "binding",
        "disconnected",
        "environ",
        "observer",
        "server_start",
        "skip",
        "state",
    )

    def __init__(
        self,
        middleware: SessionCompletionMiddleware,
        environ: WSGIEnvironment,
        path: str,
        match: RouteMatch,
    ) -> None:
        self.app = middleware.app
        self.binding = middleware.binding
        self.environ = environ
        user = environ.get("REMOTE_USER")
        request = RequestInfo.from_environ(
            environ.get("REQUEST_METHOD", ""),
            path,
            environ,
            user if isinstance(user, str) and user else None,
        )
        self.observer = middleware.binding.observer(request, match)
        self.state = BodyState(self.observer, self._finish)
        self.skip = False  # an @scr_exempt view: pass everything through
        self.disconnected = False
        environ[ENVIRON_OBSERVED] = True

    def run(self, start_response: StartResponse) -> Iterable[bytes]:
        self.server_start = start_response
        self._prepare_input()
        try:
            result = self.app(self.environ, self._start_response)
        except BaseException as exc:
            if self.disconnected:
                self.state.cancel()
            else:
                self.state.fail(exc)
            raise
        if self.skip:
            return result
        file_wrapper = self.environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # The server sends the file itself (sendfile): observed as a response without body.
            self.state.ended = True
            self.state.close()
            return result
        if hasattr(result, "__len__"):
            return SizedObservedBody(result, self.state)
        return ObservedBody(result, self.state)

    # -- response ------------------------------------------------------------------------

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Write:
        server_write = (
            self.server_start(status, headers)
            if exc_info is None
            else self.server_start(status, headers, exc_info)
        )
        if self.skip or self._exempt():
            return server_write
        self.observer.on_response_start(_status_code(status), headers)
        self.state.started()
        self.state.expected = _content_length(headers)

        def write(data: bytes) -> object:
            # The legacy write() callable: a failure here is the server losing the client.
            try:
                return server_write(self.state.forward(data))
            except BaseException:
                self.disconnected = True
                raise

        return write

    def _exempt(self) -> bool:
        try:
            endpoint = self.environ.get(ENVIRON_ENDPOINT)
            if endpoint is not None and endpoint_options(endpoint)[0]:
                self.skip = True
                self.state.skip()
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
        return self.skip

    def _finish(self, cancelled: bool, exception: BaseException | None) -> None:
        observer = self.observer
        try:
            environ = self.environ
            request = observer.request
            if request.user_id is None:
                user = environ.get(ENVIRON_USER_ID) or environ.get("REMOTE_USER")
                request.user_id = user if isinstance(user, str) and user else None
            endpoint, route = environ.get(ENVIRON_ENDPOINT), environ.get(ENVIRON_ROUTE)
            if endpoint is not None or route is not None:
                observer.set_endpoint(endpoint, route if isinstance(route, str) else None)
            stored = environ.get(ENVIRON_EXCEPTION)
            if (
                exception is None
                and not cancelled
                and isinstance(stored, BaseException)
                and (observer.status or 500) >= 500
            ):
                exception = stored  # the framework turned it into its 500 page
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)
        observer.finish(cancelled=cancelled, exception=exception)

    # -- request body ----------------------------------------------------------------------

    def _prepare_input(self) -> None:
        try:
            observer = self.observer
            if observer.may_rewrite_request():
                done = read_ahead(
                    self.environ, observer, self.binding.settings.max_request_body_bytes
                )
                if done is None:
                    self.disconnected = True
                if done is not False:
                    return
            stream = self.environ.get("wsgi.input")
            if observer.wants_request_body() and stream is not None:
                self.environ["wsgi.input"] = TeeInput(stream, observer, self._input_failed)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)

    def _input_failed(self) -> None:
        self.disconnected = True  # the body could not be read: the client is gone
