"""Multi-row SQLite writes: one statement per batch, atomic when split across statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.sqlite_batch import insert_rows

PREFIX = "INSERT INTO t (id, body)"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    yield connection
    connection.close()


def _statements(connection: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    connection.set_trace_callback(seen.append)
    return seen


def test_a_batch_is_one_statement(conn: sqlite3.Connection) -> None:
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [(i, f"row {i}") for i in range(500)], 2)
    assert len(seen) == 1
    assert seen[0].startswith(PREFIX)
    assert conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM t").fetchone() == (500, 0, 499)


def test_rows_beyond_the_variable_limit_span_one_transaction(conn: sqlite3.Connection) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 5 rows of 2 per statement
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [(i, "x") for i in range(12)], 2)
    assert seen[0] == "BEGIN IMMEDIATE"
    assert seen[-1] == "COMMIT"
    assert sum(s.startswith(PREFIX) for s in seen) == 3
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (12,)


def test_a_failing_chunk_writes_nothing(conn: sqlite3.Connection) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
    rows: list[tuple[int, str | None]] = [(i, "x") for i in range(11)]
    rows.append((11, None))  # NOT NULL violation in the last statement
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(conn, PREFIX, rows, 2)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    assert not conn.in_transaction


def test_no_rows_no_statement(conn: sqlite3.Connection) -> None:
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [], 2)
    assert seen == []
