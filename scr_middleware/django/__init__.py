"""Django adapter: ``"scr_middleware.django.SessionCompletionMiddleware"`` in ``MIDDLEWARE``;
``"scr_middleware.django"`` in ``INSTALLED_APPS`` adds system checks (``scr_middleware.E001``...).
Settings: ``SCR = {...}`` (the YAML block's structure) or ``SCR_CONFIG_FILE``."""

from __future__ import annotations

from .middleware import SessionCompletionMiddleware

__all__ = ["SessionCompletionMiddleware"]
