"""Extractor list and identity configuration: resolved at start-up, applied per request."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from scr_middleware.errors import ConfigError
from scr_middleware.extract import Extraction, Observer, RequestInfo, ResponseData, failsafe
from scr_middleware.router.stats import RuntimeStats
from scr_middleware.routes_options import RouteOptions, scr_exempt, scr_route

from .helpers import FIXTURES, run, settings

CHAT = (FIXTURES / "openai_chat_completion.json").read_bytes()

CUSTOM = """
from scr_middleware.extract import SKIP, Extraction


class VendorExtractor:
    def __init__(self, prefix="vendor"):
        self.prefix = prefix

    def __call__(self, response):
        body = response.body
        if not isinstance(body, dict) or "vendor_usage" not in body:
            return SKIP
        return Extraction(session_type="chat", session_id=self.prefix + body["rid"],
                          usage={"input_tokens": body["vendor_usage"][0],
                                 "output_tokens": body["vendor_usage"][1]})


def broken(response):
    raise RuntimeError("extractor bug")


def identity(request, body):
    return {"user_id": request.headers.get("x-user"), "organization_id": "org-from-callable",
            "metadata": {"tier": "gold"}}


def failing_identity(request, body):
    raise KeyError("no tenant")
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "scr_custom_ext.py").write_text(textwrap.dedent(CUSTOM))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "scr_custom_ext"


def test_custom_extractor_first_then_builtins(custom_module: str) -> None:
    config = settings(extractors=(f"{custom_module}:VendorExtractor", "openai_chat"))
    vendor = orjson.dumps({"rid": "42", "vendor_usage": [3, 4]})
    events, _ = run([vendor], config=config)
    assert events[0]["session_id"] == "vendor42"
    assert events[0]["usage"] == {
        "input_tokens": 3,
        "output_tokens": 4,
        "model": None,
        "source": "reported",
    }
    events, _ = run([CHAT], config=config)
    assert events[0]["usage"]["total_tokens"] == 29


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("no_such_module_xyz:fn", "cannot import module"),
        ("scr_middleware.extract:nope", "has no attribute"),
        ("not-a-path", "must look like"),
        ("scr_middleware.extract.failsafe:INVALID_JSON", "must be callable"),
    ],
)
def test_bad_extractor_names_its_index(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(extractors=("openai_chat", spec))
    assert info.value.path == "middleware.extractors[1]"
    assert problem in info.value.problem


def test_extractor_exception_is_counted_and_the_next_one_runs(
    custom_module: str, stats: RuntimeStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failsafe, "RAISE_INTERNAL_ERRORS", False)
    config = settings(extractors=(f"{custom_module}:broken", "openai_chat"))
    events, _ = run([CHAT], config=config, stats=stats)
    assert events[0]["usage"]["total_tokens"] == 29
    assert stats.extraction_failures == {"extractor_error": 1}


def test_extractor_exception_reaches_tests(custom_module: str) -> None:
    config = settings(extractors=(f"{custom_module}:broken",))
    with pytest.raises(RuntimeError, match="extractor bug"):
        run([CHAT], config=config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("user_id_sources", ("framework_user", "cookie:x")),
        ("user_id_sources", ("framework_user", "body:")),
        ("organization_id_sources", ("header:x", "framework_user")),
    ],
)
def test_bad_identity_source_names_its_index(key: str, value: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**{key: value})
    assert info.value.path == f"middleware.{key}[1]"


def test_identity_defaults_and_sources() -> None:
    body = orjson.dumps({"user": "body-user", "metadata": {"user_id": "meta-user"}})
    events, _ = run(
        [CHAT],
        request_body=body,
        user_id="framework-user",
        request_headers={"openai-organization": "org-h"},
    )
    assert (events[0]["user_id"], events[0]["organization_id"]) == ("framework-user", "org-h")
    events, _ = run([CHAT], request_body=body)
    assert events[0]["user_id"] == "body-user"
    config = settings(
        user_id_sources=("body:metadata.user_id",),
        organization_id_sources=("header:x-org", "body:org"),
    )
    events, _ = run([CHAT], request_body=body, config=config, request_headers={"x-org": "o9"})
    assert (events[0]["user_id"], events[0]["organization_id"]) == ("meta-user", "o9")


def test_identity_callable(custom_module: str) -> None:
    config = settings(identity_callable=f"{custom_module}:identity")
    events, _ = run(
        [CHAT],
        request_body=b'{"user": "u-body"}',
        config=config,
        request_headers={"x-user": "u-header"},
    )
    event = events[0]
    assert (event["user_id"], event["organization_id"]) == ("u-header", "org-from-callable")
    assert event["metadata"] == {"tier": "gold"}


def test_identity_callable_failure_falls_back(
    custom_module: str, stats: RuntimeStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failsafe, "RAISE_INTERNAL_ERRORS", False)
    config = settings(identity_callable=f"{custom_module}:failing_identity")
    events, _ = run([CHAT], request_body=b'{"user": "u-body"}', config=config, stats=stats)
    assert events[0]["user_id"] == "u-body"
    assert stats.extraction_failures == {"identity_error": 1}


def test_identity_callable_missing_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        settings(identity_callable="scr_middleware.extract:missing_fn")
    assert info.value.path == "middleware.identity_callable"


def _observe(endpoint: Any, body: bytes = CHAT) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    observer = Observer(
        settings(), RequestInfo("POST", "/v1/chat/completions"), events.append, stats=RuntimeStats()
    )
    observer.on_response_start(200, [("content-type", "application/json")])
    observer.on_chunk(body, last=True)
    observer.set_endpoint(endpoint, route="/v1/chat/completions")
    observer.finish()
    return events


def test_exempt_and_route_options_from_the_endpoint() -> None:
    @scr_exempt
    def exempt_view() -> None: ...

    @scr_route(session_type="agent", metadata={"team": "search"})
    def agent_view() -> None: ...

    def plain_view() -> None: ...

    assert _observe(exempt_view) == []
    (event,) = _observe(agent_view)
    assert event["session_type"] == "agent"
    assert event["metadata"] == {"team": "search"}
    assert event["request"]["route"] == "/v1/chat/completions"
    assert _observe(plain_view)[0]["session_type"] == "chat"


def test_route_extractor_override(stats: RuntimeStats) -> None:
    def only_model(response: ResponseData) -> Extraction:
        return Extraction(
            session_type="custom", model="from-route", usage={"input_tokens": 1, "output_tokens": 2}
        )

    events: list[dict[str, Any]] = []
    request = RequestInfo(
        "POST", "/v1/chat/completions", overrides=RouteOptions(extractor=only_model)
    )
    observer = Observer(settings(), request, events.append, stats=stats)
    observer.on_response_start(200, [])
    observer.on_chunk(CHAT)
    observer.finish()
    assert events[0]["usage"]["model"] == "from-route"
    assert events[0]["session_type"] == "custom"

    events.clear()
    request = RequestInfo(
        "POST", "/v1/chat/completions", overrides=RouteOptions(extractor="nope.nope:fn")
    )
    observer = Observer(settings(), request, events.append, stats=stats)
    observer.on_response_start(200, [])
    observer.on_chunk(CHAT)
    observer.finish()
    assert events[0]["usage"]["source"] == "missing"
    assert stats.extraction_failures == {"extractor_error": 1, "missing_usage": 1}
