"""MonitoringServer over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from scr_middleware.observability import (
    ANY_FREE_PORT,
    BufferState,
    MetricsBridge,
    MonitoringServer,
)
from scr_middleware.router.stats import DestinationStats, RuntimeStats

from .helpers import free_port, parse_samples, value

HOST = "127.0.0.1"


class App:
    """What the runtime wires in: sync right before every scrape, health from router state."""

    def __init__(self) -> None:
        self.runtime = RuntimeStats()
        self.destinations = [DestinationStats("billing")]
        self.bridge = MetricsBridge()
        self.healthy = True

    def render(self) -> tuple[bytes, str]:
        self.bridge.sync(self.runtime, self.destinations, BufferState(max_events=100))
        return self.bridge.render()

    def health(self) -> tuple[bool, dict[str, Any]]:
        state = "running" if self.healthy else "stopped"
        return self.healthy, {"router": state, "destinations": {"billing": "ok"}}


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def make_server(app: App) -> Iterator[Callable[..., MonitoringServer]]:
    servers: list[MonitoringServer] = []

    def make(
        metrics_port: int = ANY_FREE_PORT, health_port: int = ANY_FREE_PORT, **kw: Any
    ) -> MonitoringServer:
        server = MonitoringServer(
            metrics_port,
            health_port,
            kw.pop("host", HOST),
            kw.pop("render_metrics", app.render),
            kw.pop("health", app.health),
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def url(server: MonitoringServer, role: str, path: str) -> str:
    return f"http://{HOST}:{server.bound_ports[role]}{path}"


def test_metrics_scrape_syncs_and_counts(
    app: App, make_server: Callable[..., MonitoringServer]
) -> None:
    server = make_server(health_port=0)
    app.runtime.captured = 5
    resp = httpx.get(url(server, "metrics", "/metrics"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert value(parse_samples(resp.text), "scr_events_captured_total") == 5

    app.runtime.captured += 3
    app.destinations[0].delivered = 2
    samples = parse_samples(httpx.get(url(server, "metrics", "/metrics")).text)
    assert value(samples, "scr_events_captured_total") == 8
    assert value(samples, "scr_events_routed_total", destination="billing") == 2


def test_health_200_then_503(app: App, make_server: Callable[..., MonitoringServer]) -> None:
    server = make_server(metrics_port=0)
    assert set(server.bound_ports) == {"health"}
    for path in ("/health", "/healthz"):
        resp = httpx.get(url(server, "health", path))
        assert resp.status_code == 200
        assert resp.json() == {"router": "running", "destinations": {"billing": "ok"}}
    assert httpx.get(url(server, "health", "/ready")).json() == {"status": "ready"}

    app.healthy = False
    resp = httpx.get(url(server, "health", "/health?verbose=1"))
    assert resp.status_code == 503
    assert resp.json()["router"] == "stopped"
    ready = httpx.get(url(server, "health", "/ready"))
    assert (ready.status_code, ready.json()) == (503, {"status": "not_ready"})


def test_each_port_serves_only_its_paths(make_server: Callable[..., MonitoringServer]) -> None:
    server = make_server()
    assert set(server.bound_ports) == {"metrics", "health"}
    assert server.bound_ports["metrics"] != server.bound_ports["health"]
    assert httpx.get(url(server, "metrics", "/health")).status_code == 404
    assert httpx.get(url(server, "health", "/metrics")).status_code == 404
    assert httpx.get(url(server, "metrics", "/")).status_code == 404


def test_same_port_serves_both(make_server: Callable[..., MonitoringServer]) -> None:
    port = free_port()
    server = make_server(port, port)
    assert server.bound_ports == {"metrics+health": port}
    assert httpx.get(url(server, "metrics+health", "/metrics")).status_code == 200
    assert httpx.get(url(server, "metrics+health", "/health")).status_code == 200


def test_port_zero_disables(make_server: Callable[..., MonitoringServer]) -> None:
    server = make_server(0, 0)
    assert server.bound_ports == {}


def test_head_has_no_body(make_server: Callable[..., MonitoringServer]) -> None:
    server = make_server()
    resp = httpx.head(url(server, "metrics", "/metrics"))
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) > 0
    assert resp.content == b""


def test_port_in_use_is_logged_once_and_taken_over_later(
    make_server: Callable[..., MonitoringServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scr_middleware")
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        server = make_server(metrics_port=port, health_port=0)  # must not raise
        server.start()  # retry while still busy: quiet
        assert server.bound_ports == {}
        in_use = [r for r in caplog.records if "in use" in r.getMessage()]
        assert len(in_use) == 1
        assert in_use[0].levelno == logging.INFO
    finally:
        holder.close()
    server.start()  # the sibling went away: take the port over
    assert server.bound_ports == {"metrics": port}
    assert httpx.get(url(server, "metrics", "/metrics")).status_code == 200


def test_bind_error_other_than_in_use_does_not_raise(
    make_server: Callable[..., MonitoringServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scr_middleware")
    server = make_server(host="192.0.2.1")  # TEST-NET-1: not an address of this machine
    assert server.bound_ports == {}
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_callbacks_that_raise_give_error_statuses(
    make_server: Callable[..., MonitoringServer],
) -> None:
    def broken_render() -> tuple[bytes, str]:
        raise RuntimeError("render broke")

    def broken_health() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("health broke")

    server = make_server(render_metrics=broken_render, health=broken_health)
    assert httpx.get(url(server, "metrics", "/metrics")).status_code == 500
    resp = httpx.get(url(server, "health", "/health"))
    assert resp.status_code == 503
    assert resp.json()["status"] == "error"


def test_stop_closes_the_sockets(make_server: Callable[..., MonitoringServer]) -> None:
    server = make_server()
    ports = dict(server.bound_ports)
    server.stop()
    assert server.bound_ports == {}
    for port in ports.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{HOST}:{port}/metrics", timeout=2)
        # the port is free again
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket() as s:
                    s.bind((HOST, port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    server.stop()  # idempotent


def test_ipv6_host(make_server: Callable[..., MonitoringServer]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    server = make_server(host="::1", health_port=0)
    port = server.bound_ports["metrics"]
    assert httpx.get(f"http://[::1]:{port}/metrics").status_code == 200
