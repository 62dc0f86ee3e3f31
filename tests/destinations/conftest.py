from __future__ import annotations

from collections.abc import Iterator

import pytest
from sink import HttpSink


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server
