"""Observer tests: internal errors fail tests (the failsafe re-raises), logs start clean."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scr_middleware.extract import failsafe
from scr_middleware.router.stats import RuntimeStats


@pytest.fixture(autouse=True)
def _raise_internal_errors() -> Iterator[None]:
    failsafe.RAISE_INTERNAL_ERRORS = True
    failsafe.reset_logged()
    yield
    failsafe.RAISE_INTERNAL_ERRORS = False
    failsafe.reset_logged()


@pytest.fixture
def stats() -> RuntimeStats:
    return RuntimeStats()
