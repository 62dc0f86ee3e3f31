"""End to end: real uvicorn on 127.0.0.1 port 0, the official openai client, byte-for-byte
comparison with the same app without the middleware, and the captured events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from scr_middleware.asgi import SessionCompletionMiddleware

from .fake_openai import build_app
from .helpers import MemoryRuntime

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def _raw(
    base: str, path: str, body: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    with httpx.Client(base_url=base) as client, client.stream("POST", path, json=body) as response:
        content = b"".join(response.iter_raw())
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"date"]
        return response.status_code, headers, content


REQUESTS = [
    (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    ),
    (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hi"}],
        },
    ),
    ("/v1/embeddings", {"model": "text-embedding-ada-002", "input": "hello"}),
    ("/bad/401/v1/chat/completions", {"model": "gpt-4o"}),
]


def test_uvicorn_openai_client_byte_for_byte(runtime: MemoryRuntime) -> None:
    wrapped = build_app()
    wrapped.add_middleware(SessionCompletionMiddleware, runtime=runtime.runtime)
    with serve(build_app()) as bare_url, serve(wrapped) as url:
        for path, body in REQUESTS:
            assert _raw(bare_url, path, body) == _raw(url, path, body), path
        assert len(runtime.wait_events(len(REQUESTS))) == len(REQUESTS)

        client = openai.OpenAI(
            base_url=url + "/v1", api_key="x", organization="org-e2e", max_retries=0
        )
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], user="user-1"
        )
        streamed = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                user="user-2",
            )
        )
        with_usage = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
                user="user-3",
            )
        )
        embedding = client.embeddings.create(model="text-embedding-ada-002", input="hello")

    assert completion.usage is not None
    assert completion.usage.total_tokens == 29
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        == "Hello there, how can I help?"
    )
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.total_tokens == 18
    assert embedding.usage.total_tokens == 8

    events = sorted(
        runtime.wait_events(len(REQUESTS) + 4)[len(REQUESTS) :], key=lambda e: e["start_time"]
    )
    assert [e["user_id"] for e in events] == ["user-1", "user-2", "user-3", None]
    assert {e["organization_id"] for e in events} == {"org-e2e"}
    chat, stream_missing, stream_usage, embed = events
    assert chat["usage"]["total_tokens"] == 29
    assert chat["transport"] == "http"
    assert stream_missing["usage"]["source"] == "missing"
    assert stream_missing["session_id"] == "chatcmpl-e2e"
    assert stream_usage["usage"]["total_tokens"] == 18
    assert stream_usage["usage"]["source"] == "reported"
    assert embed["session_type"] == "embedding"
    assert embed["usage"]["input_tokens"] == 8
    for event in events:
        assert event["outcome"] == {"status": "success", "http_status": 200}
        assert event["duration_ms"] > 0
        assert event["request"]["route"] in ("/v1/chat/completions", "/v1/embeddings")
    assert runtime.failures == {"missing_usage": 2}  # the bare stream, twice


def test_ensure_stream_usage_with_the_openai_client(runtime: MemoryRuntime) -> None:
    wrapped = build_app()
    wrapped.add_middleware(
        SessionCompletionMiddleware,
        runtime=runtime.runtime,
        config={"middleware": {"ensure_stream_usage": True}},
    )
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with serve(build_app()) as bare_url, serve(wrapped) as url:
        assert _raw(bare_url, "/v1/chat/completions", body) == _raw(
            url, "/v1/chat/completions", body
        )
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
    assert all(c.usage is None for c in chunks)
    events = runtime.wait_events(2)
    assert [e["usage"]["total_tokens"] for e in events] == [18, 18]
    assert runtime.failures == {}


APP_MODULE = """
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from scr_middleware.asgi import SessionCompletionMiddleware

app = FastAPI()
app.add_middleware(SessionCompletionMiddleware)


@app.post("/v1/chat/completions")
async def chat(body: dict) -> JSONResponse:
    return JSONResponse({"id": "chatcmpl-sub", "object": "chat.completion", "model": "m-1",
                         "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3,
                                                  "total_tokens": 5}})
"""


def test_one_line_setup_from_scr_config_file_flushes_at_shutdown(tmp_path: Path) -> None:
    (tmp_path / "scr_e2e_app.py").write_text(textwrap.dedent(APP_MODULE))
    sink = tmp_path / "events.jsonl"
    (tmp_path / "scr.yaml").write_text(
        textwrap.dedent(f"""
        session_completion_runtime:
          capture:
            flush_interval_ms: 600000
          destinations:
            - name: audit
              endpoint: file://{sink}
              transform: canonical
          storage:
            data_dir: {tmp_path / "data"}
          middleware:
            user_id_sources: ["header:x-user"]
    """)
    )
    env = {
        **os.environ,
        "SCR_CONFIG_FILE": str(tmp_path / "scr.yaml"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    port_file = tmp_path / "port"
    code = (
        "import socket, uvicorn\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
        f"open({str(port_file)!r}, 'w').write(str(port))\n"
        "uvicorn.run('scr_e2e_app:app', fd=s.fileno(), log_level='warning')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        response = None
        while response is None:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            try:
                port = int(port_file.read_text())
                response = httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={"model": "m"},
                    headers={"x-user": "u-sub"},
                    timeout=5,
                )
            except (ValueError, OSError, httpx.TransportError):
                time.sleep(0.1)
        assert response.status_code == 200
        assert not sink.exists() or sink.read_text() == ""  # buffered: flush interval is 10 min
        proc.send_signal(signal.SIGTERM)  # uvicorn runs lifespan shutdown -> runtime flush
        # uvicorn re-raises the captured SIGTERM once shut down, so the process dies by the
        # signal without running atexit: an event on disk was flushed by lifespan shutdown.
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    (line,) = sink.read_text().splitlines()
    event = json.loads(line)
    assert event["session_id"] == "chatcmpl-sub"
    assert event["user_id"] == "u-sub"
    assert event["usage"]["total_tokens"] == 5


def test_client_disconnect_mid_stream_is_cancelled(runtime: MemoryRuntime) -> None:
    wrapped = build_app()
    wrapped.add_middleware(SessionCompletionMiddleware, runtime=runtime.runtime)
    with serve(wrapped) as url:
        with (
            httpx.Client(base_url=url) as client,
            client.stream(
                "POST", "/bad/slow_sse/v1/chat/completions", json={"model": "m"}
            ) as response,
        ):
            first = next(response.iter_raw())
            assert first.startswith(b"data: ")
        events = runtime.wait_events(1)
    (event,) = events
    assert event["outcome"] == {"status": "cancelled", "http_status": 200}
    assert event["session_id"] == "chatcmpl-e2e"
