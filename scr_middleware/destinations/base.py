"""The one small interface every destination implements.

The router owns batching, sampling, transforms, retries and spooling; a destination only
delivers one batch of already-transformed records and says how it went:

* return normally: the whole batch is delivered;
* raise ``TransientDeliveryError``: retry later (optionally after ``retry_after`` seconds);
* raise ``PermanentDeliveryError``: retrying cannot help (e.g. HTTP 400); the batch is
  dead-lettered to the spool without further attempts.

Any other exception is treated as transient.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config_model import Config, DestinationConfig
from ..transforms import to_json


@dataclass(slots=True)
class Record:
    """One transformed event as a destination receives it.

    ``payload`` is what the destination's ``prepare`` made of the transformed event when the
    router queued it (the dict itself unless the destination overrides ``prepare``). A
    destination must also accept a plain dict here: tests and replays may hand it one.
    """

    event_id: str
    payload: Any


class TransientDeliveryError(Exception):
    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentDeliveryError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Destination(ABC):
    """Async destination: ``send`` runs on the router's event loop and must not block it."""

    schemes: ClassVar[tuple[str, ...]] = ()
    # How many batches a lane that has fallen behind may hand over in one ``send``. Remote
    # destinations keep 1 (the receiver sized its limits on ``batch_size``); local writers
    # raise it, since each write costs a few fixed GIL hand-offs however many rows it holds.
    batches_per_send: ClassVar[int] = 1
    # Written by this process (SQLite, files): how fast it goes is this machine's to decide.
    # A capture process paces its intake to such a destination rather than let it overflow
    # into its spool, another local write of every event (Router.local_backlog).
    local: ClassVar[bool] = False

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        self.config = config
        self.name = config.name
        self.runtime_config = runtime_config

    async def open(self) -> None:
        """Acquire connections/files. Called once on the router loop before the first send."""

    @abstractmethod
    async def send(self, batch: Sequence[Record], batch_id: str) -> None:
        """Deliver the whole batch or raise. ``batch_id`` is stable across retries."""

    async def close(self) -> None:
        """Release resources. Called once on the router loop at shutdown."""

    def prepare(self, payload: dict[str, Any], payload_json: bytes | None) -> Any:
        """Encode one transformed event for this destination, on the router thread, as it is
        queued; ``payload_json`` is ``to_json(payload)`` when the router already has it.

        Destinations that write bytes override this, so queued events are held as bytes or
        tuples, not nested dicts: the garbage collector then has nothing to traverse while
        they wait (with 150,000 queued dicts, collections cost more than delivery itself).
        Raising here dead-letters the event like a failed transform.
        """
        return payload

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for /health and start-up logs."""
        return {"name": self.name, "endpoint": self.config.endpoint}


class JsonRecordsMixin:
    """For destinations that write each record as JSON: queued records are held as bytes."""

    def prepare(self, payload: dict[str, Any], payload_json: bytes | None) -> bytes:
        return to_json(payload) if payload_json is None else payload_json


class ThreadedDestination(Destination):
    """Base for blocking destinations (SQLite, files): ``send_sync`` runs on a dedicated thread,
    so a stalled disk delays only this destination, never the router loop or the others."""

    batches_per_send: ClassVar[int] = 10
    local: ClassVar[bool] = True

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        super().__init__(config, runtime_config)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"scr-dest-{config.name}"
        )

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.open_sync)

    async def send(self, batch: Sequence[Record], batch_id: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.send_sync, batch, batch_id)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.close_sync)
        finally:
            self._executor.shutdown(wait=False)

    def open_sync(self) -> None:
        """Blocking open, on the destination's thread."""

    @abstractmethod
    def send_sync(self, batch: Sequence[Record], batch_id: str) -> None:
        """Blocking send, on the destination's thread."""

    def close_sync(self) -> None:
        """Blocking close, on the destination's thread."""
