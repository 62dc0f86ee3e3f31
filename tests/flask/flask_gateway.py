"""A small OpenAI-compatible gateway in Flask, served by gunicorn in the end-to-end tests.

``SCR_TEST_EXTENSION=0`` serves the very same app without the extension at all, for the
byte-for-byte comparisons. ``X-Scenario`` picks a bad upstream behaviour; ``X-Test-Id`` becomes
the completion id, so a test finds its own events in the ledger.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import scr_fake_llm as fake
from flask import Flask, Response, g, jsonify, request

from scr_middleware import get_runtime, scr_exempt, scr_route
from scr_middleware.flask import SessionCompletion


@dataclass
class User:
    id: int


def answer() -> Response:
    body: dict[str, Any] = request.get_json(force=True, silent=True) or {}
    test_id = request.headers.get("X-Test-Id")
    scenario = request.headers.get("X-Scenario", "")
    if scenario == "boom":
        raise RuntimeError("the model server is on fire")
    if scenario == "malformed":
        return Response(fake.MALFORMED, content_type="application/json")
    if scenario == "gzip":
        data = fake.gzipped(fake.completion(body, test_id))
        return Response(data, mimetype="application/json", headers={"Content-Encoding": "gzip"})
    if scenario == "big":
        data = fake.completion(body, test_id, pad=5 * 1024 * 1024)
        return Response(data, mimetype="application/json")
    if scenario == "no-content":
        return Response(status=204)
    if scenario == "not-modified":
        return Response(status=304)
    if scenario == "truncated":
        return Response(iter(fake.truncated_stream(body, test_id)), mimetype=fake.SSE)
    if scenario == "slow":
        return Response(slow_stream(body, test_id), mimetype=fake.SSE)
    if body.get("stream") is True:
        return Response(iter(fake.stream_chunks(body, test_id)), mimetype=fake.SSE)
    return Response(fake.completion(body, test_id), mimetype="application/json")


def slow_stream(body: dict[str, Any], test_id: str | None) -> Iterator[bytes]:
    first = fake.stream_chunks(body, test_id)[0]
    for _ in range(400):  # ~20 s unless the client leaves
        yield first
        time.sleep(0.05)


def create_app(with_extension: bool) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def authenticate() -> None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        g.user = User(int(token[5:])) if token.startswith("user-") else None

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.post("/v1/chat/completions")
    def chat() -> Response:
        return answer()

    @app.post("/v1/exempt/chat/completions")
    @scr_exempt
    def exempt_chat() -> Response:
        return answer()

    @app.post("/v1/agent/chat/completions")
    @scr_route(session_type="agent", metadata={"team": "search"})
    def agent_chat() -> Response:
        return answer()

    @app.get("/_scr/failures")
    def failures() -> Response:
        return jsonify(get_runtime().stats.extraction_failures)

    if with_extension:
        SessionCompletion(app)
    return app


def served_app() -> Flask:
    """gunicorn's target (``flask_gateway:served_app()``): built when served, not on import."""
    return create_app(os.environ.get("SCR_TEST_EXTENSION", "1") == "1")
