"""PII scrubbing, applied by the router to each event before its transform when ``pii.enabled``.

Two mechanisms, both configured in ``PIIConfig``:

* ``redact_fields``: dotted paths (``outcome.final_output``, ``metadata.messages.content``)
  whose whole value is replaced. A path crossing a list applies to every element; a numeric
  segment picks one element.
* ``redact_patterns``: named detectors (``email``, ``phone``, ``credit_card``, ``ipv4``,
  ``ssn``) or raw regexes (``re:<pattern>``), applied to every string inside
  ``outcome.final_output`` and ``metadata``, recursively. Dict keys are left alone.

The scrubber returns a new event and never mutates the one it is given; containers are
copied only where something may change. Everything is compiled once, at construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from scr_middleware.config_model import PIIConfig
from scr_middleware.errors import ConfigError

# Deeper than any real payload; past it we redact the whole subtree rather than leak it.
_MAX_DEPTH: Final = 64


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (cuts false positives)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = "".join(c for c in match if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_DOTTED_QUAD: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _phone(match: str) -> bool:
    # The candidate regex is deliberately loose; this keeps dates, IPs and short numbers out.
    if _ISO_DATE.match(match) or _DOTTED_QUAD.fullmatch(match):
        return False
    digits = sum(c.isdigit() for c in match)
    return (8 if match.startswith("+") else 10) <= digits <= 15


_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

# name -> (regex, extra check on the matched text). Listed most specific first: a card number
# must be claimed by ``credit_card`` before ``phone`` could eat part of it.
BUILTIN_PATTERNS: Final[dict[str, tuple[str, Callable[[str], bool] | None]]] = {
    "credit_card": (r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])", _card),
    "ssn": (r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])", None),
    "email": (r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", None),
    "ipv4": (rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)", None),
    "phone": (
        r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
        r"\d{2,4}(?:[ .-]?\d{2,4}){1,5}(?![ .-]?\d)(?!\w)",
        _phone,
    ),
}


@dataclass(frozen=True, slots=True)
class _Detector:
    name: str
    regex: re.Pattern[str]
    accept: Callable[[str], bool] | None


def _compile_patterns(specs: tuple[str, ...]) -> tuple[_Detector, ...]:
    builtin: dict[str, _Detector] = {}
    custom: list[_Detector] = []
    for index, spec in enumerate(specs):
        path = f"pii.redact_patterns[{index}]"
        if not isinstance(spec, str):
            raise ConfigError(path, f"must be a string, got {type(spec).__name__}")
        if spec.startswith("re:"):
            try:
                regex = re.compile(spec[3:])
            except re.error as exc:
                raise ConfigError(path, f"invalid regular expression: {exc}") from None
            if regex.search(""):
                raise ConfigError(path, "regular expression matches the empty string")
            custom.append(_Detector(spec, regex, None))
        elif spec in BUILTIN_PATTERNS:
            source, accept = BUILTIN_PATTERNS[spec]
            builtin[spec] = _Detector(spec, re.compile(source), accept)
        else:
            known = ", ".join(BUILTIN_PATTERNS)
            raise ConfigError(path, f"unknown pattern {spec!r}; use one of {known} or 're:<regex>'")
    ordered = [builtin[name] for name in BUILTIN_PATTERNS if name in builtin]
    return (*ordered, *custom)


def _compile_fields(fields: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    paths = []
    for index, field in enumerate(fields):
        parts = tuple(field.split(".")) if isinstance(field, str) else ()
        if not parts or not all(parts):
            raise ConfigError(
                f"pii.redact_fields[{index}]", f"must be a dotted path, got {field!r}"
            )
        paths.append(parts)
    return tuple(paths)


def _replacer(
    replacement: str, accept: Callable[[str], bool] | None
) -> Callable[[re.Match[str]], str]:
    if accept is None:
        return lambda _match: replacement

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        return replacement if accept(found) else found

    return replace


class PiiScrubber:
    """``PiiScrubber(config)(event)`` returns a scrubbed copy of ``event``.

    Raises ``ConfigError`` at construction for an unknown pattern name, an invalid regex or a
    malformed field path, so a bad setting stops start-up rather than leaking data later.
    """

    def __init__(self, config: PIIConfig) -> None:
        if not isinstance(config.replacement, str):
            raise ConfigError("pii.replacement", "must be a string")
        self.replacement = config.replacement
        self._fields = _compile_fields(config.redact_fields)
        self._detectors = tuple(
            (detector.regex, _replacer(self.replacement, detector.accept))
            for detector in _compile_patterns(config.redact_patterns)
        )

    def __call__(self, event: Mapping[str, Any]) -> dict[str, Any]:
        scrubbed = dict(event)
        for parts in self._fields:
            scrubbed = self._redact_path(scrubbed, parts, 0)
        if self._detectors:
            outcome = scrubbed.get("outcome")
            if isinstance(outcome, Mapping) and "final_output" in outcome:
                outcome = dict(outcome)
                outcome["final_output"] = self._scrub(outcome["final_output"], 0)
                scrubbed["outcome"] = outcome
            if "metadata" in scrubbed:
                scrubbed["metadata"] = self._scrub(scrubbed["metadata"], 0)
        return scrubbed

    def scrub_text(self, text: str) -> str:
        """Apply every pattern to one string."""
        for regex, replace in self._detectors:
            text = regex.sub(replace, text)
        return text

    def _scrub(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if depth >= _MAX_DEPTH:
            return self.replacement if isinstance(value, Mapping | list | tuple) else value
        if isinstance(value, Mapping):
            return {key: self._scrub(item, depth + 1) for key, item in value.items()}
        if isinstance(value, list):
            return [self._scrub(item, depth + 1) for item in value]
        if isinstance(value, tuple):
            return tuple(self._scrub(item, depth + 1) for item in value)
        return value

    def _redact_path(self, node: Any, parts: tuple[str, ...], index: int) -> Any:
        """A copy of ``node`` with the value at ``parts[index:]`` replaced (copy-on-write)."""
        head = parts[index]
        last = index == len(parts) - 1
        if isinstance(node, Mapping):
            if head not in node:
                return node
            copy = dict(node)
            copy[head] = (
                self.replacement if last else self._redact_path(node[head], parts, index + 1)
            )
            return copy
        if isinstance(node, list):
            if head.isdigit():
                position = int(head)
                if position >= len(node):
                    return node
                copy_list = list(node)
                copy_list[position] = (
                    self.replacement
                    if last
                    else self._redact_path(node[position], parts, index + 1)
                )
                return copy_list
            # A named segment on a list applies to each element: metadata.messages.content.
            return [self._redact_path(item, parts, index) for item in node]
        return node
