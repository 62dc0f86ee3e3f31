"""Behaviour of the named transforms beyond the golden files."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
import pytest
from transform_helpers import finalized

from scr_middleware.transforms import (
    NAMED_TRANSFORMS,
    analytics_v2,
    audit_v1,
    billing_v1,
    canonical,
    to_json,
)


@pytest.mark.parametrize("name", sorted(NAMED_TRANSFORMS))
def test_never_mutates_input_and_always_has_event_id(name: str, event: dict[str, Any]) -> None:
    before = copy.deepcopy(event)
    output = NAMED_TRANSFORMS[name](event)
    assert event == before
    assert output["event_id"] == event["event_id"]
    assert output is not event
    output["added"] = True
    assert "added" not in event


def test_canonical_is_a_copy_of_the_event(event: dict[str, Any]) -> None:
    assert canonical(event) == event


def test_billing_carries_no_free_text(event: dict[str, Any]) -> None:
    record = billing_v1(event)
    wire = to_json(record).decode()
    assert "help@example.com" not in wire  # final_output
    assert "hello" not in wire  # metadata.messages
    assert "eu-west-1" not in wire  # other metadata
    assert record["billing_tags"] == {"cost_center": "cc-42", "plan": "pro"}


def test_billing_without_tags_or_usage() -> None:
    record = billing_v1(finalized({"session_id": "s", "metadata": {"billing_tags": "not-a-dict"}}))
    assert "billing_tags" not in record
    assert record["input_tokens"] is None
    assert record["usage_source"] == "missing"
    assert record["status"] == "success"


def test_analytics_dims_keep_only_scalars() -> None:
    event = finalized(
        {
            "session_id": "s",
            "metadata": {
                "s": "x",
                "i": 3,
                "f": 1.5,
                "b": False,
                "none": None,
                "nan": math.nan,
                "list": [1],
                "dict": {"a": 1},
            },
        }
    )
    record = analytics_v2(event)
    assert record["dims"] == {"s": "x", "i": 3, "f": 1.5, "b": False}
    assert "request" not in record


def test_transforms_tolerate_a_bare_dict() -> None:
    """Custom pipelines may feed partial events; named transforms must not crash on them."""
    for transform in NAMED_TRANSFORMS.values():
        output = transform({"event_id": "e1"})
        assert output["event_id"] == "e1"


def test_audit_record_holds_a_detached_json_copy() -> None:
    event = finalized({"session_id": "s", "metadata": {"tags": ("a", "b"), "n": 2**70}})
    record = audit_v1(event)
    assert record["event"]["metadata"] == {"tags": ["a", "b"], "n": str(2**70)}
    record["event"]["metadata"]["n"] = 0
    assert event["metadata"]["n"] == 2**70
    assert orjson.loads(to_json(record))["event"]["session_id"] == "s"
