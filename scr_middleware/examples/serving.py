"""Serve ASGI apps with real uvicorn servers on 127.0.0.1 (ephemeral ports), in threads.

Used by ``scr demo`` and by the test suite; handy in users' own end-to-end tests too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal

import uvicorn

START_TIMEOUT_S = 20.0


class ServerThread:
    """A real uvicorn server on 127.0.0.1 and an ephemeral port, in a background thread."""

    def __init__(self, app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)


@contextmanager
def serve(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL."""
    with ServerThread(app, lifespan=lifespan) as server:
        yield server.url
