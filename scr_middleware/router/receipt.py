"""The receipt ``capture()`` returns: a cheap object, awaitable, settled by the router thread.

``scr.capture({...})`` (not awaited) costs only the object. ``await scr.capture({...})`` waits
for delivery to every destination when ``optimization.async_mode`` is false, bounded by
``SCR_TIMEOUT_MS``; it never raises for a slow or failed delivery (the event is retried or
spooled in the background either way) and returns the receipt, whose ``status`` tells.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any, Protocol

PENDING = "pending"
DELIVERED = "delivered"
SAMPLED_OUT = "sampled_out"
SPOOLED = "spooled"  # dead-lettered to disk: will be replayed, not lost
DROPPED = "dropped"
DISABLED = "disabled"

# When destinations disagree, the receipt reports the worst outcome.
_SEVERITY = {DELIVERED: 0, SAMPLED_OUT: 0, SPOOLED: 1, DROPPED: 2}


class Waitable(Protocol):
    """What a receipt needs from its router to wait for delivery."""

    receipt_timeout_s: float

    def nudge(self) -> None:
        """Send partial batches now (a caller is waiting)."""


def _wake(waiter: Any) -> None:
    if isinstance(waiter, threading.Event):
        waiter.set()
        return
    loop, future = waiter
    try:
        loop.call_soon_threadsafe(_set_result, future)
    except RuntimeError:  # the waiter's loop has closed: nobody is waiting any more
        pass


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Receipt:
    __slots__ = ("_done", "_fanned_out", "_nudge", "_pending", "_status", "_waiters", "event_id")

    def __init__(self, event_id: str, router: Waitable | None) -> None:
        self.event_id = event_id
        self._nudge = router  # None: awaiting does not wait (async_mode)
        self._pending = 0
        self._fanned_out = False
        self._done = False
        self._status = PENDING
        self._waiters: list[Any] = []

    # --- router side (router thread only) ---------------------------------------------
    def _expect(self, count: int) -> None:
        """Called once after fan-out with the number of destinations still to settle."""
        self._pending += count
        self._fanned_out = True
        if self._pending == 0:
            if self._status == PENDING:
                self._status = SAMPLED_OUT
            self._finish()

    def _resolve(self, status: str) -> None:
        if self._status == PENDING or _SEVERITY[status] > _SEVERITY.get(self._status, -1):
            self._status = status
        self._pending -= 1
        if self._pending == 0 and self._fanned_out:
            self._finish()

    def _finish(self) -> None:
        self._done = True  # written before reading waiters; waiters append before reading _done
        for waiter in self._waiters:
            _wake(waiter)

    # --- caller side ----------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._status if self._done else PENDING

    @property
    def delivered(self) -> bool:
        return self._done and self._status in (DELIVERED, SAMPLED_OUT)

    @property
    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until settled (not on an event loop thread); True if settled in time."""
        if self._done:
            return True
        event = threading.Event()
        self._waiters.append(event)
        if self._nudge is not None:
            self._nudge.nudge()
        if self._done:
            return True
        return event.wait(timeout)

    async def _wait_async(self, timeout: float) -> Receipt:
        if self._done or self._nudge is None:
            return self
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((loop, future))
        self._nudge.nudge()
        if self._done:
            return self
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        return self

    def __await__(self) -> Generator[Any, None, Receipt]:
        timeout = self._nudge.receipt_timeout_s if self._nudge is not None else 0.0
        return self._wait_async(timeout).__await__()

    def __repr__(self) -> str:
        return f"<Receipt {self.event_id} {self.status}>"


class _SettledReceipt(Receipt):
    """Returned when capture is disabled: already done, nothing to wait for."""

    def __init__(self, event_id: str, status: str) -> None:
        super().__init__(event_id, None)
        self._status = status
        self._done = True
        self._fanned_out = True


def settled_receipt(event_id: str, status: str = DISABLED) -> Receipt:
    return _SettledReceipt(event_id, status)
