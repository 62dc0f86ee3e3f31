"""``normalize_built`` (the middleware's cheap path) agrees with ``normalize_event`` on every
event the observer builds, key order included, and defers to it for what user code supplied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from scr_middleware.events import InvalidEventError, normalize_built, normalize_event
from scr_middleware.extract import Observer, RequestInfo
from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, run, settings

CASES = sorted(FIXTURES.glob("*.expected.json"))


def _built(case: Path) -> dict[str, Any]:
    spec = json.loads(case.read_text())
    stem = case.name.removesuffix(".expected.json")
    body = next(
        case.with_name(stem + suffix).read_bytes()
        for suffix in (".json", ".sse")
        if case.with_name(stem + suffix).exists()
    )
    events, _ = run(
        [body],
        path=spec["path"],
        status=spec["status"],
        content_type=spec["content_type"],
        request_body=orjson.dumps(spec["request"]),
        request_headers=spec.get("request_headers"),
        config=settings(
            user_id_sources=tuple(spec.get("user_id_sources", ("framework_user", "body:user")))
        ),
    )
    assert len(events) == 1
    return events[0]


def _same(raw: dict[str, Any]) -> None:
    fast, full = normalize_built(dict(raw)), normalize_event(dict(raw))
    fast.pop("event_id")
    full.pop("event_id")
    assert orjson.dumps(fast) == orjson.dumps(full)  # same keys, same order, same values


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_agrees_with_normalize_event_on_every_fixture(case: Path) -> None:
    _same(_built(case))


def test_total_is_derived_as_normalize_event_does() -> None:
    raw = _built(FIXTURES / "openai_chat_completion.expected.json")
    raw["usage"] = {"input_tokens": 5, "output_tokens": 7, "model": "m", "source": "reported"}
    _same(raw)
    assert normalize_built(raw)["usage"]["total_tokens"] == 12


@pytest.mark.parametrize(
    ("field", "value"),
    [("user_id", 42), ("organization_id", ["org"]), ("metadata", "not a dict")],
)
def test_values_from_user_code_are_checked_the_general_way(field: str, value: Any) -> None:
    raw = _built(FIXTURES / "openai_chat_completion.expected.json")
    raw[field] = value
    try:
        expected: Any = normalize_event(dict(raw))
    except InvalidEventError as exc:
        with pytest.raises(InvalidEventError, match=str(exc).split(":")[0]):
            normalize_built(raw)
        return
    _same(raw)
    assert normalize_built(raw)[field] == expected[field]


@pytest.mark.parametrize(
    ("fixture", "built"),
    [
        ("openai_chat_completion", True),  # one-pass builder
        ("openai_chat_stream_include_usage", True),
        ("openai_embeddings", False),  # the general path
        ("openai_error_401", False),
    ],
)
def test_only_one_pass_events_take_the_cheap_path(fixture: str, built: bool) -> None:
    spec = json.loads((FIXTURES / f"{fixture}.expected.json").read_text())
    body_path = next(
        p for p in (FIXTURES / f"{fixture}.json", FIXTURES / f"{fixture}.sse") if p.exists()
    )
    general: list[dict[str, Any]] = []
    cheap: list[dict[str, Any]] = []
    observer = Observer(
        settings(),
        RequestInfo("POST", spec["path"], headers={}),
        general.append,
        RuntimeStats(),
        emit_built=cheap.append,
    )
    if observer.wants_request_body():
        observer.on_request_body(orjson.dumps(spec["request"]))
    observer.on_response_start(spec["status"], [(b"content-type", spec["content_type"].encode())])
    observer.on_chunk(body_path.read_bytes(), last=True)
    observer.finish()
    assert (len(cheap), len(general)) == ((1, 0) if built else (0, 1))
