"""No sample is ever lost: whatever a server does to a stream, and wherever in the stream it does
it (the first event, the last one before [DONE], or anything between), every choice of a request
ends either delivered to the caller (stored, with exactly the text the server generated for it)
or left unfinished for a retry; never both, never neither, never twice.

The faults are built here byte for byte as `engine simulate --faults` builds them (and the
simulator's own helpers alter the events), and sent to the real client over 127.0.0.1 in reads
split at hypothesis-chosen points, including one read for the whole response (the case where
finished choices used to be dropped with the error that followed them in the same read).
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.client import stream_completion, timeout_for
from engine.errors import StreamError
from engine.wire.openai import StreamAssembler
from engine.wire.sse import SSEParser
from vllm_sim.api.wire import DONE_EVENT, ChunkEncoder, http_chunk, in_band_error_event
from vllm_sim.faults.injection import INBAND_MESSAGE, altered_event

OK_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)
KINDS = (
    "none",
    "cut",
    "reset",
    "inband",
    "garbage",
    "truncated",
    "dup",
    "bad_index",
    "bad_utf8",
    "surrogate",
    "usage",
    "done_early",
)


def vllm_stream(lengths: list[int]) -> tuple[list[bytes], dict[int, str]]:
    """The SSE events of a vLLM 0.32 stream of len(lengths) choices (choice i: lengths[i] tokens,
    interleaved step by step as vLLM sends them), its usage chunk and [DONE]; and each text."""
    encoder = ChunkEncoder("cmpl-1", 1, "m", "fp")
    events, texts = [], {i: "" for i in range(len(lengths))}
    for step in range(max(lengths)):
        for i, length in enumerate(lengths):
            if step < length:
                token = f"t{i}.{step} é\n"
                texts[i] += token
                prefix, text = encoder.prefix(i), orjson.dumps(token)
                last = step == length - 1
                events.append(
                    encoder.finish_event(prefix, text, "length", None, b"", False)
                    if last
                    else encoder.token_event(prefix, text)
                )
    return [*events, encoder.usage_event(5, sum(lengths)), DONE_EVENT], texts


def _finishing(event: bytes) -> bool:
    return b'"finish_reason":"' in event


def with_fault(events: list[bytes], kind: str, at: int) -> tuple[list[bytes], bool]:
    """`events` with `kind` happening before event `at` (len(events) - 1: just before [DONE]);
    and whether the HTTP response ends cleanly."""
    head, tail = events[:at], events[at:]
    if kind == "cut":
        return head, True
    if kind == "reset":
        return head, False
    if kind == "inband":
        return [
            *head,
            in_band_error_event(INBAND_MESSAGE, "InternalServerError", None, 500),
            DONE_EVENT,
        ], True
    if kind == "garbage":
        return [*head, b"data: \xff\xfe garbage\n\n", *tail], True
    if kind == "truncated":
        json_event = next(e for e in reversed(events[: at + 1]) if e.startswith(b"data: {"))
        return [*head, json_event[: len(json_event) // 2] + b"\n\n", *tail], True
    if kind == "done_early":
        return [*head, DONE_EVENT], True
    if kind == "dup":  # as the simulator: the next finishing event twice, or else the last one again
        i = next((i for i, e in enumerate(tail) if _finishing(e)), None)
        if i is None:
            return [*head, [e for e in head if _finishing(e)][-1], *tail], True
        return [*head, *tail[: i + 1], tail[i], *tail[i + 1 :]], True
    if kind == "usage":
        return [altered_event(kind, e) if b'"choices":[]' in e else e for e in events], True
    if kind in ("bad_index", "bad_utf8", "surrogate"):  # the next choice event, else a finished one again
        i = next((i for i, e in enumerate(tail) if b'"choices":[{' in e), None)
        if i is None:
            return [*head, altered_event(kind, [e for e in head if _finishing(e)][-1]), *tail], True
        return [*head, *tail[:i], altered_event(kind, tail[i]), *tail[i + 1 :]], True
    assert kind == "none"
    return events, True


def check_invariant(
    n: int,
    texts: dict[int, str],
    delivered: list,
    assembler: StreamAssembler,
    error: BaseException | None,
    kind: str,
) -> None:
    indices = [c.index for c in delivered]
    assert len(indices) == len(set(indices)), "a choice was delivered twice"
    assert set(indices).isdisjoint(assembler.unfinished()), "a delivered choice would be retried too"
    assert set(indices) | set(assembler.unfinished()) == set(range(n)), "a choice was lost"
    for choice in delivered:
        assert choice.text == texts[choice.index], "a stored text is not what the server generated"
    assert error is None or isinstance(error, StreamError), f"not a stream error: {error!r}"
    if kind == "none":
        assert error is None and len(delivered) == n


fault_cases = st.tuples(
    st.lists(st.integers(1, 5), min_size=1, max_size=4),  # tokens of each choice: n = 1..4
    st.sampled_from(KINDS),
    st.floats(0, 1),  # where: 0 the first event, 1 just before [DONE] (the last position)
    st.lists(st.floats(0, 1), max_size=6),  # where the reads are split (none: one read)
)


def _case(lengths, kind, where, splits):
    events, texts = vllm_stream(lengths)
    at = round(where * (len(events) - 1))
    faulty, clean = with_fault(events, kind, at)
    return events, texts, faulty, clean, at


@settings(max_examples=400, deadline=None)
@given(fault_cases)
def test_assembler_delivers_every_finished_choice_before_the_error_that_follows_it(case):
    """Invariant: delivered + unfinished == every choice, disjointly, texts exact, whatever the
    fault and its position, however the bytes are split into reads."""
    lengths, kind, where, splits = case
    _, texts, faulty, clean, _ = _case(*case)
    body = b"".join(faulty)
    cuts = sorted({round(f * len(body)) for f in splits})
    reads = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    assembler, parser, delivered, error = StreamAssembler(len(lengths)), SSEParser(), [], None
    try:
        for data in reads:  # as the client does: each read's choices, delivered as they finish
            for choice in assembler.feed_all(parser.feed(data)):
                delivered.append(choice)
        for choice in assembler.feed_all(parser.close()):
            delivered.append(choice)
    except StreamError as exc:
        error = exc
    check_invariant(len(lengths), texts, delivered, assembler, error, kind)


def _pieces(faulty: list[bytes], clean: bool, splits: list[float]) -> list[bytes]:
    data = OK_HEAD + b"".join(map(http_chunk, faulty)) + (b"0\r\n\r\n" if clean else b"")
    cuts = sorted({round(f * len(data)) for f in splits})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if b > a]


async def _stream_through_the_client(n: int, pieces: list[bytes]):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/completions"
    assembler, delivered, error = StreamAssembler(n), [], None
    try:
        async with aiohttp.ClientSession() as session:
            await stream_completion(
                session, url, b"{}", assembler, delivered.append, lambda k: None, timeout_for(5)
            )
    except Exception as exc:  # checked by the invariant: only StreamError is allowed
        error = exc
    finally:
        server.close()
    return assembler, delivered, error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_cases)
def test_client_stores_every_finished_choice_whatever_follows_it(case):
    """The same invariant through stream_completion over a socket (vLLM framing, the client's
    fast path and its general path), each fault anywhere, the response in one read or several."""
    lengths, kind, where, splits = case
    _, texts, faulty, clean, _ = _case(*case)
    pieces = _pieces(faulty, clean, splits)
    assembler, delivered, error = uvloop.run(
        asyncio.wait_for(_stream_through_the_client(len(lengths), pieces), 30)
    )
    check_invariant(len(lengths), texts, delivered, assembler, error, kind)


def test_the_reported_case_finished_choices_then_an_error_event_in_one_read():
    """Issue 9's reproduction in miniature: every choice finishes, then an in-band error arrives
    in the same read. All four choices are stored; nothing is left to retry."""
    events, texts = vllm_stream([3, 2, 4, 1])
    faulty, clean = with_fault(events, "inband", len(events) - 1)
    assembler, delivered, error = uvloop.run(_stream_through_the_client(4, _pieces(faulty, clean, [])))
    assert isinstance(error, StreamError) and sorted(c.index for c in delivered) == [0, 1, 2, 3]
    assert assembler.unfinished() == []
