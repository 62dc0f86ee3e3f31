"""Multi-row SQLite writes: a few statements of power-of-two sizes per batch (so their SQL
texts repeat and stay compiled), atomic when a batch spans several statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.sqlite_batch import insert_rows, statement_sizes

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


def test_a_power_of_two_batch_is_one_statement(conn: sqlite3.Connection) -> None:
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [(i, f"row {i}") for i in range(512)], 2)
    assert len(seen) == 1
    assert seen[0].startswith(PREFIX)
    assert conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM t").fetchone() == (512, 0, 511)


def test_other_sizes_are_split_by_their_binary_digits_in_one_transaction(
    conn: sqlite3.Connection,
) -> None:
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [(i, f"row {i}") for i in range(100)], 2)
    inserts = [s for s in seen if s.startswith(PREFIX)]
    assert [s.count("(") - 1 for s in inserts] == [64, 32, 4]  # rows per statement
    assert (seen[0], seen[-1]) == ("BEGIN IMMEDIATE", "COMMIT")
    assert conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM t").fetchone() == (100, 0, 99)


def test_batches_of_any_size_share_a_few_statement_texts(conn: sqlite3.Connection) -> None:
    seen = _statements(conn)
    start = 0
    for size in range(1, 301):
        insert_rows(conn, PREFIX, [(start + i, "x") for i in range(size)], 2)
        start += size
    # (the trace shows the SQL with its values bound: count the rows of each statement)
    shapes = {s.count("(") - 1 for s in seen if s.startswith(PREFIX)}
    assert shapes == {1, 2, 4, 8, 16, 32, 64, 128, 256}  # each compiled once, then cached
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (start,)


def test_statement_sizes() -> None:
    assert statement_sizes(100, 1000) == [64, 32, 4]
    assert statement_sizes(12, 5) == [4, 4, 4]  # capped by the variable limit
    assert statement_sizes(7, 1) == [1] * 7
    assert statement_sizes(1, 2730) == [1]
    for count in range(1, 700):
        sizes = statement_sizes(count, 100)
        assert sum(sizes) == count
        assert all(size & (size - 1) == 0 and size <= 64 for size in sizes)


def test_rows_beyond_the_variable_limit_span_one_transaction(conn: sqlite3.Connection) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 5 rows of 2 per statement
    seen = _statements(conn)
    insert_rows(conn, PREFIX, [(i, "x") for i in range(12)], 2)
    assert seen[0] == "BEGIN IMMEDIATE"
    assert seen[-1] == "COMMIT"
    assert sum(s.startswith(PREFIX) for s in seen) == 3  # 4 + 4 + 4 rows
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
