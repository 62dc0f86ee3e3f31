"""ASGI adapter fixtures (the root conftest makes internal errors re-raise and resets logs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.router.stats import RuntimeStats
from scr_middleware.runtime import SessionCompletionRuntime

from .helpers import LedgerRuntime, MemoryRuntime


@pytest.fixture
def stats() -> RuntimeStats:
    return RuntimeStats()


@pytest.fixture(params=["inline", "process"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryRuntime]:
    """A real runtime; flushes only when asked. ``inline``: the middleware extracts in this
    process and events go to a memory:// destination. ``process``: the middleware records
    and a capture process extracts (asgi_record + offload), events go to a SQLite ledger."""
    name = f"asgi-{uuid.uuid4().hex}"
    if request.param == "inline":
        rt = SessionCompletionRuntime(
            config={
                "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
                "capture": {"flush_interval_ms": 60000},
                "storage": {"data_dir": str(tmp_path / "data")},
            }
        )
        yield MemoryRuntime(rt, name)
    else:
        ledger = tmp_path / "ledger.sqlite3"
        rt = SessionCompletionRuntime(
            config={
                "destinations": [{"name": "ledger", "endpoint": f"sqlite:///{ledger}"}],
                "capture": {"flush_interval_ms": 60000},
                "storage": {"data_dir": str(tmp_path / "data")},
                "middleware": {"offload": "process"},
            }
        )
        yield LedgerRuntime(rt, name, ledger)
    rt.shutdown(5.0)
