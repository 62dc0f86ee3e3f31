"""Write many rows to SQLite in as few statements as possible.

Why not ``executemany``: the sqlite3 module releases the GIL around every ``sqlite3_step``,
once per row. In a busy host process (an event loop or a WSGI worker keeping the GIL), each
re-acquisition by the writer thread can wait a whole switch interval (5 ms), so a 100-row
``executemany`` took about 0.5 s and the ledger fell behind at a few hundred rows a second
(measured: 747 rows/s against 200,000 with an idle host thread). One multi-row ``INSERT`` is
one step: one GIL hand-off per batch, whatever its size. A single statement is atomic on its
own, so no explicit transaction is needed unless the rows span several statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

# SQLite's compile-time default before 3.32 was 999; newer builds allow 32766 or more.
_MAX_VARIABLES: Final = 32_766


@lru_cache(maxsize=64)  # batch sizes repeat; bounded since a statement can be large
def _values_sql(prefix: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{prefix} VALUES {','.join([row] * count)}"


def rows_per_statement(conn: sqlite3.Connection, width: int) -> int:
    limit = min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), _MAX_VARIABLES)
    return max(1, limit // width)


def insert_rows(
    conn: sqlite3.Connection, prefix: str, rows: Sequence[Sequence[Any]], width: int
) -> None:
    """``prefix`` is ``INSERT ... INTO table (columns)``; every row has ``width`` values.

    The connection must be in autocommit mode (``isolation_level=None``). All rows are
    written or none: one statement, or one ``BEGIN IMMEDIATE`` transaction when the rows need
    several statements (beyond SQLite's bound-variable limit).
    """
    if not rows:
        return
    step = rows_per_statement(conn, width)
    if len(rows) <= step:
        conn.execute(_values_sql(prefix, width, len(rows)), [v for row in rows for v in row])
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            conn.execute(_values_sql(prefix, width, len(chunk)), [v for r in chunk for v in r])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
