"""The Flask extension in process: set-up, settings, identity, view options, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import scr_fake_llm as fake
from flask import Flask, Response, stream_with_context
from flask_gateway import create_app

from scr_middleware import ConfigError
from scr_middleware.flask import EXTENSION_KEY, SessionCompletion
from scr_middleware.wsgi import SessionCompletionMiddleware

CHAT = "/v1/chat/completions"
REQUEST = {"model": fake.MODEL, "messages": [{"role": "user", "content": "one two three"}]}


def gateway(cap: Any, **config: Any) -> Flask:
    app = create_app(with_extension=False)
    app.config.update(config)
    SessionCompletion(app, runtime=cap.runtime)
    return app


def test_extension_wraps_wsgi_app_and_keeps_state_on_the_app(captured: Any) -> None:
    cap = captured()
    app = create_app(with_extension=False)
    ext = SessionCompletion(runtime=cap.runtime)
    other = create_app(with_extension=False)
    ext.init_app(app)
    ext.init_app(other)  # one extension, several apps
    for each in (app, other):
        assert isinstance(each.wsgi_app, SessionCompletionMiddleware)
        assert each.extensions[EXTENSION_KEY] is each.wsgi_app
    assert not hasattr(ext, "app")
    with pytest.raises(RuntimeError, match="already"):
        ext.init_app(app)


def test_events_carry_identity_route_and_usage(captured: Any) -> None:
    cap = captured()
    client = gateway(cap).test_client()
    response = client.post(
        CHAT, json=REQUEST, headers={"Authorization": "Bearer user-42", "X-Test-Id": "f1"}
    )
    assert response.status_code == 200
    assert response.data == fake.completion(REQUEST, "f1")
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-f1"
    assert event["user_id"] == "42"  # g.user.id
    assert event["request"]["route"] == CHAT
    assert event["usage"]["input_tokens"] == 3
    assert event["outcome"]["status"] == "success"


def test_anonymous_user_falls_back_to_the_body(captured: Any) -> None:
    cap = captured()
    client = gateway(cap).test_client()
    response = client.post(CHAT, json={**REQUEST, "user": "end-user-7"})
    assert response.data == fake.completion(REQUEST)  # a server reads the body to the end
    (event,) = cap.events(1)
    assert event["user_id"] == "end-user-7"


def test_streamed_response_is_observed_as_it_is_consumed(captured: Any) -> None:
    cap = captured()
    client = gateway(cap).test_client()
    request = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    response = client.post(CHAT, json=request, headers={"X-Test-Id": "s1"}, buffered=False)
    chunks = list(response.response)
    response.close()
    assert b"".join(chunks) == b"".join(fake.stream_chunks(request, "s1"))
    (event,) = cap.events(1)
    assert event["transport"] == "sse"
    assert event["usage"]["total_tokens"] == 3 + len(fake.WORDS)


def test_stream_with_context_sees_g_user(captured: Any) -> None:
    cap = captured()
    app = gateway(cap)

    @app.post("/v2/chat/completions")
    def ctx_stream() -> Response:
        @stream_with_context
        def generate() -> Any:
            yield from fake.stream_chunks({**REQUEST, "stream": True}, "ctx")

        return Response(generate(), mimetype=fake.SSE)

    response = app.test_client().post(
        "/v2/chat/completions", json=REQUEST, headers={"Authorization": "Bearer user-5"}
    )
    assert response.data == b"".join(fake.stream_chunks({**REQUEST, "stream": True}, "ctx"))
    (event,) = cap.events(1)
    assert event["user_id"] == "5"
    assert event["session_id"] == "chatcmpl-ctx"


def test_exempt_view_emits_nothing_and_scr_route_applies(captured: Any) -> None:
    cap = captured()
    client = gateway(cap).test_client()
    exempt = client.post("/v1/exempt/chat/completions", json=REQUEST, headers={"X-Test-Id": "ex"})
    assert exempt.data == fake.completion(REQUEST, "ex")
    agent = client.post("/v1/agent/chat/completions", json=REQUEST, headers={"X-Test-Id": "ag"})
    assert agent.data == fake.completion(REQUEST, "ag")
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-ag"
    assert event["session_type"] == "agent"
    assert event["metadata"]["team"] == "search"
    assert [e["session_id"] for e in cap.settled()] == ["chatcmpl-ag"]


def test_handler_exception_becomes_an_error_event(captured: Any) -> None:
    cap = captured()
    client = gateway(cap).test_client()
    response = client.post(CHAT, json=REQUEST, headers={"X-Scenario": "boom"})
    assert response.status_code == 500
    assert b"Internal Server Error" in response.data
    (event,) = cap.events(1)
    assert event["outcome"] == {
        "status": "error",
        "error_type": "RuntimeError",
        "http_status": 500,
    }


def test_propagated_exception_is_reraised_unchanged(captured: Any) -> None:
    cap = captured()
    app = gateway(cap)
    app.testing = True  # PROPAGATE_EXCEPTIONS: the exception leaves the app
    with pytest.raises(RuntimeError, match="on fire"):
        app.test_client().post(CHAT, json=REQUEST, headers={"X-Scenario": "boom"})
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "RuntimeError"


def test_propagated_exception_keeps_the_user_and_route(captured: Any) -> None:
    """No response is started: the got_request_exception signal records what Flask knows."""
    cap = captured()
    app = gateway(cap)
    app.testing = True
    with pytest.raises(RuntimeError, match="on fire"):
        app.test_client().post(
            CHAT, json=REQUEST, headers={"X-Scenario": "boom", "Authorization": "Bearer user-8"}
        )
    (event,) = cap.events(1)
    assert event["user_id"] == "8"
    assert event["request"]["route"] == CHAT


def test_exempt_view_that_propagates_an_exception_emits_nothing(captured: Any) -> None:
    cap = captured()
    app = gateway(cap)
    app.testing = True
    with pytest.raises(RuntimeError, match="on fire"):
        app.test_client().post(
            "/v1/exempt/chat/completions", json=REQUEST, headers={"X-Scenario": "boom"}
        )
    assert cap.settled() == []


def test_no_request_hooks_are_registered(captured: Any) -> None:
    """Flask runs request hooks on every request, observed or not: the extension adds none."""
    cap = captured()
    app = create_app(with_extension=False)
    before = (
        {key: list(funcs) for key, funcs in app.after_request_funcs.items()},
        {key: list(funcs) for key, funcs in app.teardown_request_funcs.items()},
    )
    SessionCompletion(app, runtime=cap.runtime)
    after = (
        {key: list(funcs) for key, funcs in app.after_request_funcs.items()},
        {key: list(funcs) for key, funcs in app.teardown_request_funcs.items()},
    )
    assert after == before


def test_response_started_outside_the_request_context(captured: Any) -> None:
    """A wrapper inside the extension that starts the response only when the body is pulled
    (after Flask popped its context): the view and route still come from Werkzeug's request."""
    cap = captured()
    app = create_app(with_extension=False)
    flask_wsgi_app = app.wsgi_app

    def late_start(environ: dict[str, Any], start_response: Any) -> Any:
        started: list[Any] = []
        body = flask_wsgi_app(environ, lambda *args: started.append(args))

        def pulled() -> Any:
            start_response(*started[-1])
            yield from body

        return pulled()

    app.wsgi_app = late_start  # type: ignore[method-assign]
    SessionCompletion(app, runtime=cap.runtime)
    client = app.test_client()
    exempt = client.post("/v1/exempt/chat/completions", json=REQUEST, headers={"X-Test-Id": "l1"})
    assert exempt.data == fake.completion(REQUEST, "l1")
    agent = client.post("/v1/agent/chat/completions", json=REQUEST, headers={"X-Test-Id": "l2"})
    assert agent.data == fake.completion(REQUEST, "l2")
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-l2"
    assert event["session_type"] == "agent"
    assert event["request"]["route"] == "/v1/agent/chat/completions"
    assert [e["session_id"] for e in cap.settled()] == ["chatcmpl-l2"]


def test_settings_from_app_config(captured: Any, tmp_path: Path) -> None:
    cap = captured()
    app = gateway(cap, SCR={"middleware": {"include_routes": ["/llm/*"]}})

    @app.post("/llm/generate")
    def generate() -> Response:
        return Response(fake.completion(REQUEST, "custom"), mimetype="application/json")

    client = app.test_client()
    assert client.post(CHAT, json=REQUEST).data  # no longer observed
    assert client.post("/llm/generate", json=REQUEST).data
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-custom"
    assert [e["session_id"] for e in cap.settled()] == ["chatcmpl-custom"]


def test_settings_file_from_app_config(captured: Any, tmp_path: Path) -> None:
    cap = captured()
    path = tmp_path / "scr.yaml"
    path.write_text(
        json.dumps({"session_completion_runtime": {"middleware": {"session_type": "gateway"}}})
    )
    app = gateway(cap, SCR_CONFIG_FILE=str(path), SCR=None)
    assert app.extensions[EXTENSION_KEY].settings.session_type == "gateway"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"SCR": {"capture": {"batch_size": 0}}}, r"capture\.batch_size"),
        ({"SCR": {"middleware": {"user_id_sources": ["cookie:x"]}}}, r"user_id_sources\[0\]"),
        ({"SCR": ["not", "a", "dict"]}, r"^SCR: must be a dict"),
        ({"SCR_CONFIG_FILE": "/nonexistent/scr.yaml"}, "config file not found"),
    ],
)
def test_bad_settings_fail_at_init(config: dict[str, Any], match: str) -> None:
    app = create_app(with_extension=False)
    app.config.update(config)
    wsgi_app = app.wsgi_app
    with pytest.raises(ConfigError, match=match):
        SessionCompletion(app)
    assert app.wsgi_app == wsgi_app
    assert EXTENSION_KEY not in app.extensions


def test_works_with_the_shipped_capture_events_helper() -> None:
    """What docs/flask.md shows: the extension feeds the shared runtime, which the helper swaps
    for an in-memory one for the duration of the block."""
    from scr_middleware.testing import capture_events

    with capture_events() as events:
        app = create_app(with_extension=True)
        response = app.test_client().post(
            CHAT, json=REQUEST, headers={"Authorization": "Bearer user-3", "X-Test-Id": "helper"}
        )
        assert response.data == fake.completion(REQUEST, "helper")
        events.assert_captured(
            count=1, session_id="chatcmpl-helper", user_id="3", usage={"total_tokens": 9}
        )
