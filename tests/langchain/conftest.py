"""LangChain callback tests: a real runtime per test delivering to a memory:// destination."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lc_fakes import Captured

from scr_middleware.runtime import SessionCompletionRuntime


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[Captured]:
    name = f"lc-{uuid.uuid4().hex}"
    runtime = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    yield Captured(runtime, name)
    runtime.shutdown(5.0)
