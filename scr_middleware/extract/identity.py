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
from .request import RequestInfo

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
    if isinstance(value, str):
        return value or None
    if type(value) is int:
        return str(value)
    return None


def _lookup(source: Source, request: RequestInfo, body: Mapping[str, Any] | None) -> str | None:
    if source.kind == "framework_user":
        return request.user_id
    if source.kind == "header":
        return _identifier(request.headers.get(source.path[0]))
    current: Any = body
    for part in source.path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return _identifier(current)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None = None
    organization_id: str | None = None
    metadata: Mapping[str, Any] | None = None


class IdentityResolver:
    __slots__ = ("_callable", "_org", "_user")

    def __init__(
        self,
        user_sources: tuple[Source, ...],
        org_sources: tuple[Source, ...],
        identity_callable: IdentityCallable | None = None,
    ) -> None:
        self._user = user_sources
        self._org = org_sources
        self._callable = identity_callable

    @property
    def needs_body(self) -> bool:
        return self._callable is not None or any(
            s.kind == "body" for s in (*self._user, *self._org)
        )

    def from_sources(self, request: RequestInfo, body: Mapping[str, Any] | None) -> Identity:
        user = org = None
        for source in self._user:
            user = _lookup(source, request, body)
            if user is not None:
                break
        for source in self._org:
            org = _lookup(source, request, body)
            if org is not None:
                break
        return Identity(user, org)

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
        return Identity(
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
        found = self.from_sources(request, body)
        try:
            custom = self.from_callable(request, body)
        except Exception as exc:
            failsafe.internal_error(failsafe.IDENTITY_ERROR, exc, stats)
            return found
        if custom is None:
            return found
        return Identity(
            custom.user_id or found.user_id,
            custom.organization_id or found.organization_id,
            custom.metadata,
        )
