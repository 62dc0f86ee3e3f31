"""JSONL and stdout destinations."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dest_helpers import build, deliver, make_records

from scr_middleware.destinations import JsonlDestination, StdoutDestination
from scr_middleware.destinations.jsonl import jsonl_path

REPO = Path(__file__).resolve().parents[2]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_appends_one_line_per_payload(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    destination, _ = build(path.as_uri())
    assert isinstance(destination, JsonlDestination)
    first, second = make_records(2), make_records(3)
    deliver(destination, (first, "bat_1"), (second, "bat_2"))

    assert read_lines(path) == [record.payload for record in [*first, *second]]
    assert path.read_bytes().endswith(b"\n")

    # A second destination (a restart, another worker) appends rather than truncates.
    again, _ = build(path.as_uri())
    deliver(again, (make_records(1), "bat_3"))
    assert len(read_lines(path)) == 6


def test_jsonl_batch_is_on_disk_when_send_returns(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    destination, _ = build(path.as_uri())
    batch = make_records(4)

    async def scenario() -> None:
        await destination.open()
        await destination.send(batch, "bat")
        # Read through a separate file object before close: nothing is held in a buffer.
        assert read_lines(path) == [record.payload for record in batch]
        await destination.close()

    asyncio.run(scenario())


def test_jsonl_reopens_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rotated = tmp_path / "events.jsonl.1"
    destination, _ = build(path.as_uri())
    before, after = make_records(2), make_records(1)

    async def scenario() -> None:
        await destination.open()
        await destination.send(before, "bat_1")
        path.rename(rotated)  # what logrotate does
        await destination.send(after, "bat_2")
        await destination.close()

    asyncio.run(scenario())
    assert read_lines(rotated) == [record.payload for record in before]
    assert read_lines(path) == [record.payload for record in after]


def test_jsonl_endpoint_parsing() -> None:
    assert jsonl_path("file:///var/log/scr/events.jsonl") == Path("/var/log/scr/events.jsonl")
    assert jsonl_path("file://localhost/tmp/a%20b.jsonl") == Path("/tmp/a b.jsonl")
    for bad in ("file://", "file:///", "file:///dir/", "file://remote/x.jsonl", "file:x.jsonl"):
        with pytest.raises(ValueError):
            jsonl_path(bad)


def test_stdout_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    destination, _ = build("stdout:")
    assert isinstance(destination, StdoutDestination)
    batch = make_records(3)
    deliver(destination, (batch, "bat"))

    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == [r.payload for r in batch]


def test_stdout_in_a_subprocess_is_flushed_per_batch() -> None:
    # The child blocks after its send; the line must already be readable by the parent.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from scr_middleware.config_model import Config, DestinationConfig
        from scr_middleware.destinations import Record, create_destination

        config = DestinationConfig(name="out", endpoint="stdout:")
        destination = create_destination(config, Config(destinations=(config,)))

        async def main():
            await destination.open()
            await destination.send([Record("evt_1", {"event_id": "evt_1", "n": 1})], "bat")
            sys.stdin.readline()  # wait for the parent
            await destination.close()

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        line = child.stdout.readline()
        assert json.loads(line) == {"event_id": "evt_1", "n": 1}
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
