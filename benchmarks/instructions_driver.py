"""``python -m benchmarks.instructions_driver VARIANT N``: the ``instructions`` benchmark's
subject, run under callgrind. ``WARM_UP`` JSON chat completions through the variant of
``benchmarks.apps.starlette_app`` (which starts the capture process, for ``scr``), then ``N``
more, then a flush, so the ledger (``SCR_DATA_DIR``) holds every event when it exits."""

from __future__ import annotations

import asyncio
import sys

from scr_middleware import runtime as runtime_mod

from .apps import starlette_app
from .bench_asgi import _drive

WARM_UP = 200
PATH = "/v1/chat/completions"


def main(argv: list[str]) -> int:
    variant, requests = argv[1], int(argv[2])
    app = starlette_app.VARIANTS[variant]()
    capturing = variant.startswith("scr")

    async def drive() -> None:
        await _drive(app, PATH, b"", WARM_UP)
        if capturing:  # the capture process is up and idle before the counted requests
            runtime_mod.get_runtime().flush(60.0)
        await _drive(app, PATH, b"", requests)

    asyncio.run(drive())
    if capturing:
        runtime = runtime_mod.get_runtime()
        if not runtime.flush(120.0):
            print("flush timed out", file=sys.stderr)
            return 1
        runtime.shutdown(60.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
