"""A hostile or broken server is contained: small hostile HTTP servers on 127.0.0.1 against the
streaming client, the fleet's probes and a whole sweep. Invariants: whatever a server sends, a
request ends (in bounded time, with bounded memory), a finished choice is never over its caps,
a server's numbers never take the sweep down, and the model is never chosen at random."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math

import aiohttp
import orjson
import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from engine.client import (
    MAX_RETRY_AFTER_S,
    _retry_after,
    credible_completion_tokens,
    response_byte_cap,
    stream_completion,
    timeout_for,
)
from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.errors import FleetError, ProtocolError, StreamError
from engine.fleet.probes import (
    MAX_CREDIBLE_WAITING,
    MAX_PROBE_BYTES,
    Fleet,
    ModelsAnswer,
    _waiting_from_metrics,
    choose_model,
)
from engine.run import run_sweep
from engine.store import Store
from engine.tasks import load_problems
from engine.wire.http11 import MAX_CHUNK_BYTES, MAX_INTERIM, ResponseReader
from engine.wire.openai import CHUNK_SLACK, TEXT_BYTES_PER_TOKEN, StreamAssembler
from sandbox import Limits
from vllm_sim import SimulatedFleet
from vllm_sim.api.wire import DONE_EVENT, ChunkEncoder, http_chunk

MB = 1 << 20
RSS_GROWTH_LIMIT = 100 * MB  # what reading one hostile server may add to the process's peak RSS
N, MAX_TOKENS = 4, 16
ENCODER = ChunkEncoder("cmpl-hostile", 1795612912, "m", "fp")
OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def run(coro, timeout: float = 30):
    return uvloop.run(asyncio.wait_for(coro, timeout))


# -- peak memory -------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


@contextlib.contextmanager
def peak_rss_growth():
    """Yields a list that receives, on exit, how far the process's peak RSS rose above its RSS
    at entry (the kernel's high-water mark is reset on entry)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_kb("VmRSS")
    growth: list[int] = []
    try:
        yield growth
    finally:
        growth.append((_status_kb("VmHWM") - before) * 1024)


# -- a raw hostile server ----------------------------------------------------------------------


async def serve_raw(script):
    """A server that reads one request head and then runs `script(writer)` until it returns or
    the client hangs up."""

    async def handle(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            await script(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/completions"


async def send_forever(writer, piece: bytes, pause: float = 0.0):
    while True:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(pause)


def token(index: int, text: bytes = b'"x"') -> bytes:
    return http_chunk(ENCODER.token_event(ENCODER.prefix(index), text))


def finish(index: int, text: bytes = b'""') -> bytes:
    return http_chunk(ENCODER.finish_event(ENCODER.prefix(index), text, "length", None, b"", False))


def honest_events(n: int = N, tokens: int = MAX_TOKENS) -> list[bytes]:
    """An honest vLLM response body as HTTP chunks: n choices of `tokens` tokens, usage, [DONE]."""
    events = [token(i) for _ in range(tokens - 1) for i in range(n)] + [finish(i) for i in range(n)]
    return events + [http_chunk(ENCODER.usage_event(3, n * tokens)), http_chunk(DONE_EVENT), b"0\r\n\r\n"]


async def consume(
    url: str, *, idle: float = 5.0, deadline: float | None = 10.0, n: int = N, max_tokens: int = MAX_TOKENS
):
    assembler = StreamAssembler(n, max_tokens=max_tokens)
    choices: list = []
    error = None
    async with aiohttp.ClientSession() as session:
        try:
            await stream_completion(
                session, url, b"{}", assembler, choices.append, lambda k: None, timeout_for(idle, deadline)
            )
        except StreamError as exc:
            error = exc
    return assembler, choices, error


# What a hostile server sends after an honest start, about choice i: each kind runs until the
# client hangs up.
HUNDRED_MB_TEXT = b'"' + b"a" * (48 * 1024) + b'"'
HOSTILE_TAILS = {
    "endless stream": lambda w, i: send_forever(w, b"".join(token(i) for _ in range(200))),
    "2^56 chunk size": lambda w, i: _giant_chunk(w),
    "100 MB choice": lambda w, i: _hundred_mb_choice(w, i),
    "endless keep-alive comments": lambda w, i: send_forever(w, http_chunk(b": keep-alive\n\n") * 500),
    "endless 100 Continue": lambda w, i: send_forever(w, b"HTTP/1.1 100 Continue\r\n\r\n" * 100),
}


async def _giant_chunk(writer):
    writer.write(b"%x\r\n" % (1 << 56))
    await send_forever(writer, b": filler\n\n" * 4096)


async def _hundred_mb_choice(writer, index: int):
    piece = token(index, HUNDRED_MB_TEXT)
    for _ in range(100 * MB // len(piece)):
        writer.write(piece)
        await writer.drain()
    writer.write(finish(index) + http_chunk(DONE_EVENT) + b"0\r\n\r\n")


@HYPOTHESIS
@given(
    kind=st.sampled_from(sorted(HOSTILE_TAILS)),
    at=st.integers(0, len(honest_events()) - 2),
    piece=st.sampled_from([7, 97, 4096, 1 << 20]),
)
@example(kind="100 MB choice", at=0, piece=1 << 20)
@example(kind="2^56 chunk size", at=len(honest_events()) - 2, piece=7)  # right after the last choice finished
def test_a_hostile_stream_ends_its_request_with_bounded_memory(kind, at, piece):
    """Invariant: after any honest prefix (`at` events, from none to all but [DONE], written in
    `piece`-byte writes), any hostile tail ends the request with a StreamError, in bounded time,
    the peak RSS rising less than RSS_GROWTH_LIMIT; choices finished before it are delivered once
    each; every choice within caps."""
    events = honest_events()
    start = b"" if kind == "endless 100 Continue" else OK_HEAD + b"".join(events[:at])  # 1xx come first

    async def script(writer):
        for i in range(0, len(start), piece):
            await _write(writer, start[i : i + piece])
        await HOSTILE_TAILS[kind](writer, N - 1)

    async def main():
        server, url = await serve_raw(script)
        try:
            return await consume(url)
        finally:
            server.close()

    with peak_rss_growth() as growth:
        assembler, choices, error = run(main(), timeout=20)
    assert isinstance(error, StreamError), f"{kind} after {at} events did not end the request"
    assert growth[0] < RSS_GROWTH_LIMIT, f"peak RSS rose {growth[0] / MB:.0f} MB"
    indices = [c.index for c in choices]
    assert len(indices) == len(set(indices)) and set(indices).isdisjoint(assembler.unfinished())
    assert all(c.tokens <= MAX_TOKENS + CHUNK_SLACK for c in choices)


@pytest.mark.parametrize("kind", ["100 MB choice", "endless stream"])
def test_at_the_engines_defaults_a_hostile_stream_costs_bounded_memory(kind):
    """n=64, max_tokens=512 (the largest request a sweep makes by default): the response cap is
    ~34 MB on the wire, and reading that much keeps the peak RSS within bounds."""

    async def main():
        server, url = await serve_raw(lambda w: _then_tail(w, OK_HEAD, kind))
        try:
            return await consume(url, n=64, max_tokens=512, deadline=30.0)
        finally:
            server.close()

    with peak_rss_growth() as growth:
        _, choices, error = run(main(), timeout=60)
    assert isinstance(error, StreamError) and not choices
    assert growth[0] < RSS_GROWTH_LIMIT, f"peak RSS rose {growth[0] / MB:.0f} MB"


async def _then_tail(writer, start: bytes, kind: str, index: int = N - 1):
    await _write(writer, start)
    await HOSTILE_TAILS[kind](writer, index)


def test_an_honest_stream_at_its_caps_is_read_whole():
    """The other end: n choices of exactly max_tokens tokens, each token as long as the caps allow."""
    longest = b'"' + b"a" * (TEXT_BYTES_PER_TOKEN - 1) + b'"'
    events = [token(i, longest) for _ in range(MAX_TOKENS - 1) for i in range(N)]
    events += [finish(i, longest) for i in range(N)]
    body = (
        b"".join(events)
        + http_chunk(ENCODER.usage_event(3, N * MAX_TOKENS))
        + http_chunk(DONE_EVENT)
        + b"0\r\n\r\n"
    )
    assert len(OK_HEAD + body) < response_byte_cap(N, MAX_TOKENS)

    async def main():
        server, url = await serve_raw(lambda w: _write(w, OK_HEAD + body))
        try:
            return await consume(url)
        finally:
            server.close()

    assembler, choices, error = run(main())
    assert error is None and assembler.done and sorted(c.index for c in choices) == list(range(N))


async def _write(writer, data: bytes):
    writer.write(data)
    await writer.drain()


# -- per-choice caps (sans-IO) ------------------------------------------------------------------


def _payload(chunk: bytes) -> bytes:
    """The SSE payload inside one HTTP chunk from `token`/`finish`."""
    return chunk.split(b"\r\n", 1)[1][len(b"data: ") : -len(b"\n\n\r\n")]


@given(max_tokens=st.integers(1, 64), n=st.integers(1, 6), data=st.data())
def test_a_choice_over_its_token_cap_is_refused_and_stays_unfinished(max_tokens, n, data):
    """Invariant: a choice finishes with at most max_tokens + CHUNK_SLACK chunks; one more and
    the request fails with that choice still unfinished (so it is asked for again, not lost)."""
    index = data.draw(st.integers(0, n - 1))
    over = data.draw(st.booleans())
    chunks = max_tokens + CHUNK_SLACK + over
    assembler = StreamAssembler(n, max_tokens=max_tokens)
    list(assembler.feed_all([_payload(token(index))] * (chunks - 1)))
    if over:
        with pytest.raises(ProtocolError, match="max_tokens"):
            list(assembler.feed(_payload(finish(index))))
        assert index in assembler.unfinished()
    else:
        [choice] = assembler.feed(_payload(finish(index)))
        assert choice.tokens == chunks and index not in assembler.unfinished()


@given(max_tokens=st.integers(1, 32), extra=st.integers(0, 1))
def test_a_choice_over_its_byte_cap_is_refused(max_tokens, extra):
    """The byte cap's edge: exactly (max_tokens + CHUNK_SLACK) * TEXT_BYTES_PER_TOKEN bytes of
    text finish; one more byte does not."""
    allowed = (max_tokens + CHUNK_SLACK) * TEXT_BYTES_PER_TOKEN
    assembler = StreamAssembler(1, max_tokens=max_tokens)
    list(assembler.feed(_payload(token(0, b'"' + b"a" * (allowed - 1) + b'"'))))
    last = _payload(finish(0, b'"' + b"a" * (1 + extra) + b'"'))
    if extra:
        with pytest.raises(ProtocolError, match="bytes of text"):
            list(assembler.feed(last))
    else:
        [choice] = assembler.feed(last)
        assert len(choice.text) == allowed


# -- HTTP framing ------------------------------------------------------------------------------


ENDS = [0, 1, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES + 1, 1 << 56, 16**15 - 1]  # 16**15 - 1: the longest size line


@given(size=st.one_of(st.integers(0, 2 * MAX_CHUNK_BYTES), st.sampled_from(ENDS)), split=st.integers(0, 24))
def test_a_chunk_size_over_the_cap_is_a_protocol_error_wherever_the_read_splits(size, split):
    """Invariant: a chunk announced larger than MAX_CHUNK_BYTES ends the response at once (a
    2^56 chunk would stream forever); any size up to it is read on."""
    data = OK_HEAD + b"%x\r\n" % size
    reader = ResponseReader()
    cut = min(split + len(OK_HEAD), len(data))

    def feed_all():
        reader.feed(data[:cut])
        reader.feed(data[cut:])

    if size > MAX_CHUNK_BYTES:
        with pytest.raises(ProtocolError, match="chunk size"):
            feed_all()
    else:
        feed_all()
        assert not reader.done


@given(interim=st.integers(0, 2 * MAX_INTERIM))
@example(interim=MAX_INTERIM)
@example(interim=MAX_INTERIM + 1)
def test_interim_responses_are_bounded(interim):
    """Invariant: up to MAX_INTERIM 1xx responses precede the real one; one more ends the response."""
    reader = ResponseReader()
    data = b"HTTP/1.1 100 Continue\r\n\r\n" * interim + OK_HEAD
    if interim > MAX_INTERIM:
        with pytest.raises(ProtocolError, match="interim"):
            reader.feed(data)
    else:
        reader.feed(data)
        assert reader.status == 200


# -- time --------------------------------------------------------------------------------------

SLOW = {
    "slowloris": lambda w: _trickle(w, OK_HEAD + b"".join(honest_events()), 0.02),
    "endless keep-alive comments": lambda w: _then(w, OK_HEAD, http_chunk(b": keep-alive\n\n"), 0.05),
    "endless 100 Continue": lambda w: _then(w, b"", b"HTTP/1.1 100 Continue\r\n\r\n", 0.05),
    "head never ends": lambda w: _then(w, b"HTTP/1.1 200 OK\r\n", b"x-a: b\r\n", 0.05),
}


async def _trickle(writer, data: bytes, pause: float):
    for i in range(len(data)):
        await _write(writer, data[i : i + 1])
        await asyncio.sleep(pause)


async def _then(writer, first: bytes, piece: bytes, pause: float):
    await _write(writer, first)
    await send_forever(writer, piece, pause)


@pytest.mark.parametrize("kind", sorted(SLOW))
def test_a_server_that_never_finishes_but_never_idles_meets_the_request_deadline(kind):
    """Invariant: bytes arriving faster than the idle timeout do not keep a request alive past its
    deadline (today such a request hangs until SIGTERM)."""

    async def main():
        server, url = await serve_raw(SLOW[kind])
        try:
            return await consume(url, idle=1.0, deadline=1.5)
        finally:
            server.close()

    _, _, error = run(main(), timeout=20)
    assert isinstance(error, StreamError) and ("deadline" in str(error) or "interim" in str(error)), error


# -- Retry-After -------------------------------------------------------------------------------

FAR_DATE = "Fri, 31 Dec 9999 23:59:59 GMT"


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**20), 10**20).map(str),
        st.datetimes().map(email.utils.format_datetime),
        st.text(max_size=40),
    )
)
@example("inf")
@example("nan")
@example("-inf")
@example("99999999")
@example(FAR_DATE)
@example("0")
@example(str(MAX_RETRY_AFTER_S + 1))
def test_retry_after_is_a_finite_pause_of_at_most_the_cap(value):
    """Invariant: whatever the header says, the pause is None or in [0, MAX_RETRY_AFTER_S]."""
    pause = _retry_after(value)
    assert pause is None or (math.isfinite(pause) and 0 <= pause <= MAX_RETRY_AFTER_S)


async def _paused_server(retry_after: str) -> tuple[web.AppRunner, str]:
    """A server that looks like vLLM to the probes and answers every completion with 429."""

    async def models(request):
        model = {"id": "simulated-llama-8b", "object": "model", "parent": None}
        return web.json_response({"object": "list", "data": [model]})

    async def completions(request):
        return web.Response(
            status=429, text='{"error":{"message":"slow down"}}', headers={"Retry-After": retry_after}
        )

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", _healthy)
    app.router.add_post("/v1/completions", completions)
    return await _start(app)


async def _healthy(request):
    return web.Response()


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize("retry_after", ["inf", "99999999", FAR_DATE])
def test_a_huge_retry_after_pauses_its_server_while_a_healthy_one_finishes_the_sweep(tmp_path, retry_after):
    """The sweep ends with every sample: the hostile server is asked first, refuses with an
    absurd Retry-After, and its samples go to the healthy server (today they wait forever)."""

    async def main():
        runner, hostile = await _paused_server(retry_after)
        try:
            async with SimulatedFleet(1, problems=load_problems(limit=1), tokens_per_second=8000) as fleet:
                hosts = tmp_path / "hosts.txt"
                hosts.write_text(f"{hostile}\n{fleet.urls[0]}\n")
                cfg = RunConfig(
                    servers=str(hosts),
                    sampling=SamplingSettings(samples=2, limit=1),
                    scheduling=Scheduling(request_n=1, retries=3, idle_timeout_s=2.0),
                    sandbox=SandboxSettings(workers=1, limits=Limits(timeout_s=2.0)),
                    output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
                )
                return await run_sweep(cfg, registry=CollectorRegistry())
        finally:
            await runner.cleanup()

    summary = run(main(), timeout=60)
    assert summary["samples"] == 2 and summary["generation_failures"] == 0
    rows = list(Store.open(tmp_path / "run", create=False).rows())
    assert sorted(r["sample_index"] for r in rows) == [0, 1]


# -- a whole sweep beside a hostile server ---------------------------------------------------


async def serve_fleet_member(script):
    """A raw server that answers the fleet's probes as vLLM would (model "simulated-llama-8b") and
    every completion request with `script(writer)`."""
    model = {"id": "simulated-llama-8b", "object": "model", "parent": None}
    models = orjson.dumps({"object": "list", "data": [model]})

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if head.startswith(b"POST"):
                    await script(writer)
                    return
                body = models if b" /v1/models " in head else b""
                status = b"200 OK" if head.split(b" ")[1] in (b"/v1/models", b"/health") else b"404 Not Found"
                await _write(
                    writer, b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)
                )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


SWEEP_HOSTILE = {  # what the hostile server answers to a request for one sample
    **{
        k: (lambda w, k=k: _then_tail(w, OK_HEAD, k, 0))
        for k in ["endless stream", "100 MB choice", "2^56 chunk size"]
    },
    "slowloris": SLOW["slowloris"],
}


@pytest.mark.parametrize("kind", sorted(SWEEP_HOSTILE))
def test_a_sweep_beside_a_hostile_server_stores_every_sample(tmp_path, kind, caplog):
    """Invariant: stored samples + generation failures == target, and here no failure at all: the
    hostile server (asked first) costs its requests, which go to the healthy server."""

    async def main():
        server, hostile = await serve_fleet_member(SWEEP_HOSTILE[kind])
        try:
            async with SimulatedFleet(1, problems=load_problems(limit=1), tokens_per_second=8000) as fleet:
                hosts = tmp_path / "hosts.txt"
                hosts.write_text(f"{hostile}\n{fleet.urls[0]}\n")
                cfg = RunConfig(
                    servers=str(hosts),
                    sampling=SamplingSettings(samples=3, limit=1),
                    scheduling=Scheduling(request_n=1, retries=3, idle_timeout_s=1.0, request_timeout_s=2.0),
                    sandbox=SandboxSettings(workers=1, limits=Limits(timeout_s=2.0)),
                    output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
                )
                return hostile, await run_sweep(cfg, registry=CollectorRegistry())
        finally:
            server.close()

    caplog.set_level(logging.WARNING, logger="engine")
    hostile, summary = run(main(), timeout=90)
    assert summary["samples"] == 3 and summary["generation_failures"] == 0
    assert f"failed on {hostile}" in caplog.text, (
        "the hostile server was never asked: the test would prove nothing"
    )


# -- numbers a server reports ------------------------------------------------------------------

ABSURD = ["NaN", "+Inf", "-Inf", "inf", "-1", "1e300", "9" * 400, str(MAX_CREDIBLE_WAITING + 1), "x"]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(ABSURD),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.integers(0, 100).map(str),
        ),
        max_size=6,
    )
)
def test_waiting_from_metrics_never_raises_and_is_a_credible_count(values):
    """Invariant: any values of vllm:num_requests_waiting give None (no such metric) or a count
    in [0, MAX_CREDIBLE_WAITING] made of the credible values only."""
    text = "".join(f'vllm:num_requests_waiting{{engine="{i}"}} {v}\n' for i, v in enumerate(values))
    waiting = _waiting_from_metrics(text)
    if not values:
        assert waiting is None
        return
    credible = [float(v) for v in values if _credible(v)]
    assert waiting == min(sum(int(v) for v in credible), MAX_CREDIBLE_WAITING)


def _credible(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and 0 <= number <= MAX_CREDIBLE_WAITING


async def _metrics_server(metrics: bytes, models: bytes | None = None) -> tuple[web.AppRunner, str]:
    """A vLLM look-alike whose /metrics (and /v1/models, if given) say what the test wants."""

    model_list = b'{"object":"list","data":[{"id":"m","object":"model","parent":null}]}'

    async def send_models(request):
        return web.Response(body=models or model_list, content_type="application/json")

    async def send_metrics(request):
        return web.Response(body=metrics, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/v1/models", send_models)
    app.router.add_get("/health", _healthy)
    app.router.add_get("/metrics", send_metrics)
    return await _start(app)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "1e300"])
def test_a_server_reporting_absurd_load_keeps_the_fleet_watch_running(value):
    """/metrics with NaN or infinite load used to raise inside the watch and kill the sweep."""

    async def main():
        runner, url = await _metrics_server(b'vllm:num_requests_waiting{engine="0"} %s\n' % value.encode())
        try:
            async with aiohttp.ClientSession() as session:
                fleet = Fleet([url], session, 64)
                await fleet.discover(None)
                server = fleet.servers[0]
                server.waiting = 7  # until a probe has read /metrics
                watch = asyncio.create_task(fleet.watch(interval=0.02))
                while not watch.done() and server.waiting == 7:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.1)  # a few more probes
                if watch.done():
                    watch.result()  # raises what killed it
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
                return server
        finally:
            await runner.cleanup()

    server = run(main())
    assert server.up and server.waiting == 0


@given(
    reported=st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=3),
        st.integers(-(10**30), 10**30),
        st.integers(0, 2000),
    ),
    chunks=st.integers(0, 1000),
    n=st.integers(1, 8),
    max_tokens=st.integers(1, 256),
)
@example(reported=10**18, chunks=5, n=1, max_tokens=16)
@example(reported=16, chunks=5, n=1, max_tokens=16)  # the largest credible
@example(reported=17, chunks=5, n=1, max_tokens=16)  # one past it
def test_usage_counts_are_trusted_only_where_the_stream_bears_them_out(reported, chunks, n, max_tokens):
    """Invariant: the tokens counted for a response are the server's count when it lies between
    the chunks received and n * max_tokens, otherwise the chunks received."""
    counted = credible_completion_tokens({"completion_tokens": reported}, chunks, n, max_tokens)
    credible = type(reported) is int and chunks <= reported <= n * max_tokens
    assert counted == (reported if credible else chunks)


# -- model choice ------------------------------------------------------------------------------


def _vllm_models(base: str, adapters: list[str]) -> list[dict]:
    """/v1/models entries as vLLM lists them: LoRA adapters name their base as `parent`."""
    entries = [{"id": base, "object": "model", "root": f"/models/{base}", "parent": None}]
    return entries + [{"id": a, "object": "model", "root": f"/loras/{a}", "parent": base} for a in adapters]


@given(
    adapters=st.lists(st.sampled_from(["sql-lora", "chat-lora", "a", "zz"]), unique=True, max_size=4),
    servers=st.integers(1, 3),
    data=st.data(),
)
def test_without_model_the_base_model_is_chosen_over_its_adapters(adapters, servers, data):
    """Invariant: whatever the order of the lists and servers, the base model is chosen."""
    answers = []
    for _ in range(servers):
        entries = data.draw(st.permutations(_vllm_models("llama", adapters)))
        models = [e["id"] for e in entries]
        answers.append(ModelsAnswer(models, None, True, frozenset(e["id"] for e in entries if e["parent"])))
    assert choose_model(None, answers) == "llama"
    for adapter in adapters:
        assert choose_model(adapter, answers) == adapter


def test_several_base_models_are_refused_with_the_choices_in_one_line():
    answers = [
        ModelsAnswer(["llama"], None, True),
        ModelsAnswer(["qwen", "qwen-lora"], None, True, frozenset({"qwen-lora"})),
    ]
    with pytest.raises(FleetError, match=r"several models \(llama, qwen\); choose one with --model") as info:
        choose_model(None, answers)
    assert "\n" not in str(info.value)
    with pytest.raises(FleetError, match="only adapters"):
        choose_model(None, [ModelsAnswer(["x-lora"], None, True, frozenset({"x-lora"}))])


def test_discovery_of_a_vllm_server_with_lora_adapters_picks_the_base_model():
    """Through HTTP, with the adapters listed first (today one of them is picked at random)."""
    entries = _vllm_models("llama", ["lora-1", "lora-2", "lora-3", "lora-4", "lora-5"])
    body = orjson.dumps({"object": "list", "data": entries[1:] + entries[:1]})

    async def main():
        runner, url = await _metrics_server(b"", models=body)
        try:
            async with aiohttp.ClientSession() as session:
                return await Fleet([url], session, 64).discover(None)
        finally:
            await runner.cleanup()

    assert run(main()) == "llama"


# -- huge probe answers ------------------------------------------------------------------------


async def _one_model(request):
    return web.json_response({"object": "list", "data": [{"id": "m"}]})


async def _huge_server(path: str, chunked: bool) -> tuple[web.AppRunner, str]:
    """/v1/models or /metrics answering 100 MB that start like the real thing."""
    piece = b'{"id":"m","object":"model","parent":null},' * 1500

    async def huge(request):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = 100 * MB
        await response.prepare(request)
        await response.write(b'{"object":"list","data":[')
        sent = 25
        with contextlib.suppress(ConnectionError):
            while sent + len(piece) <= 100 * MB:
                await response.write(piece)
                sent += len(piece)
            await response.write(b" " * (100 * MB - sent))
        return response

    app = web.Application()
    app.router.add_get(path, huge)
    if path != "/v1/models":
        app.router.add_get("/v1/models", _one_model)
    app.router.add_get("/health", _healthy)
    return await _start(app)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_model_list_is_refused_with_bounded_memory(chunked):
    async def main():
        runner, url = await _huge_server("/v1/models", chunked)
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(FleetError, match=f"more than {MAX_PROBE_BYTES} bytes"):
                    await Fleet([url], session, 64).discover(None)
        finally:
            await runner.cleanup()

    with peak_rss_growth() as growth:
        run(main())
    assert growth[0] < RSS_GROWTH_LIMIT, f"peak RSS rose {growth[0] / MB:.0f} MB"


def test_a_100_mb_metrics_page_counts_as_no_load_with_bounded_memory():
    async def main():
        runner, url = await _huge_server("/metrics", chunked=True)
        try:
            async with aiohttp.ClientSession() as session:
                fleet = Fleet([url], session, 64)
                await fleet.discover(None)
                server = fleet.servers[0]
                server.waiting = 7
                server.waiting = await fleet._waiting(server)
                return server.waiting
        finally:
            await runner.cleanup()

    with peak_rss_growth() as growth:
        assert run(main()) == 0
    assert growth[0] < RSS_GROWTH_LIMIT, f"peak RSS rose {growth[0] / MB:.0f} MB"
