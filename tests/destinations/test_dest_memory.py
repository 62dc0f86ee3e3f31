"""MemoryDestination: the in-process destination the test helpers build on."""

from __future__ import annotations

import asyncio
import threading

import pytest
from dest_helpers import build, make_records, send_expecting

from scr_middleware.destinations import (
    MemoryDestination,
    PermanentDeliveryError,
    TransientDeliveryError,
    memory_destination,
)
from scr_middleware.destinations.memory import memory_name


def test_registry_and_records() -> None:
    destination, _ = build("memory://captured-a")
    assert isinstance(destination, MemoryDestination)
    assert memory_destination("captured-a") is destination
    assert memory_destination("never-made") is None
    batch = make_records(3)

    async def scenario() -> None:
        await destination.open()
        await destination.send(batch[:2], "bat_1")
        await destination.send(batch[2:], "bat_2")
        await destination.close()

    asyncio.run(scenario())
    assert destination.records == batch
    assert destination.payloads == [record.payload for record in batch]
    assert destination.batch_ids == ["bat_1", "bat_2"]
    assert destination.describe()["records"] == 3
    destination.clear()
    assert destination.records == []


def test_newer_instance_replaces_older() -> None:
    first, _ = build("memory://captured-b")
    second, _ = build("memory://captured-b")
    assert memory_destination("captured-b") is second is not first


def test_fail_next() -> None:
    destination, _ = build("memory://captured-c")
    assert isinstance(destination, MemoryDestination)
    destination.fail_next(1)
    destination.fail_next(1, permanent=True)
    send_expecting(destination, make_records(1), TransientDeliveryError)
    send_expecting(destination, make_records(1), PermanentDeliveryError)
    batch = make_records(1)
    asyncio.run(destination.send(batch, "bat_ok"))
    assert destination.records == batch
    with pytest.raises(ValueError):
        destination.fail_next(-1)


def test_wait_for_is_bounded_and_wakes_up() -> None:
    destination, _ = build("memory://captured-d")
    assert isinstance(destination, MemoryDestination)
    assert destination.wait_for(1, timeout=0.05) is False
    batch = make_records(2)
    sender = threading.Thread(target=lambda: asyncio.run(destination.send(batch, "bat")))
    sender.start()
    assert destination.wait_for(2, timeout=10)
    sender.join()


def test_memory_names() -> None:
    assert memory_name("memory://x") == "x"
    assert memory_name("memory://with%20space/") == "with space"
    for bad in ("memory://", "memory:x", "memory:///"):
        with pytest.raises(ValueError):
            memory_name(bad)
