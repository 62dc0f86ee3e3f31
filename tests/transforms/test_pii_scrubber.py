"""PiiScrubber: field paths, each detector, custom regexes, and no mutation of the input."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scr_middleware.config_model import PIIConfig
from scr_middleware.errors import ConfigError
from scr_middleware.pii import PiiScrubber, luhn_valid

R = "[REDACTED]"


def scrubber(*patterns: str, fields: tuple[str, ...] = ()) -> PiiScrubber:
    return PiiScrubber(PIIConfig(enabled=True, redact_fields=fields, redact_patterns=patterns))


def in_output(text: str, *patterns: str) -> str:
    event = {"outcome": {"status": "success", "final_output": text}}
    return scrubber(*patterns)(event)["outcome"]["final_output"]


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("email", "write to jane.doe+tag@mail.example.co.uk today", f"write to {R} today"),
        ("email", "x@y.io", R),
        ("phone", "call +1 415 555 2671 now", f"call {R} now"),
        ("phone", "(415) 555-2671", R),
        ("phone", "415.555.2671 or 4155552671", f"{R} or {R}"),
        ("phone", "+44 20 7946 0958", R),
        ("credit_card", "card 4111 1111 1111 1111 ok", f"card {R} ok"),
        ("credit_card", "amex 3782-822463-10005", f"amex {R}"),
        ("credit_card", "4242424242424242", R),
        ("ipv4", "from 192.168.10.254.", f"from {R}."),
        ("ipv4", "10.0.0.1:8080", f"{R}:8080"),
        ("ssn", "ssn 123-45-6789", f"ssn {R}"),
        ("ssn", "ssn 123 45 6789", f"ssn {R}"),
    ],
)
def test_detectors_redact(pattern: str, text: str, expected: str) -> None:
    assert in_output(text, pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("email", "not an email: user@localhost"),
        ("phone", "on 2025-12-21 10:45 we shipped 12345 units in 2024"),
        ("phone", "ts 2025-12-21T10:45:23.123Z version 1.2.3"),
        ("phone", "host 192.168.100.100"),
        ("phone", "id 123456789012345678"),
        ("credit_card", "4111 1111 1111 1112 fails Luhn"),
        ("credit_card", "short 4111 1111 111"),
        ("ipv4", "999.1.1.1 and 1.2.3 and v1.2.3.4.5"),
        ("ssn", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000 123-456789"),
    ],
)
def test_detectors_leave_lookalikes(pattern: str, text: str) -> None:
    assert in_output(text, pattern) == text


def test_card_is_not_half_eaten_by_phone() -> None:
    assert in_output("pay 4111 1111 1111 1111", "phone", "credit_card") == f"pay {R}"


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_custom_regex() -> None:
    assert in_output("key sk-abc123DEF456 here", "re:sk-[A-Za-z0-9]{8,}") == f"key {R} here"


def test_scans_metadata_and_final_output_recursively() -> None:
    event = {
        "session_id": "contact a@b.io",  # outside the scanned sections: untouched
        "outcome": {
            "status": "error",
            "error_type": "a@b.io",
            "final_output": {"steps": ["a@b.io", 3]},
        },
        "metadata": {
            "deep": {"list": [{"note": "mail c@d.io"}], "tuple": ("e@f.io",)},
            "count": 5,
            "c@d.io": "key left alone",
        },
    }
    out = scrubber("email")(event)
    assert out["session_id"] == "contact a@b.io"
    assert out["outcome"]["error_type"] == "a@b.io"
    assert out["outcome"]["final_output"] == {"steps": [R, 3]}
    assert out["metadata"]["deep"] == {"list": [{"note": f"mail {R}"}], "tuple": (R,)}
    assert out["metadata"]["count"] == 5
    assert out["metadata"]["c@d.io"] == "key left alone"


def test_redact_fields() -> None:
    event = {
        "user_id": "u1",
        "outcome": {"status": "success", "final_output": {"text": "secret"}},
        "metadata": {
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            "prompt": "tell me",
            "keep": "me",
            "items": ["a", "b"],
        },
    }
    out = PiiScrubber(
        PIIConfig(
            enabled=True,
            redact_fields=(
                "outcome.final_output",
                "metadata.messages.content",
                "metadata.items.1",
                "metadata.absent.path",
                "user_id",
            ),
            redact_patterns=(),
            replacement="***",
        )
    )(event)
    assert out["outcome"]["final_output"] == "***"
    assert out["metadata"]["messages"] == [
        {"role": "user", "content": "***"},
        {"role": "assistant", "content": "***"},
    ]
    assert out["metadata"]["items"] == ["a", "***"]
    assert out["metadata"]["keep"] == "me"
    assert "absent" not in out["metadata"]
    assert out["user_id"] == "***"


def test_defaults_redact_final_output_messages_and_prompt() -> None:
    event = {
        "outcome": {"status": "success", "final_output": "anything"},
        "metadata": {"messages": ["x"], "prompt": "p", "note": "call 415-555-2671"},
    }
    out = PiiScrubber(PIIConfig(enabled=True))(event)
    assert out["outcome"]["final_output"] == R
    assert out["metadata"] == {"messages": R, "prompt": R, "note": f"call {R}"}


def test_input_is_never_mutated() -> None:
    event: dict[str, Any] = {
        "user_id": "u1",
        "outcome": {"status": "success", "final_output": "mail a@b.io"},
        "metadata": {"messages": [{"content": "x@y.io"}], "nested": {"n": ["1.2.3.4"]}},
    }
    before = copy.deepcopy(event)
    out = PiiScrubber(
        PIIConfig(
            enabled=True,
            redact_fields=("metadata.messages.content", "user_id"),
            redact_patterns=("email", "ipv4"),
        )
    )(event)
    assert event == before
    assert out["metadata"]["nested"]["n"] == [R]
    assert out["metadata"] is not event["metadata"]
    assert out["outcome"] is not event["outcome"]


def test_very_deep_structures_fail_closed() -> None:
    deep: Any = "a@b.io"
    for _ in range(100):
        deep = {"d": deep}
    out = scrubber("email")({"metadata": deep})
    node = out["metadata"]
    while isinstance(node, dict):
        node = node["d"]
    assert node == R


@pytest.mark.parametrize(
    ("config", "path"),
    [
        (PIIConfig(redact_patterns=("email", "passport")), "pii.redact_patterns[1]"),
        (PIIConfig(redact_patterns=("re:(unclosed",)), "pii.redact_patterns[0]"),
        (PIIConfig(redact_patterns=("re:x*",)), "pii.redact_patterns[0]"),
        (PIIConfig(redact_fields=("metadata..x",)), "pii.redact_fields[0]"),
        (PIIConfig(redact_fields=("ok", "")), "pii.redact_fields[1]"),
    ],
)
def test_bad_settings_are_config_errors(config: PIIConfig, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PiiScrubber(config)
    assert caught.value.path == path
