"""``finalize_event`` (router thread): RFC 3339 UTC times, epoch units, derived duration."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from event_strategies import time_values, valid_events
from hypothesis import given, settings
from hypothesis import strategies as st

from scr_middleware.events import _epoch_rfc3339, finalize_event, format_rfc3339, normalize_event

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PROPERTY = settings(max_examples=200, deadline=None)
CAPTURED_AT = 1_766_313_923.123456  # 2025-12-21T10:45:23.123Z


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_utc(value: Any) -> datetime:
    """The instant a time input denotes (the test's own reading of the contract)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return to_utc(datetime.fromisoformat(value))
    seconds = value / 1000.0 if value > 1e11 else float(value)
    return datetime.fromtimestamp(seconds, UTC)


def floor_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@PROPERTY
@given(valid_events())
def test_every_normalised_event_finalises_to_rfc3339_utc(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw, _ = case
    event = finalize_event(normalize_event(raw), CAPTURED_AT)
    for key in ("timestamp", "start_time", "end_time"):
        if raw.get(key) is None:
            continue
        assert RFC3339_UTC.match(event[key]), (key, event[key])
        assert parse(event[key]) == floor_ms(to_utc(raw[key]))
    assert RFC3339_UTC.match(event["timestamp"])
    if event["duration_ms"] is not None:
        assert math.isfinite(event["duration_ms"])
        assert event["duration_ms"] >= 0


@PROPERTY
@given(
    st.one_of(
        time_values,
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.text(max_size=40),
        st.datetimes(
            timezones=st.sampled_from(
                [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]
            )
        ),
        st.datetimes(),
    )
)
def test_finalize_never_raises_on_what_normalize_accepted(value: Any) -> None:
    """The router thread finalizes; an exception there must be impossible by construction."""
    for key in ("timestamp", "start_time", "end_time"):
        try:
            event = normalize_event({"session_id": "s", key: value})
        except ValueError:
            continue  # rejected at capture(), on the caller's thread: fine
        finalized = finalize_event(event, CAPTURED_AT)
        assert RFC3339_UTC.match(finalized[key])


def test_timestamp_defaults_to_the_capture_time() -> None:
    event = finalize_event(normalize_event({"session_id": "s"}), CAPTURED_AT)
    assert event["timestamp"] == "2025-12-21T10:45:23.123Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_766_313_923, "2025-12-21T10:45:23.000Z"),  # epoch seconds
        (1_766_313_923.5, "2025-12-21T10:45:23.500Z"),
        (1_766_313_923_123, "2025-12-21T10:45:23.123Z"),  # epoch ms (JavaScript Date.now())
        ("2025-12-21T05:45:23.123-05:00", "2025-12-21T10:45:23.123Z"),
        ("2025-12-21T10:45:23Z", "2025-12-21T10:45:23.000Z"),
        ("2025-12-21T10:45:23", "2025-12-21T10:45:23.000Z"),  # naive: read as UTC
        (
            datetime(2025, 12, 21, 11, 45, 23, 123999, tzinfo=timezone(timedelta(hours=1))),
            "2025-12-21T10:45:23.123Z",
        ),
        ("0999-01-01T00:00:00Z", "0999-01-01T00:00:00.000Z"),  # four-digit year, always
    ],
)
def test_time_inputs_become_rfc3339_utc(value: Any, expected: str) -> None:
    event = finalize_event(normalize_event({"session_id": "s", "timestamp": value}), CAPTURED_AT)
    assert event["timestamp"] == expected


def test_duration_is_derived_from_start_and_end() -> None:
    event = normalize_event(
        {
            "session_id": "s",
            "start_time": 1_766_313_900_000,  # ms
            "end_time": "2025-12-21T10:45:23.250Z",
        }
    )
    finalized = finalize_event(event, CAPTURED_AT)
    assert finalized["duration_ms"] == pytest.approx(23_250.0)
    assert finalized["start_time"] == "2025-12-21T10:45:00.000Z"


def test_given_duration_is_kept_and_negative_spans_clamp_to_zero() -> None:
    kept = normalize_event({"session_id": "s", "start_time": 0, "end_time": 10, "duration_ms": 5})
    assert finalize_event(kept, CAPTURED_AT)["duration_ms"] == 5.0
    backwards = normalize_event({"session_id": "s", "start_time": 20, "end_time": 10})
    assert finalize_event(backwards, CAPTURED_AT)["duration_ms"] == 0.0


def test_format_rfc3339_reads_naive_as_utc() -> None:
    assert format_rfc3339(datetime(2025, 1, 2, 3, 4, 5, 678999)) == "2025-01-02T03:04:05.678Z"


@given(st.floats(min_value=0, max_value=253402300799.0, allow_nan=False))
def test_fast_epoch_formatting_agrees_with_datetime(seconds: float) -> None:
    assert _epoch_rfc3339(seconds) == format_rfc3339(datetime.fromtimestamp(seconds, UTC))
