"""The cheapest HTTP/1.1 sink we can write: a raw asyncio protocol, run in its own process.

It reads each request's head, skips ``Content-Length`` body bytes without keeping them, counts
events from ``X-SCR-Event-Count`` (1 if absent) and answers ``200`` with an empty body, keeping
the connection alive. ``GET /_stats`` on any port answers the counts per port as JSON.

    python -m benchmarks.sink --ports 3      # prints: SINK {"ports": [p1, p2, p3]}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
MAX_HEAD = 64 * 1024


@dataclass
class Counters:
    events: dict[int, int] = field(default_factory=dict)
    requests: dict[int, int] = field(default_factory=dict)
    body_bytes: dict[int, int] = field(default_factory=dict)

    def as_json(self) -> bytes:
        return json.dumps(
            {"events": self.events, "requests": self.requests, "body_bytes": self.body_bytes}
        ).encode()


class SinkProtocol(asyncio.Protocol):
    def __init__(self, port: int, counters: Counters) -> None:
        self.port = port
        self.counters = counters
        self.head = bytearray()
        self.body_left = 0  # body bytes of the current request still to skip
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.body_left:
                taken = min(self.body_left, len(view))
                self.body_left -= taken
                view = view[taken:]
                if not self.body_left:
                    self._respond(OK)
                continue
            self.head += view
            view = memoryview(b"")
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD and self.transport is not None:
                    self.transport.close()
                return
            rest = bytes(self.head[end + 4 :])
            self._start_request(bytes(self.head[:end]))
            self.head.clear()
            view = memoryview(rest)

    def _start_request(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        request_line = lines[0].split(b" ")
        length, events = 0, 1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"x-scr-event-count":
                events = int(value)
        if len(request_line) > 1 and request_line[1] == b"/_stats":
            body = self.counters.as_json()
            self._respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        counters, port = self.counters, self.port
        counters.events[port] = counters.events.get(port, 0) + events
        counters.requests[port] = counters.requests.get(port, 0) + 1
        counters.body_bytes[port] = counters.body_bytes.get(port, 0) + length
        self.body_left = length
        if not length:
            self._respond(OK)

    def _respond(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)


def _factory(holder: list[int], counters: Counters) -> Callable[[], SinkProtocol]:
    return lambda: SinkProtocol(holder[0], counters)


async def serve(ports: int, host: str) -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    servers = []
    for _ in range(ports):
        holder: list[int] = []
        server = await loop.create_server(_factory(holder, counters), host, 0, backlog=1024)
        holder.append(server.sockets[0].getsockname()[1])  # known only once bound
        servers.append(server)
    bound = [server.sockets[0].getsockname()[1] for server in servers]
    for port in bound:
        counters.events[port] = 0
    print("SINK " + json.dumps({"ports": bound}), flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.ports, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
