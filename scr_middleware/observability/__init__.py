"""Prometheus metrics, the /metrics and /health server, and JSON logs."""

from scr_middleware.observability.logs import (
    configure_logging,
    get_logger,
    log_once,
    reset_log_once,
)
from scr_middleware.observability.metrics import (
    BufferState,
    MetricsBridge,
    mark_process_dead,
    multiprocess_dir,
    render_multiprocess,
)
from scr_middleware.observability.server import ANY_FREE_PORT, MonitoringServer

__all__ = [
    "ANY_FREE_PORT",
    "BufferState",
    "MetricsBridge",
    "MonitoringServer",
    "configure_logging",
    "get_logger",
    "log_once",
    "mark_process_dead",
    "multiprocess_dir",
    "render_multiprocess",
    "reset_log_once",
]
