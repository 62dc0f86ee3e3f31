"""Config tests: the seed's YAML files (copied verbatim) and a writer for variants."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SEED_DIR = Path(__file__).parent / "seed"


@pytest.fixture
def seed_file() -> Path:
    """The seed's ``scr-config.yaml``, byte for byte."""
    return SEED_DIR / "scr-config.yaml"


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "scr-config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
