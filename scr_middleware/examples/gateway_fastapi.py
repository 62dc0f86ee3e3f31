"""An OpenAI-compatible FastAPI gateway: authenticates API keys, proxies to an upstream, and
captures usage with ONE line: ``app.add_middleware(SessionCompletionMiddleware)``.

The handlers know nothing about usage capture. The middleware reads the authenticated user
from ``scope["user"]`` (set by Starlette's AuthenticationMiddleware), the organization from the
``OpenAI-Organization`` header the openai client sends, and usage from the responses, streamed
or not.

Run it::

    SCR_UPSTREAM_URL=http://127.0.0.1:9000 uvicorn scr_middleware.examples.gateway_fastapi:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from scr_middleware.asgi import SessionCompletionMiddleware

# Demo API keys -> user ids. A real gateway looks keys up in its own store.
API_KEYS = {
    "sk-alice": "user_alice",
    "sk-bob": "user_bob",
    "sk-carol": "user_carol",
}


class ApiKeyUser(BaseUser):
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.user_id

    @property
    def identity(self) -> str:
        return self.user_id


class ApiKeyBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip()
        user_id = API_KEYS.get(key)
        if user_id is None:
            raise AuthenticationError("invalid API key")
        return AuthCredentials(["inference"]), ApiKeyUser(user_id)


def _auth_error(conn: HTTPConnection, exc: Exception) -> Response:
    body = {"error": {"message": str(exc), "type": "invalid_api_key", "code": "invalid_api_key"}}
    return JSONResponse(body, status_code=401)


def create_app(upstream_url: str | None = None) -> FastAPI:
    upstream = upstream_url or os.environ.get("SCR_UPSTREAM_URL", "http://127.0.0.1:9000")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=30.0) as client:
            app.state.upstream = client
            yield

    app = FastAPI(title="LLM gateway", lifespan=lifespan)

    async def proxy(request: Request, path: str) -> Response:
        client: httpx.AsyncClient = request.app.state.upstream
        body = await request.body()
        headers = {"content-type": "application/json"}
        upstream_request = client.build_request("POST", path, content=body, headers=headers)
        upstream_response = await client.send(upstream_request, stream=True)
        content_type = upstream_response.headers.get("content-type", "application/json")
        if content_type.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream_response.aiter_raw():
                        yield chunk
                finally:
                    await upstream_response.aclose()

            return StreamingResponse(
                relay(), status_code=upstream_response.status_code, media_type="text/event-stream"
            )
        content = await upstream_response.aread()
        await upstream_response.aclose()
        return Response(content, upstream_response.status_code, media_type=content_type)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await proxy(request, "/v1/chat/completions")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await proxy(request, "/v1/embeddings")

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        return await proxy(request, "/v1/responses")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Order matters only in that authentication must run inside our middleware's view of the
    # request: the middleware reads scope["user"] when the response has finished.
    app.add_middleware(AuthenticationMiddleware, backend=ApiKeyBackend(), on_error=_auth_error)
    app.add_middleware(SessionCompletionMiddleware)  # <- the one line
    return app


app = create_app()
