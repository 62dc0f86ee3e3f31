"""Shared helpers for the transform and PII tests (a plain module: conftest is not importable)."""

from __future__ import annotations

import copy
import random
from functools import cache
from typing import Any

import jsonschema

from scr_middleware.events import finalize_event, normalize_event
from scr_middleware.transforms import load_schema

CAPTURED_AT = 1766313925.5  # 2025-12-21T10:45:25.500Z


def fixed_raw_event() -> dict[str, Any]:
    """One event using every canonical field: the input of the golden tests."""
    return {
        "event_id": "evt_golden_0001",
        "event_type": "session.completed",
        "session_id": "chatcmpl-abc123",
        "session_type": "chat",
        "user_id": "user_42",
        "organization_id": "org_7",
        "timestamp": "2025-12-21T10:45:23.123Z",
        "start_time": "2025-12-21T10:45:21.000Z",
        "end_time": "2025-12-21T10:45:23.123Z",
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 345,
            "model": "gpt-4o-2024-08-06",
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 64},
        },
        "outcome": {
            "status": "success",
            "http_status": 200,
            "final_output": "Your order ships Monday. Questions? mail help@example.com",
        },
        "message_count": 6,
        "input_modality": "text",
        "transport": "http",
        "request": {
            "method": "POST",
            "route": "/v1/chat/completions",
            "path": "/v1/chat/completions",
        },
        "metadata": {
            "billing_tags": {"cost_center": "cc-42", "plan": "pro", "nested": {"dropped": True}},
            "region": "eu-west-1",
            "retries": 0,
            "sampled": True,
            "latency_ratio": 0.25,
            "messages": [{"role": "user", "content": "hello"}],
        },
    }


def finalized(raw: dict[str, Any]) -> dict[str, Any]:
    return finalize_event(normalize_event(raw), CAPTURED_AT)


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(name: str, document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` matches schema ``name``."""
    _validator(name).validate(document)


def random_raw_event(rng: random.Random) -> dict[str, Any]:
    """A varied, valid raw event in one of the input shapes the seed shows."""
    maybe = lambda value: value if rng.random() < 0.6 else None  # noqa: E731
    count = lambda: rng.choice([0, 1, rng.randint(2, 5000), 10**9])  # noqa: E731
    raw: dict[str, Any] = {"session_id": f"sess_{rng.randint(0, 10**9)}"}
    shape = rng.choice(["openai", "canonical", "realtime", "agent", "bare"])
    if shape == "openai":
        raw["usage"] = {"prompt_tokens": count(), "completion_tokens": count(), "model": "gpt-4"}
        if rng.random() < 0.5:
            raw["usage"]["prompt_tokens_details"] = {"cached_tokens": count(), "audio_tokens": 0}
            raw["usage"]["completion_tokens_details"] = {"reasoning_tokens": count()}
    elif shape == "canonical":
        raw["usage"] = {
            "input_tokens": maybe(count()),
            "output_tokens": maybe(count()),
            "model": maybe("claude-3-5-sonnet"),
            "source": rng.choice(["reported", "estimated", "missing"]),
        }
    elif shape == "realtime":
        raw.update(input_tokens=count(), output_tokens=count(), model="gpt-realtime")
        raw.update(input_modality="audio", transport=rng.choice(["websocket", "webrtc"]))
    elif shape == "agent":
        raw["usage"] = {"total_tokens": count()}
        raw["session_type"] = "autonomous"
        raw["outcome"] = {"status": "success", "final_output": {"output": "done", "steps": [1, 2]}}
    raw["user_id"] = maybe(rng.choice(["u1", "user@example.com", 12345]))
    raw["organization_id"] = maybe("org_1")
    if rng.random() < 0.5:
        raw["outcome"] = {
            "status": rng.choice(["success", "error", "user_terminated", "cancelled", "timeout"]),
            "http_status": maybe(rng.choice([200, 429, 500])),
            "error_type": maybe("RateLimitError"),
        }
    if rng.random() < 0.5:
        start = 1766313000 + rng.random() * 1000
        raw["start_time"], raw["end_time"] = start, start + rng.random() * 60
    elif rng.random() < 0.5:
        raw["duration_ms"] = rng.choice([0, 12.5, 90_000])
    if rng.random() < 0.3:
        raw["message_count"] = rng.randint(0, 50)
    if rng.random() < 0.4:
        raw["request"] = {"method": "POST", "route": "/v1/chat/completions", "path": "/x"}
    raw["metadata"] = {
        "region": maybe("us-east-1"),
        "n": rng.randint(-5, 5),
        "ratio": rng.random(),
        "flags": ["a", "b"],
        "billing_tags": {"team": "t1"} if rng.random() < 0.3 else None,
    }
    if rng.random() < 0.3:
        raw["extra_top_level"] = "moves into metadata"
    return copy.deepcopy(raw)
