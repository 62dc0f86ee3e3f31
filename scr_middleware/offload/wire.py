"""Frames between an app process and its capture process, over a stream socket.

A frame is a 5-byte header (kind, payload length) and a payload. Records travel as
``marshal`` (C speed, only builtins: a record that holds anything else is replayed in the
app process instead); set-up travels as ``pickle`` (the ``Config``), once.
"""

from __future__ import annotations

import select
import socket
import struct
from typing import Final

HEADER: Final = struct.Struct("!BI")

# App process -> capture process
INIT: Final = 1  # pickle: InitMessage
SETTINGS: Final = 2  # pickle: (key, MiddlewareConfig)
RECORDS: Final = 3  # marshal: (batch sequence number, [record, ...])
FLUSH: Final = 4  # marshal: (token, timeout seconds)
# Capture process -> app process
# marshal: (batch sequence number, every record of it captured; the capture process's
# extraction failures by reason so far, or None when unchanged since the previous ACK)
ACK: Final = 10
FLUSHED: Final = 11  # marshal: (token, ok)
READY: Final = 12  # marshal: capture process pid, after INIT


def send_frame(sock: socket.socket, kind: int, payload: bytes) -> None:
    """One frame; ``sendall`` releases the GIL while the socket is full."""
    sock.sendall(HEADER.pack(kind, len(payload)) + payload)


class FrameReader:
    """Reads whole frames from a blocking stream socket; None at end of stream."""

    __slots__ = ("_buffer", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = self._sock.recv(max(65536, size - len(self._buffer)))
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def ready(self) -> bool:
        """A whole frame is buffered, or the socket has bytes (or its end) to read now."""
        buffer = self._buffer
        if (
            len(buffer) >= HEADER.size
            and len(buffer) >= HEADER.size + HEADER.unpack_from(buffer)[1]
        ):
            return True
        return bool(select.select([self._sock], [], [], 0)[0])

    def read(self) -> tuple[int, bytes] | None:
        if not self._fill(HEADER.size):
            return None
        kind, length = HEADER.unpack_from(self._buffer)
        if not self._fill(HEADER.size + length):
            return None
        payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
        del self._buffer[: HEADER.size + length]
        return kind, payload
