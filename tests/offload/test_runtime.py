"""In-process: a real runtime (SQLite ledger in a tmp data dir, or a memory destination), the
ASGI middleware called directly, and the capture process it starts (a child of this process)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi.fake_openai import CHAT, build_app
from asgi.helpers import MemoryRuntime

from scr_middleware import runtime as runtime_mod
from scr_middleware.asgi import SessionCompletionMiddleware
from scr_middleware.errors import ConfigError
from scr_middleware.observability.logs import reset_log_once
from scr_middleware.offload import worker as offload_worker
from scr_middleware.runtime import SessionCompletionRuntime

from .kit import (
    alive,
    capture_children,
    ledger_rows,
    offload_stats,
    post_chat,
    post_many,
    wait_for,
)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def chat_app(
    runtime: SessionCompletionRuntime | None = None, **middleware: Any
) -> SessionCompletionMiddleware:
    """The fake OpenAI app behind the middleware: the shared runtime unless ``runtime``."""
    config = {"middleware": middleware} if middleware else None
    return SessionCompletionMiddleware(build_app(), runtime=runtime, config=config)


def bodies(count: int, prefix: str = "u") -> list[dict[str, Any]]:
    return [{**BODY, "user": f"{prefix}{index}"} for index in range(count)]


def our_capture_pids() -> set[int]:
    return {process.pid for process in capture_children(os.getpid())}


@pytest.fixture
def data() -> Path:
    """The test's data dir (``SCR_DATA_DIR``, set by the root conftest): the ledger's."""
    return Path(os.environ["SCR_DATA_DIR"])


@pytest.fixture
def ledger_runtime() -> SessionCompletionRuntime:
    """The shared runtime, default configuration: the SQLite ledger in the test's data dir.
    (The root conftest shuts it down and forgets it after the test.)"""
    return runtime_mod.configure()


@pytest.fixture
def memory_runtime() -> MemoryRuntime:
    """The shared runtime, delivering to a memory destination."""
    name = f"offload-{uuid.uuid4().hex}"
    runtime = runtime_mod.configure(
        config={"destinations": [{"name": "mem", "endpoint": f"memory://{name}"}]}
    )
    return MemoryRuntime(runtime, name)


def test_flush_waits_for_the_capture_process(
    ledger_runtime: SessionCompletionRuntime, data: Path
) -> None:
    before = our_capture_pids()
    app = chat_app()
    post_many(app, bodies(5))
    assert ledger_runtime.flush(15.0) is True
    rows = ledger_rows(data / "ledger.sqlite3")  # at once: flush waited for the delivery
    assert sorted(row["user_id"] for row in rows) == [f"u{i}" for i in range(5)]
    assert {row["session_id"] for row in rows} == {CHAT["id"]}
    stats = offload_stats(ledger_runtime)
    assert stats["state"] == "running"
    assert stats["recorded"] == stats["shipped"] == stats["acknowledged"] == 5
    assert stats["pending"] == stats["inline"] == stats["resent"] == 0
    assert stats["spawns"] == 1
    assert our_capture_pids() - before == {stats["pid"]}
    # The app process's own router captured nothing: the events were the capture process's.
    assert ledger_runtime.stats.captured == 0
    # A second round: flush again waits for those too.
    post_many(app, bodies(3, "v"))
    assert ledger_runtime.flush(15.0) is True
    assert len(ledger_rows(data / "ledger.sqlite3")) == 8


def patient_ledger(data: Path) -> dict[str, Any]:
    """The default ledger, with a timeout long enough that a write held up by another writer
    never fails (a failing destination is not waited for), however slow this machine is."""
    path = data / "ledger.sqlite3"
    return {"name": "ledger", "endpoint": f"sqlite:///{path}", "timeout_ms": 60_000}


def spool_rows_ever(data: Path) -> int:
    """How many events the ledger's spool was ever given (AUTOINCREMENT's high-water mark)."""
    path = data / "spool" / "ledger.sqlite3"
    if not path.exists():
        return 0
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
    return int(found[0]) if found else 0


def test_a_burst_the_ledger_cannot_take_yet_waits_for_it_instead_of_spooling(data: Path) -> None:
    # Queues of 1,000 (ledger) and 500 (router intake): the burst is bigger than both.
    runtime = runtime_mod.configure(
        config={"capture": {"buffer_max_size": 1000}, "destinations": [patient_ledger(data)]}
    )
    app = chat_app()
    post_many(app, bodies(1))
    assert runtime.flush(15.0) is True
    # Another writer holds the ledger: the capture process's writes wait (busy_timeout),
    # delivering nothing, while the burst arrives.
    with closing(sqlite3.connect(data / "ledger.sqlite3", isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        post_many(app, bodies(1800, "burst"))
        holder.execute("ROLLBACK")
    assert runtime.flush(30.0) is True
    rows = ledger_rows(data / "ledger.sqlite3")
    assert len(rows) == len({row["event_id"] for row in rows}) == 1801
    # Every event was written once, to the ledger: none overflowed into the spool.
    assert spool_rows_ever(data) == 0
    assert offload_stats(runtime)["inline"] == 0


@contextmanager
def ledger_held_behind(data: Path) -> Iterator[SessionCompletionRuntime]:
    """A runtime in this process (offload: inline: the router a capture process's pacer looks
    at) whose ledger is behind and delivering nothing: another writer holds it."""
    runtime = runtime_mod.configure(
        config={
            "capture": {"buffer_max_size": 100},
            "middleware": {"offload": "inline"},
            "destinations": [patient_ledger(data)],
        }
    )
    runtime.capture({"session_id": "first", "usage": {"input_tokens": 1, "output_tokens": 1}})
    assert runtime.flush(15.0) is True
    with closing(sqlite3.connect(data / "ledger.sqlite3", isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        for index in range(80):
            runtime.capture({"session_id": f"s{index}", "usage": {"input_tokens": 1}})
        wait_for(lambda: runtime.router.local_backlog() is not None, "the ledger to be behind")
        yield runtime
        holder.execute("ROLLBACK")
    assert runtime.flush(15.0) is True
    wait_for(lambda: len(ledger_rows(data / "ledger.sqlite3")) == 81, "every event")


def timed_wait(pacer: offload_worker.IntakePacer, limit: float = 5.0) -> float:
    """Seconds ``pacer.wait()`` took; fails (rather than hangs) past ``limit``."""
    started = time.monotonic()
    waiting = threading.Thread(target=pacer.wait, daemon=True)
    waiting.start()
    waiting.join(limit)
    assert not waiting.is_alive(), f"still waiting after {limit} s"
    return time.monotonic() - started


def test_a_local_destination_that_stopped_delivering_is_not_waited_for(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload_worker, "LOCAL_STALL_S", 0.3)
    with ledger_held_behind(data) as runtime:
        app_end, capture_end = socket.socketpair()
        with app_end, capture_end:
            pacer = offload_worker.IntakePacer(runtime, capture_end)
            waited = timed_wait(pacer)
            waited_again = timed_wait(pacer)  # still stalled: not waited for again
    assert waited >= 0.3  # it waited for progress, then gave up on the stalled ledger
    assert waited_again < 0.25


def test_once_a_late_capture_process_caught_up_the_request_path_ships_again(
    ledger_runtime: SessionCompletionRuntime,
) -> None:
    app = chat_app()
    # These arrive while the capture process is still starting: the request path cannot
    # ship them, and stops trying until the ticker has.
    post_many(app, bodies(300, "early"))
    assert ledger_runtime.flush(15.0) is True
    assert offload_stats(ledger_runtime)["shipped"] == 300
    # Now a busy app: the request that adds the 65th waiting record ships them, at once,
    # rather than leaving every record to the ticker thread (up to 50 ms later).
    most_waiting = 0
    for body in bodies(600, "busy"):
        post_chat(app, body)
        most_waiting = max(most_waiting, offload_stats(ledger_runtime)["pending"])
    assert most_waiting <= 64


def test_a_local_destination_is_not_waited_for_while_the_app_process_records_pile_up(
    data: Path,
) -> None:
    with ledger_held_behind(data) as runtime:
        app_end, capture_end = socket.socketpair()
        with app_end, capture_end:
            for end, option in ((app_end, socket.SO_SNDBUF), (capture_end, socket.SO_RCVBUF)):
                end.setsockopt(socket.SOL_SOCKET, option, 4 * offload_worker.UNREAD_LIMIT_BYTES)
            app_end.setblocking(False)
            unwritten = offload_worker.UNREAD_LIMIT_BYTES
            while unwritten > 0:  # what the app process wrote and the capture process did not read
                unwritten -= app_end.send(b"r" * min(unwritten, 65536))
            waited = timed_wait(offload_worker.IntakePacer(runtime, capture_end))
    # Not waited for (LOCAL_STALL_S is 5 s): the spool takes the burst, not the app process.
    assert waited < 1.0


def test_flush_returns_false_once_its_timeout_passed_while_the_capture_process_is_stopped(
    ledger_runtime: SessionCompletionRuntime, data: Path
) -> None:
    app = chat_app()
    post_chat(app, {**BODY, "user": "before"})
    assert ledger_runtime.flush(15.0) is True
    pid = offload_stats(ledger_runtime)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        post_chat(app, {**BODY, "user": "while-stopped"})
        assert ledger_runtime.flush(0.5) is False
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ledger_runtime.flush(15.0) is True
    rows = ledger_rows(data / "ledger.sqlite3")
    assert sorted(row["user_id"] for row in rows) == ["before", "while-stopped"]
    assert offload_stats(ledger_runtime)["pid"] == pid  # slow is not dead: no restart


def test_shutdown_closes_the_channel_and_the_capture_process_exits(
    ledger_runtime: SessionCompletionRuntime, data: Path
) -> None:
    post_many(chat_app(), bodies(4))
    stats = wait_for(
        lambda: (s := offload_stats(ledger_runtime))["state"] == "running" and s,
        "a running capture process",
    )
    pid = stats["pid"]
    assert alive(pid)
    ledger_runtime.shutdown(5.0)  # no flush first: shutdown hands over what is pending
    stats = offload_stats(ledger_runtime)
    assert stats["state"] == "closed"
    assert not alive(pid)
    assert pid not in our_capture_pids()
    assert len(ledger_rows(data / "ledger.sqlite3")) == 4
    assert ledger_runtime.offloader() is None  # a closed runtime starts no new one


def test_inline_mode_starts_no_capture_process(
    ledger_runtime: SessionCompletionRuntime, data: Path
) -> None:
    before = our_capture_pids()
    assert ledger_runtime.offloader("inline") is None
    app = chat_app(offload="inline")
    post_many(app, bodies(3))
    assert ledger_runtime.flush(10.0) is True
    assert len(ledger_rows(data / "ledger.sqlite3")) == 3
    assert ledger_runtime.stats.captured == 3  # in this process
    assert "offload" not in ledger_runtime.health()[1]
    assert our_capture_pids() == before


def test_memory_destination_with_auto_captures_inline(memory_runtime: MemoryRuntime) -> None:
    before = our_capture_pids()
    runtime = memory_runtime.runtime
    assert runtime.config.middleware.offload == "auto"
    assert runtime.offloader("auto") is None
    post_many(chat_app(), bodies(2))
    events = memory_runtime.events()
    assert sorted(event["user_id"] for event in events) == ["u0", "u1"]
    assert "offload" not in runtime.health()[1]
    assert our_capture_pids() == before


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_process_mode_with_a_memory_destination_warns_once_and_captures_inline(
    memory_runtime: MemoryRuntime,
) -> None:
    before = our_capture_pids()
    runtime = memory_runtime.runtime
    reset_log_once(f"offload-inline-{id(runtime)}")
    handler = ListHandler()
    logger = logging.getLogger("scr_middleware.runtime")
    logger.addHandler(handler)
    try:
        app = chat_app(offload="process")
        post_chat(app, {**BODY, "user": "first"})
        post_chat(app, {**BODY, "user": "second"})
        assert runtime.offloader("process") is None
        post_chat(chat_app(offload="process"), {**BODY, "user": "third"})
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in handler.records if "middleware.offload is 'process'" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in handler.records]
    assert warnings[0].levelno == logging.WARNING
    assert "memory destination" in warnings[0].getMessage()
    events = memory_runtime.events()
    assert sorted(event["user_id"] for event in events) == ["first", "second", "third"]
    assert our_capture_pids() == before


def test_unknown_offload_mode_is_a_config_error(ledger_runtime: SessionCompletionRuntime) -> None:
    with pytest.raises(ConfigError, match=r"middleware\.offload"):
        SessionCompletionRuntime(config={"middleware": {"offload": "bogus"}})
    with pytest.raises(ConfigError, match=r"middleware\.offload"):
        chat_app(offload="bogus")


def test_unknown_offload_mode_from_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCR_MIDDLEWARE_OFFLOAD", "bogus")
    with pytest.raises(ConfigError, match="SCR_MIDDLEWARE_OFFLOAD"):
        SessionCompletionRuntime()


def test_environment_variable_inline_is_honoured(
    monkeypatch: pytest.MonkeyPatch, data: Path
) -> None:
    monkeypatch.setenv("SCR_MIDDLEWARE_OFFLOAD", "inline")
    before = our_capture_pids()
    # The environment beats the configuration file's value.
    runtime = runtime_mod.configure(config={"middleware": {"offload": "process"}})
    assert runtime.config.middleware.offload == "inline"
    post_many(SessionCompletionMiddleware(build_app()), bodies(2))
    assert runtime.flush(10.0) is True
    assert len(ledger_rows(data / "ledger.sqlite3")) == 2
    assert runtime.stats.captured == 2
    assert "offload" not in runtime.health()[1]
    assert our_capture_pids() == before


def capture_priority(runtime: SessionCompletionRuntime) -> tuple[int, set[int]]:
    """The capture process's nice value and the scheduling policies of its threads."""
    pid = offload_stats(runtime)["pid"]
    (process,) = [child for child in capture_children(os.getpid()) if child.pid == pid]
    policies = {os.sched_getscheduler(thread.id) for thread in process.threads()}
    return process.nice(), policies


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize(
    ("priority", "nice", "policy"),
    [
        (None, 19, "SCHED_IDLE"),  # the default: idle
        ("idle", 19, "SCHED_IDLE"),
        ("low", 19, "SCHED_OTHER"),
        ("normal", None, "SCHED_OTHER"),  # None: the app's own nice value
    ],
)
def test_offload_priority_sets_the_capture_process_priority(
    priority: str | None, nice: int | None, policy: str
) -> None:
    middleware = {"offload_priority": priority} if priority is not None else {}
    runtime = runtime_mod.configure(config={"middleware": middleware})
    post_many(chat_app(), bodies(2))
    assert runtime.flush(15.0) is True
    got_nice, policies = capture_priority(runtime)
    assert got_nice == (os.nice(0) if nice is None else nice)
    assert policies == {getattr(os, policy)}


def test_unknown_offload_priority_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"middleware\.offload_priority"):
        SessionCompletionRuntime(config={"middleware": {"offload_priority": "realtime"}})
    monkeypatch.setenv("SCR_MIDDLEWARE_OFFLOAD_PRIORITY", "realtime")
    with pytest.raises(ConfigError, match="SCR_MIDDLEWARE_OFFLOAD_PRIORITY"):
        SessionCompletionRuntime()


def test_a_forked_child_starts_its_own_capture_process(
    ledger_runtime: SessionCompletionRuntime, data: Path
) -> None:
    app = chat_app()
    post_chat(app, {**BODY, "user": "parent-before"})
    assert ledger_runtime.flush(15.0) is True
    parent_capture = offload_stats(ledger_runtime)["pid"]

    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            post_chat(app, {**BODY, "user": "child"})
            flushed = ledger_runtime.flush(15.0)
            stats = offload_stats(ledger_runtime)
            mine = stats["pid"]
            code = 0
            if not flushed:
                code = 2
            elif mine in (None, parent_capture) or stats["spawns"] != 1:
                code = 3
            elif stats["recorded"] != 1 or stats["acknowledged"] != 1:
                code = 4
            ledger_runtime.shutdown(5.0)
            if alive(mine):
                code = 5
        finally:
            os._exit(code)

    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        os.waitpid(child, 0)
        raise AssertionError("the forked child did not finish")
    assert os.waitstatus_to_exitcode(status) == 0

    # The parent's channel and capture process are untouched by the child's.
    post_chat(app, {**BODY, "user": "parent-after"})
    assert ledger_runtime.flush(15.0) is True
    stats = offload_stats(ledger_runtime)
    assert stats["pid"] == parent_capture
    assert stats["spawns"] == 1
    assert stats["recorded"] == stats["acknowledged"] == 2
    rows = ledger_rows(data / "ledger.sqlite3")
    assert sorted(row["user_id"] for row in rows) == ["child", "parent-after", "parent-before"]
    prefixes = {row["user_id"]: row["event_id"][:-8] for row in rows}
    assert prefixes["parent-before"] == prefixes["parent-after"] != prefixes["child"]


def test_a_middleware_given_its_own_runtime_gets_its_own_capture_process(
    monkeypatch: pytest.MonkeyPatch, data: Path
) -> None:
    # No shared runtime in this process (a link that looked resolved then: fixed in 6a2dcf1).
    monkeypatch.setattr(runtime_mod, "_shared", None)
    runtime = SessionCompletionRuntime()
    try:
        post_many(chat_app(runtime), bodies(2))
        assert runtime.flush(15.0) is True
        assert len(ledger_rows(data / "ledger.sqlite3")) == 2
        stats = runtime.health()[1].get("offload")
        assert stats is not None, "captured inline: no offloader was ever asked for"
        assert stats["recorded"] == stats["acknowledged"] == 2
    finally:
        runtime.shutdown(5.0)
    assert runtime_mod._shared is None
