"""``scr serve``: run the standalone SCR service under uvicorn.

The socket is bound here, before uvicorn starts, so ``--port 0`` works (tests, sidecars) and
the real address is printed on one machine-readable line: ``scr serve: listening on URL``.
"""

from __future__ import annotations

import socket
import sys
from typing import TextIO
from urllib.parse import urlsplit

from .config import load_config
from .errors import ConfigError

__all__ = ["serve"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def _check_not_self(endpoint: str | None, host: str, port: int) -> None:
    """A service whose own runtime forwards to itself would loop events forever."""
    if not endpoint:
        return
    parts = urlsplit(endpoint)
    target_port = parts.port or (443 if parts.scheme == "https" else 80)
    same_host = parts.hostname in _LOOPBACK or parts.hostname == host
    if same_host and target_port == port:
        raise ConfigError("SCR_ENDPOINT", f"{endpoint} is this service itself: events would loop")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--port", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    *,
    host: str,
    port: int,
    config_path: str | None,
    api_key: str | None,
    no_auth: bool,
    recent_size: int,
    protect_recent: bool,
    out: TextIO = sys.stdout,
) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serve", "uvicorn is not installed: pip install 'scr-middleware[service]'"
        ) from None
    from .observability.logs import configure_logging
    from .service import ServiceSettings, create_app

    config = load_config(config_path)
    _check_not_self(config.endpoint, host, port)
    settings = ServiceSettings.from_env(
        api_key,
        allow_unauthenticated=no_auth,
        recent_size=recent_size,
        protect_recent=protect_recent,
    )
    app = create_app(config=config, settings=settings)
    configure_logging(config.monitoring.log_level, config.monitoring.log_format)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    out.write(f"scr serve: listening on http://{shown}:{bound}\n")
    out.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=config.monitoring.log_level,
            access_log=False,
            lifespan="on",
            server_header=False,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
