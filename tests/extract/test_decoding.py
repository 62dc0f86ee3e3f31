from __future__ import annotations

import gzip
import zlib

import pytest

from scr_middleware.extract.decoding import BodyDecoder, DecodedTooLarge, DecodeError

PAYLOAD = b'{"object": "chat.completion", "text": "' + b"x" * 5000 + b'"}'


def _decode_in_pieces(decoder: BodyDecoder, data: bytes, size: int = 7) -> bytes:
    return b"".join(decoder.decode(data[i : i + size]) for i in range(0, len(data), size))


def test_gzip_incremental() -> None:
    decoder = BodyDecoder("gzip", 1 << 20)
    assert _decode_in_pieces(decoder, gzip.compress(PAYLOAD)) == PAYLOAD
    assert decoder.finished_cleanly()


def test_concatenated_gzip_members() -> None:
    data = gzip.compress(b"abc") + gzip.compress(b"def")
    assert BodyDecoder("gzip", 100).decode(data) == b"abcdef"


def test_deflate_zlib_and_raw() -> None:
    raw = zlib.compressobj(wbits=-15)
    raw_bytes = raw.compress(PAYLOAD) + raw.flush()
    assert _decode_in_pieces(BodyDecoder("deflate", 1 << 20), zlib.compress(PAYLOAD)) == PAYLOAD
    assert _decode_in_pieces(BodyDecoder("Deflate", 1 << 20), raw_bytes) == PAYLOAD


def test_identity_passes_the_same_object() -> None:
    decoder = BodyDecoder("", 10)
    chunk = b"hello world, longer than the limit"
    assert decoder.passthrough
    assert decoder.decode(chunk) is chunk


def test_decompression_bomb_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    decoder = BodyDecoder("gzip", 1024 * 1024)
    with pytest.raises(DecodedTooLarge):
        decoder.decode(bomb)


def test_corrupt_and_unsupported() -> None:
    with pytest.raises(DecodeError):
        BodyDecoder("gzip", 100).decode(b"this is not gzip")
    with pytest.raises(DecodeError):
        BodyDecoder("br", 100)


def test_truncated_gzip_is_not_clean() -> None:
    decoder = BodyDecoder("gzip", 1 << 20)
    data = gzip.compress(PAYLOAD)
    decoder.decode(data[: len(data) // 2])
    assert not decoder.finished_cleanly()
