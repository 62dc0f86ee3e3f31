"""``http://`` and ``https://``: one batched POST per batch over a pooled ``httpx.AsyncClient``.

Body: a JSON array of payloads, or one object per line with ``format: ndjson``; gzip when
``optimization.compression`` is on. ``Idempotency-Key`` is the batch id, stable across retries
of the same batch; every payload also carries its ``event_id`` for per-event dedupe.

Failure classification (the router retries only transient errors):
2xx ok; 408, 425, 429 and 5xx transient, honouring ``Retry-After``; any other status
permanent; network errors and timeouts transient.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import Any, ClassVar, Final, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from scr_middleware.config_model import Config, DestinationConfig, TLSConfig
from scr_middleware.errors import ConfigError
from scr_middleware.transforms import as_json, to_json

from .base import (
    Destination,
    PermanentDeliveryError,
    Record,
    TransientDeliveryError,
)

logger = logging.getLogger("scr_middleware.destinations.http")

RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})
_ENV_REF: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Compressing a large body takes milliseconds; do it off the router loop so other
# destinations keep flowing.
_OFFLOAD_GZIP_BYTES: Final = 64 * 1024
_ERROR_BODY_CHARS: Final = 200


def _user_agent() -> str:
    try:
        version = metadata.version("scr-middleware")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"scr-middleware/{version}"


def env_references(value: str) -> list[str]:
    """Names of the ``${VAR}`` references in a header value."""
    return _ENV_REF.findall(value)


def expand_env(value: str) -> str:
    """Replace ``${VAR}`` with the environment value (empty, with a warning, when unset)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            logger.warning("header references unset environment variable %s", name)
            return ""
        return found

    return _ENV_REF.sub(lookup, value)


def build_ssl_context(tls: TLSConfig | None, path: str) -> ssl.SSLContext:
    """Client TLS context: system or ``ca_file`` trust, optional client cert, TLS >= 1.2.

    Raises ``ConfigError`` at ``path`` (e.g. ``destinations[0].tls``) for unreadable files.
    """
    tls = tls or TLSConfig()
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{path}.ca_file", f"cannot load CA bundle {tls.ca_file!r}: {exc}"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{path}.cert_file", f"cannot load client certificate/key: {exc}"
            ) from exc
    elif tls.key_file:
        raise ConfigError(f"{path}.key_file", "given without tls.cert_file")
    return context


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None if unusable."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def redact_url(url: str) -> str:
    """The URL without a password in its userinfo, for logs and /health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{f'[{host}]' if ':' in host else host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class HttpDestination(Destination):
    schemes: ClassVar[tuple[str, ...]] = ("http", "https")

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        super().__init__(config, runtime_config)
        self.url = config.endpoint
        self.timeout = config.timeout_ms / 1000.0
        self.compress = runtime_config.optimization.compression
        self.ndjson = config.format == "ndjson"
        self._client: httpx.AsyncClient | None = None
        self._base_headers: dict[str, str] = {}

    async def open(self) -> None:
        # Never raise from open: a broken TLS file surfaces as transient send failures, which
        # the router retries, reports on /health and dead-letters, and a fixed file heals.
        if self._client is None:
            try:
                self._client = self._build_client()
            except ConfigError as exc:
                logger.warning("destination %s cannot connect yet: %s", self.name, exc)

    def _build_client(self) -> httpx.AsyncClient:
        headers = {"User-Agent": _user_agent()}
        headers.update({name: expand_env(value) for name, value in self.config.headers.items()})
        self._base_headers = headers
        verify: ssl.SSLContext | bool = True
        if urlsplit(self.url).scheme.lower() == "https":
            verify = build_ssl_context(self.config.tls, f"destinations[{self.name!r}].tls")
        # One lane per replica may send concurrently; keep that many connections warm.
        lanes = max(1, self.runtime_config.scaling.replicas)
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(
                max_connections=max(4, 2 * lanes),
                max_keepalive_connections=max(2, lanes),
                keepalive_expiry=30.0,
            ),
            verify=verify,
            follow_redirects=False,  # a redirected POST would silently drop the body
        )

    def prepare(self, payload: dict[str, Any], payload_json: bytes | None) -> Any:
        # The canonical event's JSON is free; serialising other transforms' payloads one by
        # one costs more (a malloc'd buffer each, freed in bulk) than one call per batch.
        return payload if payload_json is None else payload_json

    def encode(self, batch: Sequence[Record]) -> bytes:
        """The request body for ``batch`` (before compression): the records' JSON joined."""
        payloads = [record.payload for record in batch]
        if not self.ndjson and not any(type(p) is bytes for p in payloads):
            return to_json(payloads)  # one orjson call per batch
        parts = [as_json(payload) for payload in payloads]
        if self.ndjson:
            return b"\n".join(parts) + b"\n" if parts else b""
        return b"[" + b",".join(parts) + b"]"

    async def send(self, batch: Sequence[Record], batch_id: str) -> None:
        if self._client is None:
            try:
                self._client = self._build_client()
            except ConfigError as exc:
                raise TransientDeliveryError(f"cannot set up the HTTP client: {exc}") from exc
        try:
            body = self.encode(batch)
        except TypeError as exc:  # cyclic payload: retrying cannot help
            raise PermanentDeliveryError(f"cannot serialise batch: {exc}") from exc
        headers = {
            **self._base_headers,
            "Content-Type": "application/x-ndjson" if self.ndjson else "application/json",
            "Idempotency-Key": batch_id,
            "X-SCR-Batch-Id": batch_id,
            "X-SCR-Event-Count": str(len(batch)),
        }
        if self.compress:
            if len(body) > _OFFLOAD_GZIP_BYTES:
                body = await asyncio.to_thread(gzip.compress, body, 6, mtime=0)
            else:
                body = gzip.compress(body, 6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            # httpx's per-phase timeouts do not bound a slow trickle; this bounds the whole call.
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(self.url, content=body, headers=headers)
        except TimeoutError:
            raise TransientDeliveryError(f"timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # anything else from the transport is worth a retry
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        # Read only status_code on success: callers' unit tests mock the response that way.
        status = response.status_code
        if 200 <= status < 300:
            return
        self._raise_for(response, status)

    def _raise_for(self, response: Any, status: int) -> NoReturn:
        retry_after = None
        detail = ""
        try:  # a mocked or odd response may lack headers or text
            headers: Mapping[str, str] = response.headers
            retry_after = parse_retry_after(headers.get("retry-after"))
            text = response.text
            if isinstance(text, str) and text.strip():
                detail = ": " + " ".join(text[:_ERROR_BODY_CHARS].split())
        except Exception:
            pass
        message = f"HTTP {status}{detail}"
        if status in RETRYABLE_STATUSES or status >= 500:
            raise TransientDeliveryError(message, retry_after=retry_after, status=status)
        raise PermanentDeliveryError(message, status=status)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def describe(self) -> dict[str, Any]:
        tls = self.config.tls
        return {
            "name": self.name,
            "endpoint": redact_url(self.url),
            "kind": "http",
            "format": self.config.format,
            "compression": self.compress,
            "timeout_ms": self.config.timeout_ms,
            "mtls": bool(tls and tls.cert_file),
        }
