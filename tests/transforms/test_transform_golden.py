"""Golden tests: the exact output of each named transform for one fixed event."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from scr_middleware.transforms import NAMED_TRANSFORMS

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(NAMED_TRANSFORMS))
def test_output_matches_golden(name: str, event: dict[str, Any]) -> None:
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    output = NAMED_TRANSFORMS[name](event)
    assert json.loads(json.dumps(output)) == expected
    # Key order is part of what consumers see in the wire JSON.
    assert list(output) == list(expected)


def test_audit_hash_is_reproducible_without_orjson(event: dict[str, Any]) -> None:
    """The documented recipe (sorted keys, compact, UTF-8) reproduces the pinned hash."""
    golden = json.loads((GOLDEN / "audit_v1.json").read_text())
    canonical_json = json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert golden["content_hash"] == "sha256:" + hashlib.sha256(canonical_json).hexdigest()
