"""Shared helpers for the observability tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from scr_middleware.observability.logs import reset_log_once


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """configure_logging changes the scr_middleware logger; give every test a clean one."""
    logger = logging.getLogger("scr_middleware")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    reset_log_once()
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    reset_log_once()
