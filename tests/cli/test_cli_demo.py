"""``scr demo``: real gateway traffic through the middleware, then every shape of the guide
through the SDK, into the embedded ledger."""

from __future__ import annotations

import io
from pathlib import Path

from cli_helpers import run_scr

from scr_middleware.demo import run_demo
from scr_middleware.destinations.sqlite import ledger_totals, read_ledger

GATEWAY_EVENTS = 16  # 3 callers x 5 calls, and one request for a missing model


def test_demo_on_a_fresh_directory(tmp_path: Path) -> None:
    result = run_scr("demo", "--events", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "captured 16 sessions directly" in result.stdout
    assert f"{GATEWAY_EVENTS} requests through the middleware -> {GATEWAY_EVENTS} events" in (
        result.stdout
    )
    assert f"ledger: {16 + GATEWAY_EVENTS}/{16 + GATEWAY_EVENTS} delivered" in result.stdout
    ledger = tmp_path / ".scr" / "ledger.sqlite3"
    rows = read_ledger(ledger)
    assert len(rows) == 16 + GATEWAY_EVENTS
    types = {row["payload"]["session_type"] for row in rows}
    assert types == {None, "chat", "autonomous", "realtime", "embedding", "response"}
    statuses = {row["status"] for row in rows}
    assert statuses == {"success", "user_terminated", "error"}
    gateway = [r for r in rows if (r["payload"].get("request") or {}).get("path")]
    assert len(gateway) == GATEWAY_EVENTS
    assert {r["user_id"] for r in gateway} == {"user_alice", "user_bob", "user_carol"}
    # Every streamed chat completion, with or without include_usage, has exact usage.
    chats = [
        r for r in gateway if r["payload"]["session_type"] == "chat" and r["status"] == "success"
    ]
    assert len(chats) == 9
    assert all(r["payload"]["usage"]["source"] == "reported" for r in chats)
    assert all(r["total_tokens"] == r["input_tokens"] + r["output_tokens"] for r in chats)
    agent = next(r for r in rows if r["payload"]["session_type"] == "autonomous")
    assert "final_output" in agent["payload"]["outcome"]
    realtime = next(r for r in rows if r["payload"]["session_type"] == "realtime")
    assert realtime["payload"]["transport"] == "websocket"
    assert realtime["payload"]["duration_ms"] > 0
    # The printed table is the ledger's own per-user, per-model totals.
    for total in ledger_totals(ledger):
        if total["model"] is not None:
            line = next(
                line
                for line in result.stdout.splitlines()
                if line.split()[:2] == [total["user_id"], total["model"]]
            )
            assert line.split()[2:] == [
                str(total["count"]),
                str(total["input_tokens"]),
                str(total["output_tokens"]),
                str(total["total_tokens"]),
            ]


def test_demo_respects_scr_data_dir_and_reports_only_this_run(tmp_path: Path) -> None:
    data = tmp_path / "state"
    first = run_scr("demo", "--events", "4", cwd=tmp_path, SCR_DATA_DIR=str(data))
    second = run_scr("demo", "--events", "8", cwd=tmp_path, SCR_DATA_DIR=str(data))
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert not (tmp_path / ".scr").exists()
    assert len(read_ledger(data / "ledger.sqlite3")) == 12 + 2 * GATEWAY_EVENTS
    total = 8 + GATEWAY_EVENTS
    assert f"{total} of this run's {total} events" in second.stdout


def test_run_demo_with_configured_destinations(tmp_path: Path) -> None:
    config = {
        "destinations": [
            {"name": "billing", "endpoint": f"sqlite:///{tmp_path}/billing.db"},
            {"name": "events", "endpoint": f"file://{tmp_path}/events.jsonl"},
        ],
        "storage": {"data_dir": str(tmp_path / "data")},
    }
    out = io.StringIO()
    assert run_demo(8, config, out=out) == 0
    text = out.getvalue()
    total = 8 + GATEWAY_EVENTS
    assert f"billing: {total}/{total} delivered" in text
    assert f"events: {total}/{total} delivered" in text
    assert f"ledger {tmp_path}/billing.db: {total} of this run's {total} events" in text
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == total
