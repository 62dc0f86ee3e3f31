"""The on-disk dead-letter spool: one SQLite file per destination.

Events land here when they exhaust their retries, overflow the destination's queue, are
rejected permanently, or fail their transform. Rows are claimed with a lease before a replay
and deleted only after delivery, so a process killed mid-replay loses nothing: its lease
expires and another process (or the next start) claims the rows again.

Several processes (gunicorn workers) may share one spool file; SQLite's WAL and
``busy_timeout`` serialise them. Every method blocks: the router calls them on the spool's
own thread.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scr_middleware.sqlite_batch import insert_rows

LEASE_SECONDS = 300.0

REASON_RETRIES_EXHAUSTED = "retries_exhausted"
REASON_OVERFLOW = "overflow"
REASON_REJECTED = "rejected"  # permanent 4xx: replayed only on demand (`scr replay`)
REASON_TRANSFORM_FAILED = "transform_failed"  # replayed only on demand, after a fix
REASON_SHUTDOWN = "shutdown"  # still in memory when shutdown's timeout ran out
AUTO_REPLAY_REASONS = frozenset({REASON_RETRIES_EXHAUSTED, REASON_OVERFLOW, REASON_SHUTDOWN})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event BLOB NOT NULL,
    reason TEXT NOT NULL,
    auto_replay INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS spool_claim ON spool (auto_replay, lease_until, id);
"""
_PUT_PREFIX = "INSERT INTO spool (event_id, event, reason, auto_replay, created_at, last_error)"


class SpoolFullError(Exception):
    """The spool is at ``storage.spool_max_bytes`` or the disk refused the write."""


@dataclass(slots=True)
class SpooledEvent:
    row_id: int
    event_id: str
    event: bytes  # the canonical event as JSON


class Spool:
    def __init__(self, path: str | os.PathLike[str], max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def size_bytes(self) -> int:
        db = self._db()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(page_size)

    def put(self, events: Sequence[tuple[str, bytes]], reason: str, error: str | None) -> None:
        """Store events durably (committed before returning) or raise ``SpoolFullError``."""
        if not events:
            return
        try:
            if self.size_bytes() >= self.max_bytes:
                raise SpoolFullError(f"spool {self.path} is at its limit of {self.max_bytes} bytes")
            auto = 1 if reason in AUTO_REPLAY_REASONS else 0
            now = time.time()
            rows = [(eid, body, reason, auto, now, error) for eid, body in events]
            insert_rows(self._db(), _PUT_PREFIX, rows, 6)
        # Fix: OSError too. An unwritable directory fails in mkdir() before SQLite is reached;
        # uncaught, it killed the lane task (its events stuck in flight) and made shutdown()
        # raise into the host application.
        except (sqlite3.Error, OSError) as exc:  # disk full, read-only, corrupt file
            raise SpoolFullError(f"spool {self.path}: {exc}") from exc

    def claim(self, limit: int, include_manual: bool = False) -> list[SpooledEvent]:
        """Lease up to ``limit`` rows for replay, oldest first."""
        now = time.time()
        manual = "" if include_manual else "auto_replay = 1 AND"
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                f"UPDATE spool SET lease_owner = ?, lease_until = ?"
                f" WHERE id IN (SELECT id FROM spool WHERE {manual}"
                f" (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?)"
                f" RETURNING id, event_id, event",
                (self._owner, now + LEASE_SECONDS, now, limit),
            ).fetchall()
        rows.sort(key=lambda row: row[0])
        return [SpooledEvent(row[0], row[1], bytes(row[2])) for row in rows]

    def ack(self, row_ids: Iterable[int]) -> None:
        """Delete rows that were delivered."""
        ids = json.dumps(list(row_ids))  # one statement, not one GIL hand-off per row
        self._db().execute("DELETE FROM spool WHERE id IN (SELECT value FROM json_each(?))", (ids,))

    def release(self, row_ids: Iterable[int], error: str | None, reason: str) -> None:
        """Give leased rows back after a failed replay attempt, under the new ``reason``."""
        auto = 1 if reason in AUTO_REPLAY_REASONS else 0
        ids = json.dumps(list(row_ids))
        self._db().execute(
            "UPDATE spool SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1,"
            " last_error = ?, reason = ?, auto_replay = ?"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (error, reason, auto, ids),
        )

    def depth(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def replayable(self) -> int:
        now = time.time()
        query = (
            "SELECT COUNT(*) FROM spool WHERE auto_replay = 1"
            " AND (lease_until IS NULL OR lease_until < ?)"
        )
        return int(self._db().execute(query, (now,)).fetchone()[0])

    def summary(self) -> dict[str, int]:
        rows = self._db().execute("SELECT reason, COUNT(*) FROM spool GROUP BY reason").fetchall()
        return {str(reason): int(count) for reason, count in rows}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
