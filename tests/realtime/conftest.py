"""Realtime tests: a real runtime per test delivering to a memory:// destination."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rt_helpers import Captured

from scr_middleware.runtime import SessionCompletionRuntime


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Captured]:
    name = f"rt-{uuid.uuid4().hex}"
    runtime = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
            "storage": {"data_dir": str(tmp_path / "data")},
        },
        # Awaiting a receipt waits for delivery up to SCR_TIMEOUT_MS (100 ms by default); the
        # first capture also starts the router, which a loaded CI machine can take longer for.
        timeout_ms=10_000,
    )
    yield Captured(runtime, name)
    runtime.shutdown(5.0)
