"""Generated event ids: unique within a process and across ``fork()``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from scr_middleware.events import new_event_id, normalize_event

FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from scr_middleware.events import new_event_id

    before = [new_event_id() for _ in range(1000)]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        with os.fdopen(write_end, "w") as pipe:
            pipe.write("\\n".join(new_event_id() for _ in range(20000)))
        os._exit(0)
    os.close(write_end)
    parent = [new_event_id() for _ in range(20000)]
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split("\\n")
    os.waitpid(pid, 0)
    print(len(before), len(parent), len(child))
    print(len(set(before) | set(parent) | set(child)))
    """
)


def test_ids_unique_across_100k_events() -> None:
    ids = [normalize_event({"session_id": "s"})["event_id"] for _ in range(100_000)]
    assert len(set(ids)) == 100_000
    assert all(event_id.startswith("evt_") for event_id in ids[:100])


def test_given_event_id_is_kept() -> None:
    assert normalize_event({"session_id": "s", "event_id": "mine"})["event_id"] == "mine"


def test_ids_unique_across_fork() -> None:
    """The child reseeds its id prefix, so it cannot repeat the parent's sequence."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    counts, union = result.stdout.split("\n")[:2]
    assert counts.split() == ["1000", "20000", "20000"]
    assert int(union) == 41_000


def test_new_event_id_is_cheap_and_distinct() -> None:
    first, second = new_event_id(), new_event_id()
    assert first != second
    assert first[:16] == second[:16]  # same process prefix, counter differs
