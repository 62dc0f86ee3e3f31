"""Protocol-level helpers: call an ASGI app directly and record every message in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.runtime import SessionCompletionRuntime

Message = dict[str, Any]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class MemoryRuntime:
    runtime: SessionCompletionRuntime
    name: str

    def events(self) -> list[dict[str, Any]]:
        """Everything captured so far, delivered (flush) and read back from memory://."""
        assert self.runtime.flush(10.0)
        destination = memory_destination(self.name)
        return [] if destination is None else destination.payloads

    def wait_events(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Over a real server the client can read the last byte a moment before the server
        task resumes and captures the event; poll (bounded) until ``count`` were captured."""
        deadline = time.monotonic() + timeout
        while self.capture_calls < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events()

    def delivered(self) -> int:
        """Events the destination holds now (no flush)."""
        destination = memory_destination(self.name)
        return 0 if destination is None else len(destination.payloads)

    @property
    def capture_calls(self) -> int:
        """capture() calls so far, counted synchronously on the caller's thread."""
        return len(self.runtime.stats.capture_latency_ns)

    @property
    def failures(self) -> dict[str, int]:
        return dict(self.runtime.stats.extraction_failures)


@dataclass
class LedgerRuntime(MemoryRuntime):
    """``MemoryRuntime``'s interface over a runtime whose middleware events go to a capture
    process (``middleware.offload: process``), read back from its SQLite ledger."""

    ledger: Path = Path()

    def events(self) -> list[dict[str, Any]]:
        assert self.runtime.flush(20.0)
        if not self.ledger.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.ledger)) as conn:
            rows = conn.execute("SELECT payload FROM events ORDER BY rowid").fetchall()
        return [json.loads(row[0]) for row in rows]

    def delivered(self) -> int:
        if not self.ledger.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.ledger)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    @property
    def capture_calls(self) -> int:
        """Records handed to the capture process, plus captures in this process."""
        offloader = self.runtime._offloader
        recorded = offloader.stats.recorded if offloader is not None else 0
        return recorded + len(self.runtime.stats.capture_latency_ns)

    @property
    def failures(self) -> dict[str, int]:
        self.runtime.flush(20.0)  # the capture process reports its counts with each ACK
        return self.runtime.extraction_failures()


@dataclass
class Recorder:
    """A server stand-in: feeds ``requests`` to receive() and records what send() gets."""

    requests: Sequence[Message] = ()
    log: list[tuple[str, Any]] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    send_error: BaseException | None = None
    on_send: Callable[[Message], None] | None = None
    _index: int = 0

    async def receive(self) -> Message:
        if self._index < len(self.requests):
            message = self.requests[self._index]
            self._index += 1
            return message
        await asyncio.sleep(30)  # a real server blocks until the client disconnects
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.on_send is not None:
            self.on_send(message)
        if self.send_error is not None and message.get("type") == "http.response.body":
            raise self.send_error
        self.log.append(("down", message))
        self.sent.append(message)


def http_scope(
    path: str = "/v1/chat/completions", method: str = "POST", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        **extra,
    }


def body_request(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


def scripted_app(
    messages: Sequence[Message], log: list[tuple[str, Any]]
) -> Callable[..., Awaitable[None]]:
    """An app that reads the request, then sends ``messages`` one by one, logging each."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if not message.get("more_body", False):
                break
        for message in messages:
            log.append(("app", message))
            await send(message)

    return app


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())
