"""One destination's delivery: sampling, transform, bounded queue, batching, retries, spool.

Everything here runs on the router's event loop, except spool I/O, which runs on the spool's
own thread. Each destination has its own worker and lanes, so a destination that hangs or is
down only ever fills its own queue (and then its own spool).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from ..destinations.base import Destination, PermanentDeliveryError, Record, TransientDeliveryError
from ..transforms import canonical
from . import spool as spool_mod
from .backoff import retry_delay
from .receipt import DELIVERED, DROPPED, SPOOLED, Receipt
from .spool import Spool, SpoolFullError
from .stats import DROP_BUFFER_OVERFLOW, DROP_SPOOL_FULL, DestinationStats

logger = logging.getLogger("scr_middleware.router")

Transform = Callable[[dict[str, Any]], dict[str, Any]]
Event = dict[str, Any]
T = TypeVar("T")

REPLAY_PROBE_INTERVAL_S = 5.0
# The router stops fanning out once a spool backlog reaches half the queue size and checks
# every 256 events, so this headroom means a drop only when the spool is truly stuck.
OVERFLOW_HEADROOM = 512  # how often a destination with a spool backlog is probed


class Item(Record):
    """A record plus what the router needs to settle and spool it. Being a ``Record`` itself,
    a batch of items goes to ``Destination.send`` as is: one allocation per event and
    destination, no copying into a second list. The event is kept as its canonical JSON (what
    the spool stores), never as a dict: see ``Destination.prepare``."""

    __slots__ = ("enqueued_at", "event_json", "receipt", "spool_row")

    def __init__(  # noqa: PLR0917  (built once per event and destination: positional is cheaper)
        self,
        event_id: str,
        payload: Any,
        event_json: bytes,
        receipt: Receipt | None,
        enqueued_at: float,
        spool_row: int | None = None,  # set when the item was replayed from the spool
    ) -> None:
        self.event_id = event_id
        self.payload = payload
        self.event_json = event_json
        self.receipt = receipt
        self.enqueued_at = enqueued_at
        self.spool_row = spool_row


@dataclass(slots=True)
class Lane:
    pending: deque[Item] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    sending: list[Item] = field(default_factory=list)
    nudged: bool = False
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int
    flush_interval_s: float
    max_queue: int
    timeout_s: float
    retry_attempts: int
    sampling_rate: float
    lanes: int
    partitioning_key: str | None


def _sampled_in(event_id: str, rate: float) -> bool:
    """Deterministic by event_id, so every process and a replay agree on the same event."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(event_id.encode()) < rate * 4294967296.0


class DestinationWorker:
    def __init__(
        self,
        destination: Destination,
        transform: Transform,
        spool: Spool,
        stats: DestinationStats,
        settings: WorkerSettings,
    ) -> None:
        self.destination = destination
        self.transform = transform
        self.spool = spool
        self.stats = stats
        self.settings = settings
        self._lanes = [Lane() for _ in range(settings.lanes)]
        self._batches_per_send = max(1, destination.batches_per_send)
        self._canonical = transform is canonical
        self._spool_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"scr-spool-{destination.name}"
        )
        self._overflow: list[Item] = []
        self._overflow_task: asyncio.Task[None] | None = None
        self._replay_task: asyncio.Task[int] | None = None
        self._spool_backlog = False  # the spool may hold rows to replay automatically
        self._closing = False
        self._force = 0  # > 0 while a flush wants partial batches sent at once
        self._depth_estimate = 0  # queued() as of the last recount, plus offers since
        self._offers = 0
        self._last_probe = 0.0
        self._opened = False

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.destination.open()
            self._opened = True
        except Exception as exc:  # a destination that cannot open is retried per batch
            self._note_failure(f"open failed: {exc!r}")
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run_lane(lane))
        await self.refresh_spool_state()

    def backlogged(self) -> bool:
        """True while the spool cannot keep up with this destination's overflow."""
        return len(self._overflow) >= max(1, self.settings.max_queue // 2)

    def local_backlog(self) -> bool:
        """A local destination, delivering, with half its queue or more waiting."""
        return (
            self.destination.local
            and self.stats.state == "ok"
            and self.queued() >= max(1, self.settings.max_queue // 2)
        )

    def queued(self) -> int:
        return sum(len(lane.pending) + len(lane.sending) for lane in self._lanes) + len(
            self._overflow
        )

    # --- intake (router loop) ----------------------------------------------------------------
    def offer(self, event: Event, event_json: bytes, receipt: Receipt | None, now: float) -> int:
        """Take one finalized event (and its canonical JSON); returns 1 if the receipt must wait
        for this destination."""
        stats = self.stats
        stats.captured += 1
        event_id: str = event["event_id"]
        if not _sampled_in(event_id, self.settings.sampling_rate):
            stats.sampled_out += 1
            return 0
        stats.in_flight += 1
        try:
            prepared = self._prepare(event, event_json)
        except Exception as exc:
            item = Item(event_id, None, event_json, receipt, now)
            self._log_once("transform", f"transform failed for {self.destination.name}: {exc!r}")
            self._spawn(self._dead_letter([item], spool_mod.REASON_TRANSFORM_FAILED, repr(exc)))
            return 1
        item = Item(event_id, prepared, event_json, receipt, now)
        # queued() sums every lane: only recount every 256 events or near the limit. The
        # estimate can only overstate (batches leave between recounts), so the bound holds.
        depth = self._depth_estimate
        self._offers += 1
        if depth + 1 >= self.settings.max_queue or not self._offers & 255:
            depth = self.queued()
        if depth >= self.settings.max_queue:
            self._overflow_item(item)
        else:
            self._enqueue(item, event)
        self._depth_estimate = depth + 1
        return 1

    def _prepare(self, event: Event, event_json: bytes) -> Any:
        """Transform, then let the destination encode the result (the canonical transform's
        output serialises to ``event_json`` byte for byte, so it is not encoded twice)."""
        payload = self.transform(event)
        if not isinstance(payload, dict):
            raise TypeError(f"transform returned {type(payload).__name__}, not a dict")
        return self.destination.prepare(payload, event_json if self._canonical else None)

    def _lane_for(self, event: Event) -> Lane:
        if len(self._lanes) == 1:
            return self._lanes[0]
        key = self.settings.partitioning_key
        value = event.get(key) if key else event["event_id"]
        return self._lanes[hash(str(value)) % len(self._lanes)]

    def _enqueue(self, item: Item, event: Event) -> None:
        lane = self._lane_for(event)
        lane.pending.append(item)
        count = len(lane.pending)
        if count in (1, self.settings.batch_size) or self.settings.flush_interval_s == 0:
            lane.wakeup.set()

    def _overflow_item(self, item: Item) -> None:
        if len(self._overflow) >= self.settings.max_queue + OVERFLOW_HEADROOM:
            # The spool cannot keep up either: drop, counted and logged, never unbounded.
            self.stats.in_flight -= 1
            self.stats.drop(DROP_BUFFER_OVERFLOW)
            self._settle([item], DROPPED)
            self._log_once("overflow", f"{self.destination.name}: queue and spool backlog full")
            return
        self._overflow.append(item)
        if self._overflow_task is None or self._overflow_task.done():
            self._overflow_task = asyncio.create_task(self._drain_overflow())

    async def _drain_overflow(self) -> None:
        while self._overflow:
            batch, self._overflow = self._overflow, []
            await self._dead_letter(batch, spool_mod.REASON_OVERFLOW, "queue full")

    # --- batching and delivery ----------------------------------------------------------------
    def nudge(self) -> None:
        for lane in self._lanes:
            if lane.pending:
                lane.nudged = True
                lane.wakeup.set()

    async def _run_lane(self, lane: Lane) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        while True:
            if not lane.pending:
                if self._closing:
                    return
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            ready = (
                len(lane.pending) >= settings.batch_size
                or lane.nudged
                or self._force > 0
                or self._closing
                or settings.flush_interval_s == 0
            )
            if not ready:
                remaining = lane.pending[0].enqueued_at + settings.flush_interval_s - loop.time()
                if remaining > 0:
                    lane.wakeup.clear()
                    try:
                        await asyncio.wait_for(lane.wakeup.wait(), remaining)
                    except TimeoutError:
                        pass
                    continue
            lane.nudged = False
            take = min(settings.batch_size * self._batches_per_send, len(lane.pending))
            lane.sending = [lane.pending.popleft() for _ in range(take)]
            await self._deliver(lane.sending)
            # Fix: not in a ``finally``. When close() cancels this task at the shutdown
            # deadline, the batch must stay in ``sending`` so close() spools it; clearing it
            # on cancellation lost the batch (and left it counted in flight forever).
            lane.sending = []

    async def _deliver(self, batch: list[Item]) -> None:
        stats = self.stats
        batch_id = f"bat_{secrets.token_hex(8)}"
        attempt = 0
        while True:
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    await self.destination.send(batch, batch_id)
            except PermanentDeliveryError as exc:
                self._note_failure(f"rejected: {exc}")
                await self._dead_letter(batch, spool_mod.REASON_REJECTED, str(exc))
                return
            except Exception as exc:  # transient: timeouts, refused connections, 5xx, 429
                if isinstance(exc, TransientDeliveryError):
                    retry_after = exc.retry_after
                message = str(exc) or type(exc).__name__
                self._note_failure(message)
                if attempt >= self.settings.retry_attempts or self._closing:
                    stats.state = "down"
                    await self._dead_letter(batch, spool_mod.REASON_RETRIES_EXHAUSTED, message)
                    return
                attempt += 1
                stats.retries_total += 1
                stats.state = "retrying"
                await asyncio.sleep(retry_delay(attempt, retry_after))
                continue
            self._delivered(batch, (time.perf_counter() - started) * 1000.0)
            return

    def _delivered(self, batch: list[Item], latency_ms: float) -> None:
        stats = self.stats
        count = len(batch)
        stats.delivered += count
        stats.in_flight -= count
        stats.batches_total += 1
        stats.observe_latency(latency_ms)
        stats.last_success_at = time.time()
        stats.state = "ok"
        self._settle(batch, DELIVERED)
        replayed = [item.spool_row for item in batch if item.spool_row is not None]
        if replayed:
            self._spawn(self._in_spool_thread(self.spool.ack, replayed))
        if self._spool_backlog and not self._closing:
            self.start_replay()

    def _note_failure(self, message: str) -> None:
        self.stats.failures_total += 1
        self.stats.last_error = message[:500]

    def _settle(self, batch: list[Item], status: str) -> None:
        for item in batch:
            if item.receipt is not None:
                item.receipt._resolve(status)

    async def _dead_letter(self, batch: list[Item], reason: str, error: str) -> None:
        """Move a batch to the spool; count it as dropped only if the spool refuses it."""
        stats = self.stats
        fresh = [item for item in batch if item.spool_row is None]
        replayed = [item.spool_row for item in batch if item.spool_row is not None]
        if replayed:  # already on disk: give the lease back (and demote if now rejected)
            await self._in_spool_thread(self.spool.release, replayed, error, reason)
        rows = [(item.event_id, item.event_json) for item in fresh]
        try:
            await self._in_spool_thread(self.spool.put, rows, reason, error)
        except SpoolFullError as exc:
            stats.in_flight -= len(fresh)
            stats.drop(DROP_SPOOL_FULL, len(fresh))
            self._settle(fresh, DROPPED)
            stats.dead_lettered_total += len(replayed)
            stats.in_flight -= len(replayed)
            logger.error(
                "dead letters dropped: %s",
                exc,
                extra={"component": "router", "destination": self.destination.name},
            )
            return
        stats.dead_lettered_total += len(batch)
        stats.in_flight -= len(batch)
        self._settle(fresh, SPOOLED)
        if reason in spool_mod.AUTO_REPLAY_REASONS:
            self._spool_backlog = True

    # --- spool replay -------------------------------------------------------------------------
    def start_replay(self, include_manual: bool = False) -> asyncio.Task[int]:
        if self._replay_task is None or self._replay_task.done():
            self._replay_task = asyncio.create_task(self.replay(include_manual))
        return self._replay_task

    async def replay(self, include_manual: bool = False) -> int:
        """Re-queue spooled events while there is room and the destination is up."""
        total = 0
        while not self._closing:
            room = self.settings.max_queue - self.queued()
            if room < self.settings.batch_size and room < self.settings.max_queue:
                await asyncio.sleep(0.01)
                continue
            limit = min(room, self.settings.batch_size * 4)
            rows = await self._in_spool_thread(self.spool.claim, limit, include_manual)
            if not rows:
                self._spool_backlog = False
                break
            now = asyncio.get_running_loop().time()
            for row in rows:
                self._requeue(row, now)
            total += len(rows)
            self.nudge()  # spooled events are already late: send them without waiting
            if self.stats.state == "down":
                break  # the probe batch failed again: wait for the next probe
        return total

    def _requeue(self, row: spool_mod.SpooledEvent, now: float) -> None:
        stats = self.stats
        stats.replayed_total += 1
        stats.in_flight += 1
        event = orjson.loads(row.event)
        try:
            prepared = self._prepare(event, row.event)
        except Exception as exc:
            item = Item(row.event_id, None, row.event, None, now, row.row_id)
            self._spawn(self._dead_letter([item], spool_mod.REASON_TRANSFORM_FAILED, repr(exc)))
            return
        self._enqueue(Item(row.event_id, prepared, row.event, None, now, row.row_id), event)

    async def refresh_spool_state(self) -> None:
        """Read the spool's depth (all processes) and probe a down destination now and then."""
        try:
            depth, replayable = await self._in_spool_thread(self._spool_counts)
        except Exception as exc:
            self._log_once("spool", f"spool unreadable for {self.destination.name}: {exc!r}")
            return
        self.stats.spooled = depth
        if replayable:
            self._spool_backlog = True
        now = time.monotonic()
        idle = self.queued() == 0
        if self._spool_backlog and idle and now - self._last_probe >= REPLAY_PROBE_INTERVAL_S:
            self._last_probe = now
            self.start_replay()

    def _spool_counts(self) -> tuple[int, int]:
        return self.spool.depth(), self.spool.replayable()

    # --- flush and shutdown -------------------------------------------------------------------
    async def flush(self, deadline: float) -> bool:
        """Send everything queued now; True if nothing is left in memory by ``deadline``."""
        loop = asyncio.get_running_loop()
        self._force += 1
        try:
            for lane in self._lanes:
                lane.wakeup.set()
            while self.queued() > 0 or self.stats.in_flight > 0:
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.002)
            return True
        finally:
            self._force -= 1

    async def close(self, deadline: float) -> None:
        """Flush until ``deadline``, then spool whatever is still in memory, then close."""
        await self.flush(deadline)
        self._closing = True
        for lane in self._lanes:
            lane.wakeup.set()
        tasks: list[asyncio.Task[Any]] = [lane.task for lane in self._lanes if lane.task]
        if self._replay_task is not None:
            tasks.append(self._replay_task)
        loop = asyncio.get_running_loop()
        _, still_running = await asyncio.wait(tasks, timeout=max(0.05, deadline - loop.time()))
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)
        leftover = [item for lane in self._lanes for item in (*lane.sending, *lane.pending)]
        leftover += self._overflow
        self._overflow = []
        for lane in self._lanes:
            lane.pending.clear()
            lane.sending = []
        if leftover:
            await self._dead_letter(leftover, spool_mod.REASON_SHUTDOWN, "shutdown")
        if self._overflow_task is not None:
            await asyncio.gather(self._overflow_task, return_exceptions=True)
        if self._opened:
            try:
                await self.destination.close()
            except Exception as exc:
                self._log_once("close", f"closing {self.destination.name} failed: {exc!r}")
        await self._in_spool_thread(self.spool.close)
        self._spool_thread.shutdown(wait=False)

    # --- helpers ------------------------------------------------------------------------------
    async def _in_spool_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._spool_thread, fn, *args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)

    _logged: set[str] = set()

    def _log_once(self, key: str, message: str) -> None:
        token = f"{self.destination.name}:{key}"
        if token not in self._logged:
            self._logged.add(token)
            logger.error(message, extra={"component": "router"})


_background: set[asyncio.Task[Any]] = set()
