"""End to end, ASGI: FastAPI under a real uvicorn process, default configuration (only the data
dir is set, and once the health port), offload ``auto``; the official openai client; SIGTERM;
the SQLite ledger the capture process writes, read back afterwards."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import scr_live as live
from asgi.fake_openai import CHAT, USAGE

from .kit import (
    alive,
    by_session,
    capture_children,
    ledger_rows,
    offload_state,
    start_uvicorn,
    stop,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.slow

USERS = ("alice", "bob", "carol")
MESSAGES = [{"role": "user", "content": "Hi"}]


def running_capture(server: Any) -> dict[str, Any]:
    """The offload stats once a capture process runs (the first request starts it)."""

    def probe() -> dict[str, Any] | None:
        stats: dict[str, Any] = offload_state(server)["offload"]
        return stats if stats and stats["state"] == "running" and stats["pid"] else None

    return wait_for(probe, "a running capture process")


def test_openai_client_every_request_captured_once_by_a_capture_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    health_port = live.free_port()
    server = start_uvicorn(
        tmp_path / "uvicorn", SCR_DATA_DIR=str(data), SCR_HEALTH_CHECK_PORT=str(health_port)
    )
    expected: dict[str, dict[str, Any]] = {}
    try:
        # Importing the app and building the middleware starts nothing.
        assert capture_children(server.process.pid) == []
        assert offload_state(server)["offload"] is None
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0)
        for index in range(9):
            test_id, user, model = f"e2e-{index}", USERS[index % 3], f"gpt-test-{index % 2}"
            headers = {"X-Test-Id": test_id}
            if index % 3 == 0:
                completion = client.chat.completions.create(
                    model=model, messages=MESSAGES, user=user, extra_headers=headers
                )
                assert completion.usage is not None
                assert completion.usage.total_tokens == CHAT["usage"]["total_tokens"]
                usage, transport = CHAT["usage"], "http"
            else:
                chunks = list(
                    client.chat.completions.create(
                        model=model,
                        messages=MESSAGES,
                        user=user,
                        stream=True,
                        stream_options={"include_usage": index % 3 == 1},
                        extra_headers=headers,
                    )
                )
                assert chunks[0].id == f"chatcmpl-{test_id}"
                usage = USAGE if index % 3 == 1 else None
                assert (chunks[-1].usage is not None) == (usage is not None)
                transport = "sse"
            expected[f"chatcmpl-{test_id}"] = {
                "user": user,
                "model": model,
                "usage": usage,
                "transport": transport,
            }

        stats = running_capture(server)
        pid = stats["pid"]
        (capture,) = capture_children(server.process.pid)
        assert capture.pid == pid
        # The server's own interpreter, niced so that it yields the CPU to the app.
        assert capture.cmdline()[0] == psutil.Process(server.process.pid).cmdline()[0]
        assert capture.nice() == 19
        # On Linux it runs under SCHED_IDLE, and so do the threads its runtime started.
        if hasattr(os, "SCHED_IDLE"):
            threads = capture.threads()
            assert len(threads) > 1
            assert {os.sched_getscheduler(thread.id) for thread in threads} == {os.SCHED_IDLE}
        assert stats["spawns"] == 1
        assert stats["recorded"] == len(expected)
        assert stats["inline"] == 0
        wait_for(
            lambda: offload_state(server)["offload"]["acknowledged"] == len(expected),
            "the capture process to acknowledge every record",
        )
        # The capture process serves the health port (the app's own router never started).
        health = httpx.get(f"http://127.0.0.1:{health_port}/health", timeout=10).json()
        assert health["pid"] == pid
        assert health["status"] == "ok"
    finally:
        stop(server)
    wait_gone([pid])  # the app closed the connection: the capture process drained and left

    rows = ledger_rows(data / "ledger.sqlite3")
    sessions = by_session(rows)
    assert sorted(sessions) == sorted(expected)
    assert len(rows) == len(expected)
    for session_id, want in expected.items():
        (row,) = sessions[session_id]
        event = row["payload"]
        assert row["user_id"] == event["user_id"] == want["user"], session_id
        assert row["model"] == event["usage"]["model"] == want["model"], session_id
        assert event["transport"] == want["transport"]
        assert event["outcome"] == {"status": "success", "http_status": 200}
        assert event["request"]["route"] == "/v1/chat/completions"
        assert event["event_id"] == row["event_id"]
        if want["usage"] is None:
            assert event["usage"]["source"] == "missing"
            assert row["total_tokens"] is None
        else:
            assert event["usage"]["source"] == "reported"
            assert row["input_tokens"] == want["usage"]["prompt_tokens"]
            assert row["output_tokens"] == want["usage"]["completion_tokens"]
            assert row["total_tokens"] == want["usage"]["total_tokens"]
    # Ids given by the channel: one prefix per app process, then the record's sequence number.
    ids = sorted(row["event_id"] for row in rows)
    assert len({event_id[:-8] for event_id in ids}) == 1
    assert [int(event_id[-8:], 16) for event_id in ids] == list(range(len(expected)))


class Load:
    """Client threads posting chat completions as fast as the server answers; ``pause`` and
    ``resume`` them; ``done`` lists the test ids of every request that completed."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.done: list[str] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._go.set()
        self._stop = threading.Event()
        self._idle = [threading.Event() for _ in range(threads)]
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def _run(self, number: int) -> None:
        idle = self._idle[number]
        sequence = 0
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                if not self._go.is_set():
                    idle.set()
                    self._go.wait(0.05)
                    continue
                idle.clear()
                test_id = f"load-{number}-{sequence}"
                sequence += 1
                body = {"model": "gpt-load", "user": USERS[sequence % 3], "messages": MESSAGES}
                if sequence % 2:
                    body |= {"stream": True, "stream_options": {"include_usage": True}}
                try:
                    response = client.post(
                        "/v1/chat/completions", json=body, headers={"X-Test-Id": test_id}
                    )
                    assert response.status_code == 200, response.text
                    assert f"chatcmpl-{test_id}".encode() in response.content
                except BaseException as exc:
                    self.errors.append(exc)
                    return
                with self._lock:
                    self.done.append(test_id)
        idle.set()

    def count(self) -> int:
        with self._lock:
            return len(self.done)

    def pause(self) -> None:
        self._go.clear()
        wait_for(lambda: all(e.is_set() for e in self._idle), "the load to pause")

    def resume(self) -> None:
        self._go.set()

    def more(self, count: int) -> None:
        """Wait until ``count`` more requests completed."""
        target = self.count() + count
        wait_for(lambda: self.count() >= target or self.errors, f"{count} more requests")
        assert not self.errors, self.errors

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._go.set()
            for thread in self._threads:
                thread.join(30)
        assert not self.errors, self.errors


def test_kill_9_of_the_capture_process_under_load_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ledger = data / "ledger.sqlite3"
    server = start_uvicorn(tmp_path / "uvicorn", SCR_DATA_DIR=str(data))
    try:
        with Load(server.url).running() as load:
            load.more(20)
            first = running_capture(server)["pid"]

            # Quiesce, so that everything the capture process acknowledged is also in the
            # ledger: what it acknowledged but had not delivered when killed is lost by design
            # (docs/offload.md, "What can be lost"), and this test is about what it had not.
            load.pause()
            completed = load.count()

            def settled() -> bool:
                stats = offload_state(server)["offload"]
                return (
                    stats["recorded"] == stats["acknowledged"] == completed
                    and stats["pending"] == 0
                    and len(ledger_rows(ledger)) == completed
                )

            wait_for(settled, "every record acknowledged and delivered")

            # Stopped, it takes records into its socket but acknowledges none of them.
            os.kill(first, signal.SIGSTOP)
            load.resume()
            load.more(30)
            wait_for(
                lambda: (
                    (s := offload_state(server)["offload"])["shipped"] - s["acknowledged"] >= 10
                ),
                "records shipped to the stopped capture process",
            )
            os.kill(first, signal.SIGKILL)  # under load
            load.more(10)

            def restarted() -> dict[str, Any] | None:
                stats: dict[str, Any] = offload_state(server)["offload"]
                ok = stats["spawns"] >= 2 and stats["state"] == "running"
                return stats if ok and stats["pid"] not in (None, first) else None

            stats = wait_for(restarted, "a restarted capture process")
            load.more(20)  # and it captures what comes next
        second = stats["pid"]
        assert not alive(first)
        assert [p.pid for p in capture_children(server.process.pid)] == [second]
        assert stats["resent"] >= 10  # what the killed one never acknowledged went again
        assert stats["inline"] == 0
        total = load.count()
    finally:
        stop(server)
    wait_gone([second])

    rows = ledger_rows(ledger)
    sessions = by_session(rows)
    assert len(sessions) == total  # every request ...
    assert all(len(found) == 1 for found in sessions.values())  # ... exactly once
    assert sorted(sessions) == sorted(f"chatcmpl-{test_id}" for test_id in load.done)
    assert len({row["event_id"] for row in rows}) == len(rows) == total
    for row in rows:
        assert row["payload"]["usage"]["source"] == "reported"
        assert row["model"] == "gpt-load"


def test_kill_9_of_the_app_loses_nothing_it_had_written(tmp_path: Path) -> None:
    """The capture process reads its socket to the end after the app died, captures what it
    finds and delivers it before it exits."""
    data = tmp_path / "data"
    server = start_uvicorn(tmp_path / "uvicorn", SCR_DATA_DIR=str(data))
    sent: list[str] = []
    capture = None

    def chat(test_id: str) -> None:
        httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "gpt-killed", "messages": MESSAGES, "user": "dave"},
            headers={"X-Test-Id": test_id},
            timeout=10,
        ).raise_for_status()
        sent.append(f"chatcmpl-{test_id}")

    try:
        chat("first")
        capture = running_capture(server)["pid"]
        os.kill(capture, signal.SIGSTOP)  # it takes nothing from its socket for now
        for index in range(20):
            chat(f"written-{index}")
        wait_for(
            lambda: (
                (s := offload_state(server)["offload"])["pending"] == 0
                and s["shipped"] == s["recorded"] == len(sent)
            ),
            "every record written to the socket",
        )
        server.process.kill()  # kill -9 of the app process
        server.process.wait(10)
    finally:
        if capture is not None:
            os.kill(capture, signal.SIGCONT)
        server.stop()
    assert capture is not None
    wait_gone([capture])
    sessions = by_session(ledger_rows(data / "ledger.sqlite3"))
    assert sorted(sessions) == sorted(sent)
    assert all(len(rows) == 1 for rows in sessions.values())
