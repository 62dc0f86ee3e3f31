"""``SessionCompletionRuntime``: capture on the caller's thread, delivery on the router's.

One process-wide runtime (``get_runtime()``) is fed by every middleware and integration; it
is built lazily from env + config on first use, survives ``fork()`` (the child starts its own
router; what the parent buffered stays the parent's), and flushes at interpreter exit.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import load_config
from .config_model import Config, DestinationConfig
from .errors import InvalidEventError
from .events import normalize_built, normalize_event
from .monitoring import RuntimeMonitoring, setup_logging
from .observability.logs import log_once
from .router.receipt import DISABLED, DROPPED, Receipt, settled_receipt
from .router.router import Router
from .router.spool import Spool
from .router.stats import DestinationStats, RuntimeStats
from .router.worker import DestinationWorker, WorkerSettings

if TYPE_CHECKING:
    from .offload import Offloader

logger = logging.getLogger("scr_middleware.runtime")

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Config | None
SHUTDOWN_TIMEOUT_S = 5.0
DEFAULT_LEDGER = "ledger.sqlite3"


def default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "scr-middleware"


def resolve_data_dir(config: Config) -> Path:
    return (
        Path(config.storage.data_dir).expanduser()
        if config.storage.data_dir
        else (default_data_dir())
    )


def effective_destinations(config: Config) -> tuple[DestinationConfig, ...]:
    """The destinations that will run: remote SCR service, configured list, or the ledger."""
    if config.endpoint:
        url = config.endpoint.rstrip("/")
        if not url.endswith("/v1/events"):
            url += "/v1/events"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        return (
            DestinationConfig(
                name="scr",
                endpoint=url,
                transform="canonical",
                retry_attempts=3,
                timeout_ms=max(config.timeout_ms, 1000),
                headers=headers,
            ),
        )
    if config.destinations:
        return config.destinations
    ledger = resolve_data_dir(config) / DEFAULT_LEDGER
    return (DestinationConfig(name="ledger", endpoint=f"sqlite:///{ledger}"),)


class SessionCompletionRuntime:
    """Capture ``session.completed`` events and route them to destinations.

    ``config`` is a YAML path, a dict with the YAML's structure, or None (env + defaults);
    ``overrides`` are section dicts (``capture={...}``) or flat keys (``batch_size=1``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        config: ConfigSource = None,
        **overrides: Any,
    ) -> None:
        self.config = load_config(config, overrides=overrides, api_key=api_key, endpoint=endpoint)
        self.stats = RuntimeStats()
        self._enabled = self.config.capture.enabled
        self.destinations = effective_destinations(self.config)
        self._transforms, self._preprocess = self._validate_plan()
        self.data_dir = resolve_data_dir(self.config)
        self._router = self._new_router()
        self._waitable = None if self.config.optimization.async_mode else self._router
        self._pid = os.getpid()
        self._closed = False
        self._observability: RuntimeMonitoring | None = None
        self._offloader: Offloader | None = None
        self._offload_lock = threading.Lock()
        if self._enabled:
            setup_logging(self.config.monitoring.log_level, self.config.monitoring.log_format)
            self._attach_monitoring()
            self._log_startup()
        _live_runtimes.add(self)

    # --- construction ---------------------------------------------------------------------
    def _validate_plan(self) -> tuple[list[Any], Any]:
        """Resolve endpoints, transforms and PII settings now: a bad one is a ConfigError at
        start-up, never a half-started runtime."""
        from .destinations.registry import validate_destination, validate_endpoint
        from .transforms import load_transform

        transforms = []
        configured = not self.config.endpoint and bool(self.config.destinations)
        for index, destination in enumerate(self.destinations):
            prefix = f"destinations[{index}]" if configured else "endpoint"
            if configured:
                # Fix: the whole destination (format, headers and their ${VARS}, TLS files),
                # not only its endpoint, so a typo stops start-up instead of every send.
                validate_destination(destination, prefix)
            else:
                validate_endpoint(destination.endpoint, prefix)
            transforms.append(load_transform(destination.transform, f"{prefix}.transform"))
        preprocess = None
        if self.config.pii.enabled:
            from .pii import PiiScrubber

            preprocess = PiiScrubber(self.config.pii)
        return transforms, preprocess

    def _new_router(self) -> Router:
        capture = self.config.capture
        return Router(
            self.stats,
            self._build_workers,
            buffer_max_size=capture.buffer_max_size,
            batch_size=min(d.batch_size or capture.batch_size for d in self.destinations),
            flush_interval_ms=min(
                capture.flush_interval_ms if d.flush_interval_ms is None else d.flush_interval_ms
                for d in self.destinations
            ),
            receipt_timeout_s=self.config.timeout_ms / 1000.0,
            preprocess=self._preprocess,
        )

    def _build_workers(self) -> list[DestinationWorker]:
        """Runs on the router thread at start (and again in a forked child)."""
        from .destinations.registry import create_destination

        capture = self.config.capture
        scaling = self.config.scaling
        workers = []
        for destination, transform in zip(self.destinations, self._transforms, strict=True):
            interval = capture.flush_interval_ms
            if destination.flush_interval_ms is not None:
                interval = destination.flush_interval_ms
            settings = WorkerSettings(
                batch_size=destination.batch_size or capture.batch_size,
                flush_interval_s=interval / 1000.0,
                max_queue=capture.buffer_max_size,
                timeout_s=destination.timeout_ms / 1000.0,
                retry_attempts=destination.retry_attempts,
                sampling_rate=destination.sampling_rate,
                lanes=scaling.replicas,
                partitioning_key=scaling.partitioning_key,
            )
            spool = Spool(
                self.data_dir / "spool" / f"{destination.name}.sqlite3",
                self.config.storage.spool_max_bytes,
            )
            workers.append(
                DestinationWorker(
                    create_destination(destination, self.config),
                    transform,
                    spool,
                    DestinationStats(destination.name),
                    settings,
                )
            )
        return workers

    def _attach_monitoring(self) -> None:
        monitoring = RuntimeMonitoring(self)
        self._observability = monitoring
        self._router.on_start.append(monitoring.start)
        self._router.on_tick.append(monitoring.sync)

    def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition (for serving /metrics from the host app itself)."""
        monitoring = self._observability
        if monitoring is None:
            monitoring = RuntimeMonitoring(self)
            self._observability = monitoring
        return monitoring.render()

    def _log_startup(self) -> None:
        if self.config.endpoint or self.config.destinations:
            return
        for destination in self.destinations:
            if destination.endpoint.startswith("sqlite:///"):
                logger.info(
                    "no destinations configured: events go to the embedded ledger at %s",
                    destination.endpoint.removeprefix("sqlite:///"),
                    extra={"component": "runtime"},
                )

    # --- capture (caller's thread: keep it microseconds) ----------------------------------
    def capture(self, event: Mapping[str, Any]) -> Receipt:
        """Validate, normalise and enqueue ``event``; returns an awaitable receipt at once."""
        started = time.perf_counter_ns()
        if self._closed:
            return self._capture_after_shutdown(event)
        if not self._enabled:
            self.stats.disabled += 1
            return settled_receipt(str(event.get("event_id") or ""), DISABLED)
        try:
            normalized = normalize_event(event)
        except InvalidEventError:
            self.stats.invalid += 1
            raise
        receipt = Receipt(normalized["event_id"], self._waitable)
        self._router.submit(normalized, time.time(), receipt)
        self.stats.capture_latency_ns.append(time.perf_counter_ns() - started)
        return receipt

    def capture_nowait(self, event: Mapping[str, Any]) -> None:
        """``capture()`` for hot paths that never wait for delivery (the middleware): the
        same validation and accounting, but no receipt is created or settled."""
        self._capture_unreceipted(event, normalize_event)

    def capture_built(self, event: dict[str, Any]) -> None:
        """``capture_nowait()`` for events the middleware's own builders made: their shape is
        right by construction, so ``normalize_built`` checks only what user code supplied."""
        self._capture_unreceipted(event, normalize_built)

    def _capture_unreceipted(self, event: Any, normalize: Callable[[Any], dict[str, Any]]) -> None:
        started = time.perf_counter_ns()
        if self._closed:
            self._capture_after_shutdown(event)
            return
        if not self._enabled:
            self.stats.disabled += 1
            return
        try:
            normalized = normalize(event)
        except InvalidEventError:
            self.stats.invalid += 1
            raise
        self._router.submit(normalized, time.time(), None)
        self.stats.capture_latency_ns.append(time.perf_counter_ns() - started)

    def _capture_after_shutdown(self, event: Mapping[str, Any]) -> Receipt:
        """Nothing drains a shut-down runtime: say so once, count, never raise or queue."""
        self.stats.after_shutdown += 1
        log_once(
            logger,
            f"capture-after-shutdown-{id(self)}",
            logging.WARNING,
            "capture() after shutdown(): event dropped (use get_runtime() for the live runtime)",
        )
        return settled_receipt(str(event.get("event_id") or ""), DROPPED)

    @property
    def enabled(self) -> bool:
        return self._enabled

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the router (and metrics/health servers) now rather than on first capture."""
        if self._enabled:
            self._router.start()
            self._router.wait_ready()

    # --- the capture process (middleware records, docs/offload.md) -------------------------
    def offloader(self, mode: str = "auto") -> Offloader | None:
        """The channel to this runtime's capture process, created on first use; None when
        middleware events are to be captured in this process (``mode`` "inline", capture
        disabled, or a runtime a capture process cannot stand in for)."""
        if mode == "inline" or not self._enabled or self._closed:
            return None
        offloader = self._offloader
        if offloader is None:
            with self._offload_lock:
                if self._offloader is None and self._can_offload(mode):
                    from .offload import Offloader

                    self._offloader = Offloader(
                        self.config, max_pending=self.config.capture.buffer_max_size
                    )
                offloader = self._offloader
        return offloader

    def _can_offload(self, mode: str) -> bool:
        import pickle

        from .offload.channel import can_spawn

        why = None
        if any(d.endpoint.startswith("memory:") for d in self.destinations):
            why = "a memory destination is only readable in this process"
        elif not can_spawn():
            why = f"no Python interpreter to start it with ({sys.executable!r})"
        else:
            try:
                pickle.dumps(self.config)
            except Exception as exc:
                why = f"the configuration cannot be sent to it ({exc!r})"
        if why is None:
            return True
        if mode == "process":
            log_once(
                logger, f"offload-inline-{id(self)}", logging.WARNING,
                f"middleware.offload is 'process' but {why}: capturing in the app process",
                component="runtime",
            )  # fmt: skip
        return False

    def flush(self, timeout: float | None = None) -> bool:
        offloader = self._offloader
        if offloader is None:
            return self._router.flush(timeout)
        started = time.monotonic()
        offloaded = offloader.flush(timeout)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self._router.flush(left) and offloaded

    async def aflush(self, timeout: float | None = None) -> bool:
        offloader = self._offloader
        offloaded = True
        if offloader is not None:
            import asyncio

            offloaded = await asyncio.to_thread(offloader.flush, timeout)
        return await self._router.aflush(timeout) and offloaded

    def shutdown(self, timeout: float | None = None) -> None:
        self._closed = True
        offloader = self._offloader
        if offloader is not None:
            offloader.close(SHUTDOWN_TIMEOUT_S if timeout is None else timeout)
        self._router.shutdown(SHUTDOWN_TIMEOUT_S if timeout is None else timeout)
        if self._observability is not None:
            self._observability.stop()
            self._observability = None
        _live_runtimes.discard(self)

    def replay(self, *, include_manual: bool = True, timeout: float = 60.0) -> dict[str, int]:
        """Re-deliver what the destinations' spools hold; returns events re-queued per name."""
        return self._router.replay(include_manual, timeout)

    @property
    def router(self) -> Router:
        return self._router

    def destination_stats(self) -> list[DestinationStats]:
        return list(self._router.destination_stats)

    def health(self) -> tuple[bool, dict[str, Any]]:
        running = self._router.running
        destinations = [stats.snapshot() for stats in self._router.destination_stats]
        states = {d["state"] for d in destinations}
        status = "ok" if states <= {"ok"} else "degraded"
        offload = None
        offloader = self._offloader
        if offloader is not None:
            offload = offloader.stats.snapshot(offloader.pending)
            # Middleware events are delivered by the capture process (its own /health has
            # its destinations); this process's router starts only for direct captures.
            if offload["state"] in ("starting", "running", "restarting"):
                running = True
            if offload["state"] not in ("running", "idle"):
                status = "degraded"
        body = {
            "status": status if running else "down",
            "pid": os.getpid(),
            "router": "running" if self._router.running else "stopped",
            "enabled": self._enabled,
            "captured": self.stats.captured + self._router.ingest_size(),
            "buffer": {
                "size": self._router.ingest_size(),
                "max": self.config.capture.buffer_max_size,
            },
            "destinations": destinations,
        }
        if offload is not None:
            body["offload"] = offload
        return running, body

    def extraction_failures(self) -> dict[str, int]:
        """``scr_extraction_failures_total`` by reason for this process's middleware: counted
        here, plus what its capture process reported with its last acknowledgement (call
        ``flush()`` first for every record sent so far)."""
        counts = dict(self.stats.extraction_failures)
        offloader = self._offloader
        if offloader is not None:
            for reason, count in offloader.stats.extraction_failures.items():
                counts[reason] = counts.get(reason, 0) + count
        return counts

    def _after_fork_in_child(self) -> None:
        self.stats = RuntimeStats()
        self._router.stats = self.stats
        self._router.after_fork_in_child()
        self._pid = os.getpid()
        self._router.on_start.clear()  # the parent's monitoring is the parent's
        self._router.on_tick.clear()
        if self._enabled:
            self._attach_monitoring()

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.destinations)
        return f"<SessionCompletionRuntime destinations=[{names}] enabled={self._enabled}>"


# --- the process-wide shared runtime -------------------------------------------------------
_live_runtimes: weakref.WeakSet[SessionCompletionRuntime] = weakref.WeakSet()
_shared: SessionCompletionRuntime | None = None
_shared_lock = threading.Lock()


def get_runtime() -> SessionCompletionRuntime:
    """The shared runtime every middleware and integration feeds (built on first use)."""
    runtime = _shared
    if runtime is None:
        with _shared_lock:
            if _shared is None:
                _set_shared(SessionCompletionRuntime())
            runtime = _shared
    assert runtime is not None
    return runtime


def configure(
    config: ConfigSource = None,
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
    **overrides: Any,
) -> SessionCompletionRuntime:
    """Replace the shared runtime (the previous one is flushed and shut down)."""
    runtime = SessionCompletionRuntime(api_key, endpoint, config=config, **overrides)
    with _shared_lock:
        previous = _shared
        _set_shared(runtime)
    if previous is not None:
        previous.shutdown()
    return runtime


def ensure_runtime(config: ConfigSource = None) -> SessionCompletionRuntime:
    """For framework adapters: configure from framework settings unless already configured."""
    if _shared is None and config is not None:
        with _shared_lock:
            if _shared is None:
                _set_shared(SessionCompletionRuntime(config=config))
    return get_runtime()


def _set_shared(runtime: SessionCompletionRuntime) -> None:
    global _shared
    _shared = runtime


def capture(event: Mapping[str, Any]) -> Receipt:
    """Shortcut to ``get_runtime().capture(event)``."""
    return get_runtime().capture(event)


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    for runtime in list(_live_runtimes):
        runtime._after_fork_in_child()


def _shutdown_all() -> None:
    for runtime in list(_live_runtimes):
        try:
            runtime.shutdown()
        except Exception:
            logger.exception("shutdown at exit failed", extra={"component": "runtime"})


os.register_at_fork(after_in_child=_after_fork_in_child)
# Runs before concurrent.futures stops its worker threads (which the destinations and spools
# need to flush), unlike a plain atexit handler.
try:
    threading._register_atexit(_shutdown_all)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    import atexit

    atexit.register(_shutdown_all)
