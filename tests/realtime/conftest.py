"""Realtime tests: a real runtime per test delivering to a memory:// destination."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rt_helpers import Captured

from scr_middleware.extract import failsafe
from scr_middleware.runtime import SessionCompletionRuntime


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("SCR_ENDPOINT", "SCR_API_KEY", "SCR_CONFIG_FILE", "SCR_ENABLED", "SCR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    failsafe.RAISE_INTERNAL_ERRORS = True
    yield
    failsafe.RAISE_INTERNAL_ERRORS = False


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Captured]:
    name = f"rt-{uuid.uuid4().hex}"
    runtime = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    yield Captured(runtime, name)
    runtime.shutdown(5.0)
