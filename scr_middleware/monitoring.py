"""Wires a runtime to its Prometheus metrics, its /metrics + /health servers and JSON logs.

The bridge syncs on the router thread about once a second and again right before every
scrape, so a scrape always sees every event captured so far.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from .observability.logs import configure_logging
from .observability.metrics import BufferState, MetricsBridge
from .observability.server import MonitoringServer

if TYPE_CHECKING:
    from .runtime import SessionCompletionRuntime

# Rough per-event footprint in the ingest buffer (canonical dict + usage + outcome + tuple).
EVENT_SIZE_ESTIMATE_BYTES = 1200


class RuntimeMonitoring:
    def __init__(self, runtime: SessionCompletionRuntime) -> None:
        self.runtime = runtime
        monitoring = runtime.config.monitoring
        self.bridge = MetricsBridge()
        self.server: MonitoringServer | None = None
        if monitoring.metrics_port or monitoring.health_check_port:
            self.server = MonitoringServer(
                monitoring.metrics_port,
                monitoring.health_check_port,
                monitoring.host,
                self.render,
                runtime.health,
            )
        self._pid = os.getpid()

    def start(self) -> None:
        """Router thread, at router start: bind the ports (a sibling worker's are fine)."""
        if self.server is not None:
            self.server.start()

    def sync(self) -> None:
        runtime = self.runtime
        router = runtime.router
        size = router.ingest_size()
        buffer = BufferState(
            size_events=size,
            size_bytes=size * EVENT_SIZE_ESTIMATE_BYTES,
            max_events=runtime.config.capture.buffer_max_size,
        )
        self.bridge.sync(runtime.stats, router.destination_stats, buffer)

    def render(self) -> tuple[bytes, str]:
        self.sync()
        body, content_type = self.bridge.render()
        return seed_compatible(body), content_type

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


_CAPTURED = b"scr_events_captured_total"
_CAPTURED_META = (b"# HELP " + _CAPTURED + b" ", b"# TYPE " + _CAPTURED + b" ")


def seed_compatible(body: bytes) -> bytes:
    """Make the seed's integration check work as written:

        curl -s :9090/metrics | grep 'scr_events_captured_total' | awk '{print $2}'

    must print one integer (its shell compares it with ``-gt 0``). So this family is exposed
    without its HELP/TYPE comment lines (Prometheus then treats it as untyped; rate() and
    increase() work the same) and whole-number values are written without ``.0`` (valid in
    the text format, which parses every value as a float).
    """
    lines = body.split(b"\n")
    out = []
    for line in lines:
        if line.startswith(_CAPTURED_META):
            continue
        whole = line.endswith(b".0") and not line.startswith(b"#")
        out.append(line[:-2] if whole else line)
    return b"\n".join(out)


def setup_logging(level: str, fmt: Any) -> None:
    """JSON lines on stderr for the ``scr_middleware`` logger only (never the host's root)."""
    configure_logging(level, fmt, stream=sys.stderr)
