"""What an adapter tells the observer about the request (re-exported by ``observer``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scr_middleware.routes_options import RouteOptions

__all__ = ["RequestInfo", "headers_from_asgi"]


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


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
        key = _text(name).lower()
        text = _text(value)
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def headers_from_environ(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers of a WSGI environ (or Django ``META``), lower-case names."""
    out = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value:
            out[key.replace("_", "-").lower()] = value
    return out


def environ_key(name: str) -> str | None:
    """The WSGI environ key of a lower-case header name; None when the mapping is ambiguous
    (a name with ``_``: the environ cannot tell it from ``-``)."""
    if "_" in name:
        return None
    if name in ("content-type", "content-length"):
        return name.replace("-", "_").upper()
    return "HTTP_" + name.replace("-", "_").upper()


class RequestInfo:
    """Built by the adapter for observed routes only: ``method``, ``path``, ``route``,
    ``headers`` (a mapping with lower-case names), ``user_id`` (the authenticated framework
    user, when the adapter knows it) and ``overrides`` (from ``@scr_route``).

    ``route`` and ``overrides`` may be filled in late (Starlette resolves its route inside the
    app), through ``Observer.set_endpoint``. ``from_raw`` keeps ASGI header pairs as they came
    and decodes them only if ``headers`` is read (an ``identity_callable``); the header
    identity sources look single names up with ``header()``, which needs no decoding.
    """

    __slots__ = ("_environ", "_headers", "_raw", "method", "overrides", "path", "route", "user_id")

    def __init__(  # noqa: PLR0917  (the fields of the dataclass this was, in its order)
        self,
        method: str,
        path: str,
        route: str | None = None,
        headers: Mapping[str, str] | None = None,
        user_id: str | None = None,
        overrides: RouteOptions | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self._headers: Mapping[str, str] | None = headers if headers is not None else {}
        self._raw: Any = None
        self._environ: Mapping[str, Any] | None = None
        self.user_id = user_id
        self.overrides = overrides

    @classmethod
    def from_raw(cls, method: str, path: str, raw_headers: Any, user_id: str | None) -> RequestInfo:
        """``raw_headers``: ASGI-style ``[(name, value)]`` pairs, decoded on demand."""
        return cls._lazy(method, path, user_id, raw_headers, None)

    @classmethod
    def from_environ(
        cls, method: str, path: str, environ: Mapping[str, Any], user_id: str | None
    ) -> RequestInfo:
        """The headers are read from a WSGI environ (or Django ``META``) on demand."""
        return cls._lazy(method, path, user_id, None, environ)

    @classmethod
    def _lazy(
        cls,
        method: str,
        path: str,
        user_id: str | None,
        raw: Any,
        environ: Mapping[str, Any] | None,
    ) -> RequestInfo:
        # Per request: no __init__ (it decodes headers eagerly), just the slots.
        info = cls.__new__(cls)
        info.method = method
        info.path = path
        info.route = None
        info._headers = None
        info._raw = raw
        info._environ = environ
        info.user_id = user_id
        info.overrides = None
        return info

    @property
    def headers(self) -> Mapping[str, str]:
        headers = self._headers
        if headers is None:
            environ = self._environ
            headers = self._headers = (
                headers_from_environ(environ)
                if environ is not None
                else headers_from_asgi(self._raw)
            )
        return headers

    @headers.setter
    def headers(self, value: Mapping[str, str]) -> None:
        self._headers = value

    def header(self, name: str, raw_name: bytes, environ_name: str | None = None) -> str | None:
        """One header's value (repeats joined with ", "); ``name`` is lower-case, ``raw_name``
        is it in latin-1 bytes and ``environ_name`` its ``environ_key``."""
        if self._headers is not None:
            return self._headers.get(name)
        environ = self._environ
        if environ is not None:
            if environ_name is None:
                return self.headers.get(name)
            value = environ.get(environ_name)
            return value if isinstance(value, str) and value else None
        raw = self._raw
        size = len(raw_name)
        found: str | None = None
        try:
            if type(raw) not in (list, tuple) or (raw and type(raw[0][0]) is not bytes):
                return self.headers.get(name)  # str pairs, or none: the general decoding
            for key, value in raw:
                # Servers send lower-case names (ASGI); the length test keeps others cheap.
                if len(key) == size and (key == raw_name or key.lower() == raw_name):
                    text = value.decode("latin-1") if type(value) is bytes else _text(value)
                    found = text if found is None else f"{found}, {text}"
        except (TypeError, ValueError, IndexError):  # a malformed pair: decoding skips it
            return self.headers.get(name)
        return found

    def __repr__(self) -> str:
        return (
            f"RequestInfo(method={self.method!r}, path={self.path!r}, route={self.route!r}, "
            f"user_id={self.user_id!r}, overrides={self.overrides!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestInfo):
            return NotImplemented
        return (
            self.method == other.method
            and self.path == other.path
            and self.route == other.route
            and self.user_id == other.user_id
            and self.overrides == other.overrides
            and dict(self.headers) == dict(other.headers)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces
