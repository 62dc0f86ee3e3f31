"""What an adapter tells the observer about the request (re-exported by ``observer``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scr_middleware.routes_options import RouteOptions


@dataclass(slots=True)
class RequestInfo:
    """Built by the adapter for observed routes only, so it may copy headers into a dict.

    ``route`` and ``overrides`` may be filled in late (Starlette resolves its route inside the
    app), through ``Observer.set_endpoint``.
    """

    method: str
    path: str
    route: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    user_id: str | None = None  # the authenticated framework user, when the adapter knows it
    overrides: RouteOptions | None = None


def headers_from_asgi(raw: object) -> dict[str, str]:
    """ASGI/WSGI-style ``[(name, value)]`` pairs (bytes or str) to a lower-case dict.
    Repeated headers are joined with ", " as RFC 9110 allows."""
    out: dict[str, str] = {}
    if not isinstance(raw, list | tuple):
        return out
    for pair in raw:
        try:
            name, value = pair
        except (TypeError, ValueError):
            continue
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        key = key.lower()
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out
