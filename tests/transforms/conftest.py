from __future__ import annotations

from typing import Any

import pytest
from transform_helpers import finalized, fixed_raw_event


@pytest.fixture
def event() -> dict[str, Any]:
    """The finalized fixed event (a fresh copy per test)."""
    return finalized(fixed_raw_event())
