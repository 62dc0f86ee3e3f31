"""Service tests: the Starlette app under real uvicorn, its runtime delivering to memory://."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_helpers import Service, UvicornThread, start_service


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SCR_ENDPOINT", "SCR_API_KEY", "SCR_CONFIG_FILE", "SCR_ENABLED", "SCR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    runtime, name, app = start_service(tmp_path)
    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Service(runtime, name, server, client)
    runtime.shutdown(5.0)
