"""Suite-wide isolation, for every test folder.

* Internal errors that the failsafe would swallow in production re-raise, so bugs fail tests.
* Every test gets its own data dir (``SCR_DATA_DIR``) and no other ``SCR_*`` variable from the
  shell that started pytest, so a developer's environment cannot change results.
* A shared runtime (``get_runtime()``) created during a test is shut down and forgotten after
  it; one that existed before the test (a module-scoped fixture's) is left alone.
* The ``scr_middleware`` logger's handlers, level and propagation (which a runtime's start-up
  configures) are restored after each test.

Folder conftests may add their own fixtures; nothing here depends on them.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator

import pytest

from scr_middleware import runtime as runtime_mod


def _raise_internal_errors() -> None:
    """Re-raise swallowed internal errors, and forget which were logged once (so each test
    sees its own first log line)."""
    try:
        failsafe = importlib.import_module("scr_middleware.extract.failsafe")
    except ImportError:
        return
    if hasattr(failsafe, "RAISE_INTERNAL_ERRORS"):
        setattr(failsafe, "RAISE_INTERNAL_ERRORS", True)  # noqa: B010 - optional attribute
    if hasattr(failsafe, "reset_logged"):
        failsafe.reset_logged()


def pytest_configure(config: pytest.Config) -> None:
    _raise_internal_errors()


@pytest.fixture(autouse=True)
def _scr_isolation(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    # A folder fixture may have reset the flag after an earlier test: assert it again.
    _raise_internal_errors()
    for name in list(os.environ):
        if name.startswith("SCR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCR_DATA_DIR", str(tmp_path_factory.mktemp("scr-data")))
    logger = logging.getLogger("scr_middleware")
    saved_logging = (list(logger.handlers), logger.level, logger.propagate)
    shared_before = runtime_mod._shared
    yield
    shared_after = runtime_mod._shared
    if shared_after is not None and shared_after is not shared_before:
        try:
            shared_after.shutdown(5.0)
        finally:
            runtime_mod._shared = shared_before
    logger.handlers[:] = saved_logging[0]
    logger.setLevel(saved_logging[1])
    logger.propagate = saved_logging[2]
