"""``file:///path.jsonl``: one JSON object per line, appended, fsynced per batch.

A batch is acknowledged only once it is on disk. The file is opened with ``O_APPEND`` and each
batch goes out in as few ``write`` calls as the kernel allows, so several processes can append
to one file. When the file is rotated away (logrotate renames it), the next batch reopens the
path. A batch that failed half-written is retried whole; readers dedupe on ``event_id``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import unquote, urlsplit

from scr_middleware.config_model import Config, DestinationConfig
from scr_middleware.transforms import as_json

from .base import (
    JsonRecordsMixin,
    PermanentDeliveryError,
    Record,
    ThreadedDestination,
    TransientDeliveryError,
)

logger = logging.getLogger("scr_middleware.destinations.jsonl")

_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def jsonl_path(endpoint: str) -> Path:
    """The file for ``file:///absolute/path.jsonl``; raises ``ValueError`` with the reason."""
    parts = urlsplit(endpoint)
    if parts.scheme.lower() != "file" or not endpoint[5:].startswith("//"):
        raise ValueError("must look like file:///absolute/path.jsonl")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"remote host {parts.netloc!r} is not supported; use file:///absolute/path.jsonl"
        )
    if parts.query or parts.fragment:
        raise ValueError("query strings and fragments are not supported in file:// endpoints")
    path = unquote(parts.path)
    if not path or path == "/" or path.endswith("/"):
        raise ValueError("needs a file path, e.g. file:///var/lib/scr/events.jsonl")
    return Path(path)


class JsonlDestination(JsonRecordsMixin, ThreadedDestination):
    schemes: ClassVar[tuple[str, ...]] = ("file",)

    def __init__(self, config: DestinationConfig, runtime_config: Config) -> None:
        super().__init__(config, runtime_config)
        self.path = jsonl_path(config.endpoint)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def open_sync(self) -> None:
        try:
            self._ensure_open()
        except OSError as exc:  # surfaces as transient send failures instead
            logger.warning("cannot open %s yet: %s", self.path, exc)

    def _ensure_open(self) -> int:
        if self._fd is not None and not self._rotated():
            return self._fd
        self._close_fd()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, _FLAGS, 0o644)
        stat = os.fstat(fd)
        self._fd, self._inode = fd, (stat.st_dev, stat.st_ino)
        return fd

    def _rotated(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._inode

    def send_sync(self, batch: Sequence[Record], batch_id: str) -> None:
        try:
            data = b"".join(as_json(record.payload) + b"\n" for record in batch)
        except TypeError as exc:
            raise PermanentDeliveryError(f"cannot serialise batch {batch_id}: {exc}") from exc
        try:
            fd = self._ensure_open()
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:  # disk full, I/O error, permissions: may heal, so retry
            self._close_fd()
            raise TransientDeliveryError(f"{self.path}: {exc}") from exc

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_sync(self) -> None:
        self._close_fd()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.config.endpoint,
            "kind": "jsonl",
            "path": str(self.path),
        }
