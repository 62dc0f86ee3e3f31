"""Shared helpers for the destination tests (a plain module: conftest is not importable)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from scr_middleware.config_model import Config, DestinationConfig, OptimizationConfig
from scr_middleware.destinations import Destination, Record, create_destination
from scr_middleware.events import finalize_event, normalize_event

_ids = itertools.count(1)


def make_event(**overrides: Any) -> dict[str, Any]:
    """A finalized canonical event with a unique id (override any input field)."""
    n = next(_ids)
    raw: dict[str, Any] = {
        "event_id": f"evt_test_{n:06d}",
        "session_id": f"sess_{n}",
        "user_id": "user_1",
        "organization_id": "org_1",
        "timestamp": "2025-12-21T10:45:23.123Z",
        "usage": {"input_tokens": 10, "output_tokens": 5, "model": "gpt-4o"},
        "outcome": {"status": "success"},
    }
    raw.update(overrides)
    return finalize_event(normalize_event(raw), 1766313923.0)


def make_records(count: int, **overrides: Any) -> list[Record]:
    return [Record(e["event_id"], e) for e in (make_event(**overrides) for _ in range(count))]


def build(
    endpoint: str, *, compression: bool = False, **fields: Any
) -> tuple[Destination, DestinationConfig]:
    config = DestinationConfig(name=fields.pop("name", "dest"), endpoint=endpoint, **fields)
    runtime = Config(
        destinations=(config,), optimization=OptimizationConfig(compression=compression)
    )
    return create_destination(config, runtime), config


def deliver(destination: Destination, *batches: tuple[Sequence[Record], str]) -> None:
    """open, send each (batch, batch_id), close: all on one event loop, as the router does."""

    async def scenario() -> None:
        await destination.open()
        try:
            for batch, batch_id in batches:
                await destination.send(batch, batch_id)
        finally:
            await destination.close()

    asyncio.run(scenario())


def send_expecting(
    destination: Destination, batch: Sequence[Record], error: type[BaseException]
) -> Any:
    """Send one batch and return the exception of type ``error`` it must raise."""
    caught: list[BaseException] = []

    async def scenario() -> None:
        await destination.open()
        try:
            await destination.send(batch, "bat_expect")
        except error as exc:
            caught.append(exc)
        finally:
            await destination.close()

    asyncio.run(scenario())
    assert caught, f"send did not raise {error.__name__}"
    return caught[0]
