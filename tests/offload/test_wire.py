"""Frames over a real socket pair: split reads, and ``ready()``, which lets the capture process
wait for a burst only when nothing is left to read."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from scr_middleware.offload import wire


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_frames_split_across_writes_are_read_whole(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    data = wire.HEADER.pack(wire.RECORDS, 5) + b"hello" + wire.HEADER.pack(wire.ACK, 0)
    reader = wire.FrameReader(theirs)
    ours.sendall(data[:3])
    ours.sendall(data[3:])
    assert reader.read() == (wire.RECORDS, b"hello")
    assert reader.read() == (wire.ACK, b"")
    ours.close()
    assert reader.read() is None


def test_ready_says_whether_a_read_would_wait(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = wire.FrameReader(theirs)
    assert not reader.ready()  # nothing sent
    wire.send_frame(ours, wire.RECORDS, b"a")
    wire.send_frame(ours, wire.RECORDS, b"b")
    assert reader.ready()  # bytes in the socket
    assert reader.read() == (wire.RECORDS, b"a")
    assert reader.ready()  # the second frame came with the first recv: it is buffered
    assert reader.read() == (wire.RECORDS, b"b")
    assert not reader.ready()
    ours.sendall(wire.HEADER.pack(wire.RECORDS, 4) + b"ab")  # half a frame
    assert reader.ready()  # readable: read() will not block for long
    ours.close()
    assert reader.ready()  # the end of the stream is readable too
