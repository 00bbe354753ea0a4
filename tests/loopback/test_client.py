"""engine.client.stream_completion against scripted local servers: success, errors, cuts, stalls."""

import asyncio

import aiohttp
import pytest
import transcripts
import uvloop

from engine.client import stream_completion, timeout_for
from engine.errors import HTTPStatusError, ProtocolError, StreamError
from engine.wire.openai import StreamAssembler

STREAM = transcripts.load("24_stream_n4_include_usage_only")  # n=4, usage chunk, [DONE]
OK_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunked(body: bytes, size: int = 200) -> bytes:
    return b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    )


async def serve_once(script):
    """A server that reads one request and then runs `script(writer)`."""

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        try:
            await script(writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/completions"


async def consume(script, idle_timeout=5.0):
    server, url = await serve_once(script)
    choices, chunks = [], []
    assembler = StreamAssembler(4)
    try:
        async with aiohttp.ClientSession() as session:
            await stream_completion(
                session, url, b"{}", assembler, choices.append, chunks.append, timeout_for(idle_timeout)
            )
    finally:
        server.close()
    return assembler, choices, chunks


def run(coro):
    return uvloop.run(asyncio.wait_for(coro, 30))


def test_a_whole_stream_in_small_pieces_gives_every_choice_and_counts_every_chunk():
    async def script(writer):
        data = OK_HEAD + chunked(STREAM.body) + b"0\r\n\r\n"
        for i in range(0, len(data), 97):
            writer.write(data[i : i + 97])
            await writer.drain()
            await asyncio.sleep(0)

    assembler, choices, chunks = run(consume(script))
    assert assembler.done and sorted(c.index for c in choices) == [0, 1, 2, 3]
    assert sum(chunks) == assembler.chunks == sum(c.tokens for c in choices)


def test_error_status_is_an_http_status_error_with_vllms_message():
    async def script(writer):
        body = b'{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}}'
        writer.write(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    with pytest.raises(HTTPStatusError) as info:
        run(consume(script))
    assert info.value.status == 404 and "does not exist" in str(info.value) and not info.value.retryable


def test_a_stream_cut_before_done_is_a_retryable_stream_error():
    async def script(writer):
        writer.write(OK_HEAD + chunked(STREAM.body[: len(STREAM.body) // 2]))

    with pytest.raises(StreamError) as info:
        run(consume(script))
    assert info.value.retryable


def test_a_complete_http_response_without_done_is_a_protocol_error():
    async def script(writer):
        writer.write(OK_HEAD + chunked(STREAM.body[: STREAM.body.index(b"data: [DONE]")]) + b"0\r\n\r\n")

    with pytest.raises(ProtocolError):
        run(consume(script))


def test_a_stalled_stream_ends_after_the_idle_timeout():
    async def script(writer):
        writer.write(OK_HEAD + chunked(STREAM.body[:300]))
        await asyncio.sleep(10)

    with pytest.raises(StreamError, match="idle"):
        run(consume(script, idle_timeout=0.3))


def test_connection_refused_is_a_stream_error():
    async def main():
        server, url = await serve_once(None)
        server.close()
        await server.wait_closed()
        async with aiohttp.ClientSession() as session:
            await stream_completion(session, url, b"{}", StreamAssembler(1), print, print, timeout_for(1.0))

    with pytest.raises(StreamError):
        run(main())


def test_a_server_that_closes_right_after_accepting_is_a_stream_error_not_a_crash(monkeypatch):
    """The server went down between accepting and reading (seen when a server is killed early in
    a sweep): the close arrives before the request is written. uvloop raised RuntimeError
    writing to the closed transport, and that ended the sweep with a traceback."""
    real_wait_for = asyncio.wait_for

    async def connect_then_see_the_close(awaitable, timeout):
        result = await real_wait_for(awaitable, timeout)
        if isinstance(result, tuple):  # the connection: hold it until the server's close is read
            _, protocol = result
            while not protocol.finished.done():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # and until the transport has closed (its connection_lost ran)
        return result

    async def main():
        async def close_at_once(reader, writer):
            writer.close()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/completions"
        try:
            async with aiohttp.ClientSession() as session:
                await stream_completion(
                    session, url, b"{}", StreamAssembler(1), print, print, timeout_for(5.0)
                )
        finally:
            server.close()

    monkeypatch.setattr(asyncio, "wait_for", connect_then_see_the_close)
    with pytest.raises(StreamError, match="closed before the response ended"):
        run(main())


@pytest.mark.parametrize("seed", range(6))
def test_vllm_framed_stream_split_anywhere_gives_what_the_layered_parsers_give(seed):
    """Each event its own HTTP chunk, as vLLM sends it, so reads of whole chunks take the fast path
    and reads that end inside a chunk carry the rest over: the result must not depend on it."""
    import random

    from engine.wire.sse import SSEParser

    events = [e + b"\n\n" for e in STREAM.body.split(b"\n\n") if e]
    data = OK_HEAD + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 12)) if seed else []  # seed 0: one piece per event
    pieces = (
        [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        if seed
        else [OK_HEAD] + [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]
    )

    async def script(writer):
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)

    assembler, choices, chunks = run(consume(script))
    expected = list(StreamAssembler(4).feed_all(SSEParser().feed(STREAM.body)))
    key = lambda c: (c.index, c.text, c.tokens, c.finish_reason)  # noqa: E731
    assert sorted(map(key, choices)) == sorted(map(key, expected))
    assert sum(chunks) == assembler.chunks == sum(c.tokens for c in expected)
