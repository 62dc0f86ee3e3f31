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
from scr_middleware.extract.request import RequestInfo, environ_key
from scr_middleware.extract.routes import RouteMatch
from scr_middleware.extract.settings import ObserverSettings
from scr_middleware.offload.record import Record, replay_failsafe

if TYPE_CHECKING:
    from scr_middleware.offload import Offloader
    from scr_middleware.runtime import SessionCompletionRuntime

__all__ = ["Binding", "ConfigSource", "OffloadLink", "SharedRuntime"]

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

    __slots__ = (
        "_explicit",
        "_middleware",
        "_sink",
        "capture",
        "capture_built",
        "offload",
        "record_headers",
        "settings",
        "stats",
    )

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
        self._explicit = runtime
        self._middleware = cfg.middleware
        # Records go to a capture process unless the settings keep capture inline; a request
        # rewritten for ensure_stream_usage is observed as it happens, so it stays inline.
        self.offload: OffloadLink | None = None
        if settings.enabled and settings.offload != "inline" and not settings.ensure_stream_usage:
            self.offload = OffloadLink(self)
        # The request headers a record carries (WSGI, Django): the ones the identity sources
        # read, with their environ keys, or all of them (None) for an identity callable. A
        # name with "_" has no environ key: the environ's headers never have one.
        names = settings.identity.header_names()
        self.record_headers: tuple[tuple[str, str], ...] | None = (
            None
            if names is None
            else tuple((name, key) for name in names if (key := environ_key(name)) is not None)
        )

    def runtime(self) -> SessionCompletionRuntime:
        """The runtime events go to now (the shared one may have been replaced)."""
        return self._explicit if self._explicit is not None else _runtime.get_runtime()

    def replay_inline(self, record: Record, event_id: str | None = None) -> None:
        """Replay a record in this process (its capture process is unavailable or behind);
        ``event_id``: the one it was sent under, if it was sent."""
        replay_failsafe(
            record, self.settings, self.capture, self.capture_built, self.stats, event_id=event_id
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what the runtime buffered (blocking: call it off the event loop)."""
        return bool(self._sink.flush(timeout))

    def inline_observer(self, request: RequestInfo, match: RouteMatch | None) -> Observer:
        """A new ``Observer`` that extracts here, in this process."""
        return Observer(
            self.settings, request, self.capture, self.stats, match, emit_built=self.capture_built
        )


_UNRESOLVED: Any = object()


class OffloadLink:
    """A binding's way to its runtime's capture process: the ``Offloader`` and the key its
    records carry, resolved again when ``configure()`` replaced the shared runtime."""

    __slots__ = ("_binding", "key", "offloader", "runtime")

    def __init__(self, binding: Binding) -> None:
        self._binding = binding
        # Not None: the adapters test ``link.runtime is runtime._shared`` (None before the
        # shared runtime exists), and an unresolved link must not look resolved.
        self.runtime: object = _UNRESOLVED
        self.offloader: Offloader | None = None
        self.key = 0

    def now(self) -> Offloader | None:
        """``current()``, without looking the runtime up again while the shared runtime is
        the one resolved before (``configure()`` replaces ``runtime._shared``)."""
        return self.offloader if self.runtime is _runtime._shared else self.current()

    def current(self) -> Offloader | None:
        """The offloader for the runtime in use now; None: capture inline."""
        binding = self._binding
        runtime = binding.runtime()
        if runtime is not self.runtime:
            self.runtime = runtime
            # Only for a real runtime (a runtime-like test double has no offloader).
            find = getattr(runtime, "offloader", None)
            offloader = find(binding.settings.offload) if find is not None else None
            if offloader is not None:
                self.key = offloader.register(binding._middleware, binding.replay_inline)
            self.offloader = offloader
        return self.offloader
