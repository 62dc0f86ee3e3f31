"""Django adapter tests. Django is configured in-process from the test site's settings (for
the protocol-level tests); the real-server and system-check tests run it in subprocesses."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "wsgi"))

import django
from django.conf import settings
from wsgi_kit import Captured, captured, internal_errors_raise

import scr_middleware.runtime as runtime_module

__all__ = ["captured", "internal_errors_raise", "shared"]

if not settings.configured:
    import scr_django_site.settings as site

    settings.configure(**{name: getattr(site, name) for name in dir(site) if name.isupper()})
    django.setup()


@pytest.fixture
def shared(
    captured: Callable[..., Captured], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Captured]:
    """A runtime standing in for the process-wide one for the duration of a test: Django's
    middleware has no ``runtime=`` argument, it feeds ``get_runtime()``."""

    def make(middleware: dict[str, Any] | None = None) -> Captured:
        cap = captured(middleware)
        monkeypatch.setattr(runtime_module, "_shared", cap.runtime)
        return cap

    return make


@pytest.fixture(autouse=True)
def _no_scr_settings() -> Iterator[None]:
    from django.test import override_settings

    with override_settings(SCR=None, SCR_CONFIG_FILE=None):
        yield
