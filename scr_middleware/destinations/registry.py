"""Endpoint scheme -> destination class, and the start-up checks for destination settings.

Each destination module owns the parsing of its own endpoint (``sqlite_path``, ``jsonl_path``
...); this module maps schemes to them and turns their complaints into ``ConfigError`` with
the key path, so a bad endpoint stops start-up instead of failing on the first send.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx

from scr_middleware.config_model import Config, DestinationConfig
from scr_middleware.errors import ConfigError

from .base import Destination
from .http import HttpDestination, build_ssl_context, env_references
from .jsonl import JsonlDestination, jsonl_path
from .memory import MemoryDestination, memory_name
from .sqlite import SqliteDestination, sqlite_path
from .stdout import StdoutDestination, check_stdout_endpoint

DESTINATION_TYPES: Final[Mapping[str, type[Destination]]] = {
    scheme: cls
    for cls in (
        HttpDestination,
        SqliteDestination,
        JsonlDestination,
        StdoutDestination,
        MemoryDestination,
    )
    for scheme in cls.schemes
}
_SUPPORTED: Final = (
    "http(s)://host/path, sqlite:///path.db, file:///path.jsonl, stdout: or memory://name"
)
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _check_http(endpoint: str) -> None:
    if any(char.isspace() for char in endpoint):
        raise ValueError("must not contain whitespace")
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise ValueError("missing host, e.g. https://billing.internal/api/v1/events")
    try:
        parts.port  # noqa: B018 - property access validates the port
        httpx.URL(endpoint)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"invalid URL: {exc}") from None


_CHECKS: Final[Mapping[str, Callable[[str], object]]] = {
    "http": _check_http,
    "https": _check_http,
    "sqlite": sqlite_path,
    "file": jsonl_path,
    "stdout": check_stdout_endpoint,
    "memory": memory_name,
}


def endpoint_scheme(endpoint: str) -> str:
    """The lower-cased scheme of ``endpoint`` ("" when it has none)."""
    match = _SCHEME.match(endpoint) if isinstance(endpoint, str) else None
    return match.group(1).lower() if match else ""


def _sibling(path: str, key: str) -> str:
    base, dot, _ = path.rpartition(".")
    return f"{base}.{key}" if dot else key


def validate_endpoint(endpoint: str, path: str, *, tls: object | None = None) -> None:
    """Raise ``ConfigError`` at ``path`` unless ``endpoint`` is usable.

    Catches unknown schemes, missing hosts, empty file paths and malformed URLs. Pass the
    destination's ``tls`` block to also reject TLS options on a non-https endpoint (reported
    at the sibling key, e.g. ``destinations[0].tls``).
    """
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(path, f"must be a non-empty endpoint: {_SUPPORTED}")
    scheme = endpoint_scheme(endpoint)
    check = _CHECKS.get(scheme)
    if check is None:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(path, f"{shown} in {endpoint!r} is not supported; use {_SUPPORTED}")
    try:
        check(endpoint)
    except ValueError as exc:
        raise ConfigError(path, f"{exc} (got {endpoint!r})") from None
    if tls is not None and scheme != "https":
        raise ConfigError(_sibling(path, "tls"), f"needs an https:// endpoint, got {scheme}:")


def validate_destination(config: DestinationConfig, path: str) -> None:
    """The scheme-specific start-up checks for one destination (``path``: ``destinations[0]``).

    Endpoint and TLS consistency, readable TLS files, ``format`` and ``headers`` only on
    http(s), header names, and that every ``${VAR}`` a header uses is set. The transform and
    the numeric ranges are checked where they are loaded (``load_transform``, config).
    """
    validate_endpoint(config.endpoint, f"{path}.endpoint", tls=config.tls)
    is_http = endpoint_scheme(config.endpoint) in HttpDestination.schemes
    if config.format not in ("json", "ndjson"):
        raise ConfigError(f"{path}.format", f"must be json or ndjson, got {config.format!r}")
    if config.format != "json" and not is_http:
        raise ConfigError(f"{path}.format", "only applies to http(s) endpoints")
    if config.headers and not is_http:
        raise ConfigError(f"{path}.headers", "only apply to http(s) endpoints")
    for name, value in config.headers.items():
        key = f"{path}.headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(key, "is not a valid HTTP header name")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ConfigError(key, "must be a single-line string")
        missing = [var for var in env_references(value) if var not in os.environ]
        if missing:
            raise ConfigError(key, f"environment variable {missing[0]} is not set")
    if config.tls is not None:
        build_ssl_context(config.tls, f"{path}.tls")


def _config_path(config: DestinationConfig, runtime_config: Config) -> str:
    for index, candidate in enumerate(runtime_config.destinations):
        if candidate is config:
            return f"destinations[{index}]"
    return f"destinations[{config.name!r}]"


def create_destination(config: DestinationConfig, runtime_config: Config) -> Destination:
    """Build the destination for ``config.endpoint``'s scheme (not yet opened)."""
    path = _config_path(config, runtime_config)
    validate_endpoint(config.endpoint, f"{path}.endpoint", tls=config.tls)
    cls = DESTINATION_TYPES[endpoint_scheme(config.endpoint)]
    return cls(config, runtime_config)
