"""``python -m benchmarks.instructions_driver VARIANT N``: the ``instructions`` benchmark's
subject, run under callgrind. ``WARM_UP`` JSON chat completions through the variant of
``benchmarks.apps.starlette_app`` (which starts the capture process, for ``scr``), then ``N``
more, then a shutdown, so the ledger (``SCR_DATA_DIR``) holds every event when it exits."""

from __future__ import annotations

import asyncio
import sys
import time

from scr_middleware import runtime as runtime_mod
from scr_middleware.offload import channel

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
        if variant == "scr":  # (scr_inline has no capture process)
            _wait_captured(WARM_UP)
            # Under callgrind the app runs some 50 times slower, and the ticker (every 50 ms
            # of real time) would ship most records, in frames of a size that depends on
            # timing. At full speed a busy app ships from the request path, every 64 records:
            # count that. (Shutting down still wakes the ticker at once.)
            channel.TICK_S = 10.0
        await _drive(app, PATH, b"", requests)

    asyncio.run(drive())
    if capturing:
        # Not flush(): while it waits, the ticker looks for the answer every 2 ms, a count
        # that depends on how long the wait is. Shutting down ships the rest, waits for the
        # capture process to deliver it and exit, and polls nothing.
        runtime_mod.get_runtime().shutdown(120.0)
    return 0


def _wait_captured(count: int, timeout: float = 120.0) -> None:
    """Until the capture process has acknowledged ``count`` records (so it is up and idle),
    looking a few times a second: flush() would poll every 2 ms."""
    runtime = runtime_mod.get_runtime()
    deadline = time.monotonic() + timeout
    while runtime.health()[1]["offload"]["acknowledged"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the capture process did not acknowledge {count} records")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
