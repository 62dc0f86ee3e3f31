"""Test helpers for users of scr-middleware (httpx ``MockTransport`` / structlog
``capture_logs`` style).

    from scr_middleware.testing import capture_events

    def test_chat_is_billed(client):
        with capture_events() as events:
            client.post("/v1/chat/completions", json={...})
        events.assert_captured(user_id="u1", usage={"total_tokens": 30})

``capture_events`` swaps the shared runtime for one that delivers at once to an in-memory
destination, and restores the previous runtime afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import runtime as runtime_mod
from .destinations.memory import MemoryDestination, memory_destination
from .runtime import SessionCompletionRuntime

_names = itertools.count()


class CapturedEvents:
    """The canonical events a ``capture_events`` block delivered, oldest first."""

    def __init__(self, runtime: SessionCompletionRuntime, destination_name: str) -> None:
        self.runtime = runtime
        self._name = destination_name

    @property
    def destination(self) -> MemoryDestination:
        destination = memory_destination(self._name)
        if destination is None:  # the router had no event yet, so never opened it
            raise LookupError("no event was captured")
        return destination

    @property
    def events(self) -> list[dict[str, Any]]:
        self.runtime.flush(5.0)
        destination = memory_destination(self._name)
        return [] if destination is None else destination.payloads

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.events[index]

    def assert_captured(self, count: int | None = None, **expected: Any) -> dict[str, Any]:
        """Assert that an event matching ``expected`` (nested dicts match as subsets) was
        captured, ``count`` times if given; returns the first match."""
        events = self.events
        matches = [event for event in events if _matches(event, expected)]
        if not matches or (count is not None and len(matches) != count):
            raise AssertionError(
                f"expected {count if count is not None else 'an'} event(s) matching {expected!r};"
                f" captured {len(events)}: {events!r}"
            )
        return matches[0]


def _matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and _matches(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


@contextmanager
def capture_events(**overrides: Any) -> Iterator[CapturedEvents]:
    """Route the shared runtime's events to memory for the duration of the block."""
    name = f"scr-testing-{next(_names)}"
    settings: dict[str, Any] = {
        "capture": {"batch_size": 1, "flush_interval_ms": 0},
        "destinations": [{"name": "memory", "endpoint": f"memory://{name}"}],
        **overrides,
    }
    previous = runtime_mod._shared
    runtime = SessionCompletionRuntime(config=settings)
    runtime_mod._set_shared(runtime)
    try:
        yield CapturedEvents(runtime, name)
    finally:
        runtime.shutdown(5.0)
        runtime_mod._shared = previous
