"""Runtime tests: real HTTP sinks on 127.0.0.1 and runtimes that are always shut down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import MakeRuntime, TimedSink

from scr_middleware import SessionCompletionRuntime


@pytest.fixture
def sink() -> Iterator[TimedSink]:
    server = TimedSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def healthy_sink() -> Iterator[TimedSink]:
    server = TimedSink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[MakeRuntime]:
    """Build runtimes with a private data dir; each is shut down (briefly) after the test."""
    made: list[SessionCompletionRuntime] = []

    def make(destinations: list[dict[str, Any]], **overrides: Any) -> SessionCompletionRuntime:
        settings: dict[str, Any] = {
            "capture": {"batch_size": 100, "flush_interval_ms": 60_000},
            "storage": {"data_dir": str(tmp_path / f"data-{len(made)}")},
            "destinations": destinations,
        }
        runtime = SessionCompletionRuntime(config=settings, timeout_ms=10_000, **overrides)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.shutdown(2.0)
