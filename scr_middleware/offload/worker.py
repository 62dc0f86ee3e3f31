"""The capture process: ``python -m scr_middleware.offload.worker FD``.

Started by an ``Offloader`` with one end of a socket pair as ``FD``. It reads the app
process's configuration (INIT), the middleware settings (SETTINGS), then batches of records
(RECORDS): each is replayed through an ``Observer`` (``record.replay``) and the event captured
into this process's own runtime and router, which deliver it, serve the metrics and health
ports and keep the spools. Each batch is acknowledged once all its records are captured, so
an app process can re-send what a capture process that died had not acknowledged.

It ignores SIGINT and SIGTERM (a terminal's or a supervisor's signal to the whole group):
it stops when its app process closes the socket, or dies, and then drains and shuts its
runtime down, delivering what it holds.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import logging
import marshal
import os
import pickle
import signal
import socket
import sys
import termios
import time
from typing import Any

from . import wire

logger = logging.getLogger("scr_middleware.offload")

GC_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
# Once it has read everything, wait this long before reading again, so records arrive in
# bursts of hundreds rather than frames of 64: fewer wake-ups of every thread, bigger ledger
# batches. Measured at 18k records/s: about 15% less CPU per event. The socket buffer holds
# several thousand records, and delivery waits for flush_interval_ms (1 s) anyway.
COALESCE_S = 0.025
WORKER_NICE = 19  # offload_priority low, and idle's fallback
# IntakePacer: how often to look at a local destination that is behind, and how long it
# may deliver nothing before it counts as stalled (its overflow then goes to its spool).
LOCAL_WAIT_S = 0.002
LOCAL_STALL_S = 5.0
# ... and only while the socket holds less than this unread: past it the app process is
# close to replaying records itself, which costs it far more than a spooled event costs us.
UNREAD_LIMIT_BYTES = 4 * 1024 * 1024


class IntakePacer:
    """How the capture process waits before it replays a batch of records.

    It never overflows the router's ingest buffer (that would drop events): it waits until
    that has room for a batch. Meanwhile the socket fills and the app process replays records
    itself, which is the back-pressure (docs/offload.md).

    Nor does it outrun a local destination (the ledger, files) while that delivers: past its
    queue its events would overflow into its spool, written twice and read back later
    (measured with records arriving faster than the capture process took them: 40-60% of
    the events spooled at 45-49 us of CPU per event before; 0-19% at 38-45 us now). A remote
    destination that is slow or down still overflows into its spool (it must never hold the
    others up), and so does a local one that delivered nothing for ``LOCAL_STALL_S``: it is
    not waited for again until it delivers. Nor is any while the app process's records pile
    up in the socket (``UNREAD_LIMIT_BYTES``): the spool absorbs a burst that would otherwise
    push the app into replaying records itself."""

    __slots__ = ("_limit", "_router", "_sock", "_stalled_at")

    def __init__(self, runtime: Any, sock: socket.socket) -> None:
        self._router = runtime.router
        self._sock = sock
        self._limit = max(1, runtime.config.capture.buffer_max_size // 2)
        self._stalled_at: int | None = None  # local_backlog() when the wait last gave up

    def wait(self) -> None:
        router = self._router
        progress: int | None = None
        since = 0.0
        while router.running:
            if router.ingest_size() >= self._limit:
                time.sleep(0.001)
                continue
            delivered = router.local_backlog()
            if delivered is None or delivered == self._stalled_at or self._app_waiting():
                return
            now = time.monotonic()
            if delivered != progress:
                progress, since = delivered, now
            elif now - since > LOCAL_STALL_S:
                self._stalled_at = delivered
                return
            time.sleep(LOCAL_WAIT_S)

    def _app_waiting(self) -> bool:
        try:
            unread = array.array("i", [0])
            fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, unread)
        except OSError:
            return False
        return unread[0] >= UNREAD_LIMIT_BYTES


class _Replies:
    """Answers to the app process. Once it is gone (killed), sending fails: the records
    it wrote before are still in the socket, so reading goes on to the end of the stream
    and every one of them is captured and delivered; only the answers stop."""

    __slots__ = ("_gone", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._gone = False

    def send(self, kind: int, payload: bytes) -> None:
        if self._gone:
            return
        try:
            wire.send_frame(self._sock, kind, payload)
        except OSError:
            self._gone = True


def set_priority(priority: str) -> None:
    """``middleware.offload_priority``, for this process and the threads it starts later.
    ``idle``: ``SCHED_IDLE`` where the OS has it (Linux), so that it runs only on CPU time the
    app and its neighbours leave and is preempted as soon as they wake, and nice 19 (the
    fallback, and what ``ps`` shows). ``low``: nice 19 only. ``normal``: the app's priority.
    Measured under gunicorn with two workers on two cores: 0.93x-0.95x of the bare app's
    throughput with ``idle``, 0.88x with ``low`` (docs/benchmarks.md)."""
    if priority == "normal":
        return
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    if priority != "idle":
        return
    set_policy = getattr(os, "sched_setscheduler", None)
    idle = getattr(os, "SCHED_IDLE", None)
    if set_policy is not None and idle is not None:
        with contextlib.suppress(OSError):
            set_policy(0, idle, os.sched_param(0))


def serve(sock: socket.socket) -> int:
    from scr_middleware import runtime as runtime_mod
    from scr_middleware.extract.failsafe import StatsOf
    from scr_middleware.extract.settings import ObserverSettings

    from .record import replay_failsafe

    reader = wire.FrameReader(sock)
    frame = reader.read()
    if frame is None or frame[0] != wire.INIT:
        return 2
    # {"config": Config, "sys_path": [...], "id_prefix": str, "shutdown_timeout_s": float}
    init: dict[str, Any] = pickle.loads(frame[1])  # from our own app process
    set_priority(init["priority"])
    for entry in reversed(init["sys_path"]):  # custom extractors, transforms, identity callables
        if entry not in sys.path:
            sys.path.insert(0, entry)
    runtime = runtime_mod.SessionCompletionRuntime(config=init["config"])
    runtime_mod._set_shared(runtime)  # get_runtime() in user code: this process's runtime
    runtime.start()
    # This interpreter is ours: what start-up built lives as long as the process, and the
    # events passing through are acyclic, freed by reference counting. Fewer collections
    # (measured: 3% fewer instructions per event).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    wire.send_frame(sock, wire.READY, marshal.dumps(os.getpid()))
    settings: dict[int, Any] = {}
    stats = StatsOf(runtime)
    emit, emit_built = runtime.capture_nowait, runtime.capture_built
    prefix = f"evt_{init['id_prefix']}"
    reported: dict[str, int] = {}  # the extraction failures the app process was last told
    replies = _Replies(sock)
    pacer = IntakePacer(runtime, sock)
    try:
        while True:
            if not reader.ready():
                time.sleep(COALESCE_S)
            frame = reader.read()
            if frame is None:
                break
            kind, payload = frame
            if kind == wire.RECORDS:
                batch, records = marshal.loads(payload)
                pacer.wait()
                for record in records:
                    observer_settings = settings.get(record[0])
                    if observer_settings is not None:
                        replay_failsafe(
                            record, observer_settings, emit, emit_built, stats,
                            event_id=f"{prefix}{record[1]:08x}",
                        )  # fmt: skip
                failures = runtime.stats.extraction_failures
                news = None
                if failures != reported:
                    news = reported = dict(failures)
                replies.send(wire.ACK, marshal.dumps((batch, news)))
            elif kind == wire.SETTINGS:
                key, middleware_config = pickle.loads(payload)
                settings[key] = ObserverSettings.from_config(middleware_config)
            elif kind == wire.FLUSH:
                token, timeout = marshal.loads(payload)
                ok = runtime.flush(timeout)
                replies.send(wire.FLUSHED, marshal.dumps((token, ok)))
    except OSError:  # the socket broke while reading: deliver what was captured
        pass
    finally:
        runtime.shutdown(init["shutdown_timeout_s"])
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m scr_middleware.offload.worker FD", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(argv[1]))
    with contextlib.closing(sock):
        return serve(sock)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
