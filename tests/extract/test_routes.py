from __future__ import annotations

import pytest

from scr_middleware.errors import ConfigError
from scr_middleware.extract.routes import RouteMatcher

from .helpers import settings


@pytest.mark.parametrize(
    ("path", "session_type"),
    [
        ("/v1/chat/completions", "chat"),
        ("/api/v1/chat/completions", "chat"),
        ("/openai/deployments/gpt4o-prod/chat/completions", "chat"),
        ("/v1/chat/completions/", "chat"),
        ("/v1/completions", "completion"),
        ("/v1/embeddings", "embedding"),
        ("/v1/responses", "response"),
        ("/v1/messages", "chat"),
    ],
)
def test_default_suffixes(path: str, session_type: str) -> None:
    match = RouteMatcher().match(path)
    assert match is not None
    assert match.session_type == session_type


@pytest.mark.parametrize("path", ["/", "/v1/models", "/v1/chat", "/v1/responses/resp_1", "/health"])
def test_other_paths_do_not_match(path: str) -> None:
    assert RouteMatcher().match(path) is None


def test_include_glob_and_regex_replace_the_defaults() -> None:
    matcher = RouteMatcher(include=["/agents/*/run", "re:^/llm/"])
    assert matcher.match("/agents/a1/run") is not None
    assert matcher.match("/llm/anything") is not None
    assert matcher.match("/v1/chat/completions") is None
    custom = matcher.match("/agents/a1/run")
    assert custom is not None
    assert custom.session_type is None


def test_exclude_wins() -> None:
    matcher = RouteMatcher(exclude=["/internal/*", "re:/v1/embeddings$"])
    assert matcher.match("/internal/v1/chat/completions") is None
    assert matcher.match("/v1/embeddings") is None
    assert matcher.match("/v1/chat/completions") is not None


def test_bad_regex_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        RouteMatcher(exclude=["/ok", "re:(unclosed"])
    assert info.value.path == "middleware.exclude_routes[1]"


def test_only_post_is_observed_and_disabled_observes_nothing() -> None:
    config = settings()
    assert config.observes("POST", "/v1/chat/completions") is not None
    for method in ("GET", "HEAD", "OPTIONS"):
        assert config.observes(method, "/v1/chat/completions") is None
    assert settings(enabled=False).observes("POST", "/v1/chat/completions") is None
