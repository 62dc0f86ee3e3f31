"""Cheap readers for the process's own memory and CPU, for the system gauges.

Called about once a second from the router thread, so they avoid anything heavier than one small
file read: /proc/self/statm on Linux, psutil (optional, not a dependency) elsewhere.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

_STATM = "/proc/self/statm"


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4096


_PAGE_SIZE = _page_size()
_psutil_process: Any = None
_psutil_checked = False


def _rss_from_psutil() -> int | None:
    global _psutil_process, _psutil_checked
    if not _psutil_checked:
        _psutil_checked = True
        try:
            _psutil_process = importlib.import_module("psutil").Process()
        except Exception:
            _psutil_process = None
    if _psutil_process is None:
        return None
    try:
        return int(_psutil_process.memory_info().rss)
    except Exception:
        return None


def rss_bytes() -> int | None:
    """Resident set size of this process in bytes, or None when it cannot be read."""
    try:
        with open(_STATM, "rb") as f:
            # statm: size resident shared text lib data dt, all in pages
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return _rss_from_psutil()


class CpuMeter:
    """Process CPU use (all threads, user + system) as a percentage of one core.

    Each ``sample()`` reports the average since the previous one, so the value covers exactly
    one sync window; 200 means two cores fully busy.
    """

    __slots__ = ("_last_cpu", "_last_wall")

    def __init__(self) -> None:
        self._last_cpu = time.process_time()
        self._last_wall = time.monotonic()

    def sample(self) -> float:
        cpu = time.process_time()
        wall = time.monotonic()
        elapsed = wall - self._last_wall
        used = cpu - self._last_cpu
        if elapsed <= 0:
            return 0.0
        self._last_cpu, self._last_wall = cpu, wall
        return max(0.0, used / elapsed * 100.0)
