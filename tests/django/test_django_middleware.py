"""The Django middleware in process: sync and async chains, streaming wrappers, view options."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import scr_fake_llm as fake
from django.core.exceptions import MiddlewareNotUsed
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.utils.functional import SimpleLazyObject
from scr_django_site.auth import TokenUser

from scr_middleware import ConfigError
from scr_middleware.django import SessionCompletionMiddleware

CHAT = "/v1/chat/completions"
REQUEST = {"model": fake.MODEL, "messages": [{"role": "user", "content": "one two three"}]}
STREAM_REQUEST = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
USER = {"HTTP_AUTHORIZATION": "Bearer user-42"}


def post(path: str = CHAT, body: Any = REQUEST) -> HttpRequest:
    return RequestFactory().post(path, json.dumps(body), content_type="application/json")


class Produced:
    """A streaming body that records how many chunks were asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.count += 1
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.count += 1
            await asyncio.sleep(0)
            yield chunk


def test_json_response_through_the_whole_sync_stack(shared: Any) -> None:
    cap = shared()
    response = Client().post(
        CHAT, REQUEST, content_type="application/json", headers={"X-Test-Id": "dj1"}, **USER
    )
    assert response.content == fake.completion(REQUEST, "dj1")
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-dj1"
    assert event["user_id"] == "42"  # request.user.pk
    assert event["request"] == {"method": "POST", "route": "v1/chat/completions", "path": CHAT}
    assert event["usage"]["input_tokens"] == 3
    assert event["message_count"] == 1


def test_anonymous_user_falls_back_to_the_body(shared: Any) -> None:
    cap = shared()
    Client().post(CHAT, {**REQUEST, "user": "end-7"}, content_type="application/json")
    assert cap.events(1)[0]["user_id"] == "end-7"


def test_unobserved_paths_are_not_touched(shared: Any) -> None:
    cap = shared()
    response = HttpResponse(b"ok")
    middleware = SessionCompletionMiddleware(lambda request: response)
    assert middleware(RequestFactory().get("/healthz")) is response
    assert middleware(RequestFactory().get(CHAT)) is response  # GET: no session
    assert cap.settled() == []


def test_sync_stream_is_wrapped_lazily_and_finished_at_exhaustion(shared: Any) -> None:
    cap = shared()
    body = Produced(fake.stream_chunks(STREAM_REQUEST, "sync-stream"))
    middleware = SessionCompletionMiddleware(
        lambda request: StreamingHttpResponse(body, content_type=fake.SSE)
    )
    response = middleware(post(body=STREAM_REQUEST))
    assert not response.is_async
    assert body.count == 0  # nothing was read ahead
    received = []
    for index, chunk in enumerate(response):
        assert body.count == index + 1
        received.append(chunk)
    assert received == body.chunks
    (event,) = cap.events(1)
    assert event["transport"] == "sse"
    assert event["usage"]["total_tokens"] == 3 + len(fake.WORDS)
    response.close()
    assert len(cap.settled()) == 1


def test_sync_stream_closed_early_is_cancelled(shared: Any) -> None:
    cap = shared()
    body = Produced(fake.stream_chunks(STREAM_REQUEST, "cut"))
    middleware = SessionCompletionMiddleware(
        lambda request: StreamingHttpResponse(body, content_type=fake.SSE)
    )
    response = middleware(post(body=STREAM_REQUEST))
    iterator = iter(response)
    next(iterator)
    next(iterator)
    response.close()  # what WSGIHandler's server does when the client is gone
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "cancelled"


def test_async_stream_in_an_async_chain(shared: Any) -> None:
    cap = shared()
    body = Produced(fake.stream_chunks(STREAM_REQUEST, "async-stream"))

    async def get_response(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(body.__aiter__(), content_type=fake.SSE)

    middleware = SessionCompletionMiddleware(get_response)
    assert asyncio.iscoroutinefunction(middleware)  # markcoroutinefunction

    async def consume() -> list[bytes]:
        response = await middleware(post(body=STREAM_REQUEST))
        assert response.is_async
        out = []
        async for chunk in response:
            assert body.count == len(out) + 1
            out.append(chunk)
        return out

    assert asyncio.run(consume()) == body.chunks
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-async-stream"
    assert event["usage"]["output_tokens"] == len(fake.WORDS)


def test_async_stream_cancelled_by_a_disconnect(shared: Any) -> None:
    """Django's ASGI handler cancels the response task when the client disconnects."""
    cap = shared()
    first = fake.stream_chunks(REQUEST, "async-gone")[0]

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield first
            await asyncio.sleep(0.01)

    async def get_response(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(endless(), content_type=fake.SSE)

    middleware = SessionCompletionMiddleware(get_response)

    async def run() -> None:
        response = await middleware(post())
        got = asyncio.Event()

        async def send() -> None:
            async for _ in response:
                got.set()

        task = asyncio.create_task(send())
        await got.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    (event,) = cap.events(1)
    assert event["outcome"]["status"] == "cancelled"
    assert event["session_id"] == "chatcmpl-async-gone"


def test_async_client_json_and_identity(shared: Any) -> None:
    cap = shared()

    async def call() -> bytes:
        response = await AsyncClient().post(
            "/v1/async/chat/completions",
            REQUEST,
            content_type="application/json",
            headers={"Authorization": "Bearer user-42"},
        )
        return response.content  # type: ignore[no-any-return]

    assert asyncio.run(call()) == fake.completion(REQUEST)
    (event,) = cap.events(1)
    assert event["user_id"] == "42"
    assert event["request"]["route"] == "v1/async/chat/completions"


def test_async_chain_loads_a_lazy_user_with_auser(shared: Any) -> None:
    """AuthenticationMiddleware's lazy ``request.user`` would query the database on the event
    loop; the middleware awaits ``request.auser()`` instead."""
    cap = shared()

    def sync_load() -> Any:
        raise AssertionError("request.user was loaded synchronously on the event loop")

    async def auser() -> TokenUser:
        return TokenUser(9)

    async def get_response(request: HttpRequest) -> HttpResponse:
        request.user = SimpleLazyObject(sync_load)  # type: ignore[attr-defined]
        request.auser = auser  # type: ignore[attr-defined]
        return HttpResponse(fake.completion(REQUEST, "lazy"), content_type="application/json")

    asyncio.run(SessionCompletionMiddleware(get_response)(post()))
    assert cap.events(1)[0]["user_id"] == "9"


def test_view_exception_becomes_an_error_event(shared: Any) -> None:
    cap = shared()
    client = Client(raise_request_exception=False)
    response = client.post(
        CHAT, REQUEST, content_type="application/json", headers={"X-Scenario": "boom"}
    )
    assert response.status_code == 500
    (event,) = cap.events(1)
    assert event["outcome"] == {"status": "error", "error_type": "RuntimeError", "http_status": 500}


def test_async_view_exception_becomes_an_error_event(shared: Any) -> None:
    cap = shared()

    async def call() -> int:
        response = await AsyncClient(raise_request_exception=False).post(
            "/v1/async/chat/completions",
            REQUEST,
            content_type="application/json",
            headers={"X-Scenario": "boom"},
        )
        return response.status_code  # type: ignore[no-any-return]

    assert asyncio.run(call()) == 500
    (event,) = cap.events(1)
    assert event["outcome"] == {"status": "error", "error_type": "RuntimeError", "http_status": 500}


def test_exception_leaving_get_response_is_reraised(shared: Any) -> None:
    cap = shared()
    error = RuntimeError("propagated")

    def get_response(request: HttpRequest) -> HttpResponse:
        raise error

    with pytest.raises(RuntimeError) as raised:
        SessionCompletionMiddleware(get_response)(post())
    assert raised.value is error
    assert cap.events(1)[0]["outcome"]["error_type"] == "RuntimeError"


def test_exempt_view_and_class_based_route_options(shared: Any) -> None:
    cap = shared()
    client = Client()
    exempt = client.post("/v1/exempt/chat/completions", REQUEST, content_type="application/json")
    assert exempt.content == fake.completion(REQUEST)
    client.post(
        "/v1/agent/chat/completions",
        REQUEST,
        content_type="application/json",
        headers={"X-Test-Id": "cbv"},
    )
    (event,) = cap.events(1)
    assert event["session_type"] == "agent"  # @scr_route on the View class
    assert event["metadata"]["team"] == "search"
    assert [e["session_id"] for e in cap.settled()] == ["chatcmpl-cbv"]


def test_file_response_keeps_its_file_and_is_observed_without_body(shared: Any) -> None:
    cap = shared()
    response = FileResponse(io.BytesIO(fake.completion(REQUEST, "file")))
    middleware = SessionCompletionMiddleware(lambda request: response)
    assert middleware(post()) is response
    assert response.file_to_stream is not None  # wsgi.file_wrapper can still take it
    (event,) = cap.events(1)
    assert event["outcome"]["http_status"] == 200
    assert event["usage"]["source"] == "missing"


def test_ensure_stream_usage_rewrites_the_body_and_strips_the_chunk(shared: Any) -> None:
    cap = shared({"ensure_stream_usage": True})
    request = {**REQUEST, "stream": True}
    seen: dict[str, Any] = {}

    def get_response(req: HttpRequest) -> StreamingHttpResponse:
        seen["body"] = json.loads(req.read())
        seen["length"] = int(req.META["CONTENT_LENGTH"])
        return StreamingHttpResponse(
            iter(fake.stream_chunks(seen["body"], "ensure")), content_type=fake.SSE
        )

    response = SessionCompletionMiddleware(get_response)(post(body=request))
    assert b"".join(response) == b"".join(fake.stream_chunks(request, "ensure"))
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["length"] == len(json.dumps(seen["body"], separators=(",", ":")))
    assert cap.events(1)[0]["usage"]["source"] == "reported"


def test_disabled_middleware_removes_itself(shared: Any) -> None:
    shared({"enabled": False})
    with pytest.raises(MiddlewareNotUsed):
        SessionCompletionMiddleware(lambda request: HttpResponse())


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"SCR": {"capture": {"batch_size": 0}}}, r"capture\.batch_size"),
        ({"SCR": "not a dict"}, r"^SCR: must be a dict"),
        ({"SCR_CONFIG_FILE": "/nonexistent/scr.yaml"}, "config file not found"),
    ],
)
def test_bad_settings_fail_when_the_middleware_loads(
    shared: Any, overrides: dict[str, Any], match: str
) -> None:
    shared()
    with override_settings(**overrides), pytest.raises(ConfigError, match=match):
        SessionCompletionMiddleware(lambda request: HttpResponse())


def test_header_identity_sources_read_meta(shared: Any) -> None:
    """``header:`` sources look the name up in ``request.META``, for WSGI and ASGI requests."""
    cap = shared({"organization_id_sources": ["header:x-tenant", "header:openai-organization"]})
    Client().post(
        CHAT, REQUEST, content_type="application/json", headers={"OpenAI-Organization": "org-1"}
    )

    async def call() -> None:
        await AsyncClient().post(
            "/v1/async/chat/completions",
            REQUEST,
            content_type="application/json",
            headers={"X-Tenant": "tenant-2", "OpenAI-Organization": "org-2"},
        )

    asyncio.run(call())
    events = cap.events(2)
    assert sorted(e["organization_id"] for e in events) == ["org-1", "tenant-2"]


def test_body_over_data_upload_max_memory_size_is_left_to_the_view(shared: Any) -> None:
    """Django refuses such a body before reading it: the view meets the same refusal as
    without the middleware, and the event goes without the body."""
    cap = shared({"user_id_sources": ["body:user"]})
    seen: dict[str, Any] = {}

    def get_response(req: HttpRequest) -> HttpResponse:
        try:
            req.body  # noqa: B018
        except Exception as exc:
            seen["error"] = type(exc).__name__
        seen["read"] = req.read()
        return HttpResponse(fake.completion(REQUEST, "toobig"), content_type="application/json")

    raw = json.dumps({**REQUEST, "user": "u-big"})
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=len(raw) - 1):
        request = post(body={**REQUEST, "user": "u-big"})
        SessionCompletionMiddleware(get_response)(request)
    assert seen == {"error": "RequestDataTooBig", "read": raw.encode()}
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-toobig"
    assert event["user_id"] is None


def test_content_encoding_among_many_response_headers(shared: Any) -> None:
    """Only the type, length and encoding headers go to the observer: a gzipped body behind a
    stack of security headers is still decoded for its usage."""
    cap = shared()
    middleware_chain = [
        "scr_middleware.django.SessionCompletionMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "scr_django_site.auth.token_auth",
    ]
    with override_settings(MIDDLEWARE=middleware_chain):
        response = Client().post(
            CHAT,
            REQUEST,
            content_type="application/json",
            headers={"X-Scenario": "gzip", "X-Test-Id": "gz"},
        )
    assert response["Content-Encoding"] == "gzip"
    assert response["X-Frame-Options"] == "DENY"
    (event,) = cap.events(1)
    assert event["session_id"] == "chatcmpl-gz"
    assert event["usage"]["source"] == "reported"
    assert event["usage"]["input_tokens"] == 3
