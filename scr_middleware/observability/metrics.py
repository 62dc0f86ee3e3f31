"""Prometheus metrics with the seed's names, fed from the router's plain-int accounting.

The hot path only bumps ints in ``RuntimeStats`` / ``DestinationStats``. ``MetricsBridge.sync``
(router thread, about once a second, and right before each scrape) turns the change since the
previous sync into ``Counter.inc`` calls. Incrementing by deltas, rather than exposing the ints
through a custom collector, is what makes prometheus_client's multiprocess mode work: every
gunicorn worker writes its own mmap files and the /metrics server adds them up.

Multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` was set before prometheus_client was
first imported (the library decides at import time). Gauge aggregation across workers is chosen
per gauge in ``MetricFamilies`` and documented in docs/metrics.md.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, exposition, generate_latest, values
from prometheus_client import multiprocess as _mp

from scr_middleware.observability.families import (
    QUANTILES,
    ROUTING_LATENCY_BUCKETS_MS,
    MetricFamilies,
)
from scr_middleware.observability.logs import get_logger, log_once
from scr_middleware.observability.process import CpuMeter, rss_bytes
from scr_middleware.router.stats import (
    DROP_BUFFER_OVERFLOW,
    DROP_SHUTDOWN,
    DROP_SPOOL_FULL,
    DROP_TRANSFORM_FAILED,
    DestinationStats,
    RuntimeStats,
)

__all__ = [
    "QUANTILES",
    "ROUTING_LATENCY_BUCKETS_MS",
    "BufferState",
    "MetricsBridge",
    "mark_process_dead",
    "multiprocess_dir",
    "render_multiprocess",
]

_log = get_logger("metrics")
_T = TypeVar("_T")

_KNOWN_DROP_REASONS = (DROP_BUFFER_OVERFLOW, DROP_SPOOL_FULL, DROP_TRANSFORM_FAILED, DROP_SHUTDOWN)
# Rates are computed over at least this long: a scrape right after the router's own sync would
# otherwise divide by a few microseconds.
_MIN_RATE_WINDOW_S = 1.0
# Classic text format 0.0.4, what prometheus_client's own server sends when the scraper did not
# negotiate: our names need no UTF-8 escaping, and every Prometheus version parses it. (Newer
# clients made CONTENT_TYPE_LATEST 1.0.0; older ones lack the 0.0.4 constant but mean 0.0.4.)
CONTENT_TYPE = str(getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST))


@dataclass(frozen=True, slots=True)
class BufferState:
    """The router's ingest buffer at sync time."""

    size_events: int = 0
    size_bytes: int = 0  # estimate
    max_events: int = 0


def multiprocess_dir() -> str | None:
    """The multiprocess directory if prometheus_client really writes mmap files, else None."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or values.ValueClass is values.MutexValue:
        # Set after prometheus_client was imported: values live in memory, not in files.
        return None
    return path


_shared_lock = threading.Lock()
_per_registry: weakref.WeakKeyDictionary[CollectorRegistry, MetricFamilies] = (
    weakref.WeakKeyDictionary()
)
_process_wide: MetricFamilies | None = None


def _reinit_after_fork() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_after_fork)


def _metrics_for(registry: CollectorRegistry, multiprocess: bool) -> MetricFamilies:
    global _process_wide
    with _shared_lock:
        if multiprocess:
            # Two value objects for one mmap key would overwrite each other's writes, so the
            # whole process shares one set, registered nowhere (render reads the files).
            if _process_wide is None:
                _process_wide = MetricFamilies(None)
            return _process_wide
        metrics = _per_registry.get(registry)
        if metrics is None:
            metrics = _per_registry[registry] = MetricFamilies(registry)
        return metrics


def _copy(ring: deque[_T]) -> list[_T]:
    # Capture threads append while we read; list() fails if that happens mid-copy.
    for _ in range(5):
        try:
            return list(ring)
        except RuntimeError:
            continue
    return []


class _Cursor:
    """Last-seen totals of one stats object, so each sync adds only what is new."""

    __slots__ = ("seen", "source")

    def __init__(self, source: object) -> None:
        self.source = source
        self.seen: dict[str, int] = {}

    def advance(self, key: str, current: int) -> int:
        last = self.seen.get(key, 0)
        self.seen[key] = current
        return current - last if current >= last else current


class MetricsBridge:
    """Owns the Prometheus metrics and advances them from the accounting objects."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        if not self.multiprocess and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            log_once(
                _log,
                "metrics.multiproc_late",
                logging.WARNING,
                "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported: "
                "/metrics shows this process only; set it before the server starts",
            )
        self._m = _metrics_for(self.registry, self.multiprocess)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._runtime: _Cursor | None = None
        self._destinations: dict[str, _Cursor] = {}
        self._captured_counted = 0
        self._rate_from = (time.monotonic(), 0)
        self._cpu = CpuMeter()
        self._m.captured.inc(0)
        self._m.invalid.inc(0)

    def sync(
        self,
        runtime: RuntimeStats,
        destinations: Sequence[DestinationStats],
        buffer: BufferState,
    ) -> None:
        """Bring every metric up to date. Thread-safe; never raises."""
        if self._pid != os.getpid():
            # Forked (gunicorn --preload) while another thread may have held the lock: that
            # thread does not exist here, so the copied lock could never be released.
            self._lock, self._pid = threading.Lock(), os.getpid()
        try:
            with self._lock:
                self._sync_runtime(runtime)
                for dest in destinations:
                    self._sync_destination(dest)
                self._sync_system(buffer)
        except Exception as exc:
            log_once(_log, "metrics.sync", logging.WARNING, "metrics sync failed", error=repr(exc))

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type; aggregated over workers in multiprocess mode."""
        if self.multiprocess:
            return render_multiprocess()
        return generate_latest(self.registry), CONTENT_TYPE

    def _sync_runtime(self, runtime: RuntimeStats) -> None:
        m = self._m
        if self._runtime is None or self._runtime.source is not runtime:
            self._runtime = _Cursor(runtime)
        cur = self._runtime
        new = cur.advance("captured", runtime.captured)
        m.captured.inc(new)
        self._captured_counted += new
        m.invalid.inc(cur.advance("invalid", runtime.invalid))
        for reason, count in list(runtime.extraction_failures.items()):
            m.extraction_failures.labels(reason).inc(cur.advance(f"extraction:{reason}", count))

        samples = _copy(runtime.capture_latency_ns)
        if samples:
            samples.sort()
            n = len(samples)
            for label, q in QUANTILES:
                # nearest-rank quantile
                value = samples[max(0, math.ceil(q * n) - 1)]
                m.capture_latency.labels(label).set(value / 1_000_000)

    def _sync_destination(self, d: DestinationStats) -> None:
        m = self._m
        name = d.name
        cur = self._destinations.get(name)
        if cur is None or cur.source is not d:
            cur = self._destinations[name] = _Cursor(d)
            # Create the series at 0 so increase()/rate() see the first event too.
            for counter in (m.routed, m.failures, m.sampled_out, m.dead_lettered, m.replayed):
                counter.labels(name).inc(0)
            for reason in _KNOWN_DROP_REASONS:
                m.dropped.labels(name, reason).inc(0)
            m.routing_latency.labels(name)  # all-zero buckets (single-process mode)
        m.routed.labels(name).inc(cur.advance("routed", d.delivered))
        m.failures.labels(name).inc(cur.advance("failures", d.failures_total))
        m.sampled_out.labels(name).inc(cur.advance("sampled_out", d.sampled_out))
        m.dead_lettered.labels(name).inc(cur.advance("dead_lettered", d.dead_lettered_total))
        m.replayed.labels(name).inc(cur.advance("replayed", d.replayed_total))
        for reason, count in list(d.dropped.items()):
            m.dropped.labels(name, reason).inc(cur.advance(f"dropped:{reason}", count))

        # latencies_ms forgets old samples; latency_samples_total says how many are new. Samples
        # the ring already dropped (more than maxlen between two syncs) cannot be observed. If
        # the router is between append and increment we may take a neighbouring sample.
        new = cur.advance("latency_samples", d.latency_samples_total)
        if new:
            ring = _copy(d.latencies_ms)
            histogram = m.routing_latency.labels(name)
            for sample in ring[len(ring) - min(new, len(ring)) :]:
                histogram.observe(sample)

        m.in_flight.labels(name).set(d.in_flight)
        m.spooled.labels(name).set(d.spooled)
        m.destination_up.labels(name).set(1 if d.state == "ok" else 0)

    def _sync_system(self, buffer: BufferState) -> None:
        m = self._m
        m.buffer_bytes.set(buffer.size_bytes)
        utilization = 100.0 * buffer.size_events / buffer.max_events if buffer.max_events else 0.0
        m.buffer_utilization.set(utilization)
        rss = rss_bytes()
        if rss is not None:
            m.memory.set(rss)

        now = time.monotonic()
        since, counted_then = self._rate_from
        if now - since >= _MIN_RATE_WINDOW_S:
            m.captured_rate.set((self._captured_counted - counted_then) / (now - since))
            m.cpu.set(self._cpu.sample())
            self._rate_from = (now, self._captured_counted)


def render_multiprocess(path: str | None = None) -> tuple[bytes, str]:
    """Aggregate every worker's mmap files (``path`` or ``PROMETHEUS_MULTIPROC_DIR``)."""
    registry = CollectorRegistry()
    _mp.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Forget a dead worker's live gauges (gunicorn ``child_exit``). Never raises."""
    directory = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    try:
        _mp.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    except Exception as exc:
        log_once(
            _log, "metrics.mark_dead", logging.WARNING, "mark_process_dead failed", error=repr(exc)
        )
