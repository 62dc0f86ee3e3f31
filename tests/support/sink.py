"""A real HTTP(S) sink for tests: a threaded ``http.server`` on 127.0.0.1, port 0.

It records every request (headers, raw body, body after gunzip, parsed JSON) and can be
scripted to misbehave, one request at a time, in the order scripted:

    with HttpSink() as sink:
        sink.fail_next(2, status=503)              # then answer 200 again
        sink.fail_next(1, status=429, headers={"Retry-After": "7"})
        sink.hang_next(5.0)                         # hold the request open
        sink.close_next()                           # drop the connection, no response
        ... point a client at sink.url ...
        sink.wait_for_requests(3)
        assert sink.payloads() == [...]

TLS: pass ``ssl_context`` (see ``generate_pki`` and ``Pki.server_context``); the handshake
runs on the request thread and failed handshakes are counted in ``handshake_failures``.

Import: ``from tests.support.sink import HttpSink`` when the repo root is on ``sys.path``
(``python -m pytest``), or put ``tests/`` on the path and ``from support.sink import HttpSink``.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["HttpSink", "Pki", "SinkRequest", "closed_port", "generate_pki"]


@dataclass
class SinkRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_body: bytes
    body: bytes  # after Content-Encoding: gzip is undone
    action: str  # what the sink did: "ok", "status", "hang", "close"
    client: tuple[str, int]  # the client's address: a repeated port means a reused connection

    def json(self) -> Any:
        """The body parsed: a list of objects for NDJSON, else the JSON document."""
        if "ndjson" in self.headers.get("content-type", ""):
            return [json.loads(line) for line in self.body.splitlines() if line.strip()]
        return json.loads(self.body)


@dataclass
class _Action:
    kind: str  # "status", "hang" or "close"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is exercised
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        sink = self.server.sink
        raw = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        action = sink._next_action()
        sink._record(
            SinkRequest(
                self.command,
                self.path,
                headers,
                raw,
                body,
                action.kind if action else "ok",
                (str(self.client_address[0]), int(self.client_address[1])),
            )
        )
        if action is not None and action.kind == "close":
            self.close_connection = True
            return
        if action is not None and action.kind == "hang":
            sink._stopping.wait(action.seconds)
        status, extra, payload = (200, {}, b'{"ok":true}')
        if action is not None and action.kind == "status":
            status, extra, payload = action.status, action.headers, action.body
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. timed out) first

    do_POST = do_PUT = do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: HttpSink) -> None:
        self.sink = sink
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.sink.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10.0)
        try:  # handshake here, on the request thread, so a slow client blocks no one else
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.sink._handshake_failed()
            return
        try:
            tls.settimeout(None)
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # aborted connections are expected in failure tests


class HttpSink:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self._lock = threading.Condition()
        self._requests: list[SinkRequest] = []
        self._script: deque[_Action] = deque()
        self._handshake_failures = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> HttpSink:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> HttpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the sink first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/events"

    # --- scripting ----------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and optional headers/body)."""
        with self._lock:
            for _ in range(n):
                self._script.append(_Action("status", status, dict(headers or {}), body))

    def reject_next(self, n: int = 1, status: int = 400) -> None:
        """A permanent client error for the next ``n`` requests."""
        self.fail_next(n, status, body=b'{"error":"bad request"}')

    def hang_next(self, seconds: float, n: int = 1) -> None:
        """Hold the next ``n`` requests for ``seconds`` (or until stop) before answering 200."""
        with self._lock:
            self._script.extend(_Action("hang", seconds=seconds) for _ in range(n))

    def close_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` requests without any response."""
        with self._lock:
            self._script.extend(_Action("close") for _ in range(n))

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._handshake_failures = 0

    # --- inspection ---------------------------------------------------------------------
    @property
    def requests(self) -> list[SinkRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def handshake_failures(self) -> int:
        with self._lock:
            return self._handshake_failures

    def payloads(self, *, only_ok: bool = True) -> list[Any]:
        """Every JSON item received, flattened across requests (arrays and NDJSON lines)."""
        items: list[Any] = []
        for request in self.requests:
            if only_ok and request.action != "ok":
                continue
            parsed = request.json()
            items.extend(parsed if isinstance(parsed, list) else [parsed])
        return items

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[SinkRequest]:
        """Block until ``count`` requests arrived; raise ``AssertionError`` after ``timeout``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise AssertionError(
                    f"sink got {len(self._requests)} requests, expected {count} within {timeout}s"
                )
            return list(self._requests)

    def wait_for_handshake_failures(self, count: int, timeout: float = 10.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self._handshake_failures >= count, timeout):
                raise AssertionError(f"expected {count} failed TLS handshakes within {timeout}s")

    # --- called by the server threads ---------------------------------------------------
    def _next_action(self) -> _Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _record(self, request: SinkRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _handshake_failed(self) -> None:
        with self._lock:
            self._handshake_failures += 1
            self._lock.notify_all()


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Pki:
    """Files of a throwaway CA, a server cert for 127.0.0.1/localhost and a client cert."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by a different CA: must be refused
    other_client_key: Path

    def server_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca_file)
        return context


def generate_pki(directory: Path) -> Pki:
    """Write a CA, server and client certificates (EC P-256, valid one day) into ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def make_ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cert, key

    def issue(
        ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
        common: str,
        server: bool,
        stem: str,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca[0].subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(ca[1], hashes.SHA256())
        cert_path = directory / f"{stem}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, write_key(key, directory / f"{stem}.key")

    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("scr-test-ca")
    rogue_ca = make_ca("scr-rogue-ca")
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = issue(ca, "127.0.0.1", True, "server")
    client_cert, client_key = issue(ca, "scr-client", False, "client")
    other_cert, other_key = issue(rogue_ca, "scr-rogue-client", False, "rogue-client")
    return Pki(ca_file, server_cert, server_key, client_cert, client_key, other_cert, other_key)
