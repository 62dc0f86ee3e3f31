"""HTTP load from a separate process: ``wrk`` when it is installed, else a small asyncio load
generator over raw keep-alive sockets (run as ``python -m benchmarks.loadgen``).

Both POST the same chat request body for a fixed duration over a fixed number of connections
and report completed requests per second; a non-2xx response or a socket error is counted,
and any makes the run invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import clean_env, python
from .workload import chat_request_body


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    requests: int
    errors: int
    tool: str


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "asyncio"


def run_load(url: str, seconds: float, connections: int) -> LoadResult:
    if tool() == "wrk":
        return _wrk(url, seconds, connections)
    command = [python(), "-m", "benchmarks.loadgen", url, str(seconds), str(connections)]
    done = subprocess.run(
        command, env=clean_env(), capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return LoadResult(
        data["requests"] / data["seconds"], data["requests"], data["errors"], "asyncio"
    )


def _wrk(url: str, seconds: float, connections: int) -> LoadResult:
    body = chat_request_body().decode()
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        duration = f"{max(1, round(seconds))}s"
        command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "-s", handle.name, url]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
    finally:
        Path(handle.name).unlink(missing_ok=True)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors is not None:
        # gunicorn's sync workers close every connection: wrk counts those as read errors.
        errors += int(socket_errors.group(1)) + int(socket_errors.group(3))
        errors += int(socket_errors.group(4))
    return LoadResult(float(rate.group(1)), int(total.group(1)), errors, "wrk")


# --- the fallback generator -------------------------------------------------------------------
async def _connection(
    host: str, port: int, request: bytes, stop_at: float, counts: list[int]
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            match = re.search(rb"content-length:\s*(\d+)", lower)
            await reader.readexactly(int(match.group(1)) if match else 0)
            counts[0 if 200 <= status < 300 else 1] += 1
            if b"connection: close" in lower:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts[1] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def generate(url: str, seconds: float, connections: int) -> dict[str, float]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)?$", url)
    if match is None:
        raise ValueError(f"need http://host:port/path, got {url!r}")
    host, port, path = match.group(1), int(match.group(2)), match.group(3) or "/"
    body = chat_request_body()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    counts = [0, 0]
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(
        *(_connection(host, port, request, stop_at, counts) for _ in range(connections))
    )
    return {"requests": counts[0], "errors": counts[1], "seconds": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="asyncio HTTP load generator (keep-alive)")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("connections", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(generate(args.url, args.seconds, args.connections))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
