"""Remote mode end to end: a runtime in another process with ``endpoint=`` sends to the
service under real uvicorn, which routes to its embedded SQLite ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_helpers import KEY, UvicornThread

from scr_middleware.destinations.sqlite import read_ledger
from scr_middleware.runtime import SessionCompletionRuntime
from scr_middleware.service import ServiceSettings, create_app

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from scr_sdk import SessionCompletionRuntime
    from scr_middleware.realtime import capture_realtime_session_completion

    key, endpoint = sys.argv[1], sys.argv[2]
    scr = SessionCompletionRuntime(api_key=key, endpoint=endpoint)

    async def main():
        await scr.capture({
            "event_type": "session.completed",
            "session_id": "chatcmpl-remote-1",
            "user_id": "user_1",
            "organization_id": "org_1",
            "usage": {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42,
                      "model": "gpt-4"},
            "outcome": {"status": "success"},
        })
        scr.capture({"event_type": "session.completed", "session_id": "chat-remote-2",
                     "session_type": "chat", "duration_ms": 5400, "message_count": 6,
                     "outcome": {"status": "user_terminated"}})
        await capture_realtime_session_completion(
            session_id="sess_remote_3", user_id="user_2", start_time=1766313900000,
            end_time=1766313960000, input_tokens=900, output_tokens=300,
            model="gpt-realtime", input_modality="audio", transport="websocket", runtime=scr)

    asyncio.run(main())
    delivered = scr.flush(20)
    stats = {s.name: s.snapshot() for s in scr.router.destination_stats}
    scr.shutdown()
    print(json.dumps({"flushed": delivered, "stats": stats}))
    """
)


@pytest.fixture
def ledger_service(tmp_path: Path) -> Iterator[tuple[UvicornThread, SessionCompletionRuntime]]:
    # No destinations: the service's own runtime writes to its embedded ledger.
    runtime = SessionCompletionRuntime(config={"storage": {"data_dir": str(tmp_path / "svc")}})
    app = create_app(runtime, settings=ServiceSettings(api_keys=(KEY,)))
    with UvicornThread(app) as server:
        yield server, runtime
    runtime.shutdown(5.0)


def _run_client(tmp_path: Path, key: str, url: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCR_")}
    env["SCR_DATA_DIR"] = str(tmp_path / "client")
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, key, url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_remote_runtime_delivers_through_the_service(
    tmp_path: Path, ledger_service: tuple[UvicornThread, SessionCompletionRuntime]
) -> None:
    server, runtime = ledger_service
    report = _run_client(tmp_path, KEY, server.url)
    assert report["flushed"] is True
    assert report["stats"]["scr"]["delivered"] == 3  # type: ignore[index]

    recent = httpx.get(f"{server.url}/events/recent").json()
    assert [e["session_id"] for e in recent] == [
        "chatcmpl-remote-1",
        "chat-remote-2",
        "sess_remote_3",
    ]
    assert runtime.flush(10.0)
    rows = {row["session_id"]: row for row in read_ledger(runtime.data_dir / "ledger.sqlite3")}
    assert set(rows) == {"chatcmpl-remote-1", "chat-remote-2", "sess_remote_3"}
    assert rows["chatcmpl-remote-1"]["total_tokens"] == 42
    assert rows["sess_remote_3"]["payload"]["duration_ms"] == 60000.0
    assert rows["chat-remote-2"]["payload"]["outcome"] == {"status": "user_terminated"}
    # The event ids the client generated are kept end to end (the idempotency key).
    assert {e["event_id"] for e in recent} == {row["event_id"] for row in rows.values()}


def test_wrong_key_is_rejected_and_kept_in_the_clients_spool(
    tmp_path: Path, ledger_service: tuple[UvicornThread, SessionCompletionRuntime]
) -> None:
    server, runtime = ledger_service
    report = _run_client(tmp_path, "not-the-key", server.url)
    stats = report["stats"]["scr"]  # type: ignore[index]
    assert stats["delivered"] == 0
    assert stats["dead_lettered_total"] == 3  # rejected (401): kept for `scr replay`
    assert httpx.get(f"{server.url}/events/recent").json() == []
    assert read_ledger(runtime.data_dir / "ledger.sqlite3") == []
