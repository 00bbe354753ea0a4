"""Client CPU per token: the engine's streaming path against two common ways to consume vLLM.

One replay server, in a process of its own, sends every request the same pre-encoded vLLM 0.32
stream: n choices of T tokens each, one choice per chunk with real-size chunks (as the captured
transcripts: ~300 bytes of JSON per token), the finishing chunks, the usage chunk and [DONE],
each SSE event its own HTTP/1.1 chunk. It emits one engine step (one token of every choice of
every open stream) per --step-ms, as a batching server does. So the server costs the same for
every client, and the client's CPU is measured alone (time.process_time in this process):

    openai   the `openai` package's AsyncOpenAI, `async for chunk in stream` (pip install -e '.[bench]')
    aiohttp  aiohttp + json.loads per line, as vLLM's own benchmark client does
             (benchmarks/backend_request_func.py: iterate lines, strip, drop "data: ", json.loads)
    engine   the engine's real request path: the sweep's Generator and StreamingClient
             (engine/sweep/generate.py, stream.py), i.e. engine.client.stream_completion +
             SSEParser + StreamAssembler, each finished choice made a Sample, staged in a Store
             and handed on, Prometheus metrics on a fresh registry

The clients take turns over --rounds rounds (the order rotates), each round being --requests
concurrent requests; the medians are printed with the ratios.

    .venv/bin/python bench/stream.py                                   # 64 requests, n=16, 256 tokens, 3 rounds
    .venv/bin/python bench/stream.py --clients engine aiohttp --rounds 5
    .venv/bin/python bench/stream.py --clients engine --baseline 513a15f   # before/after, same run

--baseline REV adds the client "engine@REV": the same request path with the whole `engine` and
`metrics` packages as they were at git revision REV (loaded as `engine_baseline` and
`metrics_baseline`, so layouts may differ: before or after the sweep's split, the task seam).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import gc
import importlib
import importlib.util
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop

MODEL = "bench-model"
PROMPT = "def add(a, b):\n"
CLIENTS = ("openai", "aiohttp", "engine")

# -- the replay server (run as `bench/stream.py --serve PORT_FILE ...` in its own process) ----------


def encode_stream(n: int, tokens: int) -> list[bytes]:
    """One response body as HTTP chunks, grouped by engine step: element s is what step s sends."""
    from engine.tasks import load_problems
    from vllm_sim.api.wire import DONE_EVENT, ChunkEncoder, http_chunk
    from vllm_sim.gpu.tokens import split_tokens

    texts: list[bytes] = []
    for problem in load_problems():
        texts += [
            orjson.dumps(t)
            for t in split_tokens(problem.prompt + (problem.payload["canonical_solution"] or ""))
        ]
        if len(texts) > n * tokens:
            break
    encoder = ChunkEncoder("cmpl-0123456789abcdef", 1795612912, MODEL, "vllm-0.32.0-5be7a34d")
    steps = []
    for s in range(tokens):
        events = []
        for i in range(n):
            prefix, text = encoder.prefix(i), texts[(i * tokens + s) % len(texts)]
            if s == tokens - 1:
                events.append(encoder.finish_event(prefix, text, "length", None, b"", False))
            else:
                events.append(encoder.token_event(prefix, text))
        steps.append(b"".join(http_chunk(e) for e in events))
    steps[-1] += http_chunk(encoder.usage_event(5, n * tokens)) + http_chunk(DONE_EVENT) + b"0\r\n\r\n"
    return steps


class _Replay(asyncio.Protocol):
    """One connection: reads requests (keep-alive), streams the pre-encoded body to each."""

    def __init__(self, server: _ReplayServer):
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.step = -1  # -1: no response under way
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.step < 0:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < head_end + 4 + length:
                return
            request_line = head.split(b"\r\n", 1)[0]
            self.buffer = self.buffer[head_end + 4 + length :]
            if request_line.startswith(b"post"):
                date = email.utils.formatdate(usegmt=True).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ndate: " + date + b"\r\nserver: uvicorn\r\n"
                    b"content-type: text/event-stream; charset=utf-8\r\nvary: Origin\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                self.step = 0
                self.server.streams.add(self)
            else:
                body = b'{"object":"list","data":[{"id":"%s","object":"model"}]}' % MODEL.encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc) -> None:
        self.server.streams.discard(self)


class _ReplayServer:
    def __init__(self, steps: list[bytes], step_s: float):
        self.steps = steps
        self.step_s = step_s
        self.streams: set[_Replay] = set()

    async def engine(self) -> None:
        """One step of every open stream per tick; a client that cannot keep up is skipped."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            for stream in list(self.streams):
                if stream.paused:
                    continue
                stream.transport.write(self.steps[stream.step])
                stream.step += 1
                if stream.step == len(self.steps):
                    stream.step = -1
                    self.streams.discard(stream)
                    if stream.buffer:
                        stream.data_received(b"")
            next_tick = max(next_tick + self.step_s, loop.time())
            await asyncio.sleep(next_tick - loop.time())


async def serve(port_file: Path, n: int, tokens: int, step_s: float) -> None:
    server = _ReplayServer(encode_stream(n, tokens), step_s)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Replay(server), "127.0.0.1", 0, backlog=1024)
    port_file.write_text(str(listener.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    engine = asyncio.create_task(server.engine())
    await stop.wait()
    engine.cancel()
    listener.close()


# -- the clients ------------------------------------------------------------------------------------


class OpenAIClient:
    """The openai package, as an application would use it."""

    def __init__(self, url: str, n: int, tokens: int):
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        self.n, self.tokens = n, tokens

    async def request(self) -> int:
        stream = await self.client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            n=self.n,
            max_tokens=self.tokens,
            temperature=0.8,
            stream=True,
            stream_options={"include_usage": True},
        )
        texts: list[list[str]] = [[] for _ in range(self.n)]
        usage = 0
        async for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index].append(choice.text)
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
        assert all(texts), "a choice got no text"
        return usage

    async def close(self) -> None:
        await self.client.close()


class AiohttpJsonClient:
    """aiohttp + json, line by line, in the style of vLLM's benchmarks/backend_request_func.py."""

    def __init__(self, url: str, n: int, tokens: int):
        self.url = url + "/v1/completions"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)
        )
        self.n, self.tokens = n, tokens

    async def request(self) -> int:
        payload = {
            "model": MODEL,
            "prompt": PROMPT,
            "n": self.n,
            "max_tokens": self.tokens,
            "temperature": 0.8,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        generated = [""] * self.n
        output_tokens = 0
        async with self.session.post(url=self.url, json=payload) as response:
            assert response.status == 200
            async for chunk_bytes in response.content:
                chunk_bytes = chunk_bytes.strip()
                if not chunk_bytes:
                    continue
                chunk = chunk_bytes.decode("utf-8").removeprefix("data: ")
                if chunk != "[DONE]":
                    data = json.loads(chunk)
                    if choices := data.get("choices"):
                        _ = time.perf_counter()  # the benchmark's per-token timestamp
                        generated[choices[0]["index"]] += choices[0].get("text") or ""
                    elif usage := data.get("usage"):
                        output_tokens = usage.get("completion_tokens")
        return output_tokens

    async def close(self) -> None:
        await self.session.close()


class EngineClient:
    """The engine's own request path on one server with fresh metrics: the sweep's Generator
    and StreamingClient (engine/sweep/), or `Sweep._request` for a revision from before the
    sweep was split (engine/runner.py). `package` is "engine" or a baseline's copy of it."""

    def __init__(self, url: str, n: int, tokens: int, package: str = "engine"):
        from prometheus_client import CollectorRegistry

        from engine.tasks import TASKS  # the verifier is unused by the request path: any task
        from sandbox.verifier import Verifier

        def load(*names: str, package: str = package):  # the first module the package has (layouts change)
            for name in names:
                try:
                    return importlib.import_module(f"{package}.{name}")
                except ModuleNotFoundError:
                    continue
            raise ModuleNotFoundError(f"{package} has none of {names}")

        metrics_package = package.replace("engine", "metrics")
        EngineMetrics = load("exporter", package=metrics_package).EngineMetrics  # noqa: N806
        running = load("running", package=metrics_package).RunningPassAtK()

        Scheduling, Problem = load("config").Scheduling, load("records").Problem  # noqa: N806
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        self.tmp = tempfile.mkdtemp(prefix="bench-stream-")
        self.store = load("store").Store.open(self.tmp)
        self.fleet = load("fleet.probes", "servers").Fleet([url], self.session, 1 << 20)
        metrics = EngineMetrics(CollectorRegistry(), running)
        try:  # the task seam (engine/tasks/), or a baseline from before it
            humaneval = load("tasks.humaneval")
            stop, self.problem = humaneval.HumanEval().stop, humaneval.problem("bench/0", PROMPT, "", "add")
        except ModuleNotFoundError:
            stop, self.problem = load("runner").HUMANEVAL_STOP, Problem("bench/0", PROMPT, "", "add")
        self.n = n
        self.next_start = 0
        self.finished: list = []  # what verification would take
        if importlib.util.find_spec(f"{package}.sweep") is not None:
            self.Request = load("sweep.plan").Request
            sampling = load("sweep.stream").Sampling(
                model=MODEL, dataset="bench", max_tokens=tokens, stop=stop
            )
            self.generator = load("sweep.generate").Generator(
                fleet=self.fleet,
                client=load("sweep.stream").StreamingClient(self.session, sampling, Scheduling()),
                admission=load("sweep.admission").Admission(1 << 30),
                store=self.store,
                metrics=metrics,
                deliver=self.finished.append,
                crash=_raise,
                request_n=n,
                retries=0,
            )
        else:  # a revision with engine/runner.py
            runner = load("runner")
            self.Request = load("scheduler").Request
            self.generator = _OldSweep(
                runner.Sweep(
                    problems=[],
                    fleet=self.fleet,
                    session=self.session,
                    store=self.store,
                    sandbox=None,
                    verifier=Verifier(None, [], programs=TASKS["humaneval"], dedup=False),
                    workers=0,
                    metrics=metrics,
                    running=running,
                    sampling=runner.Sampling(model=MODEL, dataset="bench", max_tokens=tokens, stop=stop),
                    samples=n,
                    options=Scheduling(),
                )
            )

    async def round(self, requests: int) -> int:
        server = self.fleet.servers[0]
        before = self.generator.tokens
        for _ in range(requests):
            self.generator.start(server, self.Request(self.problem, self.next_start, self.n))
            self.next_start += self.n
        await asyncio.gather(*list(self.generator.inflight))
        return self.generator.tokens - before

    def between_rounds(self) -> None:
        """Untimed: what the sweep's flusher and verifiers would do with the finished samples."""
        self.store.flush()
        self.finished.clear()
        if isinstance(self.generator, _OldSweep):
            self.generator.drain()

    async def close(self) -> None:
        await self.session.close()
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _OldSweep:
    """A pre-split Sweep seen as a Generator (start, inflight, tokens)."""

    def __init__(self, sweep):
        self.sweep = sweep
        self.inflight = sweep._inflight

    @property
    def tokens(self) -> int:
        return self.sweep.stats.tokens

    def start(self, server, request) -> None:
        self.sweep._start(server, request)

    def drain(self) -> None:
        while not self.sweep._queue.empty():
            self.sweep._queue.get_nowait()
            self.sweep._queue.task_done()


def _raise(exc: Exception) -> None:
    raise exc


def load_baseline(rev: str, into: Path) -> str:
    """The engine and metrics packages as of git revision `rev`, importable as `engine_baseline`
    and `metrics_baseline` (their imports of each other rewritten), so the request path runs as
    it was, whatever moved since."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "engine", "metrics"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for name in ("engine", "metrics"):
        package = into / f"{name}_baseline"
        (into / name).rename(package)
        for source in package.rglob("*.py"):
            text = re.sub(r"\b(from|import) (engine|metrics)\b", r"\1 \2_baseline", source.read_text())
            source.write_text(text)
    sys.path.insert(0, str(into))
    return "engine_baseline"


async def run_round(client, requests: int) -> int:
    if isinstance(client, EngineClient):
        return await client.round(requests)
    return sum(await asyncio.gather(*(client.request() for _ in range(requests))))


async def bench(args, url: str) -> None:
    makers = {"openai": OpenAIClient, "aiohttp": AiohttpJsonClient, "engine": EngineClient}
    clients = {name: makers[name](url, args.n, args.tokens) for name in args.clients}
    if args.baseline:
        clients[f"engine@{args.baseline}"] = EngineClient(url, args.n, args.tokens, args.baseline_package)
        args.clients = [*args.clients, f"engine@{args.baseline}"]
    expected = args.requests * args.n * args.tokens
    results: dict[str, list[float]] = {name: [] for name in args.clients}
    walls: dict[str, list[float]] = {name: [] for name in args.clients}
    try:
        for client in clients.values():  # warm-up: connections, imports, first-call caches
            await run_round(client, min(4, args.requests))
            if isinstance(client, EngineClient):
                client.between_rounds()
        print(
            f"{args.requests} concurrent requests x n={args.n} x {args.tokens} tokens = {expected} tokens per "
            f"round; server step every {args.step_ms:g} ms; client CPU-s per million tokens:"
        )
        for r in range(args.rounds):
            order = args.clients[r % len(args.clients) :] + args.clients[: r % len(args.clients)]
            line = []
            for name in order:
                gc.collect()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                tokens = await run_round(clients[name], args.requests)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                if tokens != expected:
                    sys.exit(f"{name}: {tokens} tokens counted, {expected} sent")
                if isinstance(clients[name], EngineClient):
                    clients[name].between_rounds()
                results[name].append(cpu / tokens * 1e6)
                walls[name].append(wall)
                line.append(f"{name} {results[name][-1]:6.2f} ({wall:4.1f} s wall)")
            print(f"  round {r + 1}: " + "   ".join(line), flush=True)
    finally:
        for client in clients.values():
            await client.close()
    medians = {name: statistics.median(v) for name, v in results.items()}
    print("median CPU-s per million tokens: " + "   ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    if "engine" in medians:
        if args.baseline:
            before = medians[f"engine@{args.baseline}"]
            print(f"  engine@{args.baseline} / engine = {before / medians['engine']:.2f}x (before / after)")
        for name in ("openai", "aiohttp"):
            if name in medians:
                target = {"openai": 20, "aiohttp": 2.5}[name]
                print(f"  {name} / engine = {medians[name] / medians['engine']:.1f}x (target >= {target}x)")
        print(f"  engine = {medians['engine']:.2f} CPU-s per million tokens (target <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="concurrent requests per round")
    parser.add_argument("--n", type=int, default=16, help="choices per request")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per choice")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-ms", type=float, default=10.0, help="the server's engine step")
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--baseline", metavar="REV", help="also run the engine path as of git revision REV")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # internal: run the replay server
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve(args.serve, args.n, args.tokens, args.step_ms / 1000))
        return
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        port_file = Path(tmp) / "port"
        if args.baseline:
            args.baseline_package = load_baseline(args.baseline, Path(tmp))
        cmd = [
            sys.executable,
            __file__,
            "--serve",
            str(port_file),
            "--n",
            str(args.n),
            "--tokens",
            str(args.tokens),
            "--step-ms",
            str(args.step_ms),
        ]
        server = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the replay server did not start")
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port_file.read_text()}"
            uvloop.run(bench(args, url))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
