"""``scr serve``: the standalone service as its own process."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_helpers import SCR, run_scr, scr_env

from scr_middleware.destinations.sqlite import read_ledger


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [*SCR, "serve", "--port", "0", "--api-key", "old-key,new-key"],
        env=scr_env(SCR_DATA_DIR=str(tmp_path / "data")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    try:
        yield match.group(1), process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _wait_healthy(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError("service did not become healthy")


def test_serve_accepts_events_and_flushes_on_sigterm(
    tmp_path: Path, served: tuple[str, subprocess.Popen[str]]
) -> None:
    url, process = served
    _wait_healthy(url)
    event = {"session_id": "chatcmpl-cli", "usage": {"prompt_tokens": 5, "completion_tokens": 7}}
    refused = httpx.post(f"{url}/v1/events", json=event)
    accepted = httpx.post(f"{url}/v1/events", json=event, headers={"X-API-Key": "new-key"})
    assert refused.status_code == 401
    assert accepted.status_code == 202
    newest = httpx.get(f"{url}/events/recent").json()[-1]
    assert newest["session_id"] == "chatcmpl-cli"
    assert newest["usage"]["total_tokens"] == 12
    assert "scr_events_captured_total" in httpx.get(f"{url}/metrics").text

    # uvicorn shuts down gracefully (lifespan: the runtime flushes), then re-raises the signal
    # so process managers see it.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    rows = read_ledger(tmp_path / "data" / "ledger.sqlite3")
    assert [row["session_id"] for row in rows] == ["chatcmpl-cli"]


def test_serve_refuses_to_start_without_a_key_or_looping_to_itself(tmp_path: Path) -> None:
    no_key = run_scr("serve", "--port", "0", SCR_DATA_DIR=str(tmp_path))
    assert no_key.returncode == 1
    assert no_key.stderr.startswith("error: api_key: no API key configured")
    looping = run_scr(
        "serve",
        "--port",
        "18443",
        "--api-key",
        "k",
        SCR_ENDPOINT="http://127.0.0.1:18443",
        SCR_DATA_DIR=str(tmp_path),
    )
    assert looping.returncode == 1
    assert "error: SCR_ENDPOINT: http://127.0.0.1:18443 is this service itself" in looping.stderr
    for result in (no_key, looping):
        assert "Traceback" not in result.stderr


def test_serve_with_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("session_completion_runtime:\n  capture:\n    batch_size: 0\n")
    result = run_scr("serve", "--config", str(config), "--api-key", "k")
    assert result.returncode == 1
    assert result.stderr.startswith("error: capture.batch_size: must be between 1 and")
