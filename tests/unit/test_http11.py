"""The sans-IO HTTP/1.1 response reader: real vLLM bytes whole, byte by byte and split anywhere."""

import pytest
import transcripts
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.wire.http11 import ResponseReader

RAW = transcripts.load("29_stream_n2_raw_http_chunks")  # curl --raw: the chunked body as sent
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)
RESPONSE = HEAD + RAW.body
BODY = transcripts.dechunk(RAW.body)


def read(pieces) -> tuple[ResponseReader, bytes]:
    reader = ResponseReader()
    body = b"".join(reader.feed(p) for p in pieces)
    return reader, body


def test_real_chunked_response_whole_and_byte_by_byte():
    for pieces in ([RESPONSE], [RESPONSE[i : i + 1] for i in range(len(RESPONSE))]):
        reader, body = read(pieces)
        assert reader.status == 200 and reader.done and body == BODY
        assert reader.headers["content-type"] == "text/event-stream; charset=utf-8"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(RESPONSE)), max_size=12))
def test_real_chunked_response_split_anywhere(cuts):
    cuts = sorted(set(cuts))
    pieces = [RESPONSE[a:b] for a, b in zip([0, *cuts], [*cuts, len(RESPONSE)])]
    reader, body = read(pieces)
    assert reader.done and body == BODY


def test_one_read_of_whole_chunks_and_chunks_with_crlf_in_their_data():
    chunks = [b"data: a\n\n", b"x\r\ny", b"data: b\n\n"]
    raw = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    reader, body = read([HEAD + raw, b"0\r\n\r\n"])
    assert reader.done and body == b"".join(chunks)
    reader, body = read([HEAD, b"A;ext=1\r\n0123456789\r\n", b"0\r\nTrailer: x\r\n\r\n"])
    assert reader.done and body == b"0123456789"


def test_content_length_and_close_delimited_bodies_and_1xx():
    reader, body = read(
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nab", b"cde"]
    )
    assert (reader.status, reader.done, body) == (404, True, b"abcde")
    reader, body = read([b"HTTP/1.0 200 OK\r\n\r\nsome", b" body"])
    assert not reader.done
    reader.close()
    assert reader.done and body == b"some body"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",  # bad size
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcd\r\n",  # no CRLF after the data
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nextra",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    ],
)
def test_malformed_responses_are_protocol_errors(raw):
    with pytest.raises(ProtocolError):
        read([raw])


def test_cut_short_is_a_protocol_error_at_close():
    reader, _ = read([RESPONSE[: len(RESPONSE) // 2]])
    with pytest.raises(ProtocolError):
        reader.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_one_protocol_error(head, rest):
    try:
        read([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + head, rest])
        read([head, rest])
    except ProtocolError:
        pass
