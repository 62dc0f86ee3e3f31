"""Proxy views: no usage code here; the middleware captures it from the responses."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

_client = httpx.Client(base_url=settings.UPSTREAM_URL, timeout=30.0)


def _proxy(request: HttpRequest, path: str) -> HttpResponse | StreamingHttpResponse:
    upstream = _client.send(
        _client.build_request(
            "POST", path, content=request.body, headers={"content-type": "application/json"}
        ),
        stream=True,
    )
    content_type = upstream.headers.get("content-type", "application/json")
    if content_type.startswith("text/event-stream"):

        def relay() -> Iterator[bytes]:
            try:
                yield from upstream.iter_raw()
            finally:
                upstream.close()

        return StreamingHttpResponse(
            relay(), status=upstream.status_code, content_type=content_type
        )
    body = upstream.read()
    upstream.close()
    return HttpResponse(body, status=upstream.status_code, content_type=content_type)


@csrf_exempt
@require_POST
def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return _proxy(request, "/v1/chat/completions")


@csrf_exempt
@require_POST
def embeddings(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return _proxy(request, "/v1/embeddings")


@csrf_exempt
@require_POST
def responses(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return _proxy(request, "/v1/responses")
