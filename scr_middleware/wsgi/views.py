"""``@scr_exempt`` on a resolved view, looked up once per view (the adapters ask on every
observed request, before the response starts)."""

from __future__ import annotations

from types import FunctionType
from typing import Final

from scr_middleware.routes_options import endpoint_options

__all__ = ["is_exempt"]

# Only plain functions and classes (identity equality, decorated once at import) are cached;
# bounded, in case an app makes views per request.
_EXEMPT: dict[object, bool] = {}
_EXEMPT_MAX: Final = 1024
_CACHEABLE: Final = (FunctionType, type)


def is_exempt(view: object) -> bool:
    found = _EXEMPT.get(view) if type(view) in _CACHEABLE else None
    if found is None:
        found = endpoint_options(view)[0]
        if type(view) in _CACHEABLE and len(_EXEMPT) < _EXEMPT_MAX:
            _EXEMPT[view] = found
    return found
