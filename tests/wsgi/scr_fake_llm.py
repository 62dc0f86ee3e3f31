"""Deterministic OpenAI-compatible payloads for the fake gateways (Flask, Django, raw WSGI).

Kept byte-stable (fixed ids and timestamps) so that responses served with and without the
middleware can be compared byte for byte. Token counts derive from the request so a test can
tell events apart and check they match what was asked.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

MODEL = "gpt-4o-mini"
WORDS = ("Hello", " from", " the", " fake", " gateway", ".")
SSE = "text/event-stream"


def prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def completion_id(test_id: str | None) -> str:
    return f"chatcmpl-{test_id or 'fixed'}"


def usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = prompt_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(WORDS),
        "total_tokens": prompt + len(WORDS),
    }


def completion(body: dict[str, Any], test_id: str | None = None, pad: int = 0) -> bytes:
    text = "".join(WORDS) + " " * pad
    return json.dumps(
        {
            "id": completion_id(test_id),
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model") or MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(body),
        },
        separators=(",", ":"),
    ).encode()


def _chunk(cid: str, model: str, **fields: Any) -> bytes:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        **fields,
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def stream_chunks(body: dict[str, Any], test_id: str | None = None) -> list[bytes]:
    """One SSE event per chunk; a usage chunk only when the request asked for it."""
    cid = completion_id(test_id)
    model = body.get("model") or MODEL
    chunks = [
        _chunk(cid, model, choices=[{"index": 0, "delta": {"role": "assistant"}}]),
        *(_chunk(cid, model, choices=[{"index": 0, "delta": {"content": w}}]) for w in WORDS),
        _chunk(cid, model, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    ]
    options = body.get("stream_options") or {}
    if options.get("include_usage") is True:
        chunks.append(_chunk(cid, model, choices=[], usage=usage(body)))
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def truncated_stream(body: dict[str, Any], test_id: str | None = None) -> list[bytes]:
    """The upstream died mid-event: the last event has no terminating blank line."""
    chunks = stream_chunks(body, test_id)[:4]
    return [*chunks, b'data: {"id":"' + completion_id(test_id).encode() + b'","choi']


MALFORMED = b'{"id":"chatcmpl-bad","object":"chat.completion","usage":{"prompt_tokens":'


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
