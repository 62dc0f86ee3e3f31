"""API-key authentication for the SCR service.

Keys come from ``--api-key`` or ``SCR_API_KEY``; both may hold several comma-separated keys so a
key can be rotated without downtime (accept old and new, move clients, drop the old one).
Every configured key is compared with ``hmac.compare_digest``, and all of them are always
compared, so the response time does not tell which key (or how much of one) matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

__all__ = ["ApiKeys", "parse_api_keys"]


def parse_api_keys(*values: str | None) -> tuple[str, ...]:
    """Split comma-separated key lists, dropping blanks and repeats, keeping order."""
    keys: list[str] = []
    for value in values:
        for part in (value or "").split(","):
            key = part.strip()
            if key and key not in keys:
                keys.append(key)
    return tuple(keys)


class ApiKeys:
    """Checks ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` against the keys."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode("utf-8") for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def supplied(headers: Mapping[str, str]) -> list[str]:
        """The credentials a request carries (lower-case header names)."""
        found = []
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found.append(token.strip())
        api_key = headers.get("x-api-key", "").strip()
        if api_key:
            found.append(api_key)
        return found

    def matches(self, candidate: str) -> bool:
        given = candidate.encode("utf-8")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        return matched

    def allows(self, headers: Mapping[str, str]) -> bool:
        return any(self.matches(candidate) for candidate in self.supplied(headers))
