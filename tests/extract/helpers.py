"""Drive an Observer the way an adapter does, without any framework."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scr_middleware.config_model import MiddlewareConfig
from scr_middleware.extract import Observer, ObserverSettings, RequestInfo
from scr_middleware.router.stats import RuntimeStats

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def settings(**overrides: Any) -> ObserverSettings:
    return ObserverSettings.from_config(MiddlewareConfig(**overrides))


def run(
    chunks: Iterable[bytes],
    *,
    path: str = "/v1/chat/completions",
    status: int = 200,
    content_type: str | None = "application/json",
    headers: Sequence[tuple[bytes, bytes]] = (),
    request_body: bytes | None = None,
    request_headers: dict[str, str] | None = None,
    config: ObserverSettings | None = None,
    stats: RuntimeStats | None = None,
    method: str = "POST",
    user_id: str | None = None,
    cancelled: bool = False,
    exception: BaseException | None = None,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Returns (emitted events, forwarded chunks)."""
    events: list[dict[str, Any]] = []
    observer = Observer(
        config or settings(),
        RequestInfo(method, path, headers=request_headers or {}, user_id=user_id),
        events.append,
        stats=stats if stats is not None else RuntimeStats(),
    )
    if request_body is not None and observer.wants_request_body():
        observer.on_request_body(request_body)
    response_headers = list(headers)
    if content_type is not None:
        response_headers.append((b"content-type", content_type.encode()))
    observer.on_response_start(status, response_headers)
    forwarded: list[bytes] = []
    chunk_list = list(chunks)
    for index, chunk in enumerate(chunk_list):
        out = observer.on_chunk(chunk, last=index == len(chunk_list) - 1)
        forwarded.append(out)
    observer.finish(cancelled=cancelled, exception=exception)
    return events, forwarded


def rechunk(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


CHUNKINGS = ("whole", "bytewise", "lines")


def chunked(body: bytes, chunking: str) -> list[bytes]:
    """``body`` as a server might send it: in one piece, byte by byte, or line by line."""
    if chunking == "whole":
        return [body]
    if chunking == "bytewise":
        return [body[i : i + 1] for i in range(len(body))]
    return rechunk(body, [i + 1 for i, b in enumerate(body) if b == 0x0A])


def present(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}
