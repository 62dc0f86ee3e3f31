"""Helpers: captured events, recorded Realtime sessions, a uvicorn server in a thread."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.runtime import SessionCompletionRuntime

HERE = Path(__file__).parent


@dataclass
class Captured:
    runtime: SessionCompletionRuntime
    name: str

    def events(self) -> list[dict[str, Any]]:
        assert self.runtime.flush(10.0)
        destination = memory_destination(self.name)
        return [] if destination is None else destination.payloads

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.05)


def recorded(name: str = "rt_session_audio.jsonl") -> list[str]:
    """The raw text frames of a recorded Realtime session, in order."""
    return [line for line in (HERE / name).read_text().splitlines() if line.strip()]


def recorded_events(name: str = "rt_session_audio.jsonl") -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in recorded(name)]
