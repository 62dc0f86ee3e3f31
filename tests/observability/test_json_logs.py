"""JSON log lines with the seed's fields; configure_logging stays inside scr_middleware."""

from __future__ import annotations

import io
import json
import logging
import re
import threading

from scr_middleware.observability import configure_logging, get_logger, log_once

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_has_the_seed_fields_in_order() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger("capture").info(
        "Event captured successfully",
        extra={"event_id": "evt_abc123", "session_id": "sess_xyz789", "latency_ms": 3.2},
    )
    [line] = lines(out)
    assert list(line) == [
        "timestamp",
        "level",
        "component",
        "message",
        "event_id",
        "session_id",
        "latency_ms",
    ]
    assert TIMESTAMP.match(str(line["timestamp"]))
    assert line["level"] == "INFO"
    assert line["component"] == "capture"
    assert line["message"] == "Event captured successfully"
    assert (line["event_id"], line["session_id"], line["latency_ms"]) == (
        "evt_abc123",
        "sess_xyz789",
        3.2,
    )


def test_optional_fields_only_when_present() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    get_logger("router.worker").warning("retrying %s", "billing", extra={"destination": "billing"})
    get_logger("capture").debug("plain", extra={"component": "sse"})
    first, second = lines(out)
    assert first == {
        "timestamp": first["timestamp"],
        "level": "WARNING",
        "component": "router.worker",
        "message": "retrying billing",
        "destination": "billing",
    }
    assert set(second) == {"timestamp", "level", "component", "message"}
    assert second["component"] == "sse"  # explicit component wins over the logger name


def test_exception_and_unserialisable_values() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("capture").exception("failed", extra={"obj": object()})
    [line] = lines(out)
    assert "ValueError: boom" in str(line["exception"])
    assert str(line["obj"]).startswith("<object object")


def test_configure_is_idempotent_and_leaves_root_alone() -> None:
    root = logging.getLogger()
    root_before = (list(root.handlers), root.level)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("warning", "json", stream=second)
    logger = logging.getLogger("scr_middleware")
    ours = [h for h in logger.handlers if type(h).__name__ == "_ScrHandler"]
    assert len(ours) == 1
    get_logger("capture").info("hidden at warning level")
    get_logger("capture").warning("shown")
    assert first.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["shown"]
    assert (list(root.handlers), root.level) == root_before
    assert logger.propagate is False


def test_foreign_handlers_on_our_logger_are_kept() -> None:
    logger = logging.getLogger("scr_middleware")
    foreign = logging.NullHandler()
    logger.addHandler(foreign)
    configure_logging("info", "json", stream=io.StringIO())
    configure_logging("info", "text", stream=io.StringIO())
    assert foreign in logger.handlers


def test_text_format() -> None:
    out = io.StringIO()
    configure_logging("info", "text", stream=out)
    get_logger("capture").info("captured", extra={"event_id": "evt_1"})
    text = out.getvalue().strip()
    assert re.match(r"^\S+Z INFO \[capture\] captured event_id=evt_1$", text), text


def test_log_once_logs_a_key_once_across_threads() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logger = get_logger("extract")
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            results.append(
                log_once(logger, "openai.no_usage", logging.WARNING, "no usage", route="/v1")
            )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    [line] = lines(out)
    assert (line["level"], line["message"], line["route"]) == ("WARNING", "no usage", "/v1")
    assert log_once(logger, "another.key", "info", "second key")
    assert len(lines(out)) == 2


def test_log_once_with_reserved_field_names_does_not_raise() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    assert log_once(get_logger("capture"), "k", logging.INFO, "m", name="x", message="y")
    [line] = lines(out)
    assert (line["name_"], line["message_"], line["message"]) == ("x", "y", "m")
