"""``memory://name``: keeps delivered records in process, for tests (the library's and users').

Every instance registers itself under its name in a process-wide registry, so a test can
configure ``memory://captured`` and then read ``memory_destination("captured").payloads``
without holding a reference to the router. A newer instance with the same name replaces the
older one (e.g. a fresh runtime per test). Records are kept as delivered, duplicates included,
so redelivery shows up in assertions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import unquote

from scr_middleware.config_model import Config, DestinationConfig

from .base import Destination, PermanentDeliveryError, Record, TransientDeliveryError

_registry: dict[str, MemoryDestination] = {}
_registry_lock = threading.Lock()


def memory_name(endpoint: str) -> str:
    """``memory://name`` -> ``name``; raises ``ValueError`` when the name is missing."""
    scheme, sep, rest = endpoint.partition("://")
    if scheme.lower() != "memory" or not sep:
        raise ValueError("must look like memory://name")
    name = unquote(rest.strip("/"))
    if not name:
        raise ValueError("memory:// needs a name, e.g. memory://captured")
    return name


def memory_destination(name: str) -> MemoryDestination | None:
    """The live ``memory://name`` destination, or None if none was created in this process."""
    with _registry_lock:
        return _registry.get(name)


class MemoryDestination(Destination):
    schemes: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        super().__init__(config, runtime_config)
        self.memory_name = memory_name(config.endpoint)
        self._records: list[Record] = []
        self._batch_ids: list[str] = []
        self._failures: list[bool] = []  # scripted failures; True means permanent
        self._changed = threading.Condition()
        with _registry_lock:
            _registry[self.memory_name] = self

    async def send(self, batch: Sequence[Record], batch_id: str) -> None:
        with self._changed:
            if self._failures:
                permanent = self._failures.pop(0)
                if permanent:
                    raise PermanentDeliveryError(f"{self.memory_name}: scripted permanent failure")
                raise TransientDeliveryError(f"{self.memory_name}: scripted transient failure")
            self._records.extend(batch)
            self._batch_ids.append(batch_id)
            self._changed.notify_all()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": "memory", "records": len(self._records)}

    @property
    def records(self) -> list[Record]:
        """A snapshot of every record delivered so far, in delivery order."""
        with self._changed:
            return list(self._records)

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """A snapshot of the delivered payloads (the transformed events)."""
        with self._changed:
            return [record.payload for record in self._records]

    @property
    def batch_ids(self) -> list[str]:
        """The ``batch_id`` of every successful send, in order."""
        with self._changed:
            return list(self._batch_ids)

    def clear(self) -> None:
        """Forget delivered records and any scripted failures still pending."""
        with self._changed:
            self._records.clear()
            self._batch_ids.clear()
            self._failures.clear()

    def fail_next(self, n: int = 1, *, permanent: bool = False) -> None:
        """Make the next ``n`` sends raise (transient by default), to exercise retries."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._changed:
            self._failures.extend([permanent] * n)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` records arrived; False if ``timeout`` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._records) >= count, timeout)
