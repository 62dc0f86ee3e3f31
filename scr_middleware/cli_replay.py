"""``scr replay``: re-deliver what the destinations' dead-letter spools hold.

Events that exhausted their retries, overflowed or were in memory at shutdown are replayed;
events a destination rejected permanently (4xx) or whose transform failed are replayed only
with ``--include-rejected`` (after the cause was fixed). Safe to run while the application
is up: rows are leased, so two processes never send the same row at once.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import TextIO

from .config import load_config
from .errors import ConfigError
from .router.spool import AUTO_REPLAY_REASONS, Spool
from .runtime import SessionCompletionRuntime, effective_destinations, resolve_data_dir

__all__ = ["replay"]


def _spool_summary(path: Path) -> dict[str, int]:
    if not path.is_file():  # do not create spool files just to find them empty
        return {}
    spool = Spool(path, 1 << 50)
    try:
        return spool.summary()
    finally:
        spool.close()


def _leased(path: Path) -> int:
    """Rows some process is replaying right now (their lease has not expired)."""
    if not path.is_file():
        return 0
    with closing(sqlite3.connect(path, timeout=10.0)) as db:
        query = "SELECT COUNT(*) FROM spool WHERE lease_until > ?"
        return int(db.execute(query, (time.time(),)).fetchone()[0])


def _describe(summary: dict[str, int]) -> str:
    if not summary:
        return "empty"
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(summary.items()))
    return f"{sum(summary.values())} ({reasons})"


def replay(
    config_path: str | None,
    destination: str | None,
    include_rejected: bool,
    timeout: float,
    out: TextIO,
) -> int:
    """Returns 0 when nothing eligible is left in the spools, 1 otherwise."""
    config = load_config(config_path)
    names = [d.name for d in effective_destinations(config)]
    if destination is not None:
        if destination not in names:
            raise ConfigError("--destination", f"no destination {destination!r}; have {names}")
        if config.destinations and not config.endpoint:
            chosen = tuple(d for d in config.destinations if d.name == destination)
            config = dataclasses.replace(config, destinations=chosen)
        names = [destination]
    spool_dir = resolve_data_dir(config) / "spool"
    paths = {name: spool_dir / f"{name}.sqlite3" for name in names}

    def eligible(summary: dict[str, int]) -> int:
        return sum(
            count
            for reason, count in summary.items()
            if include_rejected or reason in AUTO_REPLAY_REASONS
        )

    before = {name: _spool_summary(path) for name, path in paths.items()}
    for name in names:
        out.write(f"{name}: spool {_describe(before[name])}\n")
    if not any(eligible(summary) for summary in before.values()):
        out.write("nothing to replay\n")
        return 0

    runtime = SessionCompletionRuntime(config=config)
    deadline = time.monotonic() + timeout
    try:
        runtime.replay(include_manual=include_rejected, timeout=timeout)
        # The router also starts an automatic replay when it finds a backlog; wait until no
        # row is leased (being replayed) and nothing is in memory, so the counts are final.
        while True:
            flushed = runtime.flush(max(0.1, deadline - time.monotonic()))
            busy = any(_leased(path) for path in paths.values())
            if (flushed and not busy) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        stats = {item.name: item for item in runtime.router.destination_stats}
    finally:
        runtime.shutdown()
    left = 0
    for name in names:
        after = _spool_summary(paths[name])
        left += eligible(after)
        replayed = stats[name].replayed_total if name in stats else 0
        delivered = stats[name].delivered if name in stats else 0
        line = (
            f"{name}: replayed {replayed}, delivered {delivered}, left in spool {_describe(after)}"
        )
        held = sum(after.values()) - eligible(after)
        if held:
            line += f"; {held} rejected or untransformable kept (use --include-rejected)"
        out.write(line + "\n")
    out.flush()
    return 1 if left else 0
