"""audit_v1 content hash: verification and tamper detection."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from scr_middleware.transforms import audit_v1, to_json, verify_audit_record


def test_fresh_record_verifies(event: dict[str, Any]) -> None:
    record = audit_v1(event)
    assert record["content_hash"].startswith("sha256:")
    assert len(record["content_hash"]) == len("sha256:") + 64
    assert verify_audit_record(record)


def test_verifies_after_a_json_round_trip(event: dict[str, Any]) -> None:
    """What a receiver parses from the wire must verify too."""
    wire = to_json(audit_v1(event))
    assert verify_audit_record(json.loads(wire))


def set_tokens(record: dict[str, Any]) -> None:
    record["event"]["usage"]["output_tokens"] += 1


def set_user(record: dict[str, Any]) -> None:
    record["event"]["user_id"] = "someone_else"


def drop_output(record: dict[str, Any]) -> None:
    del record["event"]["outcome"]["final_output"]


def add_field(record: dict[str, Any]) -> None:
    record["event"]["metadata"]["injected"] = True


def swap_envelope_id(record: dict[str, Any]) -> None:
    record["event_id"] = "evt_other"


def swap_envelope_time(record: dict[str, Any]) -> None:
    record["recorded_at"] = "2030-01-01T00:00:00.000Z"


def forge_hash(record: dict[str, Any]) -> None:
    record["content_hash"] = "sha256:" + "0" * 64


def wrong_algorithm(record: dict[str, Any]) -> None:
    record["content_hash"] = record["content_hash"].replace("sha256:", "md5:")


@pytest.mark.parametrize(
    "tamper",
    [
        set_tokens,
        set_user,
        drop_output,
        add_field,
        swap_envelope_id,
        swap_envelope_time,
        forge_hash,
        wrong_algorithm,
    ],
)
def test_tampering_is_detected(
    event: dict[str, Any], tamper: Callable[[dict[str, Any]], None]
) -> None:
    record = copy.deepcopy(audit_v1(event))
    tamper(record)
    assert not verify_audit_record(record)


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"schema": "billing_v1"},
        {"schema": "audit_v1", "event": "nope", "content_hash": "sha256:00"},
        {"schema": "audit_v1", "event": {}, "content_hash": None},
        "not a mapping",
    ],
)
def test_malformed_records_do_not_verify(record: Any) -> None:
    assert not verify_audit_record(record)
