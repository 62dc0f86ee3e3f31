"""The app-process side of out-of-process capture: ``Offloader``.

``put`` appends a record to a list. Every ``SHIP_BATCH`` records, or once the oldest waiting
record is ``SHIP_AFTER_S`` old, the request that notices marshals the list into one frame and
writes it to the capture process's socket without blocking: no thread of ours runs on the
request path's behalf, because on a busy machine every hand-over of the GIL to another thread
costs the app far more than the write itself (measured: a shipper thread waking every 5 ms
cut uvicorn's throughput by a third; see docs/offload.md). A ticker thread, waking a few
times a second, ships what a quiet app left waiting, starts and restarts the capture process
and answers ``flush()``.

Nothing is dropped. What was sent stays in ``_unacked`` until the capture process
acknowledges it, so a capture process that dies is restarted and sent it again (events keep
their ids, so destinations deduplicate what it had already delivered). While the capture
process is unavailable or behind (``max_pending`` records waiting: the socket takes no more),
``put`` returns False and the adapter replays the record in the app process: the app
then pays the inline cost, which slows it down instead of losing events. Records ``marshal``
cannot encode are replayed in the app process too.
"""

from __future__ import annotations

import itertools
import logging
import marshal
import os
import pickle
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from scr_middleware.observability.logs import log_once

from . import wire
from .record import Record

if TYPE_CHECKING:
    from scr_middleware.config_model import Config, MiddlewareConfig

__all__ = ["OffloadStats", "Offloader", "can_spawn"]

logger = logging.getLogger("scr_middleware.offload")

SHIP_BATCH: Final = 64  # records per frame on a busy app
# At most this many records go into one frame: marshalling holds the GIL (~1 us a record).
FRAME_MAX_RECORDS: Final = 256
# The request path writes at most this many frames per call, however long the backlog.
SHIP_MAX_FRAMES: Final = 4
TICK_S: Final = 0.05  # the ticker: ships what a quiet app left, restarts the capture process
SOCKET_BUFFER_BYTES: Final = 4 * 1024 * 1024  # asked for; the kernel may grant less
READY_TIMEOUT_S: Final = 30.0
MAX_SPAWNS_PER_MINUTE: Final = 5
WORKER_SHUTDOWN_TIMEOUT_S: Final = 5.0

Fallback = Callable[[Record, str], None]  # (record, its event id)


def can_spawn() -> bool:
    """A capture process needs a Python interpreter to start (``sys.executable`` is the
    server's binary under embedded interpreters such as uWSGI) and POSIX sockets."""
    name = os.path.basename(sys.executable or "")
    return sys.platform != "win32" and name.startswith(("python", "pypy"))


@dataclass(slots=True)
class OffloadStats:
    """Plain ints: written on the request path and the ticker thread, read by /health."""

    recorded: int = 0  # accepted by put()
    shipped: int = 0  # records written to a capture process
    acknowledged: int = 0  # records a capture process captured
    resent: int = 0  # records sent again to a restarted capture process
    inline: int = 0  # records replayed in the app process (unavailable, backlog, marshal)
    spawns: int = 0
    # scr_extraction_failures_total{reason} as counted by the capture process (its own
    # metrics serve them; kept here for /health and the app's own checks)
    extraction_failures: dict[str, int] = field(default_factory=dict)
    state: str = "idle"  # idle | starting | running | restarting | unavailable | closed
    pid: int | None = None  # the capture process

    def snapshot(self, pending: int) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "pending": pending,
            "recorded": self.recorded,
            "shipped": self.shipped,
            "acknowledged": self.acknowledged,
            "resent": self.resent,
            "inline": self.inline,
            "spawns": self.spawns,
            "extraction_failures": dict(self.extraction_failures),
        }


@dataclass(slots=True)
class _FlushWaiter:
    """One ``flush()`` call: its timeout, whether its request went out, and the answer."""

    timeout: float
    sent: bool = False
    ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Offloader:
    """Ships recorded exchanges to one capture process, started on the first record."""

    def __init__(self, config: Config, *, max_pending: int = 10_000) -> None:
        self._config = config
        self._max_pending = max_pending
        self.stats = OffloadStats()
        self._settings: dict[int, MiddlewareConfig] = {}
        self._fallbacks: dict[int, Fallback] = {}
        self._available = can_spawn()
        if not self._available:
            self.stats.state = "unavailable"
        self._closing = False
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Fresh per-process state (at construction, and in a forked child)."""
        self._pending: deque[Record] = deque()  # append (request path) / popleft: atomic
        # The request path ships when this many records wait: SHIP_BATCH, and SHIP_BATCH
        # more after an attempt the socket could not take (no syscall per request then).
        self._ship_at = SHIP_BATCH
        # The event id of a record is this prefix + its sequence number (events.unique_id's
        # format): unique across processes, and the same if the record is sent again.
        self._id_prefix = secrets.token_hex(6)
        self.next_seq: Callable[[], int] = itertools.count().__next__
        self._batches = itertools.count()
        self._unacked: deque[tuple[int, int, bytes]] = deque()  # (batch, records, frame)
        self._outbox = bytearray()  # frame bytes the socket did not take yet
        self._inbox = bytearray()  # partial frames from the capture process
        self._remote_seen: dict[str, int] = {}  # failure counts of the current process
        self._flush_waiters: dict[int, _FlushWaiter] = {}  # by token
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()  # the socket, the outbox and the unacked window
        self._wake = threading.Event()
        self._ticker: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._spawn_times: deque[float] = deque(maxlen=MAX_SPAWNS_PER_MINUTE)

    # --- the request path -------------------------------------------------------------------
    def register(self, middleware: MiddlewareConfig, fallback: Fallback) -> int:
        """A middleware instance's settings (sent to the capture process, which compiles
        them) and how to replay its records here; returns the key its records carry."""
        pickle.dumps(middleware)  # fails now, at start-up, if it cannot travel
        with self._lock:
            key = len(self._settings)
            self._settings[key] = middleware
            self._fallbacks[key] = fallback
            if self._sock is not None:
                self._queue_frame(wire.SETTINGS, pickle.dumps((key, middleware)))
        return key

    def put(self, record: Record) -> bool:
        """Queue a record for the capture process; False: replay it in the app process."""
        pending = self._pending
        size = len(pending)
        if size >= self._max_pending or not self._available or self._closing:
            # (closing: shut down, so the runtime counts it as captured after shutdown)
            self.stats.inline += 1
            return False
        pending.append(record)
        self.stats.recorded += 1
        if size >= self._ship_at:
            self._ship()
        elif self._ticker is None:
            self._start()
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    # --- shipping (request path: never blocks; the ticker's _push may) -----------------------
    def _ship(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # someone else is shipping: they take these records too, or the ticker does
        shipped = False
        try:
            sock = self._sock
            if sock is None:
                return  # starting or restarting: the ticker ships once it is up
            self._read_replies(sock)
            shipped = self._drain_outbox(sock)
            frames = 0
            # While the socket takes them: the capture process keeps up. Else records wait
            # in the deque (and beyond max_pending go inline).
            while shipped and self._pending and frames < SHIP_MAX_FRAMES:
                self._frame_pending()
                frames += 1
                shipped = self._drain_outbox(sock)
            shipped = shipped and not self._pending
        except OSError:
            self._lost()
        finally:
            self._ship_at = SHIP_BATCH if shipped else len(self._pending) + SHIP_BATCH
            self._lock.release()

    def _frame_pending(self) -> None:
        """Move up to ``FRAME_MAX_RECORDS`` pending records into one frame in the outbox
        (lock held)."""
        records = self._take_pending(FRAME_MAX_RECORDS)
        batch = next(self._batches)
        try:
            payload = marshal.dumps((batch, records))
        except ValueError:  # something marshal cannot encode: replay it here, ship the rest
            shippable = []
            for record in records:
                try:
                    marshal.dumps(record)
                    shippable.append(record)
                except ValueError:
                    self._replay_here([record])
            records = shippable
            payload = marshal.dumps((batch, records))
        frame = wire.HEADER.pack(wire.RECORDS, len(payload)) + payload
        self._unacked.append((batch, len(records), frame))
        self._outbox += frame
        self.stats.shipped += len(records)

    def _queue_frame(self, kind: int, payload: bytes) -> None:
        self._outbox += wire.HEADER.pack(kind, len(payload)) + payload

    def _drain_outbox(self, sock: socket.socket) -> bool:
        """Write what the socket takes without blocking; True when all of it went."""
        outbox = self._outbox
        while outbox:
            try:
                sent = sock.send(outbox)
            except BlockingIOError:
                return False
            del outbox[:sent]
        return True

    def _read_replies(self, sock: socket.socket) -> None:
        """Acknowledgements and flush answers that arrived, without blocking."""
        inbox = self._inbox
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            if not data:
                raise ConnectionResetError("the capture process closed its socket")
            inbox += data
        header = wire.HEADER.size
        while len(inbox) >= header:
            kind, length = wire.HEADER.unpack_from(inbox)
            if len(inbox) < header + length:
                break
            payload = bytes(inbox[header : header + length])
            del inbox[: header + length]
            if kind == wire.ACK:
                batch, failures = marshal.loads(payload)
                if failures is not None:
                    self._remote_failures(failures)
                unacked = self._unacked
                while unacked and unacked[0][0] <= batch:
                    self.stats.acknowledged += unacked.popleft()[1]
            elif kind == wire.FLUSHED:
                token, ok = marshal.loads(payload)
                waiter = self._flush_waiters.get(token)
                if waiter is not None:
                    waiter.ok = ok
                    waiter.done.set()

    def _remote_failures(self, counts: dict[str, int]) -> None:
        """The capture process's failure counts since it started: add what is new."""
        previous = self._remote_seen
        totals = self.stats.extraction_failures
        for reason, count in counts.items():
            totals[reason] = totals.get(reason, 0) + count - previous.get(reason, 0)
        self._remote_seen = counts

    # --- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._ticker is not None or self._closing:
                return
            self.stats.state = "starting"
            self._ticker = threading.Thread(target=self._tick_loop, name="scr-offload", daemon=True)
            self._ticker.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Ship what is pending and wait until the capture process captured it and flushed
        its router (``SessionCompletionRuntime.flush`` there). True when it did in time."""
        if self._ticker is None or not self._available:
            return not self._pending
        wait = 3600.0 if timeout is None else timeout
        token = next(self._tokens)
        waiter = _FlushWaiter(wait)
        self._flush_waiters[token] = waiter
        self._wake.set()
        try:
            waiter.done.wait(wait + 1.0)
        finally:
            self._flush_waiters.pop(token, None)
        return waiter.ok

    def close(self, timeout: float = WORKER_SHUTDOWN_TIMEOUT_S) -> None:
        """Ship what is pending, then end the capture process's input: it captures the rest,
        shuts its runtime down (delivering what it holds, within its own timeout) and exits.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            ticker = self._ticker
        self._wake.set()
        if ticker is not None:
            ticker.join(timeout + READY_TIMEOUT_S)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout + WORKER_SHUTDOWN_TIMEOUT_S)
                _forget_metrics(proc.pid)
            except subprocess.TimeoutExpired:
                log_once(
                    logger, "offload-close-timeout", logging.WARNING,
                    f"capture process {proc.pid} did not finish in time; it keeps delivering"
                    " alone", component="offload",
                )  # fmt: skip
        self._replay_here(self._take_pending())  # the capture process never took these
        self.stats.state = "closed"
        _live.discard(self)

    def abandon_after_fork(self) -> None:
        """In a forked child: the socket and records are the parent's; forget them."""
        sock = self._sock
        if sock is not None:
            try:
                sock.close()  # this copy only: the parent's connection stays open
            except OSError:
                pass
        self._reset()
        self.stats = OffloadStats(state="idle" if self._available else "unavailable")

    def _take_pending(self, limit: int | None = None) -> list[Record]:
        # popleft, not a swap of lists: a put on another thread may hold the list it read.
        pending = self._pending
        count = len(pending) if limit is None else min(limit, len(pending))
        return [pending.popleft() for _ in range(count)]

    # --- the ticker thread --------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while True:
            # While a flush() waits for its answer, look for it often.
            self._wake.wait(0.002 if self._flush_waiters else TICK_S)
            self._wake.clear()
            closing = self._closing
            try:
                if self._sock is None and not self._restart():
                    if closing or not self._available:
                        self._replay_here(self._take_pending())
                        self._fail_flushes()
                        return
                    continue
                self._send_flush_requests()
                self._push()
            except OSError:
                with self._lock:
                    self._lost()
                continue
            except Exception:  # a bug: never let the thread die silently
                logger.exception("offload ticker failed", extra={"component": "offload"})
                continue
            if closing and not self._pending and not self._outbox:
                sock = self._sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return

    def _send_flush_requests(self) -> None:
        with self._lock:
            if self._sock is None or not self._flush_waiters:
                return
            if self._pending:  # what was put before flush() goes before its request
                self._frame_pending()
            for token, waiter in list(self._flush_waiters.items()):
                if not waiter.sent:
                    waiter.sent = True
                    self._queue_frame(wire.FLUSH, marshal.dumps((token, waiter.timeout)))

    def _push(self) -> None:
        """Ticker: write the outbox, waiting for the socket (GIL released) up to a tick."""
        deadline = time.monotonic() + TICK_S
        while True:
            with self._lock:
                sock = self._sock
                if sock is None:
                    return
                self._read_replies(sock)
                drained = self._drain_outbox(sock)
                if drained and self._pending:
                    self._frame_pending()
                    continue  # (the lock is let go between frames: the app may ship too)
                if drained:
                    # All out: the request path ships again from the next SHIP_BATCH. (It had
                    # stopped trying while the socket was full or the capture process was
                    # starting; left at that mark, every later record waited for this thread,
                    # and shipping from it costs the app GIL hand-offs, not just the write.)
                    self._ship_at = SHIP_BATCH
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([], [sock], [], left)

    def _fail_flushes(self) -> None:
        for waiter in list(self._flush_waiters.values()):
            waiter.done.set()

    # --- the capture process ----------------------------------------------------------------
    def _restart(self) -> bool:
        """Ticker: reap a capture process that was lost, start one; False if none runs."""
        proc = self._proc
        if proc is not None:
            self._proc = None
            self._reap(proc)
            log_once(
                logger, f"offload-lost-{proc.pid}", logging.WARNING,
                f"capture process {proc.pid} exited (code {proc.returncode}); restarting it"
                f" and re-sending {len(self._unacked)} unacknowledged batches",
                component="offload",
            )  # fmt: skip
        if self._closing and not self._pending and not self._unacked:
            return False
        return self._spawn()

    def _spawn(self) -> bool:
        """Start a capture process (rate-limited); False when it cannot be started now."""
        now = time.monotonic()
        spawns = self._spawn_times
        if len(spawns) == spawns.maxlen and now - spawns[0] < 60.0:
            self._give_up(f"it was started {len(spawns)} times within a minute")
            return False
        spawns.append(now)
        ours, theirs = socket.socketpair()
        for end, option in ((ours, socket.SO_SNDBUF), (theirs, socket.SO_RCVBUF)):
            try:
                end.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            except OSError:
                pass
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scr_middleware.offload.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            self._give_up(f"cannot start it: {exc}")
            return False
        finally:
            theirs.close()
        self.stats.spawns += 1
        init = {
            "config": self._config,
            "sys_path": [entry or os.getcwd() for entry in sys.path],
            "id_prefix": self._id_prefix,
            "shutdown_timeout_s": WORKER_SHUTDOWN_TIMEOUT_S,
            "priority": self._config.middleware.offload_priority,
        }
        try:
            wire.send_frame(ours, wire.INIT, pickle.dumps(init))
            ours.settimeout(READY_TIMEOUT_S)
            frame = wire.FrameReader(ours).read()
            if frame is None or frame[0] != wire.READY:
                raise OSError("it exited before it was ready")
            ours.setblocking(False)
        except OSError as exc:
            ours.close()
            self._reap(proc)
            log_once(
                logger, "offload-start-failed", logging.ERROR,
                f"capture process did not start: {exc} (events are captured in the app"
                " process meanwhile)", component="offload",
            )  # fmt: skip
            return False
        with self._lock:
            self._proc = proc
            self.stats.pid = proc.pid
            self._inbox.clear()
            self._outbox.clear()
            self._remote_seen = {}
            for key, middleware in self._settings.items():
                self._queue_frame(wire.SETTINGS, pickle.dumps((key, middleware)))
            for _batch, count, frame_bytes in self._unacked:  # what the previous one left
                self._outbox += frame_bytes
                self.stats.resent += count
            for waiter in self._flush_waiters.values():
                waiter.sent = False  # asked of the previous process: ask this one
            self._sock = ours
            self.stats.state = "running"
        return True

    def _lost(self) -> None:
        """The capture process died or its socket broke (lock held; never blocks: it may
        run on the request path). The ticker reaps it, starts another and sends that one
        what was not acknowledged."""
        sock = self._sock
        self._sock = None
        if sock is None:
            return
        self.stats.state = "restarting"
        self.stats.pid = None
        try:
            sock.close()
        except OSError:
            pass
        self._wake.set()

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _forget_metrics(proc.pid)

    def _give_up(self, why: str) -> None:
        """Capture continues in the app process, for good (logged once)."""
        self._available = False
        self.stats.state = "unavailable"
        log_once(
            logger, "offload-unavailable", logging.ERROR,
            f"capture process unavailable ({why}): events are captured in the app process",
            component="offload",
        )  # fmt: skip
        with self._lock:
            unacked = list(self._unacked)
            self._unacked.clear()
        for _batch, _count, frame in unacked:  # sent, never acknowledged: replay here
            _kind, length = wire.HEADER.unpack_from(frame)
            _seq, records = marshal.loads(frame[wire.HEADER.size : wire.HEADER.size + length])
            self._replay_here(records)

    def _replay_here(self, records: list[Record]) -> None:
        """Replay in the app process, under the ids a capture process would have given
        them: one that died may have delivered some already, and destinations dedupe."""
        prefix = f"evt_{self._id_prefix}"
        for record in records:
            fallback = self._fallbacks.get(record[0])
            if fallback is not None:
                self.stats.inline += 1
                fallback(record, f"{prefix}{record[1]:08x}")


def _forget_metrics(pid: int) -> None:
    """Under Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR, inherited by the
    capture process) a dead process's live gauges must go, as gunicorn's child_exit hook
    does for workers."""
    from scr_middleware.observability.metrics import mark_process_dead

    mark_process_dead(pid)


_live: weakref.WeakSet[Offloader] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for offloader in list(_live):
        offloader.abandon_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
