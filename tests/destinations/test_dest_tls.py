"""mTLS against a real TLS sink whose server requires a client certificate from a test CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from dest_helpers import build, deliver, make_records, send_expecting
from sink import HttpSink, Pki, generate_pki

from scr_middleware.config_model import TLSConfig
from scr_middleware.destinations import TransientDeliveryError
from scr_middleware.destinations.http import build_ssl_context
from scr_middleware.errors import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_sink(pki: Pki) -> Iterator[HttpSink]:
    with HttpSink(ssl_context=pki.server_context(require_client_cert=True)) as server:
        yield server


def test_mtls_delivers_with_client_certificate(tls_sink: HttpSink, pki: Pki) -> None:
    batch = make_records(2)
    tls = TLSConfig(
        ca_file=str(pki.ca_file), cert_file=str(pki.client_cert), key_file=str(pki.client_key)
    )
    destination, _ = build(tls_sink.url, tls=tls)
    assert destination.describe()["mtls"] is True
    deliver(destination, (batch, "bat_tls"))

    assert tls_sink.url.startswith("https://")
    assert tls_sink.payloads() == [record.payload for record in batch]
    assert tls_sink.handshake_failures == 0


def test_without_client_certificate_the_server_refuses(tls_sink: HttpSink, pki: Pki) -> None:
    destination, _ = build(tls_sink.url, tls=TLSConfig(ca_file=str(pki.ca_file)))
    send_expecting(destination, make_records(1), TransientDeliveryError)
    tls_sink.wait_for_handshake_failures(1)
    assert tls_sink.requests == []


def test_client_certificate_from_another_ca_is_refused(tls_sink: HttpSink, pki: Pki) -> None:
    tls = TLSConfig(
        ca_file=str(pki.ca_file),
        cert_file=str(pki.other_client_cert),
        key_file=str(pki.other_client_key),
    )
    destination, _ = build(tls_sink.url, tls=tls)
    send_expecting(destination, make_records(1), TransientDeliveryError)
    tls_sink.wait_for_handshake_failures(1)
    assert tls_sink.requests == []


def test_untrusted_server_certificate_fails(pki: Pki) -> None:
    # No ca_file: the system trust store does not know the test CA.
    with HttpSink(ssl_context=pki.server_context(require_client_cert=False)) as server:
        destination, _ = build(server.url)
        error = send_expecting(destination, make_records(1), TransientDeliveryError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error) or "certificate" in str(error).lower()
        assert server.requests == []


def test_verify_false_accepts_unknown_server(pki: Pki) -> None:
    with HttpSink(ssl_context=pki.server_context(require_client_cert=False)) as server:
        destination, _ = build(server.url, tls=TLSConfig(verify=False))
        deliver(destination, (make_records(1), "bat_noverify"))
        assert len(server.payloads()) == 1


def test_context_enforces_tls12_minimum(pki: Pki) -> None:
    context = build_ssl_context(TLSConfig(ca_file=str(pki.ca_file)), "destinations[0].tls")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize(
    ("tls", "key"),
    [
        (TLSConfig(ca_file="missing-ca.pem"), "destinations[0].tls.ca_file"),
        (
            TLSConfig(cert_file="missing.crt", key_file="missing.key"),
            "destinations[0].tls.cert_file",
        ),
        (TLSConfig(key_file="only.key"), "destinations[0].tls.key_file"),
    ],
)
def test_bad_tls_files_name_the_key(tmp_path: Path, tls: TLSConfig, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_ssl_context(tls, "destinations[0].tls")
    assert caught.value.path == key


def test_unreadable_client_cert_surfaces_as_transient(tls_sink: HttpSink, tmp_path: Path) -> None:
    """open() never raises into the router; the broken file fails each send instead."""
    tls = TLSConfig(cert_file=str(tmp_path / "gone.crt"), key_file=str(tmp_path / "gone.key"))
    destination, _ = build(tls_sink.url, tls=tls)
    error = send_expecting(destination, make_records(1), TransientDeliveryError)
    assert "cert_file" in str(error)
