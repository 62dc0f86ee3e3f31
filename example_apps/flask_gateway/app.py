"""An OpenAI-compatible Flask gateway with usage capture in one line: ``SessionCompletion(app)``.

The authenticated user goes on ``flask.g.user`` (where the extension looks by default); the
organization comes from the ``OpenAI-Organization`` header the openai client sends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from flask import Flask, Response, g, jsonify, request, stream_with_context

from scr_middleware.flask import SessionCompletion

API_KEYS = {"sk-alice": "user_alice", "sk-bob": "user_bob", "sk-carol": "user_carol"}
UPSTREAM = os.environ.get("SCR_UPSTREAM_URL", "http://127.0.0.1:9000")


@dataclass(frozen=True)
class User:
    id: str


app = Flask(__name__)
SessionCompletion(app)  # <- the one line
_client = httpx.Client(base_url=UPSTREAM, timeout=30.0)


@app.before_request
def authenticate() -> Response | None:
    key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    user_id = API_KEYS.get(key)
    if user_id is None:
        error = {"message": "invalid API key", "type": "invalid_api_key", "code": "invalid_api_key"}
        response = jsonify({"error": error})
        response.status_code = 401
        return response
    g.user = User(user_id)
    return None


def _proxy(path: str) -> Response:
    upstream = _client.send(
        _client.build_request(
            "POST", path, content=request.get_data(), headers={"content-type": "application/json"}
        ),
        stream=True,
    )
    content_type = upstream.headers.get("content-type", "application/json")
    if content_type.startswith("text/event-stream"):

        def relay() -> Iterator[bytes]:
            try:
                yield from upstream.iter_raw()
            finally:
                upstream.close()

        return Response(
            stream_with_context(relay()), status=upstream.status_code, content_type=content_type
        )
    body = upstream.read()
    upstream.close()
    return Response(body, status=upstream.status_code, content_type=content_type)


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    return _proxy("/v1/chat/completions")


@app.post("/v1/embeddings")
def embeddings() -> Response:
    return _proxy("/v1/embeddings")


@app.post("/v1/responses")
def responses() -> Response:
    return _proxy("/v1/responses")
