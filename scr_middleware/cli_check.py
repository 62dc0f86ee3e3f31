"""``scr check-config FILE``: validate a config the way start-up would, and say what will run.

Loading the YAML checks keys, types and ranges; building a ``SessionCompletionRuntime`` (not
started) resolves endpoints and transforms; the destination checks add headers, TLS files and
formats. The summary never prints secrets: endpoints are shown as scheme + host, header values
and the API key only as "set".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO
from urllib.parse import urlsplit

from .config import ENV_VARS, load_config
from .config_model import Config, DestinationConfig
from .destinations.registry import endpoint_scheme, validate_destination
from .runtime import SessionCompletionRuntime

__all__ = ["check_config", "describe_endpoint"]


def describe_endpoint(endpoint: str) -> str:
    """``https://user:pw@billing.internal:8443/v1?token=x`` -> ``https://billing.internal:8443``."""
    scheme = endpoint_scheme(endpoint)
    if scheme in ("http", "https"):
        parts = urlsplit(endpoint)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        return f"{scheme}://{host}{port}"
    if scheme == "sqlite":
        from .destinations.sqlite import sqlite_path

        return f"sqlite: {sqlite_path(endpoint)}"
    if scheme == "file":
        from .destinations.jsonl import jsonl_path

        return f"file: {jsonl_path(endpoint)}"
    return endpoint.split("?", 1)[0]


def _flag(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "-" if value is None else str(value)


def _destination_line(destination: DestinationConfig, config: Config) -> str:
    batch = destination.batch_size or config.capture.batch_size
    parts = [
        f"  {destination.name}: {describe_endpoint(destination.endpoint)}",
        f"transform={destination.transform}",
        f"sampling={destination.sampling_rate:g}",
        f"retries={destination.retry_attempts}",
        f"timeout={destination.timeout_ms}ms",
        f"batch={batch}",
    ]
    if destination.retention_days is not None:
        parts.append(f"retention={destination.retention_days}d")
    if destination.format != "json":
        parts.append(f"format={destination.format}")
    if destination.headers:
        parts.append(f"headers={','.join(sorted(destination.headers))} (values hidden)")
    if destination.tls is not None:
        parts.append("tls=mtls" if destination.tls.cert_file else "tls=custom-ca")
    return "  ".join(parts)


def summarize(runtime: SessionCompletionRuntime, env: Mapping[str, str]) -> list[str]:
    config = runtime.config
    capture = config.capture
    monitoring = config.monitoring
    lines = [
        f"config: {config.source} is valid",
        f"capture: enabled={_flag(capture.enabled)} batch_size={capture.batch_size}"
        f" flush_interval_ms={capture.flush_interval_ms}"
        f" buffer_max_size={capture.buffer_max_size}",
        f"optimization: async_mode={_flag(config.optimization.async_mode)}"
        f" compression={_flag(config.optimization.compression)}",
        f"scaling: replicas={config.scaling.replicas}"
        f" partitioning_key={_flag(config.scaling.partitioning_key)}",
    ]
    if config.endpoint:
        key = "set" if config.api_key else "not set"
        lines.append(f"remote SCR service (SCR_ENDPOINT): events go there, api key {key}")
    elif not config.destinations:
        lines.append("no destinations configured: events go to the embedded SQLite ledger")
    lines.append(f"destinations ({len(runtime.destinations)}):")
    lines.extend(_destination_line(d, config) for d in runtime.destinations)

    def port(value: int) -> str:
        return "off" if value == 0 else ("any free port" if value < 0 else str(value))

    lines.append(
        f"monitoring: metrics_port={port(monitoring.metrics_port)}"
        f" health_check_port={port(monitoring.health_check_port)}"
        f" log_level={monitoring.log_level} log_format={monitoring.log_format}"
    )
    if config.pii.enabled:
        lines.append(f"pii: scrubbing {', '.join(config.pii.redact_fields)}")
    lines.append(f"data dir: {runtime.data_dir} (spool: {runtime.data_dir / 'spool'})")
    overridden = sorted(var for var in ENV_VARS if env.get(var, "").strip())
    if overridden:
        lines.append(f"environment overrides applied: {', '.join(overridden)}")
    return lines


def check_config(path: str, out: TextIO, env: Mapping[str, str] | None = None) -> int:
    """Raises ``ConfigError`` for the first problem; prints the summary and returns 0."""
    env = os.environ if env is None else env
    config = load_config(path, env=env)
    for index, destination in enumerate(config.destinations):
        validate_destination(destination, f"destinations[{index}]")
    runtime = SessionCompletionRuntime(config=config)  # resolves endpoints and transforms
    try:
        out.write("\n".join(summarize(runtime, env)) + "\n")
    finally:
        runtime.shutdown()  # never started: this only unregisters it
    return 0
