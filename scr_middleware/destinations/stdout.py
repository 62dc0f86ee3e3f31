"""``stdout:``: one JSON line per payload on standard output, flushed per batch.

For containers whose log collector reads stdout, and for trying things out. Writes happen on
the destination's own thread, so a slow pipe reader stalls only this destination.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from scr_middleware.transforms import as_json

from .base import JsonRecordsMixin, PermanentDeliveryError, Record, ThreadedDestination


def check_stdout_endpoint(endpoint: str) -> None:
    """Accept ``stdout:`` (or ``stdout://``); raise ``ValueError`` for anything after it."""
    scheme, _, rest = endpoint.partition(":")
    if scheme.lower() != "stdout" or rest not in ("", "//"):
        raise ValueError("must be exactly 'stdout:'")


class StdoutDestination(JsonRecordsMixin, ThreadedDestination):
    schemes: ClassVar[tuple[str, ...]] = ("stdout",)

    def send_sync(self, batch: Sequence[Record], batch_id: str) -> None:
        try:
            text = "".join(as_json(record.payload).decode("utf-8") + "\n" for record in batch)
        except TypeError as exc:
            raise PermanentDeliveryError(f"cannot serialise batch {batch_id}: {exc}") from exc
        stream = sys.stdout  # looked up per batch: tests and daemons swap it
        if stream is None:
            raise PermanentDeliveryError("no stdout in this process")
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:  # closed pipe or closed file will not reopen
            raise PermanentDeliveryError(f"cannot write to stdout: {exc}") from exc

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "endpoint": self.config.endpoint, "kind": "stdout"}
