"""``sqlite:///path``: the embedded default ledger.

One row per event, keyed by ``event_id`` and written with ``INSERT OR IGNORE``, so redelivery
of a batch (a retry after a lost acknowledgement, a spool replay) never double counts. WAL mode
plus ``busy_timeout`` and ``BEGIN IMMEDIATE`` let several processes (gunicorn workers) append
to the same file. The usual billing columns are pulled out of the payload for querying; the
payload itself is kept whole as JSON.

``sqlite:///rel.db`` is relative to the working directory at start-up, ``sqlite:////abs.db``
is absolute (the path is everything after the third slash).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import unquote

import orjson

from scr_middleware.config_model import Config, DestinationConfig
from scr_middleware.events import format_rfc3339
from scr_middleware.sqlite_batch import insert_rows
from scr_middleware.transforms import to_json

from .base import PermanentDeliveryError, Record, ThreadedDestination, TransientDeliveryError

logger = logging.getLogger("scr_middleware.destinations.sqlite")

BUSY_TIMEOUT_MS: Final = 5000
PRUNE_INTERVAL_S: Final = 3600.0
_PRUNE_CHUNK: Final = 5000  # rows per delete transaction, so other writers are not starved

COLUMNS: Final = (
    "timestamp",
    "session_id",
    "user_id",
    "organization_id",
    "model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "status",
)
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS events (
        event_id TEXT PRIMARY KEY,
        timestamp TEXT,
        session_id TEXT,
        user_id TEXT,
        organization_id TEXT,
        model TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        total_tokens INTEGER,
        status TEXT,
        payload TEXT NOT NULL,
        received_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS events_timestamp ON events(timestamp)",
    "CREATE INDEX IF NOT EXISTS events_user_id ON events(user_id)",
)
_INSERT_PREFIX: Final = (
    f"INSERT OR IGNORE INTO events (event_id, {', '.join(COLUMNS)}, payload, received_at)"
)
_ROW_WIDTH: Final = len(COLUMNS) + 3


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if -(2**63) <= value < 2**63 else None


def _time(value: Any) -> str | None:
    # Only RFC 3339 text keeps the column sortable, which pruning relies on.
    if isinstance(value, str) and value[:4].isdigit() and value[4:5] == "-":
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        seconds = value / 1000.0 if value > 1e11 else float(value)  # epoch ms or s
        return format_rfc3339(datetime.fromtimestamp(seconds, UTC))
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


_INT64_MAX: Final = 2**63


def _canonical_columns(payload: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The ledger's own shape (the canonical event) read directly, ~10x faster than the
    general path; None for anything else or any surprising value."""
    if payload.get("schema_version") != "1":
        return None
    usage = payload.get("usage")
    outcome = payload.get("outcome")
    if type(usage) is not dict or type(outcome) is not dict:
        return None
    tokens = (usage.get("input_tokens"), usage.get("output_tokens"), usage.get("total_tokens"))
    for count in tokens:
        if count is not None and (type(count) is not int or not 0 <= count < _INT64_MAX):
            return None
    texts = (
        payload.get("timestamp"),
        payload.get("session_id"),
        payload.get("user_id"),
        payload.get("organization_id"),
        usage.get("model"),
        outcome.get("status"),
    )
    for text in texts:
        if text is not None and type(text) is not str:
            return None
    timestamp, session_id, user_id, organization_id, model, status = texts
    if timestamp is not None and not (timestamp[:4].isdigit() and timestamp[4:5] == "-"):
        return None
    return (timestamp, session_id, user_id, organization_id, model, *tokens, status)


def ledger_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The queryable columns of one payload, whichever named transform produced it.

    Reads the canonical shape (``usage.model``), ``billing_v1``'s flat fields,
    ``analytics_v2``'s nested ones and the event inside an ``audit_v1`` record.
    """
    source = payload
    if payload.get("schema") == "audit_v1" and isinstance(payload.get("event"), Mapping):
        source = payload["event"]
    get = source.get
    usage, outcome = _mapping(get("usage")), _mapping(get("outcome"))
    session, actor, tokens = (
        _mapping(get("session")),
        _mapping(get("actor")),
        _mapping(get("tokens")),
    )
    return {
        "timestamp": _time(_first(get("timestamp"), get("occurred_at"), get("recorded_at"))),
        "session_id": _text(_first(get("session_id"), session.get("id"))),
        "user_id": _text(_first(get("user_id"), actor.get("user_id"))),
        "organization_id": _text(_first(get("organization_id"), actor.get("organization_id"))),
        "model": _text(_first(usage.get("model"), get("model"))),
        "input_tokens": _count(
            _first(usage.get("input_tokens"), get("input_tokens"), tokens.get("input"))
        ),
        "output_tokens": _count(
            _first(usage.get("output_tokens"), get("output_tokens"), tokens.get("output"))
        ),
        "total_tokens": _count(
            _first(usage.get("total_tokens"), get("total_tokens"), tokens.get("total"))
        ),
        "status": _text(_first(outcome.get("status"), get("status"))),
    }


def _router_columns(event: dict[str, Any]) -> tuple[Any, ...] | None:
    """The columns of an event the router normalised and finalised (what the canonical
    transform hands over with its JSON): types are right by construction, so only the
    SQLite integer range is checked (token counts have no upper bound in the event). A
    field a PII rule replaced wholesale sends the event the general way."""
    try:
        usage = event["usage"]
        tokens = (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"])
        for count in tokens:
            if count is not None and count >= _INT64_MAX:
                return None
        status = event["outcome"]["status"]
    except (KeyError, TypeError):
        return None
    return (
        event["timestamp"],
        event["session_id"],
        event["user_id"],
        event["organization_id"],
        usage["model"],
        *tokens,
        status,
    )


def _prepared_row(payload: dict[str, Any], payload_json: bytes | None) -> tuple[Any, ...]:
    # payload_json is given only for the canonical transform of a router-finalised event.
    values = _canonical_columns(payload) if payload_json is None else _router_columns(payload)
    if values is None:
        columns = ledger_columns(payload)
        values = tuple(columns[name] for name in COLUMNS)
    text = (to_json(payload) if payload_json is None else payload_json).decode("utf-8")
    return (*values, text)


def sqlite_path(endpoint: str) -> Path:
    """The database file for ``sqlite:///path``; raises ``ValueError`` with the reason."""
    prefix = "sqlite:///"
    if endpoint[: len(prefix)].lower() != prefix:
        raise ValueError("must look like sqlite:///relative.db or sqlite:////absolute/path.db")
    rest = endpoint[len(prefix) :]
    if "?" in rest or "#" in rest:
        raise ValueError("query strings and fragments are not supported in sqlite:// endpoints")
    rest = unquote(rest)
    if not rest or rest.endswith("/"):
        raise ValueError("needs a file path after sqlite:///, e.g. sqlite:///scr-ledger.db")
    return Path(rest).expanduser().absolute()


def _busy_retry(action: Any, deadline_s: float = BUSY_TIMEOUT_MS / 1000) -> Any:
    # Switching journal_mode can report SQLITE_BUSY without consulting the busy handler
    # while another process initialises the same new file.
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect_ledger(path: Path) -> sqlite3.Connection:
    """A writer connection: WAL, busy timeout, durable commits, schema ensured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _busy_retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        # An acknowledged batch is a billing record: fsync each commit.
        conn.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            _busy_retry(lambda s=statement: conn.execute(s))
    except BaseException:
        conn.close()
        raise
    return conn


def prune(conn: sqlite3.Connection, retention_days: int, now: float | None = None) -> int:
    """Delete events older than ``retention_days`` (by event time, else arrival time)."""
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400.0
    cutoff_text = format_rfc3339(datetime.fromtimestamp(now, UTC) - timedelta(days=retention_days))
    removed = 0
    for where, arg in (
        ("timestamp < ?", cutoff_text),
        ("timestamp IS NULL AND received_at < ?", cutoff),
    ):
        while True:
            cursor = conn.execute(
                f"DELETE FROM events WHERE rowid IN "
                f"(SELECT rowid FROM events WHERE {where} LIMIT {_PRUNE_CHUNK})",
                (arg,),
            )
            removed += cursor.rowcount
            if cursor.rowcount < _PRUNE_CHUNK:
                break
    return removed


class SqliteDestination(ThreadedDestination):
    schemes: ClassVar[tuple[str, ...]] = ("sqlite",)

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        super().__init__(config, runtime_config)
        self.path = sqlite_path(config.endpoint)
        self.retention_days = config.retention_days
        self._conn: sqlite3.Connection | None = None
        self._last_prune = 0.0

    def open_sync(self) -> None:
        # Never raise from open: a missing disk shows up as transient send failures instead.
        try:
            self._ensure_open()
        except (OSError, sqlite3.Error) as exc:
            logger.warning("cannot open SQLite ledger %s yet: %s", self.path, exc)

    def _ensure_open(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_ledger(self.path)
            self._maybe_prune(force=True)
        return self._conn

    def _maybe_prune(self, *, force: bool = False) -> None:
        if not self.retention_days or self._conn is None:
            return
        if not force and time.monotonic() - self._last_prune < PRUNE_INTERVAL_S:
            return
        self._last_prune = time.monotonic()
        try:
            removed = prune(self._conn, self.retention_days)
        except sqlite3.Error as exc:  # pruning is housekeeping; the next window retries it
            logger.warning("pruning %s failed: %s", self.path, exc)
            return
        if removed:
            logger.info(
                "pruned %d events older than %d days from %s",
                removed,
                self.retention_days,
                self.path,
            )

    def prepare(self, payload: dict[str, Any], payload_json: bytes | None) -> tuple[Any, ...]:
        """The row, minus ``event_id`` and ``received_at``: columns and the payload's JSON."""
        return _prepared_row(payload, payload_json)

    def send_sync(self, batch: Sequence[Record], batch_id: str) -> None:
        try:
            received_at = time.time()
            rows = [
                (record.event_id, *record.payload, received_at)
                if type(record.payload) is tuple
                else (record.event_id, *_prepared_row(record.payload, None), received_at)
                for record in batch
            ]
        except TypeError as exc:
            raise PermanentDeliveryError(f"cannot serialise batch {batch_id}: {exc}") from exc
        try:
            conn = self._ensure_open()
            insert_rows(conn, _INSERT_PREFIX, rows, _ROW_WIDTH)
        except (OSError, sqlite3.OperationalError) as exc:  # locked, busy, disk full, I/O
            raise TransientDeliveryError(f"SQLite ledger {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # corrupt or not a database: retrying will not fix
            raise PermanentDeliveryError(f"SQLite ledger {self.path}: {exc}") from exc
        self._maybe_prune()

    def close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.config.endpoint,
            "kind": "sqlite",
            "path": str(self.path),
            "retention_days": self.retention_days,
        }


def _open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection | None:
    text = os.fspath(path)
    file = sqlite_path(text) if text.lower().startswith("sqlite:") else Path(text).expanduser()
    if not file.is_file():
        return None
    conn = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.row_factory = _dict_row
    return conn


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def read_ledger(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Ledger rows oldest first (the newest ``limit`` of them if given), payload parsed.

    ``path`` is a file path or a ``sqlite:///`` endpoint; a missing ledger reads as empty.
    """
    conn = _open_readonly(path)
    if conn is None:
        return []
    query = "SELECT rowid AS rid, * FROM events"
    if limit is not None:
        query = f"SELECT * FROM ({query} ORDER BY received_at DESC, rid DESC LIMIT {int(limit)})"
    with closing(conn):
        try:
            rows = conn.execute(f"{query} ORDER BY received_at, rid").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    result = []
    for row in rows:
        del row["rid"]
        row["payload"] = orjson.loads(row["payload"])
        result.append(row)
    return result


def ledger_totals(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per ``user_id`` + ``model``: summed input/output/total tokens and the event count."""
    conn = _open_readonly(path)
    if conn is None:
        return []
    with closing(conn):
        try:
            rows = conn.execute(
                "SELECT user_id, model,"
                " COALESCE(SUM(input_tokens), 0) AS input_tokens,"
                " COALESCE(SUM(output_tokens), 0) AS output_tokens,"
                " COALESCE(SUM(total_tokens), 0) AS total_tokens,"
                " COUNT(*) AS count"
                " FROM events GROUP BY user_id, model"
                " ORDER BY user_id IS NULL, user_id, model IS NULL, model"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return list(rows)
