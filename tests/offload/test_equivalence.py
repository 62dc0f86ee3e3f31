"""The record the ASGI middleware hands to a capture process, replayed as the capture process
replays it, gives the event the inline path gives for the same exchange.

Records are taken from the real ``Recorder``: the runtime's ``Offloader.put`` is replaced by
one that keeps the record (and says it took it, so nothing is replayed in this process). They
travel as they would (``marshal`` for the record, ``pickle`` for the middleware settings) and
are replayed with ``record.replay``.
"""

from __future__ import annotations

import gzip
import json
import marshal
import os
import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi.helpers import MemoryRuntime, Recorder, body_request, http_scope, run, scripted_app
from extract.helpers import FIXTURES, chunked, present, rechunk
from extract.helpers import run as observe
from extract.helpers import settings as observer_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scr_middleware import runtime as runtime_mod
from scr_middleware.asgi import SessionCompletionMiddleware
from scr_middleware.config_model import MiddlewareConfig
from scr_middleware.events import normalize_event
from scr_middleware.extract.settings import ObserverSettings
from scr_middleware.offload import Offloader
from scr_middleware.offload.record import Record, replay
from scr_middleware.router.stats import RuntimeStats
from scr_middleware.runtime import SessionCompletionRuntime

from .kit import ledger_rows

CASES = sorted(FIXTURES.glob("*.expected.json"))
# Measured in the app process, so they differ between two runs of the same exchange.
VARYING = ("event_id", "timestamp", "start_time", "end_time", "duration_ms")


def _response_fixture(case: Path) -> Path:
    stem = case.name.removesuffix(".expected.json")
    for suffix in (".json", ".sse"):
        candidate = case.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    raise AssertionError(f"no response fixture for {case.name}")


@dataclass
class Exchange:
    """One HTTP exchange as an ASGI server and app would play it."""

    path: str
    request_body: bytes
    request_headers: list[tuple[bytes, bytes]]
    status: int
    response_headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]

    def play(self, middleware: SessionCompletionMiddleware) -> bytes:
        """Through ``middleware`` (around ``self.app()``); returns the body the server got."""
        server = Recorder([body_request(self.request_body)])
        headers = [(b"host", b"test"), *self.request_headers]
        run(middleware(http_scope(self.path, headers=headers), server.receive, server.send))
        return b"".join(m.get("body", b"") for m in server.sent[1:])

    def app(self) -> Any:
        """An app that reads the request, then sends the response start and the chunks."""
        messages: list[dict[str, Any]] = [
            {"type": "http.response.start", "status": self.status, "headers": self.response_headers}
        ]
        last = len(self.chunks) - 1
        messages += [
            {"type": "http.response.body", "body": chunk, "more_body": index < last}
            for index, chunk in enumerate(self.chunks)
        ]
        return scripted_app(messages, [])


@dataclass
class Channel:
    """The shared runtime's offloader, keeping what the middleware hands it."""

    offloader: Offloader
    records: list[Record] = field(default_factory=list)
    settings: list[MiddlewareConfig] = field(default_factory=list)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Channel:
    runtime = runtime_mod.configure()  # the SQLite ledger: a runtime that offloads
    offloader = runtime.offloader("auto")
    assert offloader is not None
    kept = Channel(offloader)
    register = offloader.register

    def keep_settings(middleware: MiddlewareConfig, fallback: Any) -> int:
        kept.settings.append(middleware)
        return register(middleware, fallback)

    def keep(record: Record) -> bool:
        kept.records.append(record)
        return True

    monkeypatch.setattr(offloader, "register", keep_settings)
    monkeypatch.setattr(offloader, "put", keep)
    return kept


@pytest.fixture
def memory() -> Iterator[MemoryRuntime]:
    name = f"equivalence-{uuid.uuid4().hex}"
    runtime = SessionCompletionRuntime(
        config={"destinations": [{"name": "mem", "endpoint": f"memory://{name}"}]}
    )
    yield MemoryRuntime(runtime, name)
    runtime.shutdown(5.0)


def middleware(exchange: Exchange, **kwargs: Any) -> SessionCompletionMiddleware:
    return SessionCompletionMiddleware(exchange.app(), **kwargs)


def travelled(record: Record, middleware_config: MiddlewareConfig) -> tuple[Record, Any]:
    """What the capture process gets: the record through marshal, the settings via pickle."""
    received: Record = marshal.loads(marshal.dumps(record))
    config = pickle.loads(pickle.dumps(middleware_config))
    return received, ObserverSettings.from_config(config)


def replayed_into(
    memory: MemoryRuntime,
    record: Record,
    middleware_config: MiddlewareConfig,
    stats: RuntimeStats | None = None,
) -> dict[str, Any]:
    """``record`` replayed as the capture process replays it, into ``memory``: its event."""
    received, observer = travelled(record, middleware_config)
    replay(received, observer, memory.runtime.capture_nowait, memory.runtime.capture_built, stats)
    return memory.events()[-1]


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    event = {k: v for k, v in event.items() if k not in VARYING}
    if event.get("metadata", {}).get("scr_session_id_generated"):
        event.pop("session_id")  # random, either way
    return event


def golden_exchange(case: Path, chunking: str) -> tuple[dict[str, Any], Exchange]:
    spec = json.loads(case.read_text())
    body = _response_fixture(case).read_bytes()
    chunks = chunked(body, chunking)
    headers = [
        (name.lower().encode(), value.encode())
        for name, value in (spec.get("request_headers") or {}).items()
    ]
    exchange = Exchange(
        path=spec["path"],
        request_body=orjson.dumps(spec["request"]),
        request_headers=[(b"content-type", b"application/json"), *headers],
        status=spec["status"],
        response_headers=[(b"content-type", spec["content_type"].encode())],
        chunks=chunks,
    )
    return spec, exchange


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".expected.json"))
@pytest.mark.parametrize("chunking", ["whole", "bytewise", "lines"])
def test_replayed_record_gives_the_inline_event(
    case: Path, chunking: str, channel: Channel, memory: MemoryRuntime
) -> None:
    spec, exchange = golden_exchange(case, chunking)
    config = {
        "middleware": {
            "user_id_sources": list(spec.get("user_id_sources", ("framework_user", "body:user")))
        }
    }
    body = b"".join(exchange.chunks)

    # Inline: a memory destination keeps the middleware in the app process.
    assert exchange.play(middleware(exchange, config=config, runtime=memory.runtime)) == body
    (inline,) = memory.events()
    inline_failures = dict(memory.runtime.stats.extraction_failures)

    # Offloaded: the shared runtime (SQLite ledger) has a channel; keep the record.
    assert exchange.play(middleware(exchange, config=config)) == body
    (record,) = channel.records
    (middleware_config,) = channel.settings
    assert middleware_config.user_id_sources == tuple(config["middleware"]["user_id_sources"])
    received, observer = travelled(record, middleware_config)
    stats = RuntimeStats()
    replay(
        received,
        observer,
        memory.runtime.capture_nowait,
        memory.runtime.capture_built,
        stats,
        event_id="evt_0123456789ab00000007",
    )
    events = memory.events()
    assert len(events) == 2
    replayed = events[1]

    assert replayed["event_id"] == "evt_0123456789ab00000007"
    assert comparable(replayed) == comparable(inline)
    assert stats.extraction_failures == inline_failures == spec.get("failures", {})
    expected = spec["event"]
    assert present(replayed["usage"]) == present(expected["usage"])
    assert present(replayed["outcome"]) == present(expected["outcome"])
    # The app process measured the timings; the replay kept them.
    assert replayed["duration_ms"] == pytest.approx(record[15])


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_past_max_body_bytes_the_same_event(
    case: Path, channel: Channel, memory: MemoryRuntime
) -> None:
    """Every fixture is longer than the cap: a stream is then followed in the app process (no
    record), any other body is recorded as over the cap; the event is the inline path's."""
    spec, exchange = golden_exchange(case, "lines")
    config = {
        "middleware": {
            "max_body_bytes": 100,
            "user_id_sources": list(spec.get("user_id_sources", ("framework_user", "body:user"))),
        }
    }
    assert len(b"".join(exchange.chunks)) > 100
    exchange.play(middleware(exchange, config=config, runtime=memory.runtime))
    (inline,) = memory.events()

    exchange.play(middleware(exchange, config=config))
    stream = spec["content_type"].startswith("text/event-stream")
    if stream:
        assert channel.records == []  # followed here, past the cap
        runtime = runtime_mod.get_runtime()
        assert runtime.flush(15.0) is True
        (row,) = ledger_rows(Path(os.environ["SCR_DATA_DIR"]) / "ledger.sqlite3")
        other = row["payload"]
    else:
        (record,) = channel.records
        assert record[13] is True  # over the cap, chunks dropped
        other = replayed_into(memory, record, channel.settings[-1])
    assert comparable(other) == comparable(inline)


SSE_BODY = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()


def ending_app(kind: str) -> Any:
    """An app that reads the request, then ends the exchange the way ``kind`` says."""
    first, rest = SSE_BODY[:300], SSE_BODY[300:]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        if kind == "raise-before-response":
            raise RuntimeError("before")
        if kind == "no-response":
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        if kind == "raise-mid-stream":
            raise ValueError("mid")
        if kind == "return-mid-stream":
            return
        await send({"type": "http.response.body", "body": rest, "more_body": False})

    return app


ENDINGS = {
    "complete": {"status": "success", "http_status": 200},
    "raise-before-response": {"status": "error", "error_type": "RuntimeError"},
    "no-response": {"status": "error", "error_type": "NoResponseSent"},
    "raise-mid-stream": {"status": "error", "error_type": "ValueError", "http_status": 200},
    "return-mid-stream": {"status": "cancelled", "http_status": 200},
    "client-gone": {"status": "cancelled", "http_status": 200},
}


@pytest.mark.parametrize("kind", ENDINGS)
def test_however_the_exchange_ends_the_same_event(
    kind: str, channel: Channel, memory: MemoryRuntime
) -> None:
    def play(middleware: SessionCompletionMiddleware) -> None:
        request = body_request(b'{"model": "gpt-4o-mini", "user": "u-end", "stream": true}')
        server = Recorder([request], send_error=OSError("gone") if kind == "client-gone" else None)
        try:
            run(middleware(http_scope(), server.receive, server.send))
        except (RuntimeError, ValueError, OSError):
            assert kind in ("raise-before-response", "raise-mid-stream", "client-gone")

    play(SessionCompletionMiddleware(ending_app(kind), runtime=memory.runtime))
    (inline,) = memory.events()
    play(SessionCompletionMiddleware(ending_app(kind)))
    (record,) = channel.records
    stats = RuntimeStats()
    replayed = replayed_into(memory, record, channel.settings[-1], stats)
    assert comparable(replayed) == comparable(inline)
    assert stats.extraction_failures == memory.runtime.stats.extraction_failures
    assert replayed["user_id"] == "u-end"
    assert present(replayed["outcome"]) == ENDINGS[kind]


@pytest.mark.parametrize("cap", [1024 * 1024, 64, 0])
def test_request_body_in_parts_and_past_its_cap_the_same_event(
    cap: int, channel: Channel, memory: MemoryRuntime
) -> None:
    request = orjson.dumps(
        {"model": "gpt-4.1", "user": "u-parts", "messages": [{"role": "user", "content": "x" * 90}]}
    )
    parts = [request[:40], request[40:41], request[41:]]
    response = (FIXTURES / "openai_chat_completion.json").read_bytes()
    messages = [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        },
        {"type": "http.response.body", "body": response},
    ]
    config = {"middleware": {"max_request_body_bytes": cap}}

    def play(middleware: SessionCompletionMiddleware) -> None:
        server = Recorder(
            [
                {"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
                for index, part in enumerate(parts)
            ]
        )
        run(middleware(http_scope(), server.receive, server.send))

    play(
        SessionCompletionMiddleware(
            scripted_app(messages, []), runtime=memory.runtime, config=config
        )
    )
    (inline,) = memory.events()
    play(SessionCompletionMiddleware(scripted_app(messages, []), config=config))
    (record,) = channel.records
    replayed = replayed_into(memory, record, channel.settings[-1])
    assert comparable(replayed) == comparable(inline)
    # Within the cap the request body was read (user, message count); past it, not.
    assert (replayed["user_id"] == "u-parts") == (cap > len(request))


def _property_exchange(fixture: Path, chunks: list[bytes], gzipped: bool) -> Exchange:
    paths = {
        "openai_embeddings": "/v1/embeddings",
        "openai_legacy": "/v1/completions",
        "openai_responses": "/v1/responses",
        "anthropic": "/v1/messages",
    }
    path = next((p for prefix, p in paths.items() if fixture.name.startswith(prefix)), None)
    content_type = b"text/event-stream" if fixture.suffix == ".sse" else b"application/json"
    headers = [(b"content-type", content_type)]
    if gzipped:
        headers.append((b"content-encoding", b"gzip"))
    return Exchange(
        path=path or "/v1/chat/completions",
        request_body=b"",
        request_headers=[],
        status=200,
        response_headers=headers,
        chunks=chunks,
    )


FIXTURE_FILES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".json", ".sse"))
FIXTURE_FILES = [p for p in FIXTURE_FILES if not p.name.endswith(".expected.json")]
CUTS = st.lists(st.integers(min_value=1, max_value=20000), max_size=40)


def test_rechunked_records_replay_to_the_inline_usage(channel: Channel) -> None:
    stats = RuntimeStats()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(fixture=st.sampled_from(FIXTURE_FILES), cuts=CUTS, gzipped=st.booleans())
    def check(fixture: Path, cuts: list[int], gzipped: bool) -> None:
        body = fixture.read_bytes()
        if gzipped:
            body = gzip.compress(body)
        chunks = rechunk(body, cuts)
        exchange = _property_exchange(fixture, chunks, gzipped)
        inline, _ = observe(
            chunks,
            path=exchange.path,
            content_type=exchange.response_headers[0][1].decode(),
            headers=exchange.response_headers[1:],
            config=observer_settings(),
        )
        channel.records.clear()
        assert exchange.play(middleware(exchange)) == body
        (record,) = channel.records
        received, observer = travelled(record, channel.settings[-1])
        events: list[dict[str, Any]] = []
        replay(received, observer, events.append, events.append, stats)  # never raises
        (event,) = events
        (expected,) = inline
        assert present(normalize_event(event)["usage"]) == present(
            normalize_event(expected)["usage"]
        )
        assert normalize_event(event)["outcome"] == normalize_event(expected)["outcome"]

    check()


def test_a_stream_chunk_without_a_body_key_is_recorded_as_empty(
    channel: Channel, memory: MemoryRuntime
) -> None:
    # ASGI makes ``body`` optional; a chunk message without it is an empty chunk.
    stream = (FIXTURES / "openai_chat_stream_include_usage.sse").read_bytes()
    messages = [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        },
        {"type": "http.response.body", "more_body": True},
        {"type": "http.response.body", "body": stream, "more_body": True},
        {"type": "http.response.body", "more_body": False},
    ]

    def play(middleware: SessionCompletionMiddleware) -> list[Any]:
        server = Recorder([body_request(b'{"model": "gpt-4o", "stream": true}')])
        run(middleware(http_scope(), server.receive, server.send))
        return server.sent

    inline_sent = play(
        SessionCompletionMiddleware(scripted_app(messages, []), runtime=memory.runtime)
    )
    (inline,) = memory.events()
    assert play(SessionCompletionMiddleware(scripted_app(messages, []))) == inline_sent
    (record,) = channel.records
    assert record[12] == [b"", stream]  # the response's chunks, as they went out
    replayed = replayed_into(memory, record, channel.settings[-1])
    assert comparable(replayed) == comparable(inline)
    assert replayed["usage"]["source"] == "reported"
