"""``@scr_exempt`` / ``@scr_route`` on a resolved view, looked up once per view (the adapters
ask on every observed request)."""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType
from typing import Any, Final

from scr_middleware.routes_options import RouteOptions, endpoint_options

from .keys import ENVIRON_ENDPOINT

__all__ = ["exempt_at_start", "is_exempt", "status_code", "view_options"]

# Only plain functions and classes (identity equality, decorated once at import) are cached;
# bounded, in case an app makes views per request.
_OPTIONS: dict[object, tuple[bool, RouteOptions | None]] = {}
_OPTIONS_MAX: Final = 1024
_CACHEABLE: Final = (FunctionType, type)


def view_options(view: object) -> tuple[bool, RouteOptions | None]:
    """``(exempt, options)``: ``routes_options.endpoint_options``, cached."""
    found = _OPTIONS.get(view) if type(view) in _CACHEABLE else None
    if found is None:
        found = endpoint_options(view)
        if type(view) in _CACHEABLE and len(_OPTIONS) < _OPTIONS_MAX:
            _OPTIONS[view] = found
    return found


def is_exempt(view: object) -> bool:
    return view_options(view)[0]


def exempt_at_start(
    environ: dict[str, Any], in_context: Callable[[dict[str, Any]], object] | None
) -> bool:
    """At ``start_response``: let the framework hook record what it knows (Flask: the view and
    the user, while its context is still up), then whether the resolved view is exempt."""
    if in_context is not None:
        in_context(environ)
    endpoint = environ.get(ENVIRON_ENDPOINT)
    return endpoint is not None and is_exempt(endpoint)


def status_code(status: str) -> int:
    """The code of a WSGI status line; 0 when it has none."""
    try:
        return int(status[:3])
    except ValueError:
        return 0
