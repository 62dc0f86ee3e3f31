"""Helpers: captured events, recorded Realtime sessions, a uvicorn server in a thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import uvicorn

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


class UvicornThread:
    """A real uvicorn server on 127.0.0.1, an ephemeral port, in a background thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 20.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(20.0)
