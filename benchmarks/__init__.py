"""Benchmarks for scr-middleware: ``python -m benchmarks`` (``--quick``, ``--only NAME``).

Every figure is a ratio against an anchor or baseline measured in the same run; see
docs/benchmarks.md for the method and the published figures.
"""

from __future__ import annotations

# name -> (module, wall-clock budget in seconds for a full run of that benchmark)
BENCHMARKS: dict[str, tuple[str, float]] = {
    "capture": ("benchmarks.bench_capture", 180.0),
    "router": ("benchmarks.bench_router", 240.0),
    "memory": ("benchmarks.bench_memory", 240.0),
    "asgi": ("benchmarks.bench_asgi", 180.0),
    "servers": ("benchmarks.bench_servers", 360.0),
    "instructions": ("benchmarks.bench_instructions", 600.0),
}
