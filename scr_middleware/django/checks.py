"""System checks (``manage.py check``), registered by ``ScrMiddlewareConfig``. Stable ids:

- ``scr_middleware.E001``: the settings are invalid (the ``ConfigError`` message, naming the key)
- ``scr_middleware.E002``: the config file (``SCR_CONFIG_FILE``) is missing or unreadable
- ``scr_middleware.W001``: the middleware is not in ``MIDDLEWARE``: nothing is captured
- ``scr_middleware.W002``: both ``SCR`` and ``SCR_CONFIG_FILE`` are set: the file is ignored
- ``scr_middleware.W003``: the middleware is listed twice: every session is captured twice

Where the middleware sits relative to others does not matter for correctness (it decodes
gzip'd bodies and reads ``request.user`` when the response is done), so there is no order check.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from scr_middleware.errors import ConfigError

from .conf import MIDDLEWARE_PATHS, conf

__all__ = ["check_settings", "validate_source"]


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    messages.extend(_check_middleware())
    if conf.SCR is not None and conf.SCR_CONFIG_FILE:
        messages.append(
            Warning(
                "Both SCR and SCR_CONFIG_FILE are set; SCR_CONFIG_FILE is ignored.",
                hint="Keep one of them.",
                id="scr_middleware.W002",
            )
        )
    file_error = _check_file()
    if file_error is not None:
        messages.append(file_error)
        return messages  # the file's own problem; E001 would only repeat it
    try:
        validate_source()
    except ConfigError as exc:
        messages.append(
            Error(
                f"Invalid scr-middleware settings: {exc}",
                hint="See docs/django.md; the keys are those of the YAML block.",
                id="scr_middleware.E001",
            )
        )
    return messages


def validate_source() -> None:
    """Everything start-up validates, without building a runtime: ``ConfigError`` if bad."""
    from scr_middleware.config import load_config
    from scr_middleware.destinations.registry import validate_endpoint
    from scr_middleware.extract.settings import ObserverSettings
    from scr_middleware.runtime import effective_destinations
    from scr_middleware.transforms import load_transform

    config = load_config(conf.config_source())
    ObserverSettings.from_config(config.middleware)
    configured = not config.endpoint and bool(config.destinations)
    for index, destination in enumerate(effective_destinations(config)):
        prefix = f"destinations[{index}]" if configured else "endpoint"
        validate_endpoint(destination.endpoint, f"{prefix}.endpoint", tls=destination.tls)
        load_transform(destination.transform, f"{prefix}.transform")
    if config.pii.enabled:
        from scr_middleware.pii import PiiScrubber

        PiiScrubber(config.pii)


def _check_middleware() -> list[CheckMessage]:
    listed = [
        path for path in getattr(settings, "MIDDLEWARE", None) or () if path in MIDDLEWARE_PATHS
    ]
    if not listed:
        return [
            Warning(
                "scr_middleware.django is installed but its middleware is not in MIDDLEWARE, "
                "so no sessions are captured.",
                hint="Add 'scr_middleware.django.SessionCompletionMiddleware' to MIDDLEWARE.",
                id="scr_middleware.W001",
            )
        ]
    if len(listed) > 1:
        return [
            Warning(
                "SessionCompletionMiddleware is listed more than once in MIDDLEWARE; every "
                "session would be captured once per listing.",
                hint="Keep a single entry.",
                id="scr_middleware.W003",
            )
        ]
    return []


def _check_file() -> CheckMessage | None:
    """E002 for the file the settings point at (the setting, else the environment variable)."""
    if conf.SCR is not None:
        return None
    path: Any = conf.SCR_CONFIG_FILE
    name = "SCR_CONFIG_FILE setting"
    if not path:
        path = os.environ.get("SCR_CONFIG_FILE")
        name = "SCR_CONFIG_FILE environment variable"
    if not path:
        return None
    if not isinstance(path, str | os.PathLike):
        problem = f"must be a path, got {type(path).__name__}"
    else:
        try:
            with open(path, "rb"):
                return None
        except OSError as exc:
            problem = f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}"
    return Error(
        f"The {name} {problem}.",
        hint="Point it at a readable YAML file, or put the settings in SCR = {...}.",
        id="scr_middleware.E002",
    )
