"""Starlette apps for the ASGI benchmarks, one factory per variant (``uvicorn --factory``).

Routes: ``POST /v1/chat/completions`` answers a small JSON chat completion;
``POST /stream/v1/chat/completions?n=N`` streams an SSE chat completion with N content chunks.
The variants with the middleware also answer ``GET /_bench/offload`` with this process's
``runtime.health()[1]["offload"]`` (its capture process's pid, records replayed inline...).

``scr`` is the middleware as shipped (``middleware.offload: auto``: observed requests are
handed to a capture process); ``scr_inline`` is the same middleware with ``offload: inline``
(events are extracted and delivered in the app process).
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scr_middleware import runtime as runtime_mod
from scr_middleware.asgi import SessionCompletionMiddleware

from ..workload import chat_completion_body, gateway_event, naive_capture, sse_chunks

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]
CHAT_BODY = chat_completion_body()
NAIVE_QUEUE_LIMIT = 10_000


@cache
def _chunks(count: int) -> tuple[bytes, ...]:
    return tuple(sse_chunks(count))


async def chat(request: Request) -> Response:
    await request.body()
    return Response(CHAT_BODY, media_type="application/json")


async def stream(request: Request) -> StreamingResponse:
    await request.body()
    chunks = _chunks(int(request.query_params.get("n", "100")))

    async def generate() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return StreamingResponse(generate(), media_type="text/event-stream")


async def offload_stats(request: Request) -> JSONResponse:
    health = runtime_mod.get_runtime().health()[1]
    return JSONResponse({"pid": health["pid"], "offload": health.get("offload")})


ROUTES = [
    Route("/v1/chat/completions", chat, methods=["POST"]),
    Route("/stream/v1/chat/completions", stream, methods=["POST"]),
]
# Only where the middleware is (the runtime it reads is built on first use).
SCR_ROUTES = [*ROUTES, Route("/_bench/offload", offload_stats, methods=["GET"])]
INLINE = {"middleware": {"offload": "inline"}}


class NoopBaseHTTPMiddleware(BaseHTTPMiddleware):
    """The anchor for ``BaseHTTPMiddleware``'s own cost: it does nothing but call through."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


class NaiveCaptureMiddleware:
    """The naive anchor: pure ASGI, one naive capture once the response has gone out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sink: queue.Queue[str] = queue.Queue()
        self.event = gateway_event(0)

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_and_capture(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                if self.sink.qsize() >= NAIVE_QUEUE_LIMIT:  # nobody consumes; stay bounded
                    self.sink = queue.Queue()
                naive_capture(self.event, self.sink)

        await self.app(scope, receive, send_and_capture)


def bare() -> Starlette:
    return Starlette(routes=ROUTES)


def scr() -> Starlette:
    return Starlette(routes=SCR_ROUTES, middleware=[Middleware(SessionCompletionMiddleware)])


def scr_inline() -> Starlette:
    # A config given to the middleware supplies its ``middleware:`` settings even when the
    # shared runtime already exists (Binding); it configures that runtime only if it does not.
    middleware = Middleware(SessionCompletionMiddleware, config=INLINE)
    return Starlette(routes=SCR_ROUTES, middleware=[middleware])


def basehttp() -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(NoopBaseHTTPMiddleware)])


def naive() -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(NaiveCaptureMiddleware)])


VARIANTS: dict[str, Callable[[], Starlette]] = {
    "bare": bare,
    "scr": scr,
    "scr_inline": scr_inline,
    "basehttp": basehttp,
    "naive": naive,
}
