"""Adapter plumbing shared by every framework adapter (ASGI, WSGI, Flask, Django): settings
compiled once per process, and the runtime events go to."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from scr_middleware import runtime as _runtime
from scr_middleware.extract import failsafe
from scr_middleware.extract.observer import Observer
from scr_middleware.extract.request import RequestInfo
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import ObserverSettings

if TYPE_CHECKING:
    from scr_middleware.runtime import SessionCompletionRuntime

__all__ = ["Binding", "ConfigSource", "SharedRuntime"]

# A YAML path, a dict with the YAML's structure (Django ``SCR``, Flask ``app.config["SCR"]``),
# or None (``SCR_CONFIG_FILE``, then defaults).
ConfigSource = str | os.PathLike[str] | MutableMapping[str, Any] | None


class SharedRuntime:
    """The process-wide runtime, looked up per use: ``configure()`` may replace it. (Through
    the module attribute, not an import statement per event.)"""

    __slots__ = ()

    @property
    def stats(self) -> Any:
        return _runtime.get_runtime().stats

    def capture(self, event: dict[str, Any]) -> None:
        _runtime.get_runtime().capture_nowait(event)

    def capture_built(self, event: dict[str, Any]) -> None:
        _runtime.get_runtime().capture_built(event)

    def flush(self, timeout: float | None = None) -> bool:
        return _runtime.get_runtime().flush(timeout)


class Binding:
    """``config`` supplies the ``middleware:`` settings and, if the shared runtime does not
    exist yet, configures it; ``runtime`` sends events to that runtime instead of the shared
    one. Bad settings raise ``ConfigError`` here, at start-up, never on a request."""

    __slots__ = ("_sink", "capture", "capture_built", "settings", "stats")

    def __init__(
        self, config: ConfigSource = None, runtime: SessionCompletionRuntime | None = None
    ) -> None:
        from scr_middleware.config import load_config
        from scr_middleware.runtime import ensure_runtime, get_runtime

        if config is not None:
            cfg = load_config(config)
        else:
            cfg = runtime.config if runtime is not None else get_runtime().config
        # Settings first: a bad middleware block must not leave a configured shared runtime.
        settings = ObserverSettings.from_config(cfg.middleware)
        sink: Any = runtime
        if runtime is None:
            shared = ensure_runtime(cfg) if config is not None else get_runtime()
            enabled = shared.enabled
            sink = SharedRuntime()
        else:
            enabled = runtime.enabled
        if not enabled:  # SCR_ENABLED=false: every request passes straight through
            settings = dataclasses.replace(settings, enabled=False)
        self.settings = settings
        self._sink = sink
        # Nobody awaits a middleware event: skip the receipt (capture_nowait) where the
        # runtime offers it (a user-supplied runtime-like object may only have capture).
        self.capture: Callable[[dict[str, Any]], object] = getattr(
            sink, "capture_nowait", sink.capture
        )
        # Events the one-pass builders made skip most re-validation where the runtime can.
        self.capture_built: Callable[[dict[str, Any]], object] = getattr(
            sink, "capture_built", self.capture
        )
        self.stats = failsafe.StatsOf(sink)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what the runtime buffered (blocking: call it off the event loop)."""
        return bool(self._sink.flush(timeout))

    def observer(self, request: RequestInfo, match: RouteMatch) -> Observer:
        """A new observer for one request (never shared)."""
        return Observer(
            self.settings, request, self.capture, self.stats, match, emit_built=self.capture_built
        )
