"""Helpers for the out-of-process capture tests: real servers, their capture processes (found
with psutil) and the SQLite ledger the capture processes write."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import scr_live as live
from asgi.helpers import Recorder, body_request, http_scope, run

OFFLOAD_TESTS = Path(__file__).resolve().parent
TESTS = OFFLOAD_TESTS.parent
REPO = TESTS.parent
WORKER_MODULE = "scr_middleware.offload.worker"
DEADLINE_S = 30.0

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = DEADLINE_S, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy (bounded); returns that."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# --- capture processes ---------------------------------------------------------------------


def is_capture_process(process: psutil.Process) -> bool:
    try:
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False
    return WORKER_MODULE in cmdline


def capture_children(pid: int) -> list[psutil.Process]:
    """The live capture processes ``pid`` started (its direct children)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if is_capture_process(child)]


def alive(pid: int) -> bool:
    """A zombie (exited, not reaped yet: an orphan whose new parent does not reap) is gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float = DEADLINE_S) -> None:
    wait_for(lambda: not any(alive(pid) for pid in pids), f"processes {pids} to exit", timeout)


# --- the ledger ------------------------------------------------------------------------------


def ledger_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of the ledger's ``events`` table, its payload parsed."""
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM events").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]


def by_session(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["session_id"], []).append(row)
    return found


# --- an ASGI app under uvicorn ----------------------------------------------------------------


def uvicorn_argv(app: str) -> Callable[[int], list[str]]:
    """uvicorn with lifespan on: its shutdown is where the middleware flushes on SIGTERM."""
    return lambda port: [
        sys.executable, "-m", "uvicorn", "--no-access-log", "--lifespan", "on", app,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def server_env(**extra: str) -> dict[str, str]:
    """The test environment (no SCR_* of the shell) with these tests, tests/ (for the asgi
    package) and the Flask gateway importable."""
    return live.test_env([OFFLOAD_TESTS, TESTS, TESTS / "flask", REPO], **extra)


def start_uvicorn(log: Path, **env: str) -> live.Server:
    (server,) = live.start((uvicorn_argv("asgi_app:app"), server_env(**env), log))
    return server


def start_gunicorn(log: Path, *options: str, **env: str) -> live.Server:
    argv = live.gunicorn("flask_gateway:served_app()", *options)
    (server,) = live.start((argv, server_env(**env), log))
    return server


def offload_state(server: live.Server) -> dict[str, Any]:
    """``{"pid": the process that answered, "offload": its runtime's offload stats}``."""
    response = httpx.get(server.url + "/_test/offload", timeout=10.0)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def stop(server: live.Server) -> int:
    """SIGTERM, as a supervisor does; returns the exit status."""
    server.stop()
    code = server.process.returncode
    assert code in (0, -signal.SIGTERM), f"exit {code}:\n{server.log.read_text(errors='replace')}"
    return int(code)


# --- in-process: an ASGI app called directly, as tests/asgi does ----------------------------


def post_chat(app: Any, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    """One POST through ``app`` (the middleware around an app); returns the response body."""
    return post_many(app, [body], path)[0]


def post_many(
    app: Any, bodies: list[dict[str, Any]], path: str = "/v1/chat/completions"
) -> list[bytes]:
    """Several POSTs one after the other, in one event loop (no pause between them)."""

    async def main() -> list[bytes]:
        answers = []
        for body in bodies:
            recorder = Recorder([body_request(json.dumps(body).encode())])
            await app(http_scope(path), recorder.receive, recorder.send)
            statuses = [m["status"] for m in recorder.sent if m["type"] == "http.response.start"]
            assert statuses == [200], recorder.sent
            answers.append(b"".join(m.get("body", b"") for m in recorder.sent[1:]))
        return answers

    return run(main())


def offload_stats(runtime: Any) -> dict[str, Any]:
    stats: dict[str, Any] = runtime.health()[1]["offload"]
    return stats
