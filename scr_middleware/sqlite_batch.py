"""Write many rows to SQLite in as few statements as possible.

Why not ``executemany``: the sqlite3 module releases the GIL around every ``sqlite3_step``,
once per row. In a busy host process (an event loop or a WSGI worker keeping the GIL), each
re-acquisition by the writer thread can wait a whole switch interval (5 ms), so a 100-row
``executemany`` took about 0.5 s and the ledger fell behind at a few hundred rows a second
(measured: 747 rows/s against 200,000 with an idle host thread). One multi-row ``INSERT`` is
one step: one GIL hand-off per statement, whatever its size.

Why statements of power-of-two sizes: SQLite compiles a statement per distinct SQL text, and a
multi-row ``INSERT`` of N rows costs about as much to compile as to run (measured by callgrind:
16k instructions per row, 40% of the ledger's write). Batch sizes vary with load, so one
statement per batch size compiled nearly every batch anew. A batch split by the binary digits
of its size (100 = 64 + 32 + 4) uses at most a dozen SQL texts, which stay in the connection's
statement cache, at the price of a few statements (and one transaction) per batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

# SQLite's compile-time default before 3.32 was 999; newer builds allow 32766 or more.
_MAX_VARIABLES: Final = 32_766


@lru_cache(maxsize=128)  # a dozen sizes per prefix (powers of two below the variable limit)
def _values_sql(prefix: str, width: int, count: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{prefix} VALUES {','.join([row] * count)}"


def rows_per_statement(conn: sqlite3.Connection, width: int) -> int:
    limit = min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), _MAX_VARIABLES)
    return max(1, limit // width)


def statement_sizes(count: int, most: int) -> list[int]:
    """``count`` rows as statements of power-of-two sizes of at most ``most`` rows, largest
    first: 100 rows -> [64, 32, 4]."""
    largest = 1 << (max(1, most).bit_length() - 1)  # the largest power of two <= most
    sizes = [largest] * (count // largest)
    rest = count % largest
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def insert_rows(
    conn: sqlite3.Connection, prefix: str, rows: Sequence[Sequence[Any]], width: int
) -> None:
    """``prefix`` is ``INSERT ... INTO table (columns)``; every row has ``width`` values.

    The connection must be in autocommit mode (``isolation_level=None``). All rows are
    written or none: one statement when the batch size is a power of two (within SQLite's
    bound-variable limit), else one ``BEGIN IMMEDIATE`` transaction of a few statements.
    """
    if not rows:
        return
    sizes = statement_sizes(len(rows), rows_per_statement(conn, width))
    if len(sizes) == 1:
        conn.execute(_values_sql(prefix, width, len(rows)), [v for row in rows for v in row])
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = 0
        for size in sizes:
            chunk = rows[start : start + size]
            start += size
            conn.execute(_values_sql(prefix, width, size), [v for r in chunk for v in r])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
