"""The validated configuration: plain frozen dataclasses, one per YAML section.

``config.py`` builds these from YAML, dicts, env vars and overrides, and validates every key;
the rest of the package only ever sees these typed objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    enabled: bool = True
    batch_size: int = 100
    flush_interval_ms: int = 1000
    buffer_max_size: int = 10000


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    name: str
    endpoint: str
    transform: str = "canonical"
    retry_attempts: int = 3
    timeout_ms: int = 1000
    sampling_rate: float = 1.0
    retention_days: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tls: TLSConfig | None = None
    format: Literal["json", "ndjson"] = "json"
    # Per-destination overrides of capture.batch_size / flush_interval_ms (None: inherit).
    batch_size: int | None = None
    flush_interval_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    metrics_port: int = 0  # 0 disables the /metrics server
    health_check_port: int = 0  # 0 disables the /health server
    host: str = "0.0.0.0"
    log_level: LogLevel = "info"
    log_format: Literal["json", "text"] = "json"


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    # In-process meaning: concurrent delivery lanes per destination; events with the same
    # partitioning_key value always share a lane, so their order is kept.
    replicas: int = 1
    partitioning_key: str | None = None


@dataclass(frozen=True, slots=True)
class OptimizationConfig:
    async_mode: bool = False  # False: awaiting a receipt waits for delivery (bounded)
    compression: bool = False  # gzip HTTP request bodies


@dataclass(frozen=True, slots=True)
class StorageConfig:
    data_dir: str | None = None  # None: $SCR_DATA_DIR or ~/.local/state/scr-middleware
    spool_max_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class PIIConfig:
    enabled: bool = False
    redact_fields: tuple[str, ...] = (
        "outcome.final_output",
        "metadata.messages",
        "metadata.prompt",
    )
    redact_patterns: tuple[str, ...] = ("email", "phone", "credit_card")
    replacement: str = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class MiddlewareConfig:
    enabled: bool = True
    include_routes: tuple[str, ...] = ()  # empty: the default LLM route suffixes
    exclude_routes: tuple[str, ...] = ()
    extractors: tuple[str, ...] = ()  # empty: the built-in ordered list
    user_id_sources: tuple[str, ...] = ("framework_user", "body:user")
    organization_id_sources: tuple[str, ...] = ("header:openai-organization",)
    identity_callable: str | None = None  # "pkg.module:function"
    max_body_bytes: int = 10 * 1024 * 1024
    max_request_body_bytes: int = 1024 * 1024
    ensure_stream_usage: bool = False
    session_type: str | None = None
    # Where events are extracted and delivered (docs/offload.md): "process" records each
    # exchange and hands it to a capture process; "inline" does everything in the app's
    # process; "auto" is "process" unless the runtime cannot use one (memory destinations,
    # no Python interpreter to start).
    offload: Literal["auto", "process", "inline"] = "auto"
    # The capture process's CPU priority: "idle" (SCHED_IDLE on Linux, else nice 19) runs it
    # only on time the app leaves; "low" is nice 19; "normal" keeps the app's priority.
    offload_priority: Literal["idle", "low", "normal"] = "idle"


@dataclass(frozen=True, slots=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    destinations: tuple[DestinationConfig, ...] = ()
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    middleware: MiddlewareConfig = field(default_factory=MiddlewareConfig)
    # Remote mode: send to a standalone SCR service instead of routing in-process.
    endpoint: str | None = None
    api_key: str | None = None
    timeout_ms: int = 100
    source: str = "defaults"  # where the file part came from, for start-up logs
    extra: dict[str, Any] = field(default_factory=dict)
