"""``"scr_middleware.django"`` in ``INSTALLED_APPS``: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class ScrMiddlewareConfig(AppConfig):  # type: ignore[misc]  # no django-stubs
    name = "scr_middleware.django"
    label = "scr_middleware"  # the default ("django") would read as Django's own
    verbose_name = "scr-middleware"

    def ready(self) -> None:
        from .checks import check_settings

        checks.register(check_settings)
