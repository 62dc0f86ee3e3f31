"""Retry delays: exponential backoff with full jitter, honouring ``Retry-After``."""

from __future__ import annotations

import random

BASE_DELAY_S = 0.025  # first retry after ~25 ms: a blip is retried well within SCR_TIMEOUT_MS
MAX_DELAY_S = 30.0
MAX_RETRY_AFTER_S = 300.0  # a server asking for more than 5 minutes is capped


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    Full jitter (a random delay between half and the whole exponential step) spreads the
    retries of many workers; a server's ``Retry-After`` is a floor, never shortened.
    """
    step = min(MAX_DELAY_S, BASE_DELAY_S * (2 ** (attempt - 1)))
    delay = random.uniform(step / 2, step)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay
