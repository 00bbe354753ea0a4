"""The fast path's contract (engine/wire/vllm_fast.py), on the client's real read path.

Invariant: however a response is split into reads and whatever fault it carries, the client's
path (`_StreamProtocol`: ResponseReader and SSEParser with `VllmFastPath` in front) ends as the
layered path (ResponseReader -> SSEParser -> StreamAssembler.feed_all, one read) does. A
response the layered path accepts gives the same finished choices in the same order (index,
text, tokens, finish_reason), chunk count and usage. One it refuses is refused, with the same
choices delivered up to the error (which of those finished in the read that broke is delivered
depends on the reads, in the layered path alone too). The one allowance: a running chunk's
text is judged as part of its whole choice's text, so an escape broken in one chunk and
completed by the next passes. No socket: the protocol is fed bytes directly, on an
event loop that never runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import transcripts
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.client import _StreamProtocol
from engine.errors import ProtocolError, StreamError
from engine.wire.http11 import ResponseReader
from engine.wire.openai import StreamAssembler
from engine.wire.sse import SSEParser
from engine.wire.vllm_fast import VllmFastPath

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
N = 4
EVENTS = [e + b"\n\n" for e in transcripts.load("24_stream_n4_include_usage_only").body.split(b"\n\n") if e]


@dataclass
class Outcome:
    choices: list[tuple[int, str, int, str]]
    chunks: int
    usage: dict | None
    error: type | None


def frame(events: list[bytes]) -> bytes:
    """Each SSE event its own HTTP chunk, as vLLM sends it."""
    return HEAD + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


def _key(choice) -> tuple[int, str, int, str]:
    return (choice.index, choice.text, choice.tokens, choice.finish_reason)


def layered(data: bytes) -> Outcome:
    """The reference: no fast path, the whole response in one read, then the end of the connection."""
    assembler = StreamAssembler(N, clock=lambda: 0.0)
    reader, parser, choices = ResponseReader(), SSEParser(), []
    try:
        body = reader.feed(data)
        payloads = parser.feed(body)
        if reader.done:
            payloads += parser.close()
        for choice in assembler.feed_all(payloads):
            choices.append(_key(choice))
        reader.close()
        if not reader.done or not assembler.done:
            raise ProtocolError("incomplete")
    except StreamError as exc:
        return Outcome(choices, assembler.chunks, assembler.usage, type(exc))
    return Outcome(choices, assembler.chunks, assembler.usage, None)


def client(data: bytes, cuts: list[int]) -> Outcome:
    """The client's path, `data` arriving in the reads that `cuts` make."""
    loop = asyncio.new_event_loop()
    try:
        assembler = StreamAssembler(N, clock=lambda: 0.0)
        choices: list = []
        counted: list[int] = []
        protocol = _StreamProtocol(loop, assembler, lambda c: choices.append(_key(c)), counted.append, None)
        for a, b in zip([0, *cuts], [*cuts, len(data)]):
            protocol.data_received(data[a:b])
        protocol.eof_received()
        error = protocol.finished.exception()
        assert sum(counted) == assembler.chunks  # every chunk reported to the caller, once
        return Outcome(choices, assembler.chunks, assembler.usage, type(error) if error else None)
    finally:
        loop.close()


FAULTS = st.one_of(
    st.just(("none", 0, 0)),
    st.tuples(
        st.sampled_from(["drop", "repeat", "bad index", "in-band error"]), st.integers(0, 99), st.just(0)
    ),
    st.tuples(st.just("byte"), st.integers(0, 99), st.integers(0, 1 << 16)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 16), st.just(0)),
)


# A read ends anywhere, or at the end of an HTTP chunk (where the fast path can take what follows).
CUT = st.tuples(st.booleans(), st.integers(0, 1 << 16))


def read_ends(data: bytes, cuts: list[tuple[bool, int]]) -> list[int]:
    chunk_ends = [len(HEAD)] + [i + 4 for i in range(len(data)) if data.startswith(b"\n\n\r\n", i)]
    ends = {chunk_ends[at % len(chunk_ends)] if at_chunk_end else at % len(data) for at_chunk_end, at in cuts}
    return sorted(ends - {0, len(data)})


def faulty(kind: str, at: int, detail: int) -> tuple[bytes, bool]:
    """The framed response with the fault, and whether the fault is a byte inside a choice's text."""
    events = list(EVENTS)
    in_text = False
    i = at % len(events)
    if kind == "drop":
        del events[i]
    elif kind == "repeat":
        events.insert(i, events[i])
    elif kind == "bad index":
        events[i] = events[i].replace(b'"index":', b'"index":7', 1)
    elif kind == "in-band error":
        events[i] = b'data: {"error":{"message":"boom","code":503}}\n\n'
    elif kind == "byte":  # any byte of an event's JSON, with any value
        event = events[i]
        pos = 6 + (detail >> 8) % (len(event) - 8)
        events[i] = event[:pos] + bytes([detail & 0xFF]) + event[pos + 1 :]
        in_text = event.find(b',"text":"') + 9 <= pos < event.find(b'","logprobs":')
    data = frame(events)
    return (data[: len(HEAD) + at % (len(data) - len(HEAD))] if kind == "cut" else data), in_text


@settings(max_examples=400, deadline=None)
@given(FAULTS, st.lists(CUT, max_size=12), st.booleans())
@example(("none", 0, 0), [], False)  # whole, one read
@example(("none", 0, 0), [], True)  # one read per byte
@example(("drop", len(EVENTS) - 1, 0), [], False)  # the last event ([DONE]) missing
@example(("repeat", len(EVENTS) - 1, 0), [], False)  # data after [DONE]
@example(("none", 0, 0), [(True, i) for i in range(len(EVENTS) + 1)], False)  # every read whole chunks
@example(("bad index", 5, 0), [(True, i) for i in range(len(EVENTS) + 1)], False)
@example(("cut", 0, 0), [], False)  # the connection closed right after the head (an UnboundLocalError once)
def test_the_client_path_ends_as_the_layered_path_whatever_the_reads_and_faults(fault, cuts, bytewise):
    data, in_text = faulty(*fault)
    points = list(range(1, len(data))) if bytewise else read_ends(data, cuts)
    expected, got = layered(data), client(data, points)
    if expected.error is None:
        assert got == expected
    else:  # refused: which choices finished just before the error depends on the reads
        common = min(len(got.choices), len(expected.choices))
        assert got.choices[:common] == expected.choices[:common]
        assert got.error is not None or in_text  # an escape completed by the next chunk passes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(EVENTS))), max_size=40), st.integers(1, 8))
def test_feed_events_is_feed_all_on_any_sequence_of_real_payloads(picks, batch):
    """Payloads in any order, repeated or missing, fed in batches: the same choices and the
    same error, at the same payload."""
    payloads = [EVENTS[i][6:-2] for i in picks]
    fast, plain = VllmFastPath(StreamAssembler(N, clock=lambda: 0.0)), StreamAssembler(N, clock=lambda: 0.0)
    for start in range(0, len(payloads), batch):
        part = payloads[start : start + batch]
        got: list[tuple] = []
        expected: list[tuple] = []
        errors: list[type] = []
        for source, out in ((fast.feed_events(part), got), (plain.feed_all(part), expected)):
            try:
                out += map(_key, source)
            except StreamError as exc:
                errors.append(type(exc))
        assert got == expected and len(errors) in (0, 2) and len(set(errors)) <= 1
        assert fast.assembler.chunks == plain.chunks and fast.assembler.usage == plain.usage
        if errors:
            return


def test_a_block_of_running_chunks_is_taken_whole_and_a_partial_one_waits():
    fast = VllmFastPath(StreamAssembler(N))
    list(fast.feed_events([EVENTS[0][6:-2]]))  # the first choice chunk teaches the prefix
    running = [b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS[1:4]]
    block = b"".join(running)
    assert fast.take_chunks(block[:-3]) == b""  # two whole chunks taken, the third waits
    assert fast.assembler.chunks == 3
    assert fast.take_chunks(block[-3:]) == b"" and fast.assembler.chunks == 4


def test_before_the_prefix_is_known_everything_goes_the_layered_way():
    fast = VllmFastPath(StreamAssembler(N))
    chunk = b"%x\r\n%s\r\n" % (len(EVENTS[1]), EVENTS[1])
    assert fast.take_chunks(chunk) == chunk and fast.assembler.chunks == 0


def test_chat_streams_go_the_layered_way():
    fast = VllmFastPath(StreamAssembler(N, chat=True))
    chat = (
        b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
    )
    assert list(fast.feed_events([chat])) == []  # no prefix learned from a chat chunk
    chunk = b"%x\r\n%s\r\n" % (len(EVENTS[1]), EVENTS[1])
    assert fast.take_chunks(chunk) == chunk and fast.assembler.chunks == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_one_stream_error(text, block):
    """Invariant: whatever follows the learned prefix, as an event's text or as raw body bytes,
    the fast path takes it, hands it back, or the assembler raises a StreamError; nothing else."""
    fast = VllmFastPath(StreamAssembler(N))
    list(fast.feed_events([EVENTS[0][6:-2]]))
    prefix = EVENTS[1][6 : EVENTS[1].index(b'"index":') + len(b'"index":')]
    tail = b'","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}'
    try:
        list(fast.feed_events([prefix + b'1,"text":"' + text + tail]))
        rest = fast.take_chunks(block)
        assert rest in (b"", block)
        list(fast.feed_events([b'{"choices":[{"index":1,"text":"","finish_reason":"stop"}]}']))
    except StreamError:
        pass
