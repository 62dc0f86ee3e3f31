"""The standalone SCR service: a Starlette app in front of its own ``SessionCompletionRuntime``.

``POST /v1/events`` (API key) takes events from remote runtimes (``SCR_ENDPOINT``) or any
client, validates them all-or-nothing, drops the ones it has already accepted (by
``event_id`` and ``Idempotency-Key``, within a window) and routes the rest to the configured
destinations (default: the embedded SQLite ledger). ``GET /events/recent``, ``/health`` and
``/metrics`` are for operators and probes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ConfigError, InvalidEventError
from ..events import finalize_event
from ..observability.logs import get_logger
from ..observability.metrics import multiprocess_dir
from ..router.receipt import DROPPED
from ..runtime import ConfigSource, SessionCompletionRuntime
from ..transforms import to_json
from .auth import ApiKeys, parse_api_keys
from .ingest import BodyError, decode_body, parse_events, read_body, validate_events
from .recent import DedupeWindow, RecentEvents

__all__ = ["ServiceSettings", "create_app"]

logger = get_logger("service")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    api_keys: tuple[str, ...] = ()
    allow_unauthenticated: bool = False  # local testing only
    protect_recent: bool = False  # True: /events/recent needs the API key too
    recent_size: int = 1000  # events kept for /events/recent (0 disables)
    dedupe_window_s: float = 3600.0
    dedupe_max_ids: int = 500_000
    max_body_bytes: int = 64 * 1024 * 1024
    max_events_per_request: int = 100_000

    @classmethod
    def from_env(
        cls,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ServiceSettings:
        """Keys from ``api_key`` (comma-separated) if given, else ``SCR_API_KEY``."""
        env = os.environ if env is None else env
        keys = parse_api_keys(api_key) if api_key else parse_api_keys(env.get("SCR_API_KEY"))
        return cls(api_keys=keys, **options)


def _error(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="scr"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse({"error": error, "message": message, **extra}, status, headers=headers)


class SCRService:
    """Per-app state; handlers run on one event loop and never await between check and record."""

    def __init__(
        self, runtime: SessionCompletionRuntime, settings: ServiceSettings, owns_runtime: bool
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.owns_runtime = owns_runtime
        self.keys = ApiKeys(settings.api_keys)
        self.recent = RecentEvents(settings.recent_size)
        self.seen = DedupeWindow(settings.dedupe_window_s, settings.dedupe_max_ids)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "scr_service_requests",
            "POST /v1/events requests by response status",
            ["status"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "scr_service_duplicate_events",
            "Events received again within the de-duplication window (not captured twice)",
            registry=self.registry,
        )

    def _authorized(self, request: Request) -> bool:
        return self.settings.allow_unauthenticated or self.keys.allows(request.headers)

    def _answer(self, response: JSONResponse) -> JSONResponse:
        self.requests.labels(str(response.status_code)).inc()
        return response

    # --- POST /v1/events ---------------------------------------------------------------------
    async def post_events(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._answer(_error(401, "unauthorized", "missing or invalid API key"))
        limit = self.settings.max_body_bytes
        try:
            raw = await read_body(request.stream(), limit)
            body = decode_body(raw, request.headers.get("content-encoding", ""), limit)
            items = parse_events(body, request.headers.get("content-type", "").lower())
        except BodyError as exc:
            return self._answer(_error(exc.status, exc.error, exc.message))
        if len(items) > self.settings.max_events_per_request:
            most = self.settings.max_events_per_request
            return self._answer(_error(413, "too_many_events", f"at most {most} per request"))

        key = request.headers.get("idempotency-key", "").strip()
        digest = hashlib.sha256(body).hexdigest() if key else ""
        if key:
            replay = self._idempotent_replay(key, digest)
            if replay is not None:
                return self._answer(replay)

        events, errors = validate_events(items)
        if errors:
            message = f"{len(errors)} of {len(items)} events are invalid; nothing was accepted"
            return self._answer(_error(400, "invalid_events", message, errors=errors))
        if not self.runtime.enabled:
            return self._answer(
                _error(503, "capture_disabled", "capture is disabled (SCR_ENABLED)")
            )
        if not self.runtime.router.running:
            await asyncio.to_thread(self.runtime.start)
            if not self.runtime.router.running:
                return self._answer(_error(503, "router_down", "the router is not running"))
        return self._answer(self._capture(events, key, digest))

    def _idempotent_replay(self, key: str, digest: str) -> JSONResponse | None:
        """The answer to a retried request, or None if ``key`` is new."""
        previous = self.seen.get("key:" + key)
        if previous is None:
            return None
        seen_digest, _, joined = previous.partition("\n")
        if seen_digest != digest:
            return _error(422, "idempotency_key_reused", "Idempotency-Key reused with another body")
        event_ids = joined.split(",") if joined else []
        self.duplicates.inc(len(event_ids))
        return JSONResponse({"accepted": 0, "duplicates": len(event_ids), "event_ids": event_ids})

    def _capture(self, events: list[dict[str, Any]], key: str, digest: str) -> JSONResponse:
        event_ids: list[str] = []
        fresh: list[dict[str, Any]] = []
        in_request: set[str] = set()
        for event in events:
            event_id = event["event_id"]
            event_ids.append(event_id)
            if event_id in in_request or event_id in self.seen:
                continue
            in_request.add(event_id)
            fresh.append(event)
        duplicates = len(events) - len(fresh)
        self.duplicates.inc(duplicates)

        accepted = dropped = 0
        received_at = time.time()
        for event in fresh:
            # Finalised here (timestamp, duration) so /events/recent shows what destinations get.
            finalize_event(event, received_at)
            encoded = to_json(event)
            try:
                receipt = self.runtime.capture(event)
            except InvalidEventError as exc:  # finalised events are valid; never a 500 anyway
                logger.error("re-validation failed: %s", exc, extra={"event_id": event["event_id"]})
                dropped += 1
                continue
            if receipt.done and receipt.status == DROPPED:  # ingest buffer full
                dropped += 1
                continue
            accepted += 1
            self.seen.add(event["event_id"])
            self.recent.add(encoded)
        body = {"accepted": accepted, "duplicates": duplicates, "event_ids": event_ids}
        if dropped:
            # Not recorded as seen: the client's retry re-sends them and the accepted ones
            # are recognised as duplicates.
            message = f"{dropped} events could not be buffered; retry the request"
            return _error(503, "overloaded", message, dropped=dropped, **body)
        if key:
            self.seen.add("key:" + key, digest + "\n" + ",".join(event_ids))
        logger.debug("accepted %d events (%d duplicates)", accepted, duplicates)
        return JSONResponse(body, 202 if accepted else 200)

    # --- operators ----------------------------------------------------------------------------
    async def recent_events(self, request: Request) -> Response:
        if self.settings.protect_recent and not self._authorized(request):
            return _error(401, "unauthorized", "missing or invalid API key")
        raw_limit = request.query_params.get("limit")
        limit = None
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                limit = -1
            if limit < 0:
                return _error(400, "invalid_limit", "limit must be a non-negative integer")
        return Response(
            self.recent.render(limit),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def health(self, request: Request) -> Response:
        healthy, body = self.runtime.health()
        body["service"] = {
            "recent_events": len(self.recent),
            "dedupe_ids": len(self.seen),
            "auth": "none" if self.settings.allow_unauthenticated else "api_key",
        }
        return JSONResponse(body, 200 if healthy else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        # The runtime's own exposition (the seed's names, shaped so the guide's shell check
        # works), then the service's counters. In multiprocess mode the runtime's rendering
        # already aggregates every metric file, these counters included.
        body, content_type = self.runtime.metrics_text()
        if multiprocess_dir() is None:
            body += generate_latest(self.registry)
        return Response(body, headers={"Content-Type": content_type})


def create_app(
    runtime: SessionCompletionRuntime | None = None,
    *,
    config: ConfigSource = None,
    settings: ServiceSettings | None = None,
) -> Starlette:
    """The service app. Without ``runtime`` it builds one from ``config`` (env + defaults when
    None) and owns it: started at lifespan start-up, flushed and shut down at the end.

    Raises ``ConfigError`` for a bad config or when no API key is configured.
    """
    settings = settings if settings is not None else ServiceSettings.from_env()
    if not settings.api_keys and not settings.allow_unauthenticated:
        raise ConfigError(
            "api_key", "no API key configured: set SCR_API_KEY or pass --api-key (or --no-auth)"
        )
    owns = runtime is None
    runtime = runtime if runtime is not None else SessionCompletionRuntime(config=config)
    service = SCRService(runtime, settings, owns)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(service.runtime.start)
        try:
            yield
        finally:
            if service.owns_runtime:
                await asyncio.to_thread(service.runtime.shutdown)

    app = Starlette(
        routes=[
            Route("/v1/events", service.post_events, methods=["POST"]),
            Route("/events/recent", service.recent_events, methods=["GET"]),
            Route("/health", service.health, methods=["GET"]),
            Route("/metrics", service.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.scr_service = service
    return app
