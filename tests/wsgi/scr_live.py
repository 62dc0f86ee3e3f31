"""Real servers for end-to-end tests: gunicorn / uvicorn subprocesses on 127.0.0.1, and the
SQLite ledger they write to, read back across processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

WSGI_TESTS = Path(__file__).resolve().parent
DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, **middleware: Any) -> tuple[Path, Path]:
    """A YAML config whose only destination is a SQLite ledger; returns (config, ledger)."""
    directory.mkdir(parents=True, exist_ok=True)
    ledger = directory / "ledger.db"
    config = {
        "session_completion_runtime": {
            "capture": {"batch_size": 1, "flush_interval_ms": 0},
            "destinations": [{"name": "test-ledger", "endpoint": f"sqlite:///{ledger}"}],
            "storage": {"data_dir": str(directory / "data")},
            "middleware": middleware,
        }
    }
    path = directory / "scr.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ledger


class Server:
    """A server process on ``port``; ``url`` once ``ready``."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            list(argv), env=env, stdout=self._file, stderr=subprocess.STDOUT, cwd=WSGI_TESTS
        )

    def wait_ready(self, path: str = "/healthz") -> bool:
        """True once ``GET path`` answers; False if the process exited (port taken, ...)."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {DEADLINE_S}s:\n{self.output()}")

    def output(self) -> str:
        self._file.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._file.close()


def test_env(paths: Sequence[Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(WSGI_TESTS), *map(str, paths)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONHASHSEED"] = "0"  # e.g. Werkzeug builds its Allow header from a set
    env.update(extra)
    return env


Spec = tuple[Callable[[int], Sequence[str]], dict[str, str], Path]


def start(*specs: Spec, attempts: int = 5) -> list[Server]:
    """Start each ``argv(port)`` on a free port, all at once (they boot in parallel); a server
    whose port was taken in the meantime is retried on another one."""
    servers: list[Server | None] = [None] * len(specs)
    for attempt in range(attempts):
        pending = [i for i, server in enumerate(servers) if server is None]
        if not pending:
            break
        launched = {}
        for i in pending:
            argv, env, log = specs[i]
            port = free_port()
            launched[i] = Server(argv(port), env, log.with_suffix(f".{attempt}.log"), port)
        for i, server in launched.items():
            if server.wait_ready():
                servers[i] = server
                continue
            output = server.output()
            server.stop()
            if "in use" not in output:
                for started in servers:
                    if started is not None:
                        started.stop()
                raise AssertionError(f"server failed to start:\n{output}")
    if any(server is None for server in servers):
        raise AssertionError("no free port after retries")
    return [server for server in servers if server is not None]


def gunicorn(app: str, *options: str) -> Callable[[int], list[str]]:
    """argv for gunicorn serving ``app`` ("module:variable")."""
    return lambda port: [
        # No control socket: recent gunicorn puts one in ~/.gunicorn, shared by every instance.
        sys.executable, "-m", "gunicorn", "--graceful-timeout", "5", "--no-control-socket",
        *options, app,
        "-b", f"127.0.0.1:{port}",
    ]  # fmt: skip


def uvicorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [
        sys.executable, "-m", "uvicorn", "--no-access-log", "--lifespan", "off", app,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            rows = db.execute("SELECT payload FROM events").fetchall()
        except sqlite3.OperationalError:  # the table is not created yet
            return []
    return [json.loads(payload) for (payload,) in rows]


def wait_for_events(
    path: Path, predicate: Callable[[dict[str, Any]], bool], count: int = 1
) -> list[dict[str, Any]]:
    """Poll the ledger until ``count`` events match; returns them (bounded wait)."""
    deadline = time.monotonic() + DEADLINE_S
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [event for event in ledger(path) if predicate(event)]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} events, found {len(found)}: {found}")


def by_session(session_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("session_id") == session_id
