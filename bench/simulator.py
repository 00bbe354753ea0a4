"""How much CPU does the simulated fleet cost per token it serves?

Starts `python -m vllm_sim` as its own process, drives it with a minimal raw-socket
streaming client (HumanEval prompts and stop sequences, as a sweep would send them), and
prints the simulator's CPU-seconds per million tokens, the share of one core it used, and the
aggregate rate it achieved against the rate offered.

    .venv/bin/python bench/simulator.py                       # 10 servers x 4000 tok/s, n=16
    .venv/bin/python bench/simulator.py --n 1 --streams 48    # one sequence per request
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

from engine.tasks import load_problems

sys.path.insert(0, str(Path(__file__).parent))
from procstat import cpu_seconds  # noqa: E402

STOPS = ["\ndef", "\nclass", "\nif", "\nprint"]  # what the engine sends: vLLM takes at most 4


class _Stream(asyncio.Protocol):
    """Sends one request at a time on a kept-alive connection; counts bytes, finds the end."""

    def __init__(self, requests, counters: dict):
        self._requests = requests
        self._counters = counters
        self._tail = b""
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        body = next(self._requests)
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n"
        self.transport.write(head % len(body) + body)

    def data_received(self, data: bytes) -> None:
        self._counters["bytes"] += len(data)
        tail = (self._tail + data)[-5:]
        self._tail = tail
        if tail == b"0\r\n\r\n":  # the chunked body's terminator: the response is complete
            self._counters["responses"] += 1
            self._tail = b""
            self._send()

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _requests(prompts: list[str], n: int, max_tokens: int):
    i = 0
    while True:
        yield orjson.dumps(
            {
                "prompt": prompts[i % len(prompts)],
                "n": n,
                "max_tokens": max_tokens,
                "stop": STOPS,
                "temperature": 0.8,
                "stream": True,
            }
        )
        i += 1


async def _generated_tokens(urls: list[str]) -> float:
    total = 0.0
    for url in urls:
        host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        match = re.search(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M)
        total += float(match.group(1))
    return total


async def _drive(args, pid: int, urls: list[str]) -> None:
    loop = asyncio.get_running_loop()
    prompts = [p.prompt for p in load_problems()]
    counters = {"bytes": 0, "responses": 0}
    streams = []
    for url in urls:
        host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
        for s in range(args.streams):
            requests = _requests(
                prompts[s % len(prompts) :] + prompts[: s % len(prompts)], args.n, args.max_tokens
            )
            _, proto = await loop.create_connection(lambda: _Stream(requests, counters), host, int(port))
            streams.append(proto)
    await asyncio.sleep(args.warmup)
    tokens0, cpu0, t0 = await _generated_tokens(urls), cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.seconds)
    tokens1, cpu1, t1 = await _generated_tokens(urls), cpu_seconds(pid), time.monotonic()
    for proto in streams:
        proto.transport.close()
    tokens, cpu, wall = tokens1 - tokens0, cpu1 - cpu0, t1 - t0
    offered = args.servers * args.tokens_per_second
    print(
        f"servers={args.servers} x {args.tokens_per_second:g} tok/s, streams/server={args.streams}, n={args.n}, "
        f"max_tokens={args.max_tokens}, measured over {wall:.1f} s"
    )
    print(f"achieved     {tokens / wall:10.0f} tok/s ({tokens / wall / offered:.1%} of {offered:g} offered)")
    print(f"sim CPU      {cpu / wall:10.1%} of one core")
    print(f"sim cost     {cpu / tokens * 1e6:10.2f} CPU-s per million tokens")
    print(f"responses    {counters['responses']:10d} finished during the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=float, default=4000)
    parser.add_argument("--streams", type=int, default=6, help="concurrent streams per server")
    parser.add_argument("--n", type=int, default=16, help="samples per request")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts.txt"
        cmd = [
            sys.executable,
            "-m",
            "vllm_sim",
            "--servers",
            str(args.servers),
            "--hosts-file",
            str(hosts),
            "--tokens-per-second",
            str(args.tokens_per_second),
        ]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not hosts.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("the simulator did not start")
                time.sleep(0.1)
            urls = [line for line in hosts.read_text().splitlines() if line and not line.startswith("#")]
            uvloop.run(_drive(args, proc.pid, urls))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
