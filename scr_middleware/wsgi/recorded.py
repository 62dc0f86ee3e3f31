"""Process mode (docs/offload.md): an observed request is one ``RecordedExchange``, at once the
``start_response`` the app gets, the iterable the server gets and the record
(``offload.recording.Recording``) handed to the capture process when the response ends.

It follows the same protocol as the inline ``_Exchange`` (middleware.py) without an observer:
chunks are kept by reference, nothing is parsed, and what the app put in the environ (user,
view, route, exception) is read once, at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from scr_middleware.offload.recording import Recording
from scr_middleware.routes_options import RouteOptions

from .body import Sized, content_length
from .input import read_body
from .keys import (
    ENVIRON_ENDPOINT,
    ENVIRON_EXCEPTION,
    ENVIRON_OBSERVED,
    ENVIRON_ROUTE,
    ENVIRON_USER_ID,
)
from .views import exempt_at_start, status_code, view_options

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from scr_middleware.offload import Offloader

    from .middleware import SessionCompletionMiddleware

__all__ = ["RecordedExchange"]

Write = Callable[[bytes], object]


class RecordedExchange(Recording):
    """One request in process mode (see the module docstring). ``server_write`` and
    ``_result`` are set before anything reads them (``__call__``, ``wrap``)."""

    __slots__ = (
        "_result",
        "disconnected",
        "done",
        "in_context",
        "remote_user",
        "server_start",
        "server_write",
    )

    environ: WSGIEnvironment
    server_write: Write
    _result: Iterable[bytes]

    def __init__(  # noqa: PLR0917  (once per request: positional is cheaper)
        self,
        middleware: SessionCompletionMiddleware,
        environ: WSGIEnvironment,
        path: str,
        offloader: Offloader,
        key: int,
        start_response: StartResponse,
    ) -> None:
        binding = middleware.binding
        super().__init__(binding, offloader, key, environ["REQUEST_METHOD"], path, environ)
        # A REMOTE_USER the server set wins over what the app reports (as inline).
        self.remote_user = environ.get("REMOTE_USER")
        self.server_start = start_response
        self.in_context = middleware.in_context
        self.done = False  # finished, or exempt: nothing more to record
        self.disconnected = False
        environ[ENVIRON_OBSERVED] = True
        cap = binding.settings.max_request_body_bytes
        if cap > 0:
            try:
                body = read_body(environ, cap, self)
                if body:  # at most ``cap`` bytes: kept as keep_piece would keep it
                    self.body_parts = [body if type(body) is bytes else bytes(body)]
                    self.body_len = len(body)
            except Exception as exc:
                self.internal_error(exc)

    def input_failed(self) -> None:
        self.disconnected = True  # the body could not be read: the client is gone

    # -- the app's side ----------------------------------------------------------------------

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
                self.done = True  # an exempt view: nothing recorded
                return server_write
        except Exception as exc:
            self.internal_error(exc)
        self.status = status_code(status)
        # Recording.on_response_start, inlined (``room`` was set by Recording.__init__).
        self.headers = headers if type(headers) is list else list(headers)
        self.chunks = []
        self.server_write = server_write
        return self._write

    def _write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: a failure here is the server losing the client."""
        if not self.done:
            self.on_chunk(data)
        try:
            return self.server_write(data)
        except BaseException:
            self.disconnected = True
            raise

    def failed(self, exc: BaseException) -> None:
        """``app(environ, start_response)`` raised."""
        if self.disconnected:
            self._settle(True, None)
        else:
            self._fail(exc)

    # -- the server's side -------------------------------------------------------------------

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """What the server gets for the app's ``result``."""
        if self.done:  # an exempt view: pass everything through
            return result
        file_wrapper = self.environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # The server sends the file itself (sendfile): recorded as a response without body.
            self._settle(False, None)
            return result
        self._result = result
        if hasattr(result, "__len__"):
            return Sized(self, result)
        return self

    def __iter__(self) -> Iterator[bytes]:
        # A generator: cheaper per chunk than a __next__ method, and its end raises nothing.
        try:
            for chunk in self._result:
                # Recording.on_chunk, inlined: this runs for every chunk.
                self.room -= len(chunk)
                chunks = self.chunks
                if chunks is not None:
                    if chunk:
                        chunks.append(chunk if type(chunk) is bytes else bytes(chunk))
                        if self.room < 0:
                            self.past_cap()
                elif self.observer is not None:
                    self.observer.on_chunk(chunk, False)  # failsafe itself
                yield chunk
        except GeneratorExit:
            raise  # the server dropped its iterator: close() (on the iterable) decides
        except BaseException as exc:
            self._fail(exc)
            raise
        if not self.done:
            if self.observer is not None:
                self.observer.on_chunk(b"", True)
            self._settle(False, None)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            if not self.done:
                # Closed before the end is a client that left, unless the declared length went
                # out (a server may stop pulling once it has sent Content-Length bytes).
                expected = content_length(self.headers) if self.headers is not None else None
                self._settle(
                    expected is None or self.binding.settings.max_body_bytes - self.room < expected,
                    None,
                )

    # -- the end ----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._settle(True, None)  # the server gave up on the response: client gone
        else:
            self._settle(False, exc)

    def _settle(self, cancelled: bool, exception: BaseException | None) -> None:
        """Finish once, with what the app put in the environ."""
        if self.done:
            return
        self.done = True
        environ = self.environ
        options: RouteOptions | None = None
        endpoint = environ.get(ENVIRON_ENDPOINT)
        if endpoint is not None:
            try:
                exempt, options = view_options(endpoint)
            except Exception as exc:
                self.internal_error(exc)
            else:
                if exempt:
                    return
        user = self.remote_user
        if not (user and isinstance(user, str)):
            user = environ.get(ENVIRON_USER_ID) or environ.get("REMOTE_USER")
            if not (user and isinstance(user, str)):
                user = None
        route = environ.get(ENVIRON_ROUTE)
        if exception is None and not cancelled and (self.status or 500) >= 500:
            stored = environ.get(ENVIRON_EXCEPTION)
            if isinstance(stored, BaseException):
                exception = stored  # the framework turned it into its 500 page
        self.finish_record(
            cancelled, exception, user, route if isinstance(route, str) else None, options
        )
