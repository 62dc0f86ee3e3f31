"""CLI tests run ``scr`` as a subprocess, with a clean SCR_* environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SCR_ENDPOINT", "SCR_API_KEY", "SCR_CONFIG_FILE", "SCR_ENABLED", "SCR_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
