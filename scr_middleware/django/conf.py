"""Django settings, read when used (django-cors-headers' ``conf.py`` pattern), so that
``override_settings`` in tests and settings changed after import are honoured."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from django.conf import settings

from scr_middleware.errors import ConfigError
from scr_middleware.extract.binding import ConfigSource

__all__ = ["MIDDLEWARE_PATHS", "Settings", "conf"]

# Both spellings a project may put in MIDDLEWARE.
MIDDLEWARE_PATHS = frozenset(
    {
        "scr_middleware.django.SessionCompletionMiddleware",
        "scr_middleware.django.middleware.SessionCompletionMiddleware",
    }
)


class Settings:
    """``SCR`` (a dict with the YAML block's structure) and ``SCR_CONFIG_FILE`` (a path)."""

    @property
    def SCR(self) -> Any:
        return getattr(settings, "SCR", None)

    @property
    def SCR_CONFIG_FILE(self) -> Any:
        return getattr(settings, "SCR_CONFIG_FILE", None)

    def config_source(self) -> ConfigSource:
        """``SCR``, else ``SCR_CONFIG_FILE``, else None (the ``SCR_CONFIG_FILE`` environment
        variable, then defaults). ``ConfigError`` when a setting has the wrong type."""
        source = self.SCR
        if source is not None:
            if not isinstance(source, MutableMapping):
                raise ConfigError("SCR", f"must be a dict, got {type(source).__name__}")
            return source
        path = self.SCR_CONFIG_FILE
        if not path:
            return None
        if not isinstance(path, str | os.PathLike):
            raise ConfigError("SCR_CONFIG_FILE", f"must be a path, got {type(path).__name__}")
        return path


conf = Settings()
