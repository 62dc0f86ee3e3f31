"""Flask app for the server benchmarks:
``gunicorn 'benchmarks.apps.flask_app:create_app("scr")'``. With the middleware it also
answers ``GET /_bench/offload`` with the worker's ``runtime.health()[1]["offload"]``."""

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
        from scr_middleware import runtime as runtime_mod
        from scr_middleware.flask import SessionCompletion

        SessionCompletion(app)

        @app.get("/_bench/offload")
        def offload_stats() -> dict[str, object]:
            # This worker's channel to its capture process (records replayed inline...).
            health = runtime_mod.get_runtime().health()[1]
            return {"pid": health["pid"], "offload": health.get("offload")}

    elif variant != "bare":
        raise ValueError(f"unknown variant {variant!r}")
    return app
