"""In-memory state of the SCR service: recent events and the de-duplication window.

Both are touched only from the service's event loop (handlers do not await between checking
and recording), so they need no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["DedupeWindow", "RecentEvents"]


class RecentEvents:
    """The last ``size`` accepted events, kept as their JSON bytes (immutable, cheap to send)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._events: deque[bytes] = deque(maxlen=max(size, 0))

    def add(self, encoded: bytes) -> None:
        self._events.append(encoded)

    def __len__(self) -> int:
        return len(self._events)

    def render(self, limit: int | None = None) -> bytes:
        """A JSON array, oldest first: ``jq '.[-1]'`` is the newest event."""
        items = list(self._events)
        if limit is not None:
            items = items[len(items) - min(limit, len(items)) :]
        return b"[" + b",".join(items) + b"]"


class DedupeWindow:
    """Ids seen within the last ``window_s`` seconds, at most ``max_ids`` of them.

    Ids expire in insertion order because the window is the same for all of them, so expiry
    is a scan from the oldest end that stops at the first live id.
    """

    def __init__(
        self, window_s: float, max_ids: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        seen = self._seen
        while seen:
            key, (expires, _) = next(iter(seen.items()))
            if expires > now:
                break
            del seen[key]

    def get(self, key: str) -> str | None:
        """The value recorded with ``key`` if it is still in the window."""
        self._expire()
        entry = self._seen.get(key)
        return entry[1] if entry is not None else None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def add(self, key: str, value: str = "") -> None:
        self._seen[key] = (self._clock() + self.window_s, value)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
