"""The metric objects with the seed's names, and how each gauge aggregates across workers.

Gauge ``multiprocess_mode`` only matters under ``PROMETHEUS_MULTIPROC_DIR``; the "live*" modes
drop a worker's value once gunicorn's ``child_exit`` hook marks it dead (docs/metrics.md).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["QUANTILES", "ROUTING_LATENCY_BUCKETS_MS", "MetricFamilies"]

QUANTILES = (("0.5", 0.5), ("0.95", 0.95), ("0.99", 0.99))
ROUTING_LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class MetricFamilies:
    """The metric objects. One set per registry (one per process in multiprocess mode), so
    several bridges never register a name twice; each bridge adds only its own deltas."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        # prometheus_client appends "_total" to counter names when exposing them.
        self.captured = Counter("scr_events_captured", "Events accepted by capture()", registry=r)
        self.invalid = Counter("scr_events_invalid", "Events rejected as invalid", registry=r)
        self.extraction_failures = Counter(
            "scr_extraction_failures",
            "Responses whose usage could not be extracted, by reason",
            ["reason"],
            registry=r,
        )
        self.routed = Counter(
            "scr_events_routed", "Events delivered to a destination", ["destination"], registry=r
        )
        self.failures = Counter(
            "scr_routing_failures",
            "Failed delivery attempts (requests), retried or not",
            ["destination"],
            registry=r,
        )
        self.dropped = Counter(
            "scr_events_dropped",
            "Events lost for a destination, by reason",
            ["destination", "reason"],
            registry=r,
        )
        self.sampled_out = Counter(
            "scr_events_sampled_out",
            "Events skipped by a destination's sampling_rate",
            ["destination"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "scr_events_dead_lettered",
            "Events moved to a destination's on-disk spool after delivery failed",
            ["destination"],
            registry=r,
        )
        self.replayed = Counter(
            "scr_events_replayed",
            "Events taken back out of the spool for delivery",
            ["destination"],
            registry=r,
        )
        self.routing_latency = Histogram(
            "scr_routing_latency_ms",
            "Delivery latency per destination, in milliseconds",
            ["destination"],
            buckets=ROUTING_LATENCY_BUCKETS_MS,
            registry=r,
        )
        # Gauges: multiprocess_mode only matters under PROMETHEUS_MULTIPROC_DIR. "live*" modes
        # drop a worker's value once gunicorn's child_exit hook marks it dead.
        self.captured_rate = Gauge(
            "scr_events_captured_per_second",
            "Capture rate over the last sync window",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.capture_latency = Gauge(
            "scr_capture_latency_ms",
            "capture() latency quantiles over the most recent captures, in milliseconds",
            ["quantile"],
            registry=r,
            multiprocess_mode="livemax",  # the slowest worker is the one to alert on
        )
        self.buffer_bytes = Gauge(
            "scr_buffer_size_bytes",
            "Estimated bytes held in the ingest buffer",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.buffer_utilization = Gauge(
            "scr_buffer_utilization_percent",
            "Ingest buffer fill level (events / capture.buffer_max_size)",
            registry=r,
            multiprocess_mode="livemax",  # any worker near full is about to drop
        )
        self.memory = Gauge(
            "scr_memory_usage_bytes",
            "Resident memory of the process",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cpu = Gauge(
            "scr_cpu_usage_percent",
            "CPU use of the process over the last sync window (100 = one core)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "scr_events_in_flight",
            "Events taken by a destination and not yet delivered, spooled or dropped",
            ["destination"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.spooled = Gauge(
            "scr_events_spooled",
            "Events waiting in a destination's on-disk spool",
            ["destination"],
            registry=r,
            multiprocess_mode="livemax",  # workers share the spool: each reports the same
        )
        self.destination_up = Gauge(
            "scr_destination_up",
            "1 when a destination's state is ok, 0 while retrying or down",
            ["destination"],
            registry=r,
            multiprocess_mode="livemin",  # down as soon as one worker finds it down
        )
        for label, _ in QUANTILES:
            self.capture_latency.labels(label).set(0.0)
