"""ASGI adapter fixtures (the root conftest makes internal errors re-raise and resets logs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.router.stats import RuntimeStats
from scr_middleware.runtime import SessionCompletionRuntime

from .helpers import MemoryRuntime


@pytest.fixture
def stats() -> RuntimeStats:
    return RuntimeStats()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[MemoryRuntime]:
    """A real runtime delivering to a memory:// destination; flushes only when asked."""
    name = f"asgi-{uuid.uuid4().hex}"
    rt = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
            "capture": {"flush_interval_ms": 60000},
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    yield MemoryRuntime(rt, name)
    rt.shutdown(5.0)
