"""Process lifecycles with real child processes: fork, SIGTERM, kill -9 and the next start."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import TimedSink
from support.sink import closed_port

CHILD = Path(__file__).with_name("proc_child.py")


def start(mode: str, **args: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCR_")}
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(process: subprocess.Popen[str], kind: str) -> dict[str, Any]:
    """The child's next ``kind {...}`` line (a bounded wait: the child asserts its own waits)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(f"{kind} "):
            fields: dict[str, Any] = json.loads(line[len(kind) + 1 :])
            return fields
    process.wait(30)
    stderr = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"child exited ({process.returncode}) before {kind!r}: {stderr[-2000:]}")


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def spooled(data_dir: Path) -> Counter[str]:
    path = data_dir / "spool" / "billing.sqlite3"
    conn = sqlite3.connect(path, timeout=10)
    try:
        return Counter(row[0] for row in conn.execute("SELECT event_id FROM spool"))
    finally:
        conn.close()


@pytest.mark.slow
def test_fork_child_does_not_resend_the_parents_buffer(sink: TimedSink, tmp_path: Path) -> None:
    process = start("fork", endpoint=sink.url, data_dir=str(tmp_path), parent=40, child=25)
    result = read_line(process, "result")
    code, stderr = finish(process)
    assert code == 0, stderr
    assert result["child_status"] == 0, stderr
    assert result["parent_ok"] is True
    received = Counter(sink.event_ids())
    assert set(received.values()) == {1}, "no event twice"
    assert sorted(received) == sorted(
        [f"parent-{i}" for i in range(40)] + [f"child-{i}" for i in range(25)]
    )
    assert result["stats"]["delivered"] == 40  # the parent's runtime delivered only its own


@pytest.mark.slow
def test_sigterm_delivers_everything_still_buffered(sink: TimedSink, tmp_path: Path) -> None:
    process = start("sigterm", endpoint=sink.url, data_dir=str(tmp_path), count=30)
    ready = read_line(process, "ready")
    assert ready["stats"]["delivered"] == 0  # all 30 wait for the 60 s flush interval
    assert sink.requests == []
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == 0, stderr
    received = Counter(sink.event_ids())
    assert sorted(received) == sorted(f"term-{i}" for i in range(30))
    assert set(received.values()) == {1}


@pytest.mark.slow
def test_sigterm_with_destination_down_spools_everything(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/events"
    process = start("sigterm", endpoint=endpoint, data_dir=str(tmp_path), count=30)
    read_line(process, "ready")
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == 0, stderr
    assert sorted(spooled(tmp_path)) == sorted(f"term-{i}" for i in range(30))


@pytest.mark.slow
def test_kill_9_keeps_the_spool_and_the_next_process_replays_it(
    sink: TimedSink, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/events"
    victim = start(
        "spool", endpoint=down, data_dir=str(tmp_path), batch_size=20, spooled=20, in_memory=7
    )
    ready = read_line(victim, "ready")
    assert ready["stats"]["dead_lettered_total"] == 20
    assert ready["stats"]["in_flight"] == 7
    victim.send_signal(signal.SIGKILL)
    code, _ = finish(victim)
    assert code == -signal.SIGKILL
    # What was spooled survived; what was only in memory (7 events) is gone, as documented.
    assert sorted(spooled(tmp_path)) == sorted(f"spooled-{i}" for i in range(20))

    # Replayed rows are batched like fresh events: the default 1 s interval sends them.
    heir = start(
        "replay", endpoint=sink.url, data_dir=str(tmp_path), expect=20, flush_interval_ms=1000
    )
    result = read_line(heir, "result")
    code, stderr = finish(heir)
    assert code == 0, stderr
    assert result["delivered"] is True, result
    assert sorted(sink.event_ids()) == sorted(f"spooled-{i}" for i in range(20))
    assert not any(event_id.startswith("memory-") for event_id in sink.event_ids())
    assert spooled(tmp_path) == Counter()
    assert result["stats"]["replayed_total"] == 20
