"""Configuration loading and validation.

Precedence, highest first: explicit constructor arguments > environment variables > framework
settings or the config file > defaults. Every key is validated before anything starts: an
unknown key, a wrong type or an out-of-range value raises ``ConfigError`` naming the key path
(or the environment variable) that was wrong.

Validation is driven by the dataclasses in ``config_model`` (their type hints) plus the range
table below, so adding a config key is adding a field.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from .config_model import (
    CaptureConfig,
    Config,
    DestinationConfig,
    MiddlewareConfig,
    MonitoringConfig,
    OptimizationConfig,
    PIIConfig,
    ScalingConfig,
    StorageConfig,
    TLSConfig,
)
from .errors import ConfigError

ROOT_KEY = "session_completion_runtime"

# Inclusive (min, max) per key path; "destinations[]" stands for every destination.
RANGES: dict[str, tuple[float, float]] = {
    "capture.batch_size": (1, 100_000),
    "capture.flush_interval_ms": (0, 3_600_000),
    "capture.buffer_max_size": (1, 100_000_000),
    "destinations[].retry_attempts": (0, 100),
    "destinations[].timeout_ms": (1, 600_000),
    "destinations[].sampling_rate": (0.0, 1.0),
    "destinations[].retention_days": (1, 36_500),
    "destinations[].batch_size": (1, 100_000),
    "destinations[].flush_interval_ms": (0, 3_600_000),
    "monitoring.metrics_port": (-1, 65_535),  # -1: any free port (tests)
    "monitoring.health_check_port": (-1, 65_535),
    "scaling.replicas": (1, 64),
    "storage.spool_max_bytes": (1 << 20, 1 << 50),
    "middleware.max_body_bytes": (0, 1 << 34),
    "middleware.max_request_body_bytes": (0, 1 << 30),
    "timeout_ms": (1, 600_000),
}

# Environment variable -> key path. Env values are strings, parsed by the field's type.
ENV_VARS: dict[str, str] = {
    "SCR_API_KEY": "api_key",
    "SCR_ENDPOINT": "endpoint",
    "SCR_TIMEOUT_MS": "timeout_ms",
    "SCR_ENABLED": "capture.enabled",
    "SCR_BATCH_SIZE": "capture.batch_size",
    "SCR_FLUSH_INTERVAL_MS": "capture.flush_interval_ms",
    "SCR_BUFFER_MAX_SIZE": "capture.buffer_max_size",
    "SCR_ASYNC_ROUTING": "optimization.async_mode",
    "SCR_COMPRESSION": "optimization.compression",
    "SCR_LOG_LEVEL": "monitoring.log_level",
    "SCR_LOG_FORMAT": "monitoring.log_format",
    "SCR_METRICS_PORT": "monitoring.metrics_port",
    "SCR_HEALTH_CHECK_PORT": "monitoring.health_check_port",
    "SCR_DATA_DIR": "storage.data_dir",
    "SCR_MIDDLEWARE_OFFLOAD": "middleware.offload",
    "SCR_MIDDLEWARE_OFFLOAD_PRIORITY": "middleware.offload_priority",
}

# Flat constructor keyword -> key path, e.g. SessionCompletionRuntime(batch_size=1).
FLAT_OVERRIDES: dict[str, str] = {
    "enabled": "capture.enabled",
    "batch_size": "capture.batch_size",
    "flush_interval_ms": "capture.flush_interval_ms",
    "buffer_max_size": "capture.buffer_max_size",
    "async_mode": "optimization.async_mode",
    "compression": "optimization.compression",
    "log_level": "monitoring.log_level",
    "metrics_port": "monitoring.metrics_port",
    "health_check_port": "monitoring.health_check_port",
    "data_dir": "storage.data_dir",
    "timeout_ms": "timeout_ms",
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SECTIONS: dict[str, type[Any]] = {
    "capture": CaptureConfig,
    "monitoring": MonitoringConfig,
    "scaling": ScalingConfig,
    "optimization": OptimizationConfig,
    "storage": StorageConfig,
    "pii": PIIConfig,
    "middleware": MiddlewareConfig,
}


def read_config_file(path: str | os.PathLike[str], key: str = "config") -> dict[str, Any]:
    """Read a YAML file and return its ``session_completion_runtime`` block."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"config file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(key, f"invalid YAML in {file}{where}") from None
    return unwrap(data, key)


def unwrap(data: Any, key: str = "config") -> dict[str, Any]:
    """Accept the YAML's structure with or without the ``session_completion_runtime`` root."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(data).__name__}")
    if ROOT_KEY in data:
        extra = sorted(str(k) for k in data if k != ROOT_KEY)
        if extra:
            raise ConfigError(extra[0], f"unknown key (expected only {ROOT_KEY!r} at the top)")
        inner = data[ROOT_KEY]
        if inner is None:
            return {}
        if not isinstance(inner, Mapping):
            raise ConfigError(ROOT_KEY, "must be a mapping")
        return dict(inner)
    return dict(data)


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _field_hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _range_key(path: str) -> str:
    # destinations[3].timeout_ms -> destinations[].timeout_ms
    if path.startswith("destinations["):
        return "destinations[]" + path[path.index("]") + 1 :]
    return path


def _check_range(path: str, value: float, label: str) -> None:
    bounds = RANGES.get(_range_key(path))
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = bounds
        raise ConfigError(label, f"must be between {low:g} and {high:g}, got {value!r}")


def _convert(value: Any, hint: Any, path: str, label: str) -> Any:
    """Check ``value`` against the type ``hint``; return the value in its model form."""
    origin = get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], path, label)
    if origin is Literal:
        allowed = get_args(hint)
        if isinstance(value, str) and value.lower() in allowed:
            return value.lower()
        raise ConfigError(label, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(label, f"must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_range(path, value, label)
            return value
        raise ConfigError(label, f"must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            _check_range(path, float(value), label)
            return float(value)
        raise ConfigError(label, f"must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str) and value:
            return value
        raise ConfigError(label, f"must be a non-empty string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(label, f"must be a list, got {type(value).__name__}")
        item_hint = get_args(hint)[0]
        return tuple(
            _convert(item, item_hint, f"{path}[{i}]", f"{label}[{i}]")
            for i, item in enumerate(value)
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(label, f"must be a mapping, got {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str | int | float):
                raise ConfigError(f"{label}.{key}", "must map strings to strings")
        return {key: str(item) for key, item in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, label)  # type: ignore[arg-type]
    raise ConfigError(label, f"unsupported type {hint!r}")  # pragma: no cover


def _build(cls: type[Any], data: Any, path: str, label: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(label, f"must be a mapping, got {type(data).__name__}")
    hints = _field_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name not in ("source", "extra")}
    for key in data:
        if key not in names:
            where = f"{label}.{key}" if label else str(key)
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        sub_path = f"{path}.{name}" if path else name
        sub_label = f"{label}.{name}" if label else name
        if data[name] is None and not _optional(hints[name]):
            raise ConfigError(sub_label, "must not be null")
        kwargs[name] = _convert(data[name], hints[name], sub_path, sub_label)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = str(exc).rsplit(":", 1)[-1].strip().strip("'")
        raise ConfigError(f"{label}.{missing}" if label else missing, "is required") from None


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (types.UnionType, typing.Union) and type(None) in get_args(hint)


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse SCR_* variables into a nested dict; returns it and key path -> env var name."""
    layer: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for var, path in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        hint = _hint_for(path)
        base = hint
        if get_origin(hint) in (types.UnionType, typing.Union):
            base = next(arg for arg in get_args(hint) if arg is not type(None))
        _set_path(layer, path, _parse_env(var, raw.strip(), base))
        labels[path] = var
    return layer, labels


def _parse_env(var: str, raw: str, hint: Any) -> Any:
    if hint is bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(var, f"must be true or false, got {raw!r}")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(var, f"must be an integer, got {raw!r}") from None
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(var, f"must be a number, got {raw!r}") from None
    return raw


def _hint_for(path: str) -> Any:
    cls: Any = Config
    hint: Any = None
    for part in path.split("."):
        hint = _field_hints(cls)[part]
        cls = hint
    return hint


def _apply_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in FLAT_OVERRIDES:
            _set_path(layer, FLAT_OVERRIDES[key], value)
        elif key in _SECTIONS or key in ("destinations", "endpoint", "api_key"):
            layer[key] = value
        else:
            raise ConfigError(key, "unknown keyword argument")
    return layer


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    endpoint: str | None = None,
) -> Config:
    """Build the validated ``Config``.

    ``source`` is a YAML path, a mapping with the YAML's structure (Django ``SCR``, Flask
    ``app.config["SCR"]``), a ready ``Config``, or None (``SCR_CONFIG_FILE`` if set).
    """
    env = os.environ if env is None else env
    if isinstance(source, Config):
        return source
    origin = "defaults"
    if source is None and env.get("SCR_CONFIG_FILE"):
        origin = env["SCR_CONFIG_FILE"]
        base = read_config_file(origin, "SCR_CONFIG_FILE")
    elif isinstance(source, Mapping):
        origin = "settings"
        base = unwrap(source)
    elif source is not None:
        origin = os.fspath(source)
        base = read_config_file(source)
    else:
        base = {}

    env_layer, env_labels = _env_layer(env)
    top: dict[str, Any] = _apply_overrides(overrides or {})
    if api_key is not None:
        top["api_key"] = api_key
    if endpoint is not None:
        top["endpoint"] = endpoint
    merged = _merge(_merge(base, env_layer), top)
    try:
        config = _build_config(merged)
    except ConfigError as exc:
        label = env_labels.get(exc.path)
        if label is not None and _lookup(top, exc.path) is None:
            raise ConfigError(label, exc.problem) from None
        raise
    return dataclasses.replace(config, source=origin)


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    current: Any = data
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _build_config(data: Mapping[str, Any]) -> Config:
    config = _build(Config, data, "", "")
    names: set[str] = set()
    for index, destination in enumerate(config.destinations):
        if destination.name in names:
            raise ConfigError(f"destinations[{index}].name", f"duplicate name {destination.name!r}")
        names.add(destination.name)
        if destination.tls is not None and not destination.endpoint.startswith("https://"):
            raise ConfigError(f"destinations[{index}].tls", "only applies to https:// endpoints")
    return typing.cast(Config, config)


__all__ = [
    "ENV_VARS",
    "CaptureConfig",
    "Config",
    "ConfigError",
    "DestinationConfig",
    "MiddlewareConfig",
    "MonitoringConfig",
    "OptimizationConfig",
    "PIIConfig",
    "ScalingConfig",
    "StorageConfig",
    "TLSConfig",
    "load_config",
    "read_config_file",
]
