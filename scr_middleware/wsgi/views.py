"""``@scr_exempt`` / ``@scr_route`` on a resolved view, looked up once per view (the adapters
ask on every observed request)."""

from __future__ import annotations

from types import FunctionType
from typing import Final

from scr_middleware.routes_options import RouteOptions, endpoint_options

__all__ = ["is_exempt", "view_options"]

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
