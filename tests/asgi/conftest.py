"""ASGI adapter tests: internal errors fail tests (the failsafe re-raises), logs start clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.extract import failsafe
from scr_middleware.router.stats import RuntimeStats
from scr_middleware.runtime import SessionCompletionRuntime

from .helpers import MemoryRuntime


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
