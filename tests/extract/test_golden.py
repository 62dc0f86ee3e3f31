"""Golden fixtures: real response shapes for every extractor, each with its expected event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from scr_middleware.events import normalize_event
from scr_middleware.router.stats import RuntimeStats

from .helpers import FIXTURES, chunked, present, run, settings

CASES = sorted(FIXTURES.glob("*.expected.json"))


def _body(case: Path) -> Path:
    stem = case.name.removesuffix(".expected.json")
    for suffix in (".json", ".sse"):
        candidate = case.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    raise AssertionError(f"no response fixture for {case.name}")


def _check(expected: dict[str, Any], event: dict[str, Any]) -> None:
    for key, want in expected.items():
        got: Any = event.get(key)
        if key in ("usage", "outcome", "metadata") and isinstance(want, dict):
            assert present(got) == present(want), key
        elif key == "request":
            assert got == want
        else:
            assert got == want, key


def test_every_fixture_has_an_expectation() -> None:
    bodies = {p.name for p in FIXTURES.iterdir() if p.suffix in (".json", ".sse")}
    bodies -= {p.name for p in CASES}
    assert bodies == {_body(case).name for case in CASES}
    assert len(CASES) >= 14


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".expected.json"))
@pytest.mark.parametrize("chunking", ["whole", "bytewise", "lines"])
def test_golden(case: Path, chunking: str) -> None:
    spec = json.loads(case.read_text())
    body = _body(case).read_bytes()
    chunks = chunked(body, chunking)
    stats = RuntimeStats()
    config = settings(
        user_id_sources=tuple(spec.get("user_id_sources", ("framework_user", "body:user")))
    )
    events, forwarded = run(
        chunks,
        path=spec["path"],
        status=spec["status"],
        content_type=spec["content_type"],
        request_body=orjson.dumps(spec["request"]),
        request_headers=spec.get("request_headers"),
        config=config,
        stats=stats,
    )
    assert all(out is chunk for out, chunk in zip(forwarded, chunks, strict=True))
    assert len(events) == 1
    orjson.dumps(events[0])  # JSON-serialisable as emitted
    event = normalize_event(events[0])
    _check(spec["event"], event)
    assert event["request"]["path"] == spec["path"]
    assert event["duration_ms"] >= 0
    assert stats.extraction_failures == spec.get("failures", {})
