"""SqliteDestination on real database files in tmp_path, including two writer processes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dest_helpers import build, deliver, make_event, make_records, send_expecting

from scr_middleware.destinations import (
    PermanentDeliveryError,
    Record,
    SqliteDestination,
    TransientDeliveryError,
    ledger_totals,
    read_ledger,
)
from scr_middleware.destinations import sqlite as sqlite_mod
from scr_middleware.destinations.sqlite import ledger_columns, sqlite_path
from scr_middleware.transforms import NAMED_TRANSFORMS, to_json

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path, query: str = "SELECT event_id FROM events ORDER BY rowid") -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def test_writes_rows_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "ledger.db"
    destination, _ = build(f"sqlite:///{db}")
    assert isinstance(destination, SqliteDestination)
    batch = make_records(3)
    deliver(destination, (batch, "bat_1"))

    assert db.is_file()  # parent directories were created
    assert rows(db) == [(record.event_id,) for record in batch]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    (stored,) = rows(db, "SELECT payload FROM events LIMIT 1")
    assert '"event_id"' in stored[0]


def test_redelivery_is_deduplicated(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    destination, _ = build(f"sqlite:///{db}")
    batch = make_records(2)
    extra = make_records(1)
    altered = [Record(batch[0].event_id, {**batch[0].payload, "user_id": "someone_else"})]
    deliver(
        destination,
        (batch, "bat_1"),
        (batch, "bat_1"),
        ([*batch, *extra], "bat_2"),
        (altered, "bat_3"),
    )
    assert len(rows(db)) == 3
    # The first write wins: a ledger row is never rewritten by a redelivery.
    assert rows(db, "SELECT event_id, user_id FROM events ORDER BY rowid") == [
        (batch[0].event_id, "user_1"),
        (batch[1].event_id, "user_1"),
        (extra[0].event_id, "user_1"),
    ]


@pytest.mark.parametrize("transform", sorted(NAMED_TRANSFORMS))
def test_columns_extracted_from_every_named_transform(tmp_path: Path, transform: str) -> None:
    event = make_event(
        user_id="u_42",
        organization_id="org_9",
        usage={"input_tokens": 11, "output_tokens": 7, "model": "gpt-4o-mini"},
        outcome={"status": "timeout"},
    )
    payload = NAMED_TRANSFORMS[transform](event)
    db = tmp_path / "ledger.db"
    destination, _ = build(f"sqlite:///{db}")
    deliver(destination, ([Record(event["event_id"], payload)], "bat"))

    (row,) = read_ledger(db)
    assert {key: row[key] for key in sqlite_mod.COLUMNS} == {
        "timestamp": "2025-12-21T10:45:23.123Z",
        "session_id": event["session_id"],
        "user_id": "u_42",
        "organization_id": "org_9",
        "model": "gpt-4o-mini",
        "input_tokens": 11,
        "output_tokens": 7,
        "total_tokens": 18,
        "status": "timeout",
    }
    assert row["event_id"] == event["event_id"]
    assert row["payload"] == payload
    assert isinstance(row["received_at"], float)


def test_columns_tolerate_odd_payloads() -> None:
    assert ledger_columns({"event_id": "x"}) == dict.fromkeys(sqlite_mod.COLUMNS)
    odd = ledger_columns(
        {"timestamp": 1766313923, "input_tokens": True, "output_tokens": 2.5, "user_id": 7}
    )
    assert odd["timestamp"] == "2025-12-21T10:45:23.000Z"
    assert odd["input_tokens"] is None
    assert odd["output_tokens"] is None
    assert odd["user_id"] == "7"
    assert ledger_columns({"timestamp": "yesterday"})["timestamp"] is None


def test_retention_prunes_at_open_and_hourly(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    old = make_records(2, timestamp="2000-01-01T00:00:00Z")
    fresh = make_records(1, timestamp=time.time())
    plain, _ = build(f"sqlite:///{db}")
    deliver(plain, ([*old, *fresh], "bat_seed"))
    assert len(rows(db)) == 3

    # Opening with retention prunes what is older than the window.
    keeper, _ = build(f"sqlite:///{db}", retention_days=30)
    deliver(keeper, (make_records(1), "bat_after_open"))
    remaining = {row[0] for row in rows(db)}
    assert not {record.event_id for record in old} & remaining
    assert fresh[0].event_id in remaining

    # During sends, pruning runs again only once the hourly window has passed.
    keeper, _ = build(f"sqlite:///{db}", retention_days=30)

    async def scenario() -> None:
        await keeper.open()
        late = make_records(1, timestamp="2001-01-01T00:00:00Z")
        await keeper.send(late, "bat_late")
        assert late[0].event_id in {row[0] for row in rows(db)}  # inside the window: kept
        assert isinstance(keeper, SqliteDestination)
        keeper._last_prune -= sqlite_mod.PRUNE_INTERVAL_S + 1
        await keeper.send(make_records(1), "bat_trigger")
        assert late[0].event_id not in {row[0] for row in rows(db)}
        await keeper.close()

    asyncio.run(scenario())


def test_retention_uses_arrival_time_without_timestamp(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    conn = sqlite_mod.connect_ledger(db)
    conn.execute(
        "INSERT INTO events (event_id, payload, received_at) VALUES ('a', '{}', ?), ('b', '{}', ?)",
        (time.time() - 10 * 86400, time.time()),
    )
    assert sqlite_mod.prune(conn, 5) == 1
    assert conn.execute("SELECT event_id FROM events").fetchall() == [("b",)]
    conn.close()


def test_locked_database_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "ledger.db"
    sqlite_mod.connect_ledger(db).close()
    monkeypatch.setattr(sqlite_mod, "BUSY_TIMEOUT_MS", 100)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        destination, _ = build(f"sqlite:///{db}")
        error = send_expecting(destination, make_records(1), TransientDeliveryError)
        assert "locked" in str(error)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_not_a_database_is_permanent(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    db.write_bytes(b"this is not sqlite" * 100)
    destination, _ = build(f"sqlite:///{db}")
    send_expecting(destination, make_records(1), PermanentDeliveryError)


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import asyncio, os, sys, time
        from scr_middleware.config_model import Config, DestinationConfig
        from scr_middleware.destinations import Record, create_destination

        db, worker, go = sys.argv[1], sys.argv[2], sys.argv[3]
        config = DestinationConfig(name="ledger", endpoint=f"sqlite:///{db}")
        destination = create_destination(config, Config(destinations=(config,)))

        async def main():
            await destination.open()
            deadline = time.monotonic() + 30
            while not os.path.exists(go) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for batch in range(40):
                records = [
                    Record(f"{worker}-{batch}-{i}", {"event_id": f"{worker}-{batch}-{i}",
                           "user_id": worker, "usage": {"input_tokens": 1, "total_tokens": 1}})
                    for i in range(10)
                ]
                # Overlapping ids from both workers: deduped, never an error.
                records.append(Record(f"shared-{batch}", {"event_id": f"shared-{batch}"}))
                await destination.send(records, f"bat_{worker}_{batch}")
            await destination.close()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db), name, str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    go.touch()
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr

    assert len(rows(db)) == 2 * 40 * 10 + 40
    totals = {row["user_id"]: row for row in ledger_totals(db)}
    assert totals["w1"]["count"] == totals["w2"]["count"] == 400
    assert totals["w1"]["input_tokens"] == 400


def test_read_helpers(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    batch = [
        *make_records(
            2, user_id="alice", usage={"input_tokens": 3, "output_tokens": 1, "model": "m1"}
        ),
        *make_records(
            1, user_id="alice", usage={"input_tokens": 5, "output_tokens": 5, "model": "m2"}
        ),
        *make_records(
            1, user_id="bob", usage={"input_tokens": 2, "output_tokens": 2, "model": "m1"}
        ),
        *make_records(1, user_id=None, usage={"model": "m1"}),
    ]
    destination, _ = build(f"sqlite:///{db}")
    deliver(destination, (batch[:3], "bat_a"), (batch[3:], "bat_b"))

    everything = read_ledger(db)
    assert [row["event_id"] for row in everything] == [record.event_id for record in batch]
    newest = read_ledger(f"sqlite:///{db}", limit=2)
    assert [row["event_id"] for row in newest] == [record.event_id for record in batch[-2:]]
    assert ledger_totals(db) == [
        {
            "user_id": "alice",
            "model": "m1",
            "input_tokens": 6,
            "output_tokens": 2,
            "total_tokens": 8,
            "count": 2,
        },
        {
            "user_id": "alice",
            "model": "m2",
            "input_tokens": 5,
            "output_tokens": 5,
            "total_tokens": 10,
            "count": 1,
        },
        {
            "user_id": "bob",
            "model": "m1",
            "input_tokens": 2,
            "output_tokens": 2,
            "total_tokens": 4,
            "count": 1,
        },
        {
            "user_id": None,
            "model": "m1",
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "count": 1,
        },
    ]


def test_read_helpers_on_missing_or_empty_ledger(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "absent.db") == []
    assert ledger_totals(tmp_path / "absent.db") == []
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert read_ledger(empty) == []
    assert ledger_totals(empty) == []


def test_endpoint_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:////tmp/x.db") == Path("/tmp/x.db")
    assert sqlite_path("sqlite:///rel.db") == tmp_path / "rel.db"
    assert sqlite_path("sqlite:///sub/dir/rel.db") == tmp_path / "sub" / "dir" / "rel.db"
    assert sqlite_path("SQLITE:///a%20b.db") == tmp_path / "a b.db"
    assert sqlite_path("sqlite:///~/x.db") == Path.home() / "x.db"
    for bad in (
        "sqlite://",
        "sqlite:///",
        "sqlite://host/x.db",
        "sqlite:///dir/",
        "sqlite:///x.db?mode=ro",
    ):
        with pytest.raises(ValueError):
            sqlite_path(bad)

    # The relative path is fixed at construction, not at each write.
    destination, _ = build("sqlite:///ledger.db")
    monkeypatch.chdir(tmp_path.parent)
    deliver(destination, (make_records(1), "bat"))
    assert (tmp_path / "ledger.db").is_file()


@pytest.mark.parametrize(
    "raw",
    [
        {"session_id": "a", "user_id": "u", "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
        {"session_id": "b", "usage": {"total_tokens": 7, "model": "m"}, "outcome": "error"},
        {"session_id": "c", "organization_id": "o", "timestamp": "2025-01-02T03:04:05Z"},
        {"session_id": "d", "usage": {"input_tokens": 2**63, "output_tokens": 1}},
    ],
)
def test_canonical_fast_path_matches_the_general_columns(raw: dict[str, object]) -> None:
    from scr_middleware.destinations.sqlite import COLUMNS, _canonical_columns, ledger_columns
    from scr_middleware.events import finalize_event, normalize_event

    event = finalize_event(normalize_event(raw), 1_700_000_000.0)
    general = ledger_columns(event)
    fast = _canonical_columns(event)
    if raw["session_id"] == "d":
        assert fast is None  # beyond SQLite's INTEGER: the general path decides
    else:
        assert fast == tuple(general[name] for name in COLUMNS)


def test_prepared_rows_match_the_general_path(tmp_path: Path) -> None:
    """prepare() reads a router-finalised event's columns directly; whatever it cannot trust
    (a PII rule that replaced a whole field, a count beyond SQLite's integers) still gives
    the row the general path would, never a failed batch."""
    destination, _ = build(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert isinstance(destination, SqliteDestination)
    plain = make_event()
    redacted = {**make_event(), "usage": "[REDACTED]", "outcome": "[REDACTED]"}
    huge = make_event(usage={"input_tokens": 2**70, "output_tokens": 1, "model": "m"})
    for event in (plain, redacted, huge):
        fast = destination.prepare(dict(event), to_json(event))
        general = destination.prepare(dict(event), None)
        assert fast == general
    assert destination.prepare(dict(huge), to_json(huge))[5] is None  # input_tokens column
    records = [Record(e["event_id"], destination.prepare(e, to_json(e))) for e in (plain, huge)]
    deliver(destination, (records, "bat"))
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
