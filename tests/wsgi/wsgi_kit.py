"""Shared by the WSGI, Flask and Django tests: a runtime feeding an in-memory destination,
fixtures, and helpers for calling a WSGI app the way a server does."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest
import scr_fake_llm as fake

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.extract import failsafe
from scr_middleware.runtime import SessionCompletionRuntime

CHAT = "/v1/chat/completions"
REQUEST = {"model": fake.MODEL, "messages": [{"role": "user", "content": "say hi to me"}]}
JSON_HEADERS = [("Content-Type", "application/json")]
SSE_HEADERS = [("Content-Type", fake.SSE), ("Cache-Control", "no-cache")]


def environ(
    path: str = CHAT, body: bytes | None = None, method: str = "POST", **extra: Any
) -> dict[str, Any]:
    data = json.dumps(REQUEST).encode() if body is None else body
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
        "wsgi.file_wrapper": FileWrapper,
        **extra,
    }
    setup_testing_defaults(env)
    return env


class Recorder:
    """A server's ``start_response``: records what it was given and what was written."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.calls.append((status, headers, exc_info))
        return self.written.append


class Body:
    """An app's response iterable that records how far it was consumed and its close()."""

    def __init__(self, chunks: Iterable[bytes], fail_at: int | None = None) -> None:
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise ValueError("upstream broke")
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def app_returning(
    body: Body | Iterable[bytes],
    status: str = "200 OK",
    headers: list[tuple[str, str]] | None = None,
    *,
    read_input: bool = True,
    seen: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if read_input:
            stream = env["wsgi.input"]
            parts = []
            while part := stream.read(7):  # small reads: the tee must copy every one
                parts.append(part)
            if seen is not None:
                seen["body"] = b"".join(parts)
                seen["content_length"] = env.get("CONTENT_LENGTH")
        start_response(status, list(headers or JSON_HEADERS))
        return body

    return app


_names = itertools.count()


@pytest.fixture(autouse=True)
def internal_errors_raise() -> Iterator[None]:
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


class LedgerCaptured(Captured):
    """``Captured`` through a capture process (``middleware.offload: process``): the adapter
    hands records to it, and events are read back from its SQLite ledger."""

    def __init__(self, tmp_path: Path, middleware: dict[str, Any] | None = None) -> None:
        self.name = f"wsgi-{next(_names)}"
        self.ledger = tmp_path / "ledger.sqlite3"
        self.runtime = SessionCompletionRuntime(
            config={
                "capture": {"batch_size": 1, "flush_interval_ms": 0},
                "destinations": [{"name": "ledger", "endpoint": f"sqlite:///{self.ledger}"}],
                "storage": {"data_dir": str(tmp_path)},
                "middleware": {"offload": "process", **(middleware or {})},
            }
        )

    def _read(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.ledger)) as conn:
            rows = conn.execute("SELECT payload FROM events ORDER BY rowid").fetchall()
        return [json.loads(row[0]) for row in rows]

    def events(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10.0
        while True:
            self.runtime.flush(10.0)
            found = self._read()
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, found
                return found
            time.sleep(0.02)

    def settled(self) -> list[dict[str, Any]]:
        assert self.runtime.flush(10.0)
        return self._read()

    @property
    def failures(self) -> dict[str, int]:
        self.runtime.flush(10.0)  # the capture process reports its counts with each ACK
        return self.runtime.extraction_failures()


@pytest.fixture(params=["inline", "process"])
def captured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Captured]]:
    """``inline``: the adapter extracts in this process (a memory:// destination);
    ``process``: it records and a capture process extracts (a SQLite ledger)."""
    made: list[Captured] = []
    kind = Captured if request.param == "inline" else LedgerCaptured

    def make(middleware: dict[str, Any] | None = None) -> Captured:
        made.append(kind(tmp_path / str(len(made)), middleware))
        return made[-1]

    yield make
    for item in made:
        item.runtime.shutdown(5.0)
