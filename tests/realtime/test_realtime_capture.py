"""capture_realtime_session_completion and RealtimeSessionTracker on recorded sessions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from rt_helpers import Captured, recorded, recorded_events

import scr_middleware
from scr_middleware import InvalidEventError
from scr_middleware.realtime import RealtimeSessionTracker, capture_realtime_session_completion

START = datetime(2025, 12, 21, 10, 45, 0, tzinfo=UTC)
END = START + timedelta(seconds=83, milliseconds=250)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (START, END),
        (START.timestamp(), END.timestamp()),
        (START.timestamp() * 1000, END.timestamp() * 1000),  # Date.now() style
        ("2025-12-21T10:45:00Z", "2025-12-21T10:46:23.250Z"),
        ("2025-12-21T05:45:00-05:00", "2025-12-21T10:46:23.250+00:00"),
    ],
)
def test_seed_call_with_every_time_form(captured: Captured, start: Any, end: Any) -> None:
    async def end_of_session() -> Any:
        return await capture_realtime_session_completion(
            session_id="sess_rt_1",
            user_id="user_42",
            organization_id="org_7",
            start_time=start,
            end_time=end,
            input_tokens=1200,
            output_tokens=340,
            model="gpt-realtime",
            outcome="success",
            input_modality="audio",
            transport="websocket",
            runtime=captured.runtime,
            call_sid="CA123",
        )

    receipt = asyncio.run(end_of_session())
    assert receipt.delivered  # awaiting waits for delivery (async_mode is off)
    (event,) = captured.events()
    assert event["session_type"] == "realtime"
    assert event["start_time"] == "2025-12-21T10:45:00.000Z"
    assert event["end_time"] == "2025-12-21T10:46:23.250Z"
    assert event["duration_ms"] == pytest.approx(83_250.0)
    assert event["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 340,
        "total_tokens": 1540,
        "model": "gpt-realtime",
        "source": "reported",
    }
    assert event["outcome"] == {"status": "success"}
    assert (event["input_modality"], event["transport"]) == ("audio", "websocket")
    assert event["metadata"] == {"call_sid": "CA123"}


def test_top_level_export_and_outcome_object(captured: Captured) -> None:
    receipt = scr_middleware.capture_realtime_session_completion(
        session_id="sess_rt_2",
        outcome={"status": "error", "error_type": "upstream_closed"},
        metadata={"region": "eu"},
        runtime=captured.runtime,
        attempt=2,
    )
    assert receipt.event_id
    (event,) = captured.events()
    assert event["outcome"] == {"status": "error", "error_type": "upstream_closed"}
    assert event["metadata"] == {"region": "eu", "attempt": 2}
    assert event["usage"]["source"] == "missing"


def test_invalid_values_raise_like_capture(captured: Captured) -> None:
    with pytest.raises(InvalidEventError, match="input_tokens"):
        capture_realtime_session_completion(
            session_id="s", input_tokens=-1, runtime=captured.runtime
        )
    with pytest.raises(InvalidEventError, match="start_time"):
        capture_realtime_session_completion(
            session_id="s", start_time="yesterday", runtime=captured.runtime
        )


def test_tracker_sums_a_recorded_session_exactly(captured: Captured) -> None:
    tracker = RealtimeSessionTracker(user_id="user_42", runtime=captured.runtime)
    for number, frame in enumerate(recorded()):
        # Proxies see text frames; the tracker takes text, bytes or parsed dicts alike.
        tracker.feed(frame if number % 3 else frame.encode())
    receipt = tracker.close()
    assert receipt is not None
    assert tracker.close() is receipt  # once

    (event,) = captured.events()
    assert event["session_id"] == "sess_C9gZ1xRt"
    assert event["usage"] == {
        "input_tokens": 171 + 310 + 361,
        "output_tokens": 82 + 92 + 16,
        "total_tokens": 253 + 402 + 377,
        "cached_input_tokens": 64 + 192 + 320,
        "audio_input_tokens": 52 + 52 + 103,
        "audio_output_tokens": 62 + 68 + 12,
        "model": "gpt-realtime",
        "source": "reported",
    }
    assert event["input_modality"] == "audio"
    assert event["transport"] == "websocket"
    assert event["outcome"] == {"status": "success"}
    assert event["metadata"]["realtime"] == {
        "responses": 3,
        "input_text_tokens": 119 + 258 + 258,
        "output_text_tokens": 20 + 24 + 4,
        "response_statuses": {"completed": 2, "cancelled": 1},
    }


def test_tracker_without_usage_on_a_response_is_estimated(captured: Captured) -> None:
    events = recorded_events()
    failed = {"type": "response.done", "response": {"id": "resp_X", "status": "failed"}}
    tracker = RealtimeSessionTracker(runtime=captured.runtime, input_modality="text")
    for event in [*events, failed]:
        tracker.feed(event)
    tracker.feed("not json")  # ignored, never raises
    tracker.feed(orjson.dumps(["not", "an", "event"]))
    tracker.close()

    (event,) = captured.events()
    assert event["usage"]["source"] == "estimated"
    assert event["usage"]["total_tokens"] == 1032
    assert event["input_modality"] == "text"


def test_tracker_error_event_and_context_manager(captured: Captured) -> None:
    error = {
        "type": "error",
        "event_id": "event_E1",
        "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "bad"},
    }
    with RealtimeSessionTracker("sess_given", runtime=captured.runtime) as tracker:
        tracker.feed(recorded_events()[0])
        tracker.feed(error)
    with (
        pytest.raises(ConnectionResetError),
        RealtimeSessionTracker("sess_crash", runtime=captured.runtime),
    ):
        raise ConnectionResetError

    events = {event["session_id"]: event for event in captured.events()}
    assert events["sess_given"]["outcome"] == {
        "status": "error",
        "error_type": "invalid_request_error",
    }
    assert events["sess_crash"]["outcome"] == {
        "status": "error",
        "error_type": "ConnectionResetError",
    }
    assert events["sess_crash"]["usage"]["source"] == "missing"


def test_tracker_without_a_session_id_captures_nothing(captured: Captured) -> None:
    tracker = RealtimeSessionTracker(runtime=captured.runtime)
    tracker.feed({"type": "response.done", "response": {"usage": {"input_tokens": 1}}})
    assert tracker.close() is None
    assert captured.events() == []
