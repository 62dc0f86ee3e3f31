"""Nothing internal reaches the host application.

Every observer entry point runs its work inside these helpers: expected extraction problems
(invalid JSON, truncated streams, missing usage) are counted by reason; unexpected exceptions
(bugs, failing user extractors or identity callables) are counted and logged with a traceback.
Each reason is logged once per process, not once per request, so a misbehaving upstream cannot
flood the logs. The test suite sets ``RAISE_INTERNAL_ERRORS = True`` so that bugs still fail
tests (the pattern of sentry's ``internal_exceptions`` fixture).
"""

from __future__ import annotations

import traceback
from typing import Any, Final, Protocol

from scr_middleware.observability.logs import get_logger, log_once, reset_log_once

logger: Final = get_logger("extract")

RAISE_INTERNAL_ERRORS = False

# Reasons, as they appear in scr_extraction_failures_total{reason}.
INVALID_JSON: Final = "invalid_json"
NON_JSON_BODY: Final = "non_json_body"
TRUNCATED_SSE: Final = "truncated_sse"
BODY_TOO_LARGE: Final = "body_too_large"
DECODE_ERROR: Final = "decode_error"
UNSUPPORTED_ENCODING: Final = "unsupported_encoding"
EXTRACTOR_ERROR: Final = "extractor_error"
IDENTITY_ERROR: Final = "identity_error"
MISSING_USAGE: Final = "missing_usage"
EMIT_ERROR: Final = "emit_error"
INTERNAL_ERROR: Final = "internal_error"

_used_keys: set[str] = set()


class FailureStats(Protocol):
    """What the observer needs from ``RuntimeStats``."""

    def extraction_failed(self, reason: str) -> None: ...


class HasStats(Protocol):
    @property
    def stats(self) -> Any: ...


class StatsOf:
    """Counts into ``owner.stats`` as it is at the time of counting: a runtime replaces its
    ``RuntimeStats`` after ``fork()``, so an adapter must not keep the old object."""

    __slots__ = ("_owner",)

    def __init__(self, owner: HasStats) -> None:
        self._owner = owner

    def extraction_failed(self, reason: str) -> None:
        self._owner.stats.extraction_failed(reason)


def _once(key: str, level: str, msg: str, **fields: Any) -> None:
    key = "extract:" + key
    _used_keys.add(key)
    log_once(logger, key, level, msg, **fields)


def _count(reason: str, stats: FailureStats | None) -> None:
    try:
        if stats is None:
            from scr_middleware.runtime import get_runtime

            stats = get_runtime().stats
        stats.extraction_failed(reason)
    except Exception as exc:  # counting must never be the thing that breaks a request
        _once("count:" + reason, "warning", "could not count extraction failure", error=repr(exc))


def record_failure(reason: str, stats: FailureStats | None = None, detail: str = "") -> None:
    """Count an expected extraction problem and log it the first time it happens."""
    _count(reason, stats)
    _once(
        reason,
        "warning",
        f"extraction failed ({reason}); further occurrences are only counted in "
        f"scr_extraction_failures_total{{reason={reason!r}}}",
        reason=reason,
        **({"detail": detail} if detail else {}),
    )


def internal_error(reason: str, exc: BaseException, stats: FailureStats | None = None) -> None:
    """Count and log (once) an unexpected exception; re-raise it when tests ask for that."""
    if RAISE_INTERNAL_ERRORS:
        raise exc
    _count(reason, stats)
    _once(
        reason,
        "error",
        f"internal error in scr_middleware ({reason}); the request was not affected, further "
        f"occurrences are only counted in scr_extraction_failures_total{{reason={reason!r}}}",
        reason=reason,
        error=f"{type(exc).__name__}: {exc}",
        exception="".join(traceback.format_exception(exc)),
    )


def reset_logged() -> None:
    """Forget which reasons were logged (tests)."""
    for key in list(_used_keys):
        reset_log_once(key)
