"""The background router: its own thread and event loop, fed by a lock-free ingest deque.

``submit`` is the only part that runs on the caller's thread: a length check, a
``deque.append`` and, rarely, a wake-up. The router thread polls the deque on a short tick (a
wake-up per event would cost a pipe write each), and is woken early only when a batch is full,
when ``flush_interval_ms`` is 0, or when a caller waits for delivery.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..events import finalize_event
from ..transforms import to_json
from .receipt import DROPPED, Receipt
from .stats import DROP_BUFFER_OVERFLOW, DestinationStats, RuntimeStats
from .worker import DestinationWorker

logger = logging.getLogger("scr_middleware.router")

Event = dict[str, Any]
WorkerFactory = Callable[[], list[DestinationWorker]]
DRAIN_SLICE = 2000  # events fanned out before yielding to the loop so lanes keep sending
BACKLOG_PAUSE_S = 0.002  # wait while a spool is behind instead of spinning
PREPARE_FAILED = "prepare_failed"  # RuntimeStats.extraction_failures reason


class Router:
    def __init__(
        self,
        stats: RuntimeStats,
        build_workers: WorkerFactory,
        *,
        buffer_max_size: int,
        batch_size: int,
        flush_interval_ms: int,
        receipt_timeout_s: float,
        preprocess: Callable[[Event], Event] | None = None,
    ) -> None:
        self.stats = stats
        self.receipt_timeout_s = receipt_timeout_s
        self._build_workers = build_workers
        self._preprocess = preprocess
        self._max_ingest = buffer_max_size
        self._wake_at = batch_size
        self._immediate = flush_interval_ms == 0
        self._tick_s = min(0.05, max(0.002, flush_interval_ms / 4000.0))
        self.on_tick: list[Callable[[], None]] = []  # called on the router thread, ~1/s
        self.on_start: list[Callable[[], None]] = []  # called on the router thread at start
        self._reset()

    def _reset(self) -> None:
        self._ingest: deque[tuple[Event, float, Receipt | None]] = deque()
        self._ingest_dropped = 0
        self._lock = threading.Lock()
        self._idle = False
        self._started = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._ready = threading.Event()
        self._nudge_pending = False
        self._prepare_failure_logged = False
        self.workers: list[DestinationWorker] = []
        self.destination_stats: list[DestinationStats] = []

    # --- caller thread --------------------------------------------------------------------
    def submit(self, event: Event, captured_at: float, receipt: Receipt | None) -> bool:
        """Queue an event; False if the ingest buffer was full (the event is counted dropped)."""
        ingest = self._ingest
        if len(ingest) >= self._max_ingest:
            with self._lock:
                self._ingest_dropped += 1
            if receipt is not None:
                # Fix: expect before resolving; the other order left pending at -1, so the
                # receipt never settled and ``await`` waited out its whole timeout.
                receipt._expect(1)
                receipt._resolve(DROPPED)
            return False
        ingest.append((event, captured_at, receipt))
        if self._idle and (self._immediate or len(ingest) >= self._wake_at):
            self._wake()
        elif not self._started:
            self.start()
        return True

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        self._idle = False
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # loop closed during shutdown
            pass

    def nudge(self) -> None:
        """A caller waits for delivery: drain now and send partial batches."""
        loop = self._loop
        if loop is None:
            self._nudge_pending = True  # the router is still starting: nudge once it is up
            return
        try:
            loop.call_soon_threadsafe(self._nudge_workers)
        except RuntimeError:
            pass

    def _nudge_workers(self) -> None:
        self._drain()
        for worker in self.workers:
            worker.nudge()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._thread = threading.Thread(target=self._run, name="scr-router", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        if not self._started:
            self.start()
        return self._ready.wait(timeout) and self._loop is not None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except Exception:
            logger.exception("router stopped unexpectedly", extra={"component": "router"})
        finally:
            self._ready.set()
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wakeup = asyncio.Event()
        self.workers = self._build_workers()
        self.destination_stats = [worker.stats for worker in self.workers]
        await asyncio.gather(*(worker.start() for worker in self.workers))
        self._loop = loop
        for callback in self.on_start:
            try:
                callback()
            except Exception:
                logger.exception("router start callback failed", extra={"component": "router"})
        self._ready.set()
        if self._nudge_pending:
            self._nudge_pending = False
            self._nudge_workers()
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            await self._ingest_loop()
        finally:
            housekeeping.cancel()
            await asyncio.gather(housekeeping, return_exceptions=True)

    async def _ingest_loop(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            self._drain()
            if self._stopping:
                return
            if self._ingest:
                # Let the lanes send what was just fanned out; if a spool is behind, wait for
                # it (the ingest buffer absorbs the burst, and overflows counted, not unbounded).
                pause = BACKLOG_PAUSE_S if any(w.backlogged() for w in self.workers) else 0
                await asyncio.sleep(pause)
                continue
            self._idle = True
            if self._ingest:  # appended between the drain and setting _idle
                self._idle = False
                continue
            try:
                await asyncio.wait_for(wakeup.wait(), self._tick_s)
            except TimeoutError:
                pass
            wakeup.clear()
            self._idle = False

    def _drain(self) -> int:
        """Fan out up to DRAIN_SLICE ingested events; returns how many were taken."""
        ingest = self._ingest
        workers = self.workers
        if self._ingest_dropped:
            self._account_ingest_drops()
        if not ingest:
            return 0
        loop_time = asyncio.get_running_loop().time()
        preprocess = self._preprocess
        popleft = ingest.popleft
        count = 0
        while ingest and count < DRAIN_SLICE:
            if count % 256 == 0 and any(worker.backlogged() for worker in workers):
                break
            event, captured_at, receipt = popleft()
            count += 1
            try:
                finalize_event(event, captured_at)
                if preprocess is not None:
                    event = preprocess(event)
                event_json = to_json(event)  # once for every destination and the spool
            except Exception:
                # Fix: an exception here used to stop the router thread for good (every later
                # event silently lost). Count it, log it, settle the receipt, carry on.
                self._prepare_failed(receipt)
                continue
            expected = 0
            for worker in workers:
                expected += worker.offer(event, event_json, receipt, loop_time)
            if receipt is not None:
                receipt._expect(expected)
        self.stats.captured += count
        return count

    def _prepare_failed(self, receipt: Receipt | None) -> None:
        self.stats.extraction_failed(PREPARE_FAILED)
        if receipt is not None:
            receipt._expect(1)
            receipt._resolve(DROPPED)
        if not self._prepare_failure_logged:
            self._prepare_failure_logged = True
            logger.exception(
                "event dropped: finalize/preprocess failed", extra={"component": "router"}
            )

    def _account_ingest_drops(self) -> None:
        with self._lock:
            dropped, self._ingest_dropped = self._ingest_dropped, 0
        self.stats.captured += dropped
        for worker in self.workers:
            worker.stats.captured += dropped
            worker.stats.drop(DROP_BUFFER_OVERFLOW, dropped)
        logger.error(
            "ingest buffer full: %d events dropped (router cannot keep up)",
            dropped,
            extra={"component": "router"},
        )

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for worker in self.workers:
                await worker.refresh_spool_state()
            for callback in self.on_tick:
                try:
                    callback()
                except Exception:
                    logger.exception("housekeeping callback failed", extra={"component": "router"})

    # --- flush, replay, shutdown (any thread but the router's) ----------------------------
    def _call(self, coro_fn: Callable[[], Any], timeout: float | None) -> Any:
        if self._started and self._loop is None:
            self._ready.wait(10.0)
        loop = self._loop
        if loop is None or not self.running:
            return None
        if threading.current_thread() is self._thread:
            raise RuntimeError("flush/shutdown cannot be called from the router thread")
        future = asyncio.run_coroutine_threadsafe(coro_fn(), loop)
        try:
            return future.result(None if timeout is None else timeout + 1.0)
        except concurrent.futures.TimeoutError:
            return None

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver (or spool) everything captured so far; True if done within ``timeout``."""
        if not self._started:
            return True
        budget = 30.0 if timeout is None else timeout
        return bool(self._call(lambda: self._flush_async(budget), budget))

    async def aflush(self, timeout: float | None = None) -> bool:
        if self._started and self._loop is None:
            await asyncio.to_thread(self._ready.wait, 10.0)
        loop = self._loop
        if loop is None or not self.running:
            return True
        budget = 30.0 if timeout is None else timeout
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            self._flush_async(budget), loop
        )
        try:
            return bool(await asyncio.wait_for(asyncio.wrap_future(future), budget + 1.0))
        except TimeoutError:
            return False

    async def _flush_async(self, budget: float) -> bool:
        deadline = asyncio.get_running_loop().time() + budget
        await self._drain_all()
        results = await asyncio.gather(*(worker.flush(deadline) for worker in self.workers))
        return all(results)

    async def _drain_all(self) -> None:
        """Fan out everything ingested. While a spool is behind, _drain() takes nothing:
        wait for it rather than spin (the spin starved the host's threads of the GIL)."""
        while self._ingest:
            pause = 0 if self._drain() else BACKLOG_PAUSE_S
            await asyncio.sleep(pause)

    def replay(self, include_manual: bool, timeout: float) -> dict[str, int]:
        """Re-deliver what each destination's spool holds (``scr replay``)."""
        if not self._started:
            self.start()
        result = self._call(lambda: self._replay_async(include_manual, timeout), timeout)
        return result if isinstance(result, dict) else {}

    async def _replay_async(self, include_manual: bool, budget: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.destination.name] = await worker.replay(include_manual)
        await self._flush_async(budget)
        return counts

    def shutdown(self, timeout: float | None = None) -> None:
        if not self._started or self._thread is None:
            return
        budget = 10.0 if timeout is None else timeout
        if self.running:
            self._call(lambda: self._shutdown_async(budget), budget)
        self._thread.join(budget + 1.0)

    async def _shutdown_async(self, budget: float) -> None:
        deadline = asyncio.get_running_loop().time() + budget
        await self._drain_all()
        await asyncio.gather(*(worker.close(deadline) for worker in self.workers))
        for callback in self.on_tick:
            try:
                callback()
            except Exception:
                logger.exception("final metrics sync failed", extra={"component": "router"})
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()

    def after_fork_in_child(self) -> None:
        """The child gets a fresh router: what the parent buffered is the parent's to deliver."""
        self._reset()

    # --- introspection ----------------------------------------------------------------------
    def ingest_size(self) -> int:
        return len(self._ingest)

    def local_backlog(self) -> int | None:
        """None unless a local destination (``Destination.local``) that is delivering has
        half its queue or more waiting; else how many events those have delivered so far,
        so that a caller waiting for them can tell progress from a stall."""
        behind = [worker.stats.delivered for worker in self.workers if worker.local_backlog()]
        return sum(behind) if behind else None

    def snapshot(self) -> Sequence[DestinationStats]:
        return self.destination_stats

    def spool_paths(self) -> dict[str, str]:
        return {worker.destination.name: str(worker.spool.path) for worker in self.workers}

    def wait_idle(self, timeout: float) -> bool:
        """For tests and the CLI: wait until nothing is queued or in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self._ingest or any(s.in_flight for s in self.destination_stats)
            if not busy:
                return True
            time.sleep(0.005)
        return False
