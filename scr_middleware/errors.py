"""Errors raised to the user: each names the key path or field path that was wrong."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """Bad configuration, raised at start-up with the key path, e.g.
    ``destinations[1].sampling_rate: must be between 0 and 1, got 1.5``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class InvalidEventError(ValueError):
    """An event passed to ``capture()`` is invalid; ``errors`` lists every bad field by path."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors: list[tuple[str, str]] = list(errors)
        detail = "; ".join(f"{path}: {problem}" for path, problem in self.errors)
        super().__init__(f"invalid event: {detail}")
