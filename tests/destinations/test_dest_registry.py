"""Scheme -> class selection and the start-up checks, each naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from dest_helpers import build

from scr_middleware.config_model import Config, DestinationConfig, TLSConfig
from scr_middleware.destinations import (
    HttpDestination,
    JsonlDestination,
    MemoryDestination,
    SqliteDestination,
    StdoutDestination,
    create_destination,
    endpoint_scheme,
    validate_destination,
    validate_endpoint,
)
from scr_middleware.errors import ConfigError


@pytest.mark.parametrize(
    ("endpoint", "cls"),
    [
        ("https://billing.internal/api/v1/events", HttpDestination),
        ("http://127.0.0.1:9000/ingest", HttpDestination),
        ("HTTPS://Billing.Internal/x", HttpDestination),
        ("sqlite:////tmp/scr-test-ledger.db", SqliteDestination),
        ("sqlite:///ledger.db", SqliteDestination),
        ("file:///tmp/scr-test.jsonl", JsonlDestination),
        ("stdout:", StdoutDestination),
        ("memory://registry-test", MemoryDestination),
    ],
)
def test_scheme_selects_class(endpoint: str, cls: type) -> None:
    destination, _ = build(endpoint)
    assert type(destination) is cls
    described = destination.describe()
    assert described["name"] == "dest"
    assert "endpoint" in described


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("ftp://host/x", "scheme 'ftp'"),
        ("kafka://broker:9092/topic", "scheme 'kafka'"),
        ("billing.internal/events", "no scheme"),
        ("", "non-empty"),
        ("https://", "missing host"),
        ("http:///path-only", "missing host"),
        ("https://host:99999/x", "invalid"),
        ("https://bad host/x", "whitespace"),
        ("sqlite://", "sqlite:///"),
        ("sqlite:///", "file path"),
        ("file:///", "file path"),
        ("file://remote/x.jsonl", "remote host"),
        ("stdout:extra", "stdout:"),
        ("memory://", "needs a name"),
    ],
)
def test_validate_endpoint_names_the_path(endpoint: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_endpoint(endpoint, "destinations[2].endpoint")
    assert caught.value.path == "destinations[2].endpoint"
    assert fragment in caught.value.problem
    assert str(caught.value).startswith("destinations[2].endpoint: ")


def test_tls_only_with_https() -> None:
    validate_endpoint("https://a.example/x", "destinations[0].endpoint", tls=TLSConfig())
    with pytest.raises(ConfigError) as caught:
        validate_endpoint("http://a.example/x", "destinations[1].endpoint", tls=TLSConfig())
    assert caught.value.path == "destinations[1].tls"
    with pytest.raises(ConfigError) as caught:
        validate_endpoint("sqlite:///x.db", "endpoint", tls=TLSConfig())
    assert caught.value.path == "tls"


def test_create_destination_reports_the_index() -> None:
    good = DestinationConfig(name="a", endpoint="stdout:")
    bad = DestinationConfig(name="b", endpoint="gopher://x")
    with pytest.raises(ConfigError) as caught:
        create_destination(bad, Config(destinations=(good, bad)))
    assert caught.value.path == "destinations[1].endpoint"


def test_endpoint_scheme() -> None:
    assert endpoint_scheme("HTTPS://x") == "https"
    assert endpoint_scheme("stdout:") == "stdout"
    assert endpoint_scheme("no-scheme") == ""


def test_validate_destination(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCR_TEST_SET", "1")
    validate_destination(
        DestinationConfig(
            name="ok",
            endpoint="https://a.example/x",
            format="ndjson",
            headers={"Authorization": "Bearer ${SCR_TEST_SET}"},
            retention_days=2555,  # the seed's audit destination: allowed, the sink owns it
        ),
        "destinations[0]",
    )
    cases = [
        (DestinationConfig(name="x", endpoint="sqlite:///a.db", format="ndjson"), "format"),
        (DestinationConfig(name="x", endpoint="stdout:", headers={"A": "b"}), "headers"),
        (
            DestinationConfig(name="x", endpoint="https://a/x", headers={"Bad Name": "v"}),
            "headers.Bad Name",
        ),
        (
            DestinationConfig(name="x", endpoint="https://a/x", headers={"A": "x\r\nB: y"}),
            "headers.A",
        ),
        (
            DestinationConfig(
                name="x", endpoint="https://a/x", headers={"A": "${SCR_TEST_UNSET_VAR}"}
            ),
            "headers.A",
        ),
        (
            DestinationConfig(
                name="x", endpoint="https://a/x", tls=TLSConfig(ca_file=str(tmp_path / "no.pem"))
            ),
            "tls.ca_file",
        ),
        (DestinationConfig(name="x", endpoint="file:///x.jsonl", tls=TLSConfig()), "tls"),
    ]
    monkeypatch.delenv("SCR_TEST_UNSET_VAR", raising=False)
    for config, key in cases:
        with pytest.raises(ConfigError) as caught:
            validate_destination(config, "destinations[3]")
        assert caught.value.path == f"destinations[3].{key}", config
