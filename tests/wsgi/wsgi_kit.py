"""Helpers for calling a WSGI app the way a server does."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import FileWrapper, setup_testing_defaults

import scr_fake_llm as fake

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
