"""Shared by the WSGI, Flask and Django tests: a runtime feeding an in-memory destination,
fixtures, and helpers for calling a WSGI app the way a server does."""

from __future__ import annotations

import io
import itertools
import json
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


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Callable[..., Captured]]:
    made: list[Captured] = []

    def make(middleware: dict[str, Any] | None = None) -> Captured:
        made.append(Captured(tmp_path / str(len(made)), middleware))
        return made[-1]

    yield make
    for item in made:
        item.runtime.shutdown(5.0)
