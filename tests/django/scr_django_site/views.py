"""A fake OpenAI-compatible gateway: sync views stream sync generators, async views async
generators. ``X-Scenario`` picks a bad upstream behaviour, ``X-Test-Id`` the completion id."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scr_fake_llm as fake
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views import View

from scr_middleware import get_runtime, scr_exempt, scr_route


async def _async(chunks: list[bytes], delay: float = 0.0) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if delay:
            await asyncio.sleep(delay)
        yield chunk


def _sync(chunks: list[bytes], delay: float = 0.0) -> Iterator[bytes]:
    for chunk in chunks:
        if delay:
            time.sleep(delay)
        yield chunk


def respond(request: HttpRequest, asynchronous: bool) -> HttpResponseBase:
    try:
        body: dict[str, Any] = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    test_id = request.headers.get("X-Test-Id")
    scenario = request.headers.get("X-Scenario", "")
    stream = _async if asynchronous else _sync
    if scenario == "boom":
        raise RuntimeError("the model server is on fire")
    if scenario == "malformed":
        return HttpResponse(fake.MALFORMED, content_type="application/json")
    if scenario == "gzip":
        response = HttpResponse(
            fake.gzipped(fake.completion(body, test_id)), content_type="application/json"
        )
        response["Content-Encoding"] = "gzip"
        return response
    if scenario == "big":
        data = fake.completion(body, test_id, pad=5 * 1024 * 1024)
        return HttpResponse(data, content_type="application/json")
    if scenario in ("no-content", "not-modified"):
        return HttpResponse(status=204 if scenario == "no-content" else 304)
    if scenario == "file":
        return FileResponse(io.BytesIO(fake.completion(body, test_id)))
    if scenario == "truncated":
        return StreamingHttpResponse(
            stream(fake.truncated_stream(body, test_id)), content_type=fake.SSE
        )
    if scenario == "slow":
        first = fake.stream_chunks(body, test_id)[0]
        return StreamingHttpResponse(stream([first] * 400, 0.05), content_type=fake.SSE)
    if body.get("stream") is True:
        return StreamingHttpResponse(
            stream(fake.stream_chunks(body, test_id)), content_type=fake.SSE
        )
    return HttpResponse(fake.completion(body, test_id), content_type="application/json")


def chat(request: HttpRequest) -> HttpResponseBase:
    return respond(request, asynchronous=False)


async def achat(request: HttpRequest) -> HttpResponseBase:
    return respond(request, asynchronous=True)


@scr_exempt
def exempt_chat(request: HttpRequest) -> HttpResponseBase:
    return respond(request, asynchronous=False)


@scr_route(session_type="agent", metadata={"team": "search"})
class AgentView(View):
    def post(self, request: HttpRequest) -> HttpResponseBase:
        return respond(request, asynchronous=False)


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def failures(request: HttpRequest) -> JsonResponse:
    """Extraction failures counted for this process: in it, and (flushed first, so every
    record sent so far was replayed) by its capture process."""
    runtime = get_runtime()
    runtime.flush(10.0)
    return JsonResponse(runtime.extraction_failures())
