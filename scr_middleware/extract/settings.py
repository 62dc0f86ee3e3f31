"""Observer settings, compiled once from ``MiddlewareConfig`` at start-up.

Everything that can be wrong in the ``middleware:`` block (route patterns, extractor and
identity-callable import paths, identity source syntax) fails here as a ``ConfigError`` naming
the key, never on a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from scr_middleware.config_model import MiddlewareConfig
from scr_middleware.errors import ConfigError

from .extractors import (
    Extractor,
    all_builtin,
    is_default_chain,
    load_object,
    resolve_extractor,
    resolve_extractors,
)
from .identity import IdentityCallable, IdentityResolver, parse_sources
from .routes import RouteMatch, RouteMatcher

# Only POST creates an LLM session; GET (stored-completion listings), HEAD and OPTIONS
# (CORS preflight) on the same paths pass through unobserved.
OBSERVED_METHODS = frozenset({"POST"})


@dataclass(frozen=True)
class ObserverSettings:
    enabled: bool = True
    routes: RouteMatcher = field(default_factory=RouteMatcher)
    extractors: tuple[Extractor, ...] = ()
    identity: IdentityResolver = field(
        default_factory=lambda: IdentityResolver(
            parse_sources(("framework_user", "body:user"), "", allow_framework_user=True),
            parse_sources(("header:openai-organization",), "", allow_framework_user=False),
        )
    )
    max_body_bytes: int = 10 * 1024 * 1024
    max_request_body_bytes: int = 1024 * 1024
    ensure_stream_usage: bool = False
    session_type: str | None = None
    offload: str = "auto"  # MiddlewareConfig.offload
    # Derived from ``extractors`` (``__post_init__``): the built-in chain can be short-cut for
    # JSON bodies, and built-in extractors only need a skim of a stream.
    default_extractors: bool = field(default=True, init=False)
    builtin_extractors: bool = field(default=True, init=False)
    # Extractors named by @scr_route(extractor="pkg.mod:fn"), resolved on first use.
    _route_extractors: dict[str, Extractor | None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, cfg: MiddlewareConfig) -> ObserverSettings:
        for key in ("max_body_bytes", "max_request_body_bytes"):
            value = getattr(cfg, key)
            if type(value) is not int or value < 0:
                raise ConfigError(
                    f"middleware.{key}", f"must be a non-negative integer, got {value!r}"
                )
        callable_: IdentityCallable | None = None
        if cfg.identity_callable:
            target = load_object(cfg.identity_callable, "middleware.identity_callable")
            if not callable(target):
                raise ConfigError("middleware.identity_callable", "must name a callable")
            callable_ = cast(IdentityCallable, target)
        identity = IdentityResolver(
            parse_sources(
                cfg.user_id_sources, "middleware.user_id_sources", allow_framework_user=True
            ),
            parse_sources(
                cfg.organization_id_sources,
                "middleware.organization_id_sources",
                allow_framework_user=False,
            ),
            callable_,
        )
        return cls(
            enabled=cfg.enabled,
            routes=RouteMatcher(cfg.include_routes, cfg.exclude_routes),
            extractors=resolve_extractors(cfg.extractors),
            identity=identity,
            max_body_bytes=cfg.max_body_bytes,
            max_request_body_bytes=cfg.max_request_body_bytes,
            ensure_stream_usage=cfg.ensure_stream_usage,
            session_type=cfg.session_type,
            offload=cfg.offload,
        )

    def __post_init__(self) -> None:
        if not self.extractors:
            object.__setattr__(self, "extractors", resolve_extractors(()))
        object.__setattr__(self, "default_extractors", is_default_chain(self.extractors))
        object.__setattr__(self, "builtin_extractors", all_builtin(self.extractors))

    def match(self, path: str) -> RouteMatch | None:
        """None when the path is not observed (or the middleware is disabled)."""
        if not self.enabled:
            return None
        return self.routes.match(path)

    def observes(self, method: str, path: str) -> RouteMatch | None:
        """``match`` restricted to the methods that create sessions: the adapters' gate."""
        if method not in OBSERVED_METHODS or not self.enabled:
            return None
        return self.routes.match(path)

    def route_extractor(self, spec: str | Callable[..., Any]) -> Extractor | None:
        """The extractor named by a route decorator; None (counted by the caller) if it
        cannot be resolved. Cached, so a bad name costs one import attempt per process."""
        if not isinstance(spec, str):
            return resolve_extractor(spec, "scr_route.extractor")
        with self._lock:
            if spec in self._route_extractors:
                return self._route_extractors[spec]
        try:
            found: Extractor | None = resolve_extractor(spec, "scr_route.extractor")
        except ConfigError:
            found = None
        with self._lock:
            self._route_extractors[spec] = found
        return found
