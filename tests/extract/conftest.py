"""Observer fixtures (the root conftest makes internal errors re-raise and resets logs)."""

from __future__ import annotations

import pytest

from scr_middleware.router.stats import RuntimeStats


@pytest.fixture
def stats() -> RuntimeStats:
    return RuntimeStats()
