"""JSON log lines with the seed's fields, confined to the ``scr_middleware`` logger tree.

A line looks like::

    {"timestamp": "2025-12-21T10:45:23.123Z", "level": "INFO", "component": "capture",
     "message": "Event captured successfully", "event_id": "evt_abc123",
     "session_id": "sess_xyz789", "latency_ms": 3.2}

Optional fields come from ``extra=`` and appear only when given. Nothing here touches the root
logger or any other logger of the host application.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "get_logger",
    "log_once",
    "reset_log_once",
]

ROOT_LOGGER = "scr_middleware"
_SEED_FIELDS = ("event_id", "session_id", "latency_ms")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "component", "taskName"}
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _component(record: logging.LogRecord) -> str:
    explicit = record.__dict__.get("component")
    if isinstance(explicit, str) and explicit:
        return explicit
    # "scr_middleware.router.worker" -> "router.worker"; a foreign logger keeps its full name.
    prefix = ROOT_LOGGER + "."
    if record.name.startswith(prefix):
        return record.name[len(prefix) :]
    return "scr" if record.name == ROOT_LOGGER else record.name


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: record.__dict__[k] for k in _SEED_FIELDS if record.__dict__.get(k) is not None}
    for key in sorted(record.__dict__.keys() - _RECORD_ATTRS - set(_SEED_FIELDS)):
        if not key.startswith("_"):
            fields[key] = record.__dict__[key]
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values that JSON cannot carry are rendered with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "component": _component(record),
            "message": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable variant with the same fields: ``<ts> INFO [capture] message k=v ...``."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = (
            f"{_timestamp(record.created)} {record.levelname} [{_component(record)}] "
            f"{record.getMessage()}"
        )
        if extras:
            text = f"{text} {extras}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


class _ScrHandler(logging.StreamHandler[Any]):
    """Marker class so configure_logging can find and replace only its own handler."""


def configure_logging(
    level: str = "info",
    fmt: Literal["json", "text"] = "json",
    *,
    propagate: bool = False,
    stream: Any = None,
) -> logging.Logger:
    """Send ``scr_middleware`` logs to stderr (or ``stream``) as JSON lines or text.

    Idempotent: calling it again replaces the handler it installed earlier instead of adding a
    second one. ``propagate=False`` (default) keeps the same records from also reaching the
    host's root handlers, which would print every line twice in another format.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    numeric = _LEVELS.get(str(level).lower(), logging.INFO)
    handler = _ScrHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for old in [h for h in logger.handlers if isinstance(h, _ScrHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(numeric)
    logger.propagate = propagate
    return logger


def get_logger(component: str) -> logging.Logger:
    """Logger ``scr_middleware.<component>``; its lines carry ``"component": "<component>"``."""
    component = component.removeprefix(ROOT_LOGGER + ".")
    return logging.getLogger(f"{ROOT_LOGGER}.{component}" if component else ROOT_LOGGER)


_once_lock = threading.Lock()
_once_keys: set[str] = set()


def _reinit_after_fork() -> None:
    # A lock held by another thread at fork() would stay locked forever in the child.
    global _once_lock
    _once_lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_after_fork)


def log_once(logger: logging.Logger, key: str, level: int | str, msg: str, **fields: Any) -> bool:
    """Log ``msg`` the first time ``key`` is seen in this process; True if it was logged.

    For failures that would otherwise repeat on every request. Field names that clash with
    LogRecord attributes (``name``, ``message``, ...) get a trailing underscore rather than
    making ``logging`` raise.
    """
    with _once_lock:
        if key in _once_keys:
            return False
        _once_keys.add(key)
    numeric = level if isinstance(level, int) else _LEVELS.get(level.lower(), logging.WARNING)
    extra = {
        (f"{k}_" if k in _RECORD_ATTRS and k != "component" else k): v for k, v in fields.items()
    }
    logger.log(numeric, msg, extra=extra)
    return True


def reset_log_once(key: str | None = None) -> None:
    """Forget one key (or all): the next ``log_once`` with it logs again."""
    with _once_lock:
        if key is None:
            _once_keys.clear()
        else:
            _once_keys.discard(key)
