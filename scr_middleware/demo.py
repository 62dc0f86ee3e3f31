"""``scr demo``: real gateway traffic and a realistic mix of SDK sessions, and what arrived.

First the FastAPI example gateway, with its one-line middleware, is served by uvicorn in front
of a fake upstream and driven by the official ``openai`` client (``demo_gateway.py``).

The mix covers every shape from the integration guide: the API gateway's event, the chat web
app's (``user_terminated``, no usage), the LangChain agent's (``autonomous`` with
``final_output``) and a Realtime voice session via ``capture_realtime_session_completion``.
With no destinations configured the events land in the embedded SQLite ledger, under
``./.scr/`` unless ``SCR_DATA_DIR`` (or ``storage.data_dir``) says otherwise, so the demo runs
on a fresh machine without touching ``$HOME``.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from .cli_check import describe_endpoint
from .config import load_config
from .config_model import Config
from .demo_gateway import drive_gateway, gateway_available
from .destinations.registry import endpoint_scheme
from .destinations.sqlite import read_ledger, sqlite_path
from .realtime import capture_realtime_session_completion
from .router.receipt import Receipt
from .runtime import ConfigSource, SessionCompletionRuntime, configure

__all__ = ["DEMO_DATA_DIR", "run_demo"]

DEMO_DATA_DIR = ".scr"
USERS = (
    ("user_alice", "org_acme"),
    ("user_bob", "org_acme"),
    ("user_carol", "org_globex"),
    ("user_dave", "org_initech"),
)
CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet")
Emit = Callable[[SessionCompletionRuntime, int, random.Random], Receipt]


def _gateway(scr: SessionCompletionRuntime, i: int, rng: random.Random) -> Receipt:
    user, org = rng.choice(USERS)
    prompt, completion = rng.randint(20, 2000), rng.randint(5, 800)
    return scr.capture(
        {
            "event_type": "session.completed",
            "session_id": f"chatcmpl-demo{uuid.uuid4().hex[:12]}",
            "user_id": user,
            "organization_id": org,
            "usage": {
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
                "model": rng.choice(CHAT_MODELS),
            },
            "outcome": {"status": "success"},
        }
    )


def _chat_app(scr: SessionCompletionRuntime, i: int, rng: random.Random) -> Receipt:
    user, org = rng.choice(USERS)
    return scr.capture(
        {
            "event_type": "session.completed",
            "session_id": f"chat_{uuid.uuid4().hex[:12]}",
            "session_type": "chat",
            "user_id": user,
            "organization_id": org,
            "duration_ms": rng.randint(30_000, 900_000),
            "message_count": rng.randint(2, 40),
            "outcome": {"status": "user_terminated"},
        }
    )


def _agent(scr: SessionCompletionRuntime, i: int, rng: random.Random) -> Receipt:
    user, org = rng.choice(USERS)
    return scr.capture(
        {
            "event_type": "session.completed",
            "session_id": f"agent_{uuid.uuid4()}",
            "session_type": "autonomous",
            "user_id": user,
            "organization_id": org,
            "duration_ms": rng.randint(2_000, 60_000),
            "usage": {"total_tokens": rng.randint(500, 12_000), "model": "gpt-4o"},
            "outcome": {
                "status": "success",
                "final_output": {"output": f"Filed ticket #{1000 + i} and notified the owner."},
            },
        }
    )


def _realtime(scr: SessionCompletionRuntime, i: int, rng: random.Random) -> Receipt:
    user, org = rng.choice(USERS)
    end = time.time() * 1000
    return capture_realtime_session_completion(
        session_id=f"sess_{uuid.uuid4().hex[:16]}",
        user_id=user,
        organization_id=org,
        start_time=end - rng.randint(20_000, 300_000),  # epoch ms, as Date.now() gives
        end_time=end,
        input_tokens=rng.randint(200, 6000),
        output_tokens=rng.randint(100, 4000),
        model="gpt-realtime",
        outcome="success",
        input_modality="audio",
        transport="websocket",
        runtime=scr,
    )


MIX: tuple[Emit, ...] = (_gateway, _chat_app, _agent, _realtime)


def _with_demo_data_dir(config: ConfigSource) -> tuple[ConfigSource, dict[str, Any]]:
    """Keep the data dir of the config or ``SCR_DATA_DIR``; otherwise use ``./.scr``."""
    loaded = load_config(config)
    if loaded.storage.data_dir is not None:
        return config, {}
    data_dir = str(Path.cwd() / DEMO_DATA_DIR)
    if isinstance(config, Config):
        storage = dataclasses.replace(config.storage, data_dir=data_dir)
        return dataclasses.replace(config, storage=storage), {}
    return config, {"data_dir": data_dir}


def _table(rows: Iterable[tuple[str, ...]], left: int = 2) -> list[str]:
    """Columns before ``left`` are names (left-aligned), the rest numbers."""
    rows = list(rows)
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(widths[col]) if col < left else cell.rjust(widths[col])
            for col, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if index == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return lines


def _ledger_report(path: Path, event_ids: set[str]) -> list[str]:
    rows = [row for row in read_ledger(path) if row["event_id"] in event_ids]
    totals: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        key = (row["user_id"] or "(none)", row["model"] or "(none)")
        sums = totals.setdefault(key, [0, 0, 0, 0])
        sums[0] += 1
        for col, name in enumerate(("input_tokens", "output_tokens", "total_tokens"), start=1):
            sums[col] += row[name] or 0
    lines = [f"ledger {path}: {len(rows)} of this run's {len(event_ids)} events"]
    header = ("user", "model", "sessions", "input", "output", "total")
    body = [
        (user, model, *(str(v) for v in sums)) for (user, model), sums in sorted(totals.items())
    ]
    if body:
        grand = [sum(col) for col in zip(*totals.values(), strict=True)]
        body.append(("all", "", *(str(v) for v in grand)))
        lines.extend(_table([header, *body]))
    return lines


def _event_lines(rows: list[dict[str, Any]]) -> list[str]:
    header = ("session_id", "type", "user", "org", "model", "in", "out", "total", "usage", "status")
    body = []
    for row in rows:
        payload = row["payload"]
        usage = payload.get("usage") or {}
        body.append(
            (
                str(row["session_id"])[:28],
                str(payload.get("session_type") or ""),
                str(row["user_id"] or "-"),
                str(row["organization_id"] or "-"),
                str(row["model"] or "-"),
                *(
                    "-" if row[k] is None else str(row[k])
                    for k in ("input_tokens", "output_tokens", "total_tokens")
                ),
                str(usage.get("source") or ""),
                str(row["status"] or ""),
            )
        )
    return _table([header, *body], left=5) if body else []


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")


def _gateway_part(scr: SessionCompletionRuntime, out: TextIO) -> set[str]:
    """Drive the FastAPI gateway; returns the ids of the events it produced."""
    missing = gateway_available()
    if missing is not None:
        out.write(f"skipping the gateway part: {missing}\n")
        return set()
    started = time.time()
    sent = drive_gateway(lambda line: _say(out, line))
    scr.flush(30.0)
    ledger = _ledger_path(scr)
    if ledger is None:
        out.write(f"gateway: {sent} requests sent\n")
        return set()
    rows = [row for row in read_ledger(ledger) if (row["received_at"] or 0) >= started - 1]
    rows = [row for row in rows if (row["payload"].get("request") or {}).get("path")]
    out.write(f"gateway: {sent} requests through the middleware -> {len(rows)} events\n")
    out.write("\n".join(_event_lines(rows)) + "\n\n")
    return {row["event_id"] for row in rows}


def _ledger_path(scr: SessionCompletionRuntime) -> Path | None:
    for destination in scr.destinations:
        if endpoint_scheme(destination.endpoint) == "sqlite":
            return sqlite_path(destination.endpoint)
    return None


def run_demo(events: int = 40, config: ConfigSource = None, *, out: TextIO | None = None) -> int:
    """Drive the FastAPI gateway with the openai client, then capture ``events`` sessions
    through the SDK; flush and print what arrived. 0 when every event arrived."""
    out = out if out is not None else sys.stdout
    source, overrides = _with_demo_data_dir(config)
    # The gateway's middleware feeds the shared runtime, so the demo configures that one.
    scr = configure(source, middleware={"ensure_stream_usage": True}, **overrides)
    rng = random.Random(20251221)
    try:
        gateway_ids = _gateway_part(scr, out)
        receipts = [MIX[i % len(MIX)](scr, i, rng) for i in range(events)]
        flushed = scr.flush(30.0)
        stats = scr.router.destination_stats
    finally:
        scr.shutdown()
    shapes = ", ".join(emit.__name__.lstrip("_") for emit in MIX)
    out.write(f"SDK: captured {len(receipts)} sessions directly ({shapes})\n")
    complete = flushed
    for item in stats:
        arrived = item.delivered + item.sampled_out
        complete = complete and arrived == item.captured
        extra = f", {item.sampled_out} sampled out" if item.sampled_out else ""
        if item.dead_lettered_total:
            extra += f", {item.dead_lettered_total} spooled for replay"
        dropped = sum(item.dropped.values())
        if dropped:
            extra += f", {dropped} dropped"
        out.write(f"{item.name}: {item.delivered}/{item.captured} delivered{extra}\n")
    event_ids = {receipt.event_id for receipt in receipts} | gateway_ids
    for destination in scr.destinations:
        if endpoint_scheme(destination.endpoint) == "sqlite":
            path = sqlite_path(destination.endpoint)
            out.write("\n".join(_ledger_report(path, event_ids)) + "\n")
        else:
            out.write(f"{destination.name}: sent to {describe_endpoint(destination.endpoint)}\n")
    out.flush()
    return 0 if complete else 1
