"""Gunicorn server hooks for multiprocess Prometheus metrics.

Use as the config module, or import the hooks into your own ``gunicorn.conf.py``::

    PROMETHEUS_MULTIPROC_DIR=/tmp/scr-metrics gunicorn -w 4 \\
        -c python:scr_middleware.observability.gunicorn_hooks app:app

    # gunicorn.conf.py
    from scr_middleware.observability.gunicorn_hooks import child_exit, on_starting

Both hooks do nothing unless ``PROMETHEUS_MULTIPROC_DIR`` is set, and never raise: a metrics
problem must not stop the arbiter.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

from scr_middleware.observability.logs import get_logger, log_once
from scr_middleware.observability.metrics import mark_process_dead

__all__ = ["child_exit", "on_starting"]

_log = get_logger("monitoring")
# Only files prometheus_client writes, so a shared directory (say /tmp) loses nothing else.
_DB_PATTERNS = ("counter_*.db", "gauge_*_*.db", "histogram_*.db", "summary_*.db")


def on_starting(server: Any) -> None:
    """Master start-up: delete the previous run's files, before any worker writes.

    Left over, their live gauges (buffer size, in-flight events) would be summed forever under
    pids that no longer exist.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        for pattern in _DB_PATTERNS:
            for path in glob.glob(os.path.join(directory, pattern)):
                os.remove(path)
    except OSError as exc:
        log_once(
            _log,
            "gunicorn.on_starting",
            logging.WARNING,
            "could not clear the multiprocess metrics directory",
            error=str(exc),
        )


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live gauges from the aggregated /metrics."""
    pid = getattr(worker, "pid", None)
    if isinstance(pid, int):
        mark_process_dead(pid)
