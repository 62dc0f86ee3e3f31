"""WSGI adapter tests: a real runtime feeding an in-memory destination, internal errors raised."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.extract import failsafe
from scr_middleware.runtime import SessionCompletionRuntime

_names = itertools.count()


@pytest.fixture(autouse=True)
def _internal_errors_raise() -> Iterator[None]:
    """Bugs inside the observer fail the test instead of being counted (sentry's pattern)."""
    saved = failsafe.RAISE_INTERNAL_ERRORS
    failsafe.RAISE_INTERNAL_ERRORS = True
    yield
    failsafe.RAISE_INTERNAL_ERRORS = saved


class Captured:
    """A runtime whose events land in memory; ``events(n)`` waits for ``n`` of them."""

    def __init__(self, tmp_path: Path, middleware: dict[str, Any] | None = None) -> None:
        self.name = f"wsgi-{next(_names)}"
        self.runtime = SessionCompletionRuntime(
            config={
                "capture": {"batch_size": 1, "flush_interval_ms": 0},
                "destinations": [{"name": "mem", "endpoint": f"memory://{self.name}"}],
                "storage": {"data_dir": str(tmp_path)},
                "middleware": middleware or {},
            }
        )
        self.runtime.start()

    def events(self, count: int) -> list[dict[str, Any]]:
        destination = memory_destination(self.name)
        assert destination is not None
        assert destination.wait_for(count, timeout=10.0), destination.payloads
        return destination.payloads

    def settled(self) -> list[dict[str, Any]]:
        """Everything delivered once the buffer is flushed (to assert that nothing came)."""
        assert self.runtime.flush(10.0)
        destination = memory_destination(self.name)
        assert destination is not None
        return destination.payloads

    @property
    def failures(self) -> dict[str, int]:
        return dict(self.runtime.stats.extraction_failures)


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Callable[..., Captured]]:
    made: list[Captured] = []

    def make(middleware: dict[str, Any] | None = None) -> Captured:
        made.append(Captured(tmp_path / str(len(made)), middleware))
        return made[-1]

    yield make
    for item in made:
        item.runtime.shutdown(5.0)
