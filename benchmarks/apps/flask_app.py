"""Flask app for the server benchmarks:
``gunicorn 'benchmarks.apps.flask_app:create_app("scr")'``."""

from __future__ import annotations

from flask import Flask, Response, request

from ..workload import chat_completion_body

CHAT_BODY = chat_completion_body()


def create_app(variant: str = "bare") -> Flask:
    app = Flask(__name__)

    @app.post("/v1/chat/completions")
    def chat() -> Response:
        request.get_data()
        return Response(CHAT_BODY, mimetype="application/json")

    if variant == "scr":
        from scr_middleware.flask import SessionCompletion

        SessionCompletion(app)
    elif variant != "bare":
        raise ValueError(f"unknown variant {variant!r}")
    return app
