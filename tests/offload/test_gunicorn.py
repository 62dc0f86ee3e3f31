"""WSGI: the Flask gateway of tests/flask under real gunicorn, ``-w 2 --preload``, default
configuration (only the data dir is set). The master imported the app but serves nothing, so
it has no capture process; each worker starts its own on its first observed request."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import scr_fake_llm as fake

from .kit import (
    by_session,
    capture_children,
    ledger_rows,
    start_gunicorn,
    stop,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "count these five words"}]
REQUEST = {"model": fake.MODEL, "messages": MESSAGES}


class BusyWorker:
    """Keeps one sync worker busy with a slow stream until ``release``; the client then goes
    away, and that worker records a cancelled exchange."""

    def __init__(self, url: str, test_id: str) -> None:
        self._stack = ExitStack()
        http = self._stack.enter_context(httpx.Client(timeout=30.0))
        headers = {"X-Scenario": "slow", "X-Test-Id": test_id}
        response = self._stack.enter_context(
            http.stream("POST", url + CHAT, json=REQUEST, headers=headers)
        )
        self._chunks = response.iter_raw()  # (dropping the iterator would close the stream)
        assert next(self._chunks).startswith(b"data: ")

    def release(self) -> None:
        self._stack.close()


def test_preload_two_workers_each_own_capture_process_every_request_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = start_gunicorn(
        tmp_path / "gunicorn", "-w", "2", "--preload", "-k", "sync", SCR_DATA_DIR=str(data)
    )
    master = server.process.pid
    expected: dict[str, dict[str, Any]] = {}
    cancelled: set[str] = set()

    def chat(count: int, prefix: str) -> None:
        for index in range(count):
            user = 40 + index % 3
            test_id = f"{prefix}-{index}"
            llm = openai.OpenAI(base_url=f"{server.url}/v1", api_key=f"user-{user}", max_retries=0)
            headers = {"X-Test-Id": test_id}
            if index % 2:
                chunks = list(
                    llm.chat.completions.create(
                        model=fake.MODEL,
                        messages=MESSAGES,
                        stream=True,
                        stream_options={"include_usage": True},
                        extra_headers=headers,
                    )
                )
                assert chunks[-1].usage is not None
            else:
                completion = llm.chat.completions.create(
                    model=fake.MODEL, messages=MESSAGES, extra_headers=headers
                )
                assert completion.usage is not None
            expected[f"chatcmpl-{test_id}"] = {"user": str(user)}

    try:
        workers = wait_for(
            lambda: len(children := psutil.Process(master).children()) == 2 and children,
            "two workers",
        )
        assert capture_children(master) == []
        assert all(capture_children(worker.pid) == [] for worker in workers)  # lazily
        # Both workers serve observed requests: while one is held by a slow stream, the
        # other one takes every request; then the other one is held and the first one free.
        first = BusyWorker(server.url, "held-1")
        chat(3, "second")
        second = BusyWorker(server.url, "held-2")  # the only free worker: the second one
        first.release()
        chat(3, "first")
        second.release()
        cancelled |= {"chatcmpl-held-1", "chatcmpl-held-2"}
        chat(4, "either")

        captures = wait_for(
            lambda: (
                all(len(capture_children(w.pid)) == 1 for w in workers)
                and [capture_children(w.pid)[0] for w in workers]
            ),
            "a capture process in each worker",
        )
        assert len({process.pid for process in captures}) == 2
        # The master serves nothing and never starts one (the workers are its only children).
        assert sorted(p.pid for p in psutil.Process(master).children()) == sorted(
            w.pid for w in workers
        )
    finally:
        assert stop(server) == 0
    wait_gone([process.pid for process in captures] + [w.pid for w in workers])

    rows = ledger_rows(data / "ledger.sqlite3")
    sessions = by_session(rows)
    assert sorted(sessions) == sorted([*expected, *cancelled])
    assert len(rows) == len(sessions)  # each exactly once
    for session_id, want in expected.items():
        (row,) = sessions[session_id]
        assert row["user_id"] == want["user"], session_id
        assert row["model"] == fake.MODEL
        assert row["payload"]["usage"]["source"] == "reported"
        assert row["input_tokens"] == fake.prompt_tokens(REQUEST)
        assert row["output_tokens"] == len(fake.WORDS)
        assert row["payload"]["outcome"] == {"status": "success", "http_status": 200}
    for session_id in cancelled:
        (row,) = sessions[session_id]
        assert row["payload"]["outcome"]["status"] == "cancelled"

    # Event ids are the channel's prefix and a sequence number: one prefix per worker.
    def prefixes(group: str) -> set[str]:
        return {row["event_id"][:-8] for sid, (row,) in sessions.items() if group in sid}

    worker_a, worker_b = prefixes("chatcmpl-first-"), prefixes("chatcmpl-second-")
    assert len(worker_a) == len(worker_b) == 1
    assert worker_a != worker_b
    assert prefixes("held-1") == worker_a
    assert prefixes("held-2") == worker_b
    assert len({row["event_id"][:-8] for row in rows}) == 2
