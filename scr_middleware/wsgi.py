"""Any WSGI app: ``app = SessionCompletionMiddleware(app)``.

The response iterable is wrapped, never buffered: each chunk goes to the server the moment the
app yields it, and the event is finished when the iterable is exhausted, fails or is closed
(OpenTelemetry's ``_end_span_after_iterating`` pattern, as a class so that a ``close()`` before
the first ``next()`` still finishes). Per-request state lives in a new ``_Responder``. Requests
to other paths reach the app with the original ``environ`` and ``start_response``.

Frameworks that resolve their view inside the app (Flask, Bottle, Pyramid, ...) can tell the
middleware about it through the ``ENVIRON_*`` keys below; ``scr_middleware.flask`` does.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .extract import failsafe
from .extract.observer import Observer
from .extract.request import RequestInfo
from .extract.routes import RouteMatch
from .extract.settings import OBSERVED_METHODS, ObserverSettings
from .routes_options import endpoint_options

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .runtime import SessionCompletionRuntime

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

ConfigSource = str | os.PathLike[str] | MutableMapping[str, Any] | None
Write = Callable[[bytes], object]


class SharedRuntime:
    """The process-wide runtime, looked up per use: ``configure()`` may replace it."""

    __slots__ = ()

    @property
    def stats(self) -> Any:
        from .runtime import get_runtime

        return get_runtime().stats

    def capture(self, event: dict[str, Any]) -> object:
        from .runtime import get_runtime

        return get_runtime().capture(event)


class Binding:
    """What every adapter needs once per process: compiled settings and where events go.

    ``config`` (a YAML path, a dict with the YAML's structure, or None) supplies the
    ``middleware:`` settings and, if the shared runtime does not exist yet, configures it;
    ``runtime`` sends events to that runtime instead of the shared one. Bad settings raise
    ``ConfigError`` here, at start-up.
    """

    __slots__ = ("capture", "settings", "stats")

    def __init__(
        self, config: ConfigSource = None, runtime: SessionCompletionRuntime | None = None
    ) -> None:
        from .config import load_config
        from .runtime import ensure_runtime, get_runtime

        if config is not None:
            cfg = load_config(config)
        else:
            cfg = runtime.config if runtime is not None else get_runtime().config
        # Settings first: a bad middleware block must not leave a configured shared runtime.
        self.settings = ObserverSettings.from_config(cfg.middleware)
        sink: Any = runtime
        if runtime is None:
            if config is not None:
                ensure_runtime(cfg)
            sink = SharedRuntime()
        self.capture: Callable[[dict[str, Any]], object] = sink.capture
        self.stats = failsafe.StatsOf(sink)

    def observer(self, request: RequestInfo, match: RouteMatch) -> Observer:
        return Observer(self.settings, request, self.capture, stats=self.stats, match=match)


class BodyState:
    """Where one response body is: shared by the WSGI iterable and Django's streaming
    wrappers. ``finish(cancelled, exception)`` runs once, at exhaustion, failure or close."""

    __slots__ = ("_finish", "done", "ended", "expected", "observer", "sent")

    def __init__(
        self, observer: Observer, finish: Callable[[bool, BaseException | None], None]
    ) -> None:
        self.observer = observer
        self._finish = finish
        self.expected: int | None = None  # Content-Length, when the response declared one
        self.sent = 0
        self.ended = False  # the iterator was exhausted
        self.done = False

    def forward(self, chunk: bytes) -> bytes:
        out = self.observer.on_chunk(chunk)
        self.sent += len(out)
        return out

    def end(self) -> bytes:
        """The iterator is exhausted: returns bytes still held back (ensure_stream_usage)."""
        if self.ended:
            return b""
        self.ended = True
        tail = self.observer.on_chunk(b"", last=True)
        self.sent += len(tail)
        self.close()
        return tail

    def cancel(self) -> None:
        self._settle(True, None)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._settle(True, None)  # the server gave up on the response: client gone
        else:
            self._settle(False, exc)

    def close(self) -> None:
        complete = self.ended or (self.expected is not None and self.sent >= self.expected)
        self._settle(not complete, None)

    def _settle(self, cancelled: bool, exception: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self._finish(cancelled, exception)


class ObservedBody:
    """The response iterable handed to the server: the app's chunks, unchanged, one by one."""

    __slots__ = ("_iterator", "_result", "_state")

    def __init__(self, result: Iterable[bytes], state: BodyState) -> None:
        self._result = result
        self._state = state
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> ObservedBody:
        return self

    def __next__(self) -> bytes:
        state = self._state
        while True:
            try:
                if self._iterator is None:
                    self._iterator = iter(self._result)
                chunk = next(self._iterator)
            except StopIteration:
                tail = state.end()
                if tail:
                    return tail
                raise
            except BaseException as exc:
                state.fail(exc)
                raise
            out = state.forward(chunk)
            if out or not chunk:  # only a held-back usage event yields nothing: read on
                return out

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._state.fail(exc)
            raise
        finally:
            self._state.close()


class _SizedBody(ObservedBody):
    """Keeps ``len()`` for servers that use it (wsgiref sets Content-Length for one block)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


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


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    out = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value:
            out[key.replace("_", "-").lower()] = value
    return out


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
        request = RequestInfo(
            method=environ.get("REQUEST_METHOD", ""),
            path=path,
            headers=_headers(environ),
            user_id=user if isinstance(user, str) and user else None,
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
            return _SizedBody(result, self.state)
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
                self.state.done = True  # never finish: exempt views emit nothing
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
            if self.observer.may_rewrite_request() and self._read_ahead():
                return
            if self.observer.wants_request_body():
                stream = self.environ.get("wsgi.input")
                if stream is not None:
                    self.environ["wsgi.input"] = _TeeInput(stream, self)
        except Exception as exc:
            failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, self.binding.stats)

    def _read_ahead(self) -> bool:
        """``ensure_stream_usage``: read the body before the app does, so that it can be
        rewritten. Only for bodies of known, capturable size; False leaves the input alone."""
        environ = self.environ
        stream = environ.get("wsgi.input")
        limit = self.binding.settings.max_request_body_bytes
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return False
        if stream is None or not 0 < length <= limit:
            return False
        parts: list[bytes] = []
        got = 0
        try:
            while got < length:
                data = stream.read(length - got)
                if not data:
                    break
                parts.append(data)
                got += len(data)
        except BaseException:
            # The client went away mid-upload: the app sees what arrived, then the same error.
            self.disconnected = True
            environ["wsgi.input"] = _Prefixed(b"".join(parts), stream)
            raise
        body = b"".join(parts)
        self.observer.on_request_body(body)
        new_body = self.observer.request_body_rewrite() if got == length else None
        if new_body is not None:
            body = new_body
            environ["CONTENT_LENGTH"] = str(len(new_body))
        environ["wsgi.input"] = io.BytesIO(body)
        return True


class _TeeInput:
    """``wsgi.input`` as the app reads it, copied to the observer (never read ahead)."""

    __slots__ = ("_observer", "_responder", "_stream")

    def __init__(self, stream: Any, responder: _Responder) -> None:
        self._stream = stream
        self._responder = responder
        self._observer = responder.observer

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BaseException:
            self._responder.disconnected = True  # the body could not be read: client gone
            raise

    def read(self, *args: Any) -> bytes:
        data: bytes = self._call("read", *args)
        self._observer.on_request_body(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._call("readline", *args)
        self._observer.on_request_body(data)
        return data

    def readinto(self, buffer: Any) -> int:
        # Werkzeug's LimitedStream prefers readinto(); without one underneath, read() serves.
        if not hasattr(self._stream, "readinto"):
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count: int | None = self._call("readinto", buffer)
        if count:
            self._observer.on_request_body(bytes(memoryview(buffer)[:count]))
        return count or 0

    def read1(self, *args: Any) -> bytes:
        return self.read(*args)

    def readinto1(self, buffer: Any) -> int:
        return self.readinto(buffer)

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._call("readlines", *args)
        for line in lines:
            self._observer.on_request_body(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the original stream."""

    def __init__(self, head: bytes, stream: Any) -> None:
        super().__init__()
        self._head = io.BytesIO(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        n = self._head.readinto(view)
        if n:
            return n
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)
