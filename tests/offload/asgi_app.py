"""The FastAPI app the out-of-process capture tests serve under uvicorn (a subprocess).

Default configuration: the middleware with no arguments, so the shared runtime is built from
the environment (``SCR_DATA_DIR`` and whatever the test sets). Answers reuse the fake OpenAI
upstream of tests/asgi, except that the completion id is ``chatcmpl-<X-Test-Id>`` and the model
is the one asked for, so every request leaves a distinct, checkable event in the ledger.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from asgi.fake_openai import BASE_CHUNK, CHAT, USAGE, WORDS, _sse
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from scr_middleware import get_runtime
from scr_middleware.asgi import SessionCompletionMiddleware


async def _stream(completion_id: str, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    base = {**BASE_CHUNK, "id": completion_id, "model": model}
    extra = {"usage": None} if include_usage else {}
    yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}], **extra})
    for word in WORDS:
        yield _sse({**base, "choices": [{"index": 0, "delta": {"content": word}}], **extra})
    stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
    yield _sse({**base, "choices": [stop], **extra})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": USAGE})
    yield b"data: [DONE]\n\n"


app = FastAPI()
app.add_middleware(SessionCompletionMiddleware)


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    body: dict[str, Any] = await request.json()
    completion_id = f"chatcmpl-{request.headers.get('x-test-id', 'none')}"
    model = str(body.get("model"))
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(completion_id, model, include_usage), media_type="text/event-stream"
        )
    return JSONResponse({**CHAT, "id": completion_id, "model": model})


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/_test/offload")
async def offload() -> dict[str, Any]:
    """This process's pid and the channel to its capture process (never observed: GET)."""
    return {"pid": os.getpid(), "offload": get_runtime().health()[1].get("offload")}
