"""Hypothesis strategies for ``session.completed`` inputs, each paired with what it must become.

``valid_events()`` draws ``(raw, expected_usage)`` over every accepted input shape (the seed's
gateway shape, OpenAI chat and Responses usage with ``*_details``, Anthropic cache names, the
realtime call's flat fields, integral floats, outcome as a string...). ``fast_events()`` draws
only the common shape the fast path handles. ``bad_events()`` draws an otherwise valid event
with several bad fields and the set of paths the error must name.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

STATUSES = ("success", "error", "user_terminated", "cancelled", "timeout")
MAX_COUNT = 10**12

counts = st.integers(min_value=0, max_value=MAX_COUNT)
text = st.text(min_size=1, max_size=12)
json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _count_input(value: int) -> st.SearchStrategy[int | float]:
    """A count as callers send it: an int, or sometimes the same value as an integral float."""
    if value < 2**53:
        return st.sampled_from([value, float(value)])
    return st.just(value)


@st.composite
def _count_as_sent(draw: st.DrawFn) -> tuple[Any, int]:
    value = draw(counts)
    return draw(_count_input(value)), value


def _expected_usage(
    tokens_in: int | None,
    tokens_out: int | None,
    total: int | None,
    model: str | None,
    details: dict[str, int],
) -> dict[str, Any]:
    if total is None and tokens_in is not None and tokens_out is not None:
        total = tokens_in + tokens_out
    reported = tokens_in is not None or tokens_out is not None or total is not None
    return {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": total,
        "model": model,
        **details,
        "source": "reported" if reported else "missing",
    }


@st.composite
def usage_shapes(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level fields to merge into the raw event, expected canonical usage)."""
    shape = draw(
        st.sampled_from(
            ["absent", "canonical", "openai_chat", "openai_responses", "anthropic", "realtime"]
        )
    )
    maybe_count = st.none() | _count_as_sent()
    model = draw(st.none() | text)
    if shape == "absent":
        return {}, _expected_usage(None, None, None, None, {})
    pair_in, pair_out, pair_total = draw(maybe_count), draw(maybe_count), draw(maybe_count)
    sent = [pair[0] if pair else None for pair in (pair_in, pair_out, pair_total)]
    value = [pair[1] if pair else None for pair in (pair_in, pair_out, pair_total)]
    details: dict[str, int] = {}
    usage: dict[str, Any] = {}
    if shape == "realtime":
        flat = {
            key: item
            for key, item in zip(
                ("input_tokens", "output_tokens", "total_tokens"), sent, strict=True
            )
            if item is not None
        }
        if model is not None:
            flat["model"] = model
        return flat, _expected_usage(value[0], value[1], value[2], model, details)
    names = {
        "canonical": ("input_tokens", "output_tokens"),
        "openai_chat": ("prompt_tokens", "completion_tokens"),
        "openai_responses": ("input_tokens", "output_tokens"),
        "anthropic": ("input_tokens", "output_tokens"),
    }[shape]
    for key, item in zip((*names, "total_tokens"), sent, strict=True):
        if item is not None or draw(st.booleans()):
            usage[key] = item  # an explicit null is accepted too
    if model is not None:
        usage["model"] = model
    if shape in ("openai_chat", "openai_responses"):
        prefix = ("prompt", "completion") if shape == "openai_chat" else ("input", "output")
        cached, audio_in = draw(st.none() | counts), draw(st.none() | counts)
        reasoning, audio_out = draw(st.none() | counts), draw(st.none() | counts)
        inbound = {
            k: v
            for k, v in (("cached_tokens", cached), ("audio_tokens", audio_in))
            if v is not None
        }
        outbound = {
            k: v
            for k, v in (("reasoning_tokens", reasoning), ("audio_tokens", audio_out))
            if v is not None
        }
        keep_empty_in, keep_empty_out = draw(st.booleans()), draw(st.booleans())
        if inbound or keep_empty_in:
            usage[f"{prefix[0]}_tokens_details"] = inbound
        if outbound or keep_empty_out:
            usage[f"{prefix[1]}_tokens_details"] = outbound
        for target, item in (
            ("cached_input_tokens", cached),
            ("audio_input_tokens", audio_in),
            ("reasoning_tokens", reasoning),
            ("audio_output_tokens", audio_out),
        ):
            if item is not None:
                details[target] = item
    if shape == "anthropic":
        cache_read, cache_creation = draw(st.none() | counts), draw(st.none() | counts)
        if cache_read is not None:
            usage["cache_read_input_tokens"] = cache_read
            details["cached_input_tokens"] = cache_read
        if cache_creation is not None:
            usage["cache_creation_input_tokens"] = cache_creation
            details["cache_creation_input_tokens"] = cache_creation
    if shape == "canonical" and draw(st.booleans()):
        source = draw(st.sampled_from(["reported", "estimated", "missing"]))
        usage["source"] = source
        expected = _expected_usage(value[0], value[1], value[2], model, details)
        expected["source"] = source
        return {"usage": usage}, expected
    return {"usage": usage}, _expected_usage(value[0], value[1], value[2], model, details)


outcomes = st.one_of(
    st.none(),
    st.sampled_from(STATUSES),
    st.builds(lambda status: {"status": status}, st.sampled_from(STATUSES)),
    st.fixed_dictionaries(
        {"status": st.sampled_from(STATUSES)},
        optional={
            "http_status": st.integers(100, 599),
            "error_type": text,
            "final_output": json_values,
        },
    ),
)

aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
time_values = st.one_of(
    aware_datetimes,
    aware_datetimes.map(lambda moment: moment.isoformat()),
    aware_datetimes.map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    st.floats(min_value=0, max_value=4e9),  # epoch seconds
    st.integers(min_value=int(2e11), max_value=int(4e12)),  # epoch milliseconds
)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    fields, usage = draw(usage_shapes())
    raw: dict[str, Any] = {"session_id": draw(text | st.integers(0, 10**9)), **fields}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "event_id": text,
        "event_type": st.just("session.completed"),
        "schema_version": st.just("1"),
        "session_type": st.sampled_from(
            ["chat", "completion", "embedding", "response", "realtime", "autonomous", "custom"]
        ),
        "user_id": st.none() | text | st.integers(0, 10**6),
        "organization_id": st.none() | text,
        "input_modality": st.sampled_from(["text", "audio"]),
        "transport": st.sampled_from(["websocket", "webrtc", "http"]),
        "message_count": counts,
        "duration_ms": st.integers(0, 10**9) | st.floats(0, 1e9),
        "metadata": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "request": st.fixed_dictionaries(
            {"method": st.sampled_from(["GET", "POST"]), "route": text, "path": text}
        ),
        "outcome": outcomes,
        "timestamp": time_values,
        "start_time": time_values,
        "end_time": time_values,
        "x_custom_field": json_values,  # unknown top-level keys land in metadata
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            raw[key] = draw(strategy)
    return raw, usage


@st.composite
def fast_events(draw: st.DrawFn) -> dict[str, Any]:
    """Only the common shape ``normalize_event``'s fast path takes (canonical, int counts)."""
    raw: dict[str, Any] = {"session_id": draw(text)}
    usage_keys = draw(
        st.lists(
            st.sampled_from(
                [
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                    "model",
                    "cached_input_tokens",
                    "reasoning_tokens",
                    "audio_output_tokens",
                    "source",
                ]
            ),
            unique=True,
        )
    )
    usage = {
        key: draw(
            text
            if key == "model"
            else st.sampled_from(["reported", "estimated", "missing"])
            if key == "source"
            else counts
        )
        for key in usage_keys
    }
    # The middleware's shape: epoch times, transport, outcome details.
    epoch = st.floats(0, 4e9, allow_nan=False) | st.integers(0, 4 * 10**12)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "event_id": text,
        "event_type": st.just("session.completed"),
        "session_type": st.sampled_from(["chat", "autonomous"]),
        "user_id": text,
        "organization_id": text,
        "usage": st.just(usage),
        "outcome": st.builds(lambda status: {"status": status}, st.sampled_from(STATUSES))
        | st.fixed_dictionaries(
            {"status": st.sampled_from(STATUSES), "http_status": st.integers(100, 599)},
            optional={"error_type": text},
        ),
        "start_time": epoch,
        "end_time": epoch,
        "transport": st.sampled_from(["http", "sse", "websocket"]),
        "input_modality": st.sampled_from(["text", "audio"]),
        "metadata": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "duration_ms": st.integers(0, 10**9) | st.floats(0, 1e9),
        "message_count": counts,
        "request": st.fixed_dictionaries({"method": st.just("POST"), "route": text}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            raw[key] = draw(strategy)
    return raw


# --- invalid input: (path, how to make it bad) --------------------------------------------
def _set(key: str, value: Any) -> Any:
    def apply(raw: dict[str, Any]) -> None:
        raw[key] = value

    return apply


def _set_in(section: str, key: str, value: Any) -> Any:
    def apply(raw: dict[str, Any]) -> None:
        target = raw.setdefault(section, {})
        target[key] = value

    return apply


# Each entry: (group, path the error must name, candidate bad values, applier factory).
# Within a group only one entry is drawn when the group is "whole" (e.g. usage not an object).
_BAD_TOP: list[tuple[str, list[Any]]] = [
    ("event_id", ["", 5, ["x"]]),
    ("event_type", ["session.started", None]),
    ("schema_version", ["2", 1]),
    ("user_id", [["u"], 1.5, {"id": 1}]),
    ("organization_id", [["o"], 2.5]),
    ("session_type", [5, ["chat"]]),
    ("input_modality", [1, ["audio"]]),
    ("transport", [2, {"kind": "ws"}]),
    ("duration_ms", [-1, "10", math.nan, math.inf, 10**400, True]),
    ("message_count", [-1, 2.5, "3", False]),
    ("request", ["POST /v1", 5]),
    ("metadata", ["x", 5, ["a"]]),
    ("timestamp", ["yesterday", -5, 1e20, math.nan, "0001-01-01T00:00:00+01:00", True]),
    ("start_time", ["soon", -1.5, 1e30]),
    ("end_time", ["later", [2025]]),
    ("input_tokens", [-1, 1.5, "7"]),  # the realtime call's flat fields
    ("output_tokens", [-2, "many"]),
    ("model", [5, ["gpt"]]),
]
_BAD_USAGE_FIELDS: list[tuple[str, list[Any]]] = [
    ("input_tokens", [-1, 1.5, "10", True]),
    ("output_tokens", [-5, "x", [1]]),
    ("total_tokens", [-1, 0.5]),
    ("prompt_tokens", [-3, "3"]),
    ("completion_tokens", [-4, 2.5]),
    ("cache_read_input_tokens", [-1]),
    ("cache_creation_input_tokens", ["lots"]),
    ("reasoning_tokens", [-7]),
    ("model", [5, ["gpt-4"]]),
    ("source", ["guessed", 3]),
    ("prompt_tokens_details", ["cached", 5]),
    ("completion_tokens_details", [["r"]]),
    ("surprise_field", ["x", [1], {"a": 1}]),  # unknown and not a count
]
_BAD_NESTED: list[tuple[str, str, list[Any]]] = [
    ("prompt_tokens_details", "cached_tokens", [-1, "1"]),
    ("input_tokens_details", "cached_tokens", [1.5]),
    ("completion_tokens_details", "reasoning_tokens", [-2]),
    ("output_tokens_details", "audio_tokens", ["a"]),
]
_BAD_OUTCOME_FIELDS: list[tuple[str, list[Any]]] = [
    ("status", ["done", 1]),
    ("http_status", [42, 600, "200", 200.0]),
    ("error_type", [5, ["Timeout"]]),
]


@st.composite
def bad_events(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid base event with several bad fields; returns it and every path to report."""
    raw: dict[str, Any] = {"session_id": "sess_1"}
    expected: set[str] = set()
    if draw(st.booleans()):
        raw["session_id"] = draw(st.sampled_from([None, "", ["s"], 1.5]))
        expected.add("session_id")
    for key, values in draw(
        st.lists(st.sampled_from(_BAD_TOP), max_size=6, unique_by=lambda e: e[0])
    ):
        raw[key] = draw(st.sampled_from(values))
        expected.add(key)
    usage_mode = draw(st.sampled_from(["none", "whole", "fields"]))
    if usage_mode == "whole":
        raw["usage"] = draw(st.sampled_from(["lots", 5, ["x"]]))
        expected.add("usage")
    elif usage_mode == "fields":
        usage: dict[str, Any] = {}
        picked = draw(
            st.lists(st.sampled_from(_BAD_USAGE_FIELDS), max_size=5, unique_by=lambda e: e[0])
        )
        for key, values in picked:
            usage[key] = draw(st.sampled_from(values))
            expected.add(f"usage.{key}")
        nested = draw(st.lists(st.sampled_from(_BAD_NESTED), max_size=2, unique_by=lambda e: e[0]))
        for container, inner, values in nested:
            if container in usage:
                continue  # that container is already bad as a whole
            usage[container] = {inner: draw(st.sampled_from(values))}
            expected.add(f"usage.{container}.{inner}")
        raw["usage"] = usage
    outcome_mode = draw(st.sampled_from(["none", "whole", "string", "fields"]))
    if outcome_mode == "whole":
        raw["outcome"] = draw(st.sampled_from([5, ["success"], 2.5]))
        expected.add("outcome")
    elif outcome_mode == "string":
        raw["outcome"] = draw(st.sampled_from(["done", "SUCCESS", ""]))
        expected.add("outcome.status")
    elif outcome_mode == "fields":
        outcome: dict[str, Any] = {"status": "error"}
        picked = draw(
            st.lists(
                st.sampled_from(_BAD_OUTCOME_FIELDS),
                min_size=1,
                max_size=3,
                unique_by=lambda e: e[0],
            )
        )
        for key, values in picked:
            outcome[key] = draw(st.sampled_from(values))
            expected.add(f"outcome.{key}")
        raw["outcome"] = outcome
    if not expected:
        raw["event_type"] = "session.started"
        expected.add("event_type")
    return raw, expected
