"""The SSE parser against every real vLLM stream: whole, byte by byte, and split anywhere."""

import pytest
import transcripts
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ProtocolError
from engine.wire.sse import SSEParser

STREAMS = transcripts.streams()


def reference_payloads(body: bytes) -> list[bytes]:
    """Independent reading of vLLM's framing: events are `data: <payload>` blocks split by a blank line."""
    return [block[len(b"data: ") :] for block in body.split(b"\n\n") if block]


def parse(chunks) -> list[bytes]:
    parser = SSEParser()
    out = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


@pytest.mark.parametrize("name", STREAMS)
def test_whole_and_byte_by_byte_give_the_same_events(name):
    body = transcripts.load(name).body
    expected = reference_payloads(body)
    assert expected[-1] == b"[DONE]"
    assert parse([body]) == expected
    assert parse([body[i : i + 1] for i in range(len(body))]) == expected


def test_raw_chunked_capture_parses_after_dechunking():
    body = transcripts.dechunk(transcripts.load("29_stream_n2_raw_http_chunks").body)
    assert parse([body]) == reference_payloads(body)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAMS), data=st.data())
def test_any_split_points_give_the_same_events(name, data):
    body = transcripts.load(name).body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=30)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    assert parse(pieces) == reference_payloads(body)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(STREAMS), data=st.data())
def test_crlf_and_cr_line_ends_give_the_same_events(name, data):
    body = transcripts.load(name).body
    eol = data.draw(st.sampled_from([b"\r\n", b"\r"]))
    converted = body.replace(b"\n", eol)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(converted)), max_size=20)))
    pieces = [converted[a:b] for a, b in zip([0, *cuts], [*cuts, len(converted)])]
    expected = [p.replace(b"\n", eol) for p in reference_payloads(body)]
    # JSON payloads hold no raw newlines, so the payloads themselves are unchanged
    assert parse(pieces) == expected == reference_payloads(body)


def test_general_fields_comments_and_multiline_data():
    stream = (
        b": keep-alive\n\nevent: message\nid: 7\ndata: first\ndata: second\n\nretry: 10\n\ndata:no-space\n\n"
    )
    assert parse([stream]) == [b"first\nsecond", b"no-space"]


def test_incomplete_event_at_close_is_a_protocol_error():
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n\ndata: {"b"') == [b'{"a": 1}']
    with pytest.raises(ProtocolError):
        parser.close()


def test_unbounded_event_is_a_protocol_error():
    parser = SSEParser(max_event_bytes=1024)
    with pytest.raises(ProtocolError):
        for _ in range(100):
            parser.feed(b"x" * 64)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_parse_or_raise_one_protocol_error(chunks):
    parser = SSEParser(max_event_bytes=256)
    try:
        for chunk in chunks:
            for payload in parser.feed(chunk):
                assert isinstance(payload, bytes)
        parser.close()
    except ProtocolError:
        pass
