"""Run the ``scr`` entry point as a subprocess; a small HTTP sink for replay tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_BIN = Path(sys.executable).parent / "scr"
SCR = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "scr_middleware.cli"]


def scr_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCR_")}
    env.update(extra)
    return env


def run_scr(
    *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCR, *args],
        cwd=cwd,
        env=scr_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Sink:
    """Answers POSTs with ``status[path]`` (default 200) and records 2xx event bodies."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = sink.status.get(self.path, 200)
                if 200 <= status < 300:
                    with sink.lock:
                        sink.received.setdefault(self.path, []).extend(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received.get(path, []))

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
