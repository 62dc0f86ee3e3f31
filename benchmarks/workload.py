"""What the benchmarks feed the code under test: the seed's gateway event, a non-streaming chat
completion body and an SSE chat stream, all realistic in shape and size."""

from __future__ import annotations

import json
import queue
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

MODEL = "gpt-4o-2024-08-06"


def gateway_event(index: int) -> dict[str, Any]:
    """The event the seed's API-gateway sample captures (Integration Point 1)."""
    return {
        "event_type": "session.completed",
        "session_id": f"chatcmpl-{index:024x}",
        "user_id": f"user_{index % 5000}",
        "organization_id": f"org_{index % 50}",
        "usage": {
            "input_tokens": 120 + index % 400,
            "output_tokens": 340 + index % 900,
            "total_tokens": 460 + index % 400 + index % 900,
            "model": MODEL,
        },
        "outcome": {"status": "success"},
    }


def gateway_events(count: int) -> list[dict[str, Any]]:
    return [gateway_event(index) for index in range(count)]


def naive_capture(event: dict[str, Any], sink: queue.Queue[str]) -> None:
    """The anchor: what a straightforward capture does on the caller's thread."""
    record = dict(event)
    record["event_id"] = str(uuid.uuid4())
    record["timestamp"] = datetime.now(UTC).isoformat()
    sink.put(json.dumps(record))


def chat_request_body() -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
            ],
            "user": "user_42",
        }
    )


def chat_completion_body() -> bytes:
    """A small non-streaming ``chat.completion`` response (~600 bytes)."""
    return orjson.dumps(
        {
            "id": "chatcmpl-AbCdEf0123456789",
            "object": "chat.completion",
            "created": 1735000000,
            "model": MODEL,
            "system_fingerprint": "fp_50cad350e4",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": (
                            "Prince Hamlet feigns madness to avenge his father's murder by his "
                            "uncle Claudius. His hesitation ends in tragedy for nearly everyone."
                        ),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 31,
                "completion_tokens": 38,
                "total_tokens": 69,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }
    )


def sse_chunks(count: int) -> list[bytes]:
    """An OpenAI chat stream with ``include_usage``: ``count`` content chunks (one SSE event per
    body message, as servers send them), then the usage chunk and ``[DONE]``."""
    head = {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1735000000,
        "model": MODEL,
        "system_fingerprint": "fp_50cad350e4",
    }
    chunks = []
    for index in range(count):
        delta: dict[str, Any] = {"content": f" tok{index}"}
        if index == 0:
            delta["role"] = "assistant"
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        chunks.append(b"data: " + orjson.dumps(body) + b"\n\n")
    usage = {"prompt_tokens": 31, "completion_tokens": count, "total_tokens": 31 + count}
    final = {**head, "choices": [], "usage": usage}
    chunks.append(b"data: " + orjson.dumps(final) + b"\n\n")
    chunks.append(b"data: [DONE]\n\n")
    return chunks
