"""Destinations: where routed batches go. One module per endpoint scheme, one small interface
(``base.Destination``); ``create_destination`` picks the class from the endpoint's scheme."""

from .base import (
    Destination,
    PermanentDeliveryError,
    Record,
    ThreadedDestination,
    TransientDeliveryError,
)
from .http import HttpDestination
from .jsonl import JsonlDestination
from .memory import MemoryDestination, memory_destination
from .registry import (
    DESTINATION_TYPES,
    create_destination,
    endpoint_scheme,
    validate_destination,
    validate_endpoint,
)
from .sqlite import SqliteDestination, ledger_totals, read_ledger
from .stdout import StdoutDestination

__all__ = [
    "DESTINATION_TYPES",
    "Destination",
    "HttpDestination",
    "JsonlDestination",
    "MemoryDestination",
    "PermanentDeliveryError",
    "Record",
    "SqliteDestination",
    "StdoutDestination",
    "ThreadedDestination",
    "TransientDeliveryError",
    "create_destination",
    "endpoint_scheme",
    "ledger_totals",
    "memory_destination",
    "read_ledger",
    "validate_destination",
    "validate_endpoint",
]
