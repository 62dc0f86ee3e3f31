"""Per-view opt-out and per-route options, shared by every framework adapter.

The decorators only set an attribute on the view function; each adapter looks the attribute up
on the endpoint/view its framework resolved, so the same decorator works in FastAPI/Starlette,
Django and Flask alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

EXEMPT_ATTR: Final = "__scr_exempt__"
ROUTE_ATTR: Final = "__scr_route__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """Options for one route: a fixed session_type, one extractor to use instead of the
    configured list (a ``"pkg.module:function"`` string or an extractor object), and
    metadata merged into every event of that route."""

    session_type: str | None = None
    extractor: str | Callable[..., Any] | None = None
    metadata: Mapping[str, Any] | None = None


def scr_exempt(view: F) -> F:
    """Opt a view/endpoint out of capture: no event is emitted for its requests."""
    _set(view, EXEMPT_ATTR, True)
    return view


def scr_route(
    *,
    session_type: str | None = None,
    extractor: str | Callable[..., Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Per-route options, e.g. ``@scr_route(session_type="agent", metadata={"team": "x"})``."""
    frozen = MappingProxyType(dict(metadata)) if metadata is not None else None
    options = RouteOptions(session_type=session_type, extractor=extractor, metadata=frozen)

    def decorate(view: F) -> F:
        _set(view, ROUTE_ATTR, options)
        return view

    return decorate


def _set(view: Any, name: str, value: object) -> None:
    # Bound methods do not accept attributes; the function behind them does.
    target = getattr(view, "__func__", view)
    setattr(target, name, value)


def endpoint_options(endpoint: object) -> tuple[bool, RouteOptions | None]:
    """``(exempt, options)`` declared on a resolved endpoint, looking through
    ``functools.partial`` and class-based views' ``view_class`` (Django) as well."""
    seen = 0
    current: Any = endpoint
    while current is not None and seen < 4:
        exempt = getattr(current, EXEMPT_ATTR, False) is True
        options = getattr(current, ROUTE_ATTR, None)
        if exempt or isinstance(options, RouteOptions):
            return exempt, options if isinstance(options, RouteOptions) else None
        current = getattr(current, "func", None) or getattr(current, "view_class", None)
        seen += 1
    return False, None
