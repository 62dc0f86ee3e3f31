"""The /metrics and /health HTTP endpoints, each on its own port, in daemon threads.

stdlib ``ThreadingHTTPServer``: no extra dependency, and a scrape never waits on the host
application's event loop or worker pool. Under gunicorn every worker tries to bind the same
ports; the first wins and the others log once and carry on (``start()`` may be called again
later to take over a port that became free).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from scr_middleware.observability.logs import get_logger, log_once

__all__ = ["ANY_FREE_PORT", "MonitoringServer"]

_log = get_logger("monitoring")

# Port value meaning "bind any free port" (tests); 0 keeps the config meaning "disabled".
ANY_FREE_PORT = -1
_METRICS_PATHS = frozenset({"/metrics"})
_HEALTH_PATHS = frozenset({"/health", "/healthz", "/ready"})

RenderMetrics = Callable[[], tuple[bytes, str]]
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Set per instance before serving; read by the handler.
    paths: frozenset[str] = frozenset()
    render_metrics: RenderMetrics
    health: HealthCheck


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "scr-middleware"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path not in self.server.paths:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._metrics()
        else:
            self._health(ready_only=path == "/ready")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _metrics(self) -> None:
        try:
            body, content_type = self.server.render_metrics()
        except Exception as exc:
            log_once(
                _log, "server.metrics", logging.WARNING, "rendering metrics failed", error=repr(exc)
            )
            self._reply(500, b"metrics unavailable\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def _health(self, *, ready_only: bool) -> None:
        try:
            healthy, details = self.server.health()
        except Exception as exc:
            healthy, details = False, {"status": "error", "error": repr(exc)}
        if ready_only:
            details = {"status": "ready" if healthy else "not_ready"}
        body = json.dumps(details, default=str).encode()
        self._reply(200 if healthy else 503, body, "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs off: a scrape every few seconds is not news."""


class _Running(NamedTuple):
    server: _Server
    thread: threading.Thread
    pid: int  # the process whose thread serves it; a forked child inherits only the socket


class MonitoringServer:
    """Serves ``/metrics`` on ``metrics_port`` and ``/health``, ``/healthz``, ``/ready`` on
    ``health_port``. Port 0 disables an endpoint; the same port for both gives one server that
    answers all paths; ``ANY_FREE_PORT`` (-1) binds an ephemeral port (tests), see
    ``bound_ports``. Never raises from ``start()`` or ``stop()``.
    """

    def __init__(
        self,
        metrics_port: int,
        health_port: int,
        host: str,
        render_metrics: RenderMetrics,
        health: HealthCheck,
    ) -> None:
        self.host = host
        self._render_metrics = render_metrics
        self._health = health
        self._wanted = self._plan(metrics_port, health_port)
        self._servers: dict[str, _Running] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _plan(metrics_port: int, health_port: int) -> dict[str, tuple[int, frozenset[str]]]:
        """role -> (port, paths). Roles sharing a real port become one server."""
        plan: dict[str, tuple[int, frozenset[str]]] = {}
        if metrics_port and metrics_port == health_port and metrics_port != ANY_FREE_PORT:
            plan["metrics+health"] = (metrics_port, _METRICS_PATHS | _HEALTH_PATHS)
            return plan
        if metrics_port:
            plan["metrics"] = (metrics_port, _METRICS_PATHS)
        if health_port:
            plan["health"] = (health_port, _HEALTH_PATHS)
        return plan

    @property
    def bound_ports(self) -> dict[str, int]:
        """role ("metrics", "health" or "metrics+health") -> port actually bound here."""
        with self._lock:
            pid = os.getpid()
            return {
                role: run.server.server_address[1]
                for role, run in self._servers.items()
                if run.pid == pid
            }

    def start(self) -> None:
        """Bind every wanted port not yet bound here. Idempotent; retries busy ports."""
        with self._lock:
            pid = os.getpid()
            for role, run in list(self._servers.items()):
                if run.pid != pid:
                    # Forked child: nothing serves this inherited socket here; let it go.
                    del self._servers[role]
                    _close_quietly(run.server)
            for role, (port, paths) in self._wanted.items():
                if role not in self._servers:
                    self._bind(role, port, paths)

    def _bind(self, role: str, port: int, paths: frozenset[str]) -> None:
        try:
            cls = _Server6 if ":" in self.host else _Server  # "::" listens on IPv6 (and v4)
            server = cls((self.host, 0 if port == ANY_FREE_PORT else port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log_once(
                    _log,
                    f"server.in_use:{self.host}:{port}",
                    logging.INFO,
                    f"port {port} in use: another process (e.g. a sibling worker) serves "
                    f"{role}; not serving it here",
                    port=port,
                )
            else:
                log_once(
                    _log,
                    f"server.bind:{self.host}:{port}",
                    logging.WARNING,
                    f"cannot serve {role} on {self.host}:{port}",
                    port=port,
                    error=str(exc),
                )
            return
        server.paths = paths
        server.render_metrics = self._render_metrics
        server.health = self._health
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name=f"scr-{role}-server",
            daemon=True,
        )
        thread.start()
        self._servers[role] = _Running(server, thread, os.getpid())
        _log.info("serving %s on %s:%d", role, self.host, server.server_address[1])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the sockets. Safe in a forked child (closes only)."""
        with self._lock:
            servers, self._servers = self._servers, {}
        pid = os.getpid()
        for role, run in servers.items():
            try:
                if run.pid == pid:
                    # Only where the serving thread exists: in a forked child shutdown() would
                    # wait for it forever.
                    run.server.shutdown()
                    run.thread.join(timeout)
                run.server.server_close()
            except Exception as exc:
                log_once(
                    _log,
                    f"server.stop:{role}",
                    logging.WARNING,
                    f"stopping the {role} server failed",
                    error=repr(exc),
                )


def _close_quietly(server: _Server) -> None:
    with contextlib.suppress(OSError):
        server.server_close()
