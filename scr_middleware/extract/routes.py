"""Which request paths are observed.

Default: any path ending in one of the OpenAI/Anthropic-compatible suffixes, so ``/v1/...``,
``/api/v1/...`` and Azure's ``/openai/deployments/{name}/chat/completions`` all match. The
non-matching case is the hot path for every other request of the host app, so it is a single
``str.endswith`` over a precomputed tuple. Include/exclude patterns (glob, or ``re:`` regex) are
compiled once into one regex each.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from scr_middleware.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A matched path: the session_type its suffix implies (None for custom patterns)."""

    session_type: str | None
    pattern: str


# Longest suffix first: "/chat/completions" also ends with "/completions".
DEFAULT_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("/chat/completions", "chat"),
    ("/completions", "completion"),
    ("/embeddings", "embedding"),
    ("/responses", "response"),
    ("/messages", "chat"),
)
_DEFAULT_MATCHES: Final = tuple(
    (suffix, RouteMatch(session_type, suffix)) for suffix, session_type in DEFAULT_SUFFIXES
)
_CUSTOM: Final = RouteMatch(None, "include_routes")
_SUFFIX_TUPLE: Final = tuple(s for s, _ in DEFAULT_SUFFIXES) + tuple(
    s + "/" for s, _ in DEFAULT_SUFFIXES
)


def _default_match(path: str) -> RouteMatch | None:
    trimmed = path[:-1] if path.endswith("/") else path
    for suffix, match in _DEFAULT_MATCHES:
        if trimmed.endswith(suffix):
            return match
    return None


def _compile(patterns: Sequence[str], key: str) -> re.Pattern[str] | None:
    if not patterns:
        return None
    parts: list[str] = []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{key}[{index}]", f"must be a non-empty string, got {pattern!r}")
        if pattern.startswith("re:"):  # a regex is searched anywhere, like OTel's excluded_urls
            source = pattern[3:]
            try:
                re.compile(source)
            except re.error as exc:
                raise ConfigError(f"{key}[{index}]", f"invalid regular expression: {exc}") from exc
            parts.append(f"(?:{source})")
        else:
            # A glob matches the whole path; "*" crosses "/" on purpose ("*/chat/completions").
            parts.append(f"\\A(?:{fnmatch.translate(pattern)})")
    return re.compile("|".join(parts))


# Matched paths are remembered (an app serves a handful), up to this many; past it, new paths
# are matched the long way, so a client inventing paths cannot grow the cache.
_CACHE_MAX: Final = 256


class RouteMatcher:
    """Compiled once from ``middleware.include_routes`` / ``exclude_routes``."""

    __slots__ = ("_cache", "_exclude", "_include", "_suffixes")

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self._include = _compile(include, "middleware.include_routes")
        self._exclude = _compile(exclude, "middleware.exclude_routes")
        self._suffixes = _SUFFIX_TUPLE
        self._cache: dict[str, RouteMatch] = {}

    def match(self, path: str) -> RouteMatch | None:
        include = self._include
        if include is None:
            if not path.endswith(self._suffixes):
                return None
            found = self._cache.get(path)
            if found is not None:
                return found
            found = _default_match(path)
        else:
            hit = include.search(path)
            if hit is None:
                return None
            found = _default_match(path) or _CUSTOM
        if found is not None and self._exclude is not None and self._exclude.search(path):
            return None
        if found is not None and include is None and len(self._cache) < _CACHE_MAX:
            self._cache[path] = found  # (dict writes are atomic: threads may race harmlessly)
        return found
