from __future__ import annotations

import pytest

from scr_middleware.extract.sse import SSEParser


def _feed(parser: SSEParser, *chunks: bytes) -> list[tuple[str, bytes | None]]:
    out: list[tuple[str, bytes | None]] = []
    for chunk in chunks:
        out.extend((e.event, e.data) for e in parser.feed(chunk))
    return out


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    stream = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    assert _feed(SSEParser(), stream) == [("a", b"1"), ("", b"2")]


def test_event_split_at_every_position() -> None:
    stream = b'event: x\r\ndata: {"a": 1}\r\n\r\n: keep-alive\r\n\r\ndata: [DONE]\r\n\r\n'
    expected = [("x", b'{"a": 1}'), ("", b"[DONE]")]
    for cut in range(len(stream) + 1):
        assert _feed(SSEParser(), stream[:cut], stream[cut:]) == expected, cut


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    parser = SSEParser()
    assert _feed(parser, b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n") == [
        ("", b"a"),
        ("", b"b"),
    ]


def test_multiline_data_comments_fields_and_bom() -> None:
    stream = b"\xef\xbb\xbf:comment\nid: 7\nretry: 10\ndata\ndata: two\ndata:three\n\n\n\n"
    parser = SSEParser()
    events = parser.feed(stream)
    assert [(e.data, e.id) for e in events] == [(b"\ntwo\nthree", "7")]
    assert not parser.pending


def test_keepalive_only_dispatches_nothing() -> None:
    assert _feed(SSEParser(), b": ping\n\n:\n\n\n") == []


def test_truncated_stream_is_pending() -> None:
    parser = SSEParser()
    assert _feed(parser, b'data: {"a": 1}\n\ndata: {"b"') == [("", b'{"a": 1}')]
    assert parser.pending


def test_overlong_line_is_dropped_not_kept() -> None:
    parser = SSEParser(max_line_bytes=8)
    assert _feed(parser, b"data: 0123", b"456789", b"abc\n\ndata: ok\n\n") == [("", b"ok")]
    assert parser.overflowed


def test_keep_raw_blocks_reassemble_the_exact_bytes() -> None:
    stream = b": hi\r\n\r\ndata: 1\r\n\r\ndata: 2\r\rdata: 3\n\npartial"
    for cut in range(len(stream) + 1):
        parser = SSEParser(keep_raw=True)
        blocks = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert b"".join(b.raw for b in blocks) + parser.pending_raw() == stream, cut
        assert [b.data for b in blocks if b.data is not None] == [b"1", b"2", b"3"]


def test_close_completes_an_unterminated_last_event() -> None:
    parser = SSEParser()
    assert [e.data for e in parser.feed(b"data: 1\n\ndata: [DONE]\n")] == [b"1"]
    assert [e.data for e in parser.close()] == [b"[DONE]"]
    assert not parser.pending
    parser = SSEParser()
    parser.feed(b'data: {"a": 1}')
    assert [e.data for e in parser.close()] == [b'{"a": 1}']
    parser = SSEParser()
    parser.feed(b": keep-al")
    assert parser.close() == []
