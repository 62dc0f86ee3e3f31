"""Who a session belongs to: ordered sources, plus an optional user callable.

Source syntax (validated at start-up, ``ConfigError`` naming the list index):
``framework_user`` (the authenticated user the adapter found), ``body:user`` /
``body:metadata.user_id`` (a dotted path into the JSON request body), ``header:<name>``.
The first source giving a value wins. ``identity_callable`` (``"pkg.module:function"``) is
called with the ``RequestInfo`` and the parsed request body and returns a dict with any of
``user_id``, ``organization_id``, ``metadata``; its non-null values win over the sources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scr_middleware.errors import ConfigError

from . import failsafe
from .request import RequestInfo, environ_key

IdentityCallable = Callable[[RequestInfo, Mapping[str, Any] | None], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # "framework_user" | "body" | "header"
    path: tuple[str, ...] = ()  # body: dotted path; header: (lower-case name,)


def parse_sources(
    specs: Sequence[str], key: str, *, allow_framework_user: bool
) -> tuple[Source, ...]:
    parsed: list[Source] = []
    for index, spec in enumerate(specs):
        where = f"{key}[{index}]"
        if not isinstance(spec, str):
            raise ConfigError(where, f"must be a string, got {type(spec).__name__}")
        if spec == "framework_user":
            if not allow_framework_user:
                raise ConfigError(where, "framework_user can only be a user_id source")
            parsed.append(Source("framework_user"))
            continue
        kind, sep, arg = spec.partition(":")
        parts = tuple(arg.split("."))
        if kind == "body" and sep and all(parts):
            parsed.append(Source("body", parts))
        elif kind == "header" and sep and arg.strip():
            parsed.append(Source("header", (arg.strip().lower(),)))
        else:
            raise ConfigError(
                where,
                f"must be 'framework_user', 'body:<dotted.path>' or 'header:<name>', got {spec!r}",
            )
    return tuple(parsed)


def _identifier(value: Any) -> str | None:
    if type(value) is str:
        return value or None
    if isinstance(value, str):
        return str(value) or None
    if type(value) is int:
        return str(value)
    return None


# A source compiled for the request path: (kind, argument).
_FRAMEWORK, _HEADER, _BODY_KEY, _BODY_PATH = range(4)
Step = tuple[int, Any]


def _compile(sources: tuple[Source, ...]) -> tuple[Step, ...]:
    steps: list[Step] = []
    for source in sources:
        if source.kind == "framework_user":
            steps.append((_FRAMEWORK, None))
        elif source.kind == "header":
            name = source.path[0]
            steps.append((_HEADER, (name, name.encode("latin-1", "replace"), environ_key(name))))
        elif len(source.path) == 1:
            steps.append((_BODY_KEY, source.path[0]))
        else:
            steps.append((_BODY_PATH, source.path))
    return tuple(steps)


def _first(steps: tuple[Step, ...], request: RequestInfo, body: Any) -> str | None:
    """The first source that gives a value."""
    for kind, arg in steps:
        if kind == _FRAMEWORK:
            value = request.user_id
            if value is not None:
                return value
            continue
        if kind == _HEADER:
            value = request.header(arg[0], arg[1], arg[2])
        elif kind == _BODY_KEY:
            if type(body) is not dict and not isinstance(body, Mapping):
                continue
            value = body.get(arg)
        else:
            value = body
            for part in arg:
                if type(value) is not dict and not isinstance(value, Mapping):
                    value = None
                    break
                value = value.get(part)
        if type(value) is str:  # _identifier(), inline for the common case
            if value:
                return value
        elif value is not None:
            found = _identifier(value)
            if found is not None:
                return found
    return None


# (user_id, organization_id, metadata from the callable)
Identity = tuple[str | None, str | None, Mapping[str, Any] | None]


class IdentityResolver:
    __slots__ = ("_callable", "_org", "_org_steps", "_user", "_user_steps")

    def __init__(
        self,
        user_sources: tuple[Source, ...],
        org_sources: tuple[Source, ...],
        identity_callable: IdentityCallable | None = None,
    ) -> None:
        self._user = user_sources
        self._org = org_sources
        self._user_steps = _compile(user_sources)
        self._org_steps = _compile(org_sources)
        self._callable = identity_callable

    def header_names(self) -> tuple[str, ...] | None:
        """The lower-case header names the sources read; None: all (an identity callable
        may read any)."""
        if self._callable is not None:
            return None
        return tuple(s.path[0] for s in (*self._user, *self._org) if s.kind == "header")

    @property
    def needs_body(self) -> bool:
        return self._callable is not None or any(
            s.kind == "body" for s in (*self._user, *self._org)
        )

    def from_sources(
        self, request: RequestInfo, body: Mapping[str, Any] | None
    ) -> tuple[str | None, str | None]:
        return _first(self._user_steps, request, body), _first(self._org_steps, request, body)

    def from_callable(
        self, request: RequestInfo, body: Mapping[str, Any] | None
    ) -> Identity | None:
        """The callable's answer; exceptions propagate to the observer's failsafe."""
        if self._callable is None:
            return None
        result = self._callable(request, body)
        if result is None:
            return None
        if not isinstance(result, Mapping):
            raise TypeError(f"identity_callable must return a dict, got {type(result).__name__}")
        metadata = result.get("metadata")
        return (
            _identifier(result.get("user_id")),
            _identifier(result.get("organization_id")),
            metadata if isinstance(metadata, Mapping) else None,
        )

    def resolve(
        self,
        request: RequestInfo,
        body: Mapping[str, Any] | None,
        stats: failsafe.FailureStats | None = None,
    ) -> Identity:
        """Sources, then the callable's non-null answers on top; a failing callable is
        counted (``identity_error``) and the sources' answer stands."""
        user = _first(self._user_steps, request, body)
        org = _first(self._org_steps, request, body)
        if self._callable is None:
            return user, org, None
        try:
            custom = self.from_callable(request, body)
        except Exception as exc:
            failsafe.internal_error(failsafe.IDENTITY_ERROR, exc, stats)
            return user, org, None
        if custom is None:
            return user, org, None
        return custom[0] or user, custom[1] or org, custom[2]
