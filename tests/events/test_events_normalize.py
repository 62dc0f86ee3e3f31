"""``normalize_event``: every accepted input shape, the fast path, and errors by path."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from event_strategies import bad_events, fast_events, valid_events
from hypothesis import HealthCheck, given, settings

from scr_middleware import InvalidEventError
from scr_middleware import events as events_mod
from scr_middleware.events import normalize_event, normalize_event_full

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_ID = re.compile(r"^evt_[0-9a-f]{12}[0-9a-f]{8,}$")
COUNT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)


def expected_event(raw: dict[str, Any], usage: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The canonical event ``raw`` must become: an independent oracle, field by field."""

    def as_id(value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    outcome = raw.get("outcome")
    if outcome is None:
        outcome = {"status": "success"}
    elif isinstance(outcome, str):
        outcome = {"status": outcome}
    else:
        outcome = dict(outcome)
    known = {
        "event_id", "event_type", "schema_version", "session_id", "session_type", "user_id",
        "organization_id", "input_modality", "transport", "message_count", "duration_ms",
        "metadata", "request", "outcome", "usage", "timestamp", "start_time", "end_time",
        "input_tokens", "output_tokens", "total_tokens", "model",
    }  # fmt: skip
    metadata = dict(raw.get("metadata") or {})
    for key, value in raw.items():
        if key not in known:
            metadata.setdefault(key, value)
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "session.completed",
        "schema_version": "1",
        "timestamp": raw.get("timestamp"),
        "session_id": as_id(raw["session_id"]),
        "session_type": raw.get("session_type"),
        "user_id": as_id(raw.get("user_id")),
        "organization_id": as_id(raw.get("organization_id")),
        "start_time": raw.get("start_time"),
        "end_time": raw.get("end_time"),
        "duration_ms": None if raw.get("duration_ms") is None else float(raw["duration_ms"]),
        "usage": usage,
        "outcome": outcome,
        "metadata": metadata,
    }
    for key in ("input_modality", "transport", "message_count"):
        if key in raw:
            event[key] = raw[key]
    if "request" in raw:
        event["request"] = dict(raw["request"])
    return event


@PROPERTY
@given(valid_events())
def test_every_accepted_shape_normalises_to_the_canonical_event(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw, usage = case
    before = copy.deepcopy(raw)
    event = normalize_event(raw)
    assert raw == before, "normalize_event must not mutate its input"
    event_id = raw.get("event_id") or event["event_id"]
    if "event_id" not in raw:
        assert EVENT_ID.match(event["event_id"])
    assert event == expected_event(raw, usage, event_id)
    for field in COUNT_FIELDS:
        value = event["usage"].get(field)
        assert value is None or (type(value) is int and value >= 0), (field, value)
    tokens_in, tokens_out = event["usage"]["input_tokens"], event["usage"]["output_tokens"]
    if tokens_in is not None and tokens_out is not None:
        assert event["usage"]["total_tokens"] is not None, "total_tokens must be derived"


@PROPERTY
@given(valid_events())
def test_fast_and_full_paths_agree_on_every_valid_input(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw = {"event_id": "evt_fixed", **case[0]}
    assert normalize_event(raw) == normalize_event_full(raw)


@PROPERTY
@given(fast_events())
def test_fast_path_shape_agrees_with_the_full_path(raw: dict[str, Any]) -> None:
    raw = {**raw, "event_id": raw.get("event_id", "evt_fixed")}
    fast = events_mod._fast_normalize(raw)
    assert fast is not None, "the common shape must take the fast path"
    assert fast == normalize_event_full(raw) == normalize_event(raw)


@PROPERTY
@given(bad_events())
def test_errors_name_every_bad_field_by_path(case: tuple[dict[str, Any], set[str]]) -> None:
    raw, expected_paths = case
    for normalize in (normalize_event, normalize_event_full):
        with pytest.raises(InvalidEventError) as caught:
            normalize(raw)
        reported = {path for path, _ in caught.value.errors}
        assert reported == expected_paths
        for path in expected_paths:
            assert f"{path}: " in str(caught.value)


def test_seed_gateway_shape_uses_the_openai_usage_names() -> None:
    event = normalize_event(
        {
            "event_type": "session.completed",
            "session_id": "chatcmpl-1",
            "user_id": "u1",
            "organization_id": "org1",
            "usage": {"prompt_tokens": 12, "completion_tokens": 30, "model": "gpt-4"},
            "outcome": {"status": "success"},
        }
    )
    assert event["usage"] == {
        "input_tokens": 12,
        "output_tokens": 30,
        "total_tokens": 42,
        "model": "gpt-4",
        "source": "reported",
    }


def test_canonical_name_wins_over_its_alias_in_either_order() -> None:
    for usage in (
        {"prompt_tokens": 5, "input_tokens": 7},
        {"input_tokens": 7, "prompt_tokens": 5},
    ):
        assert normalize_event({"session_id": "s", "usage": usage})["usage"]["input_tokens"] == 7


def test_usage_object_wins_over_the_flat_realtime_fields() -> None:
    event = normalize_event(
        {"session_id": "s", "input_tokens": 1, "model": "flat", "usage": {"input_tokens": 9}}
    )
    assert event["usage"]["input_tokens"] == 9
    assert event["usage"]["model"] == "flat"  # only the usage object's absent model is filled


def test_chat_app_shape_without_usage_is_missing_not_zero() -> None:
    event = normalize_event(
        {
            "event_type": "session.completed",
            "session_id": "sess",
            "session_type": "chat",
            "duration_ms": 1234,
            "message_count": 3,
            "outcome": {"status": "user_terminated"},
        }
    )
    assert event["usage"]["source"] == "missing"
    assert event["usage"]["total_tokens"] is None
    assert event["duration_ms"] == 1234.0


def test_not_a_mapping_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalize_event(["session_id", "s"])  # type: ignore[arg-type]
    assert caught.value.errors[0][0] == ""


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400])
def test_duration_must_be_finite(value: float) -> None:
    with pytest.raises(InvalidEventError) as caught:
        normalize_event({"session_id": "s", "duration_ms": value})
    assert [path for path, _ in caught.value.errors] == ["duration_ms"]
