"""A fake OpenAI-compatible upstream: deterministic completions with exact usage.

Chat completions (JSON and SSE, honouring ``stream_options.include_usage``), embeddings and
the Responses API (JSON and SSE). Token counts are whitespace words, so a test or the demo can
predict them exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_counter = iter(range(1, 1 << 62))


def count_tokens(text: str) -> int:
    return len(text.split())


def _prompt_text(messages: Any) -> str:
    parts = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


def answer_for(prompt: str) -> str:
    """The fake model's answer: long enough to stream, fixed for a given prompt."""
    words = prompt.split()[:12] or ["nothing"]
    return "You asked about " + " ".join(words) + ". Here is a short, deterministic answer."


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    model = body.get("model")
    if not model or model.startswith("missing-"):
        return _error(404, "invalid_request_error", f"The model `{model}` does not exist")
    prompt = _prompt_text(body.get("messages"))
    answer = answer_for(prompt)
    usage = {
        "prompt_tokens": count_tokens(prompt),
        "completion_tokens": count_tokens(answer),
        "total_tokens": count_tokens(prompt) + count_tokens(answer),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    completion_id = f"chatcmpl-{next(_counter):012d}"
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
                "system_fingerprint": "fp_fake",
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[bytes]:
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        extra = {"usage": None} if include_usage else {}
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield _sse({**base, "choices": [first], **extra})
        for word in answer.split(" "):
            delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
            yield _sse({**base, "choices": [delta], **extra})
        yield _sse(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra}
        )
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def embeddings(request: Request) -> Response:
    body = await request.json()
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    tokens = sum(count_tokens(str(item)) for item in items)
    data = [
        {"object": "embedding", "index": i, "embedding": [0.01 * (i + 1)] * 8}
        for i in range(len(items))
    ]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def responses(request: Request) -> Response:
    body = await request.json()
    model = body.get("model")
    raw = body.get("input")
    prompt = raw if isinstance(raw, str) else _prompt_text(raw)
    answer = answer_for(prompt)
    response_id = f"resp_{next(_counter):012d}"
    usage = {
        "input_tokens": count_tokens(prompt),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": count_tokens(answer),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": count_tokens(prompt) + count_tokens(answer),
    }
    message = {
        "id": f"msg_{response_id}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": answer, "annotations": []}],
    }
    done = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [message],
        "usage": usage,
    }
    if not body.get("stream"):
        return JSONResponse(done)

    async def events() -> AsyncIterator[bytes]:
        created = {**done, "status": "in_progress", "output": [], "usage": None}
        sequence = 0
        yield _event("response.created", {"response": created, "sequence_number": sequence})
        for word in answer.split(" "):
            sequence += 1
            delta = {"item_id": message["id"], "delta": word + " ", "sequence_number": sequence}
            yield _event("response.output_text.delta", delta)
        sequence += 1
        yield _event("response.completed", {"response": done, "sequence_number": sequence})

    return StreamingResponse(events(), media_type="text/event-stream")


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": kind, **payload}, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode()


def create_upstream() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
        ]
    )


app = create_upstream()
