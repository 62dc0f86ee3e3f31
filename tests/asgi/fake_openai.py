"""A FastAPI app that answers like the OpenAI API (fixed ids, so runs compare byte for byte),
plus routes that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from scr_middleware.routes_options import scr_exempt, scr_route

from .helpers import FIXTURES

CHAT = json.loads((FIXTURES / "openai_chat_completion.json").read_text())
EMBEDDINGS = json.loads((FIXTURES / "openai_embeddings.json").read_text())
ERROR_401 = (FIXTURES / "openai_error_401.json").read_bytes()
BASE_CHUNK = {
    "id": "chatcmpl-e2e",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_e2e",
}
WORDS = ["Hello", " there", ", how", " can", " I", " help", "?"]
USAGE = {"prompt_tokens": 11, "completion_tokens": len(WORDS), "total_tokens": 11 + len(WORDS)}


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _chat_stream(include_usage: bool) -> AsyncIterator[bytes]:
    extra = {"usage": None} if include_usage else {}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _sse({**BASE_CHUNK, "choices": [first], **extra})
    for word in WORDS:
        choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
        yield _sse({**BASE_CHUNK, "choices": [choice], **extra})
    yield _sse(
        {**BASE_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra}
    )
    if include_usage:
        yield _sse({**BASE_CHUNK, "choices": [], "usage": USAGE})
    yield b"data: [DONE]\n\n"


def build_app() -> FastAPI:
    app = FastAPI()
    app.state.requests = []

    async def chat(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append((body, request.headers.get("content-length")))
        if body.get("stream"):
            options = body.get("stream_options") or {}
            return StreamingResponse(
                _chat_stream(bool(options.get("include_usage"))), media_type="text/event-stream"
            )
        return JSONResponse(CHAT)

    app.post("/v1/chat/completions")(chat)

    @app.post("/v1/embeddings")
    async def embeddings() -> Response:
        return JSONResponse(EMBEDDINGS)

    @app.post("/exempt/v1/chat/completions")
    @scr_exempt
    async def exempt() -> Response:
        return JSONResponse(CHAT)

    @app.post("/openai/deployments/{name}/chat/completions")
    @scr_route(session_type="agent", metadata={"team": "search"})
    async def deployment(name: str, request: Request) -> Response:
        await request.body()
        return JSONResponse({**CHAT, "model": name})

    @app.post("/bad/{kind}/v1/chat/completions")
    async def bad(kind: str, request: Request) -> Response:
        await request.body()
        text = json.dumps(CHAT).encode()
        if kind == "truncated":
            return Response(text[: len(text) // 2], media_type="application/json")
        if kind == "plain":
            return Response(b"upstream said no", media_type="text/plain")
        if kind == "gzip":
            return Response(
                gzip.compress(text),
                media_type="application/json",
                headers={"content-encoding": "gzip"},
            )
        if kind == "big":
            big = {**CHAT, "padding": "p" * (5 * 1024 * 1024)}
            return Response(json.dumps(big).encode(), media_type="application/json")
        if kind == "nonutf8":
            return Response(
                b'{"id": "x\xff\xfe", "object": "chat.completion"}', media_type="application/json"
            )
        if kind == "204":
            return Response(status_code=204)
        if kind == "304":
            return Response(status_code=304)
        if kind == "401":
            return Response(ERROR_401, status_code=401, media_type="application/json")
        if kind == "truncated_sse":

            async def cut() -> AsyncIterator[bytes]:
                yield _sse({**BASE_CHUNK, "choices": []})
                yield b'data: {"id": "chatcmpl-e2e", "obj'

            return StreamingResponse(cut(), media_type="text/event-stream")
        if kind == "slow_sse":

            async def slow() -> AsyncIterator[bytes]:
                first = {"index": 0, "delta": {"content": "x"}, "finish_reason": None}
                for _ in range(400):
                    yield _sse({**BASE_CHUNK, "choices": [first]})
                    await asyncio.sleep(0.05)

            return StreamingResponse(slow(), media_type="text/event-stream")
        if kind == "raise":
            raise RuntimeError("handler exploded")
        return Response(status_code=404)

    return app
