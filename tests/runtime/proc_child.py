"""Child processes for the process-level tests: ``python proc_child.py MODE JSON_ARGS``.

Each mode prints one JSON line starting with ``ready`` or ``result`` on stdout, so the test can
synchronise with it (no sleeps) and read what it saw.

* ``fork``: capture in the parent, fork before anything is delivered, capture in the child.
* ``sigterm``: capture, report ready, then wait for SIGTERM (handled with ``sys.exit``).
* ``spool``: spool events for a down destination, keep more in memory, report, wait for -9.
* ``replay``: start a runtime on the same data dir and wait for the spool to drain.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import scr_middleware
from scr_middleware import SessionCompletionRuntime
from scr_middleware.router import worker as worker_mod


def say(kind: str, **fields: Any) -> None:
    print(f"{kind} {json.dumps(fields)}", flush=True)


def event(index: int, prefix: str) -> dict[str, Any]:
    return {"event_id": f"{prefix}-{index}", "session_id": f"{prefix}-{index}"}


def destination_stats(runtime: SessionCompletionRuntime) -> dict[str, Any]:
    return dict(runtime.health()[1]["destinations"][0])


def wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except LookupError:  # the router has not built its destinations yet
            pass
        time.sleep(0.01)
    return False


def settings(args: dict[str, Any], **destination: Any) -> dict[str, Any]:
    return {
        "capture": {
            "batch_size": args.get("batch_size", 1000),
            # Long by default, so nothing is delivered unless the test's scenario says so.
            "flush_interval_ms": args.get("flush_interval_ms", 60_000),
        },
        "storage": {"data_dir": args["data_dir"]},
        "destinations": [
            {
                "name": "billing",
                "endpoint": args["endpoint"],
                "retry_attempts": args.get("retry_attempts", 1),
                "timeout_ms": 5000,
                **destination,
            }
        ],
    }


def fork_mode(args: dict[str, Any]) -> None:
    runtime = scr_middleware.configure(settings(args))
    for index in range(args["parent"]):
        scr_middleware.capture(event(index, "parent"))
    # Fanned out to the destination's queue but not delivered (60 s interval, batch of 1000).
    assert wait_for(lambda: destination_stats(runtime)["captured"] == args["parent"])
    pid = os.fork()
    if pid == 0:
        for index in range(args["child"]):
            scr_middleware.capture(event(index, "child"))
        ok = runtime.flush(20.0)
        stats = destination_stats(runtime)
        runtime.shutdown(10.0)
        os._exit(0 if ok and stats["delivered"] == args["child"] else 3)
    _, status = os.waitpid(pid, 0)
    ok = runtime.flush(20.0)
    say("result", child_status=status, parent_ok=ok, stats=destination_stats(runtime))
    runtime.shutdown(10.0)


def sigterm_mode(args: dict[str, Any]) -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    runtime = SessionCompletionRuntime(config=settings(args))
    for index in range(args["count"]):
        runtime.capture(event(index, "term"))
    assert wait_for(lambda: destination_stats(runtime)["captured"] == args["count"])
    say("ready", stats=destination_stats(runtime))
    while True:  # the interpreter's exit path (not this script) must deliver or spool
        time.sleep(0.05)


def spool_mode(args: dict[str, Any]) -> None:
    # No replay probe in this process: the test kills it at an arbitrary moment and a probe
    # would lease the rows for LEASE_SECONDS (the documented kill -9 caveat), not lose them.
    worker_mod.REPLAY_PROBE_INTERVAL_S = 1e12
    runtime = SessionCompletionRuntime(config=settings(args, retry_attempts=0))
    for index in range(args["spooled"]):
        runtime.capture(event(index, "spooled"))
    assert wait_for(lambda: destination_stats(runtime)["dead_lettered_total"] == args["spooled"])
    for index in range(args["in_memory"]):
        runtime.capture(event(index, "memory"))
    assert wait_for(
        lambda: destination_stats(runtime)["captured"] == args["spooled"] + args["in_memory"]
    )
    say("ready", stats=destination_stats(runtime))
    while True:
        time.sleep(0.05)


def replay_mode(args: dict[str, Any]) -> None:
    runtime = SessionCompletionRuntime(config=settings(args))
    runtime.start()  # the spool is replayed on start, without any capture
    delivered = wait_for(lambda: destination_stats(runtime)["delivered"] >= args["expect"])
    runtime.shutdown(10.0)
    say("result", delivered=delivered, stats=destination_stats(runtime))


MODES = {"fork": fork_mode, "sigterm": sigterm_mode, "spool": spool_mode, "replay": replay_mode}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
