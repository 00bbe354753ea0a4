"""Real endpoints: --api-key and --header reach every request to the fleet (both stream clients
and the probes), 401/403 end the run with one line and exit 2; --metrics-port in use leaves
nothing behind; a smaller --samples never shrinks a run's target."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading

import aiohttp
import orjson
import pytest
import uvloop
from aiohttp import web
from fleet_process import ENGINE, simulated_fleet
from hypothesis import given, settings
from hypothesis import strategies as st
from test_run_lock import assert_one_line_error

from engine.client import _stream_aiohttp, stream_completion, timeout_for
from engine.config import Output, RunConfig, SamplingSettings
from engine.errors import HTTPStatusError, UnauthorizedError
from engine.fleet.probes import Fleet
from engine.run import _target
from engine.status import run_status
from engine.store import Store
from engine.tasks import load_problems
from engine.wire.openai import StreamAssembler
from vllm_sim import SimulatedFleet

BODY = orjson.dumps(
    {"model": "simulated-llama-8b", "prompt": "def f():\n", "n": 2, "max_tokens": 8, "stream": True}
)
HEADERS = (("X-Team", "code llm, eval"), ("Authorization", "Bearer k1"))


async def stream_both_ways(url: str, headers) -> list[str]:
    """Finish reasons of one request through the raw client, then the aiohttp fallback."""
    reasons = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for client in (stream_completion, _stream_aiohttp):
            assembler = StreamAssembler(2)
            await client(
                session,
                url + "/v1/completions",
                BODY,
                assembler,
                lambda c: reasons.append(c.finish_reason),
                lambda k: None,
                timeout_for(10),
            )
    return reasons


def test_the_api_key_opens_the_simulator_and_its_absence_is_401_not_retryable():
    async def scenario():
        async with SimulatedFleet(1, problems=load_problems(limit=1), api_key="k1") as fleet:
            url = fleet.urls[0]
            assert len(await stream_both_ways(url, HEADERS)) == 4
            async with aiohttp.ClientSession(headers=HEADERS) as session:
                assert await Fleet([url], session, 8).discover(None) == "simulated-llama-8b"
            for headers in ((), (("Authorization", "Bearer wrong"),), (("Authorization", "Basic k1"),)):
                with pytest.raises(HTTPStatusError) as refused:
                    await stream_both_ways(url, headers)
                assert (
                    refused.value.status == 401 and refused.value.unauthorized and not refused.value.retryable
                )
                async with aiohttp.ClientSession(headers=headers) as session:
                    with pytest.raises(UnauthorizedError, match="401"):
                        await Fleet([url], session, 8).discover(None)

    uvloop.run(asyncio.wait_for(scenario(), 60))


def test_every_header_reaches_both_stream_clients_and_every_probe():
    seen: dict[str, list] = {}

    async def record(request: web.Request) -> web.Response:
        seen.setdefault(request.path, []).append({k: request.headers.get(k) for k, _ in HEADERS})
        return web.Response(status=401, body=b'{"error":"Unauthorized"}')

    async def scenario():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession(headers=HEADERS) as session:
                fleet = Fleet([url], session, 8)
                with pytest.raises(UnauthorizedError):
                    await fleet.discover(None)
                await fleet._healthy(url)
                await fleet._waiting(fleet.servers[0])
                for client in (stream_completion, _stream_aiohttp):
                    with pytest.raises(HTTPStatusError):
                        await client(
                            session,
                            url + "/v1/completions",
                            BODY,
                            StreamAssembler(2),
                            print,
                            print,
                            timeout_for(10),
                        )
        finally:
            await runner.cleanup()

    uvloop.run(asyncio.wait_for(scenario(), 60))
    expected = dict(HEADERS)
    assert set(seen) >= {"/v1/models", "/health", "/metrics", "/v1/completions"}
    assert (
        all(h == expected for requests in seen.values() for h in requests)
        and len(seen["/v1/completions"]) == 2
    )


def engine_run(hosts, out, *extra, env=None):
    args = [
        *ENGINE,
        "run",
        "--servers",
        str(hosts),
        "--out",
        str(out),
        "--limit",
        "2",
        "--samples",
        "4",
        "--no-metrics",
        "--workers",
        "2",
        "--json",
        *extra,
    ]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_engine_run_against_a_simulator_with_api_key(tmp_path):
    with simulated_fleet(tmp_path, 1, 20_000, "--api-key", "s3cret") as hosts:
        assert engine_run(hosts, tmp_path / "a", "--api-key", "s3cret").returncode == 0
        by_env = engine_run(hosts, tmp_path / "b", env={"ENGINE_RUN_API_KEY": "s3cret"})
        assert by_env.returncode == 0 and orjson.loads(by_env.stdout)["samples"] == 8
        assert_one_line_error(engine_run(hosts, tmp_path / "c"), "HTTP 401", "--api-key")
        assert_one_line_error(
            engine_run(hosts, tmp_path / "d", "--api-key", "wrong"), "HTTP 401", "--api-key"
        )


class StubServer:
    """Serves /v1/models and /health like vLLM, and answers every completion with `status`."""

    def __init__(self, status: int):
        self.status = status
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""

    def __enter__(self):
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self):
        app = web.Application()
        models = orjson.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})

        async def listed(request):
            return web.Response(body=models, content_type="application/json")

        async def healthy(request):
            return web.Response()

        async def refused(request):
            return web.Response(status=self.status, body=b'{"error":"Unauthorized"}')

        app.router.add_get("/v1/models", listed)
        app.router.add_get("/health", healthy)
        app.router.add_post("/v1/completions", refused)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_during_the_sweep_end_it_with_one_line_not_retries(tmp_path, status):
    with StubServer(status) as stub:
        hosts = tmp_path / "hosts.txt"
        hosts.write_text(stub.url + "\n")
        result = engine_run(hosts, tmp_path / "run", "--retries", "3")
    assert_one_line_error(result, f"HTTP {status}", "--api-key")


@pytest.mark.parametrize("bad", ["X-Team", ":v", "Bad Name:v", "X:a\rb", "Content-Length:3", "Host:h", "X:é"])
def test_malformed_or_reserved_headers_are_refused_in_one_line(tmp_path, bad):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("http://127.0.0.1:9\n")
    assert_one_line_error(engine_run(hosts, tmp_path / "run", "--header", bad), "--header")
    assert not (tmp_path / "run").exists()


def test_metrics_port_in_use_is_one_line_and_leaves_no_store(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("http://127.0.0.1:9\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--out",
                str(tmp_path / "run"),
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert_one_line_error(result, f"127.0.0.1:{port}", "--metrics-port")
    assert not (tmp_path / "run").exists()


@settings(max_examples=60, deadline=None)
@given(
    stored=st.one_of(st.none(), st.tuples(st.integers(1, 164), st.integers(1, 2000))),
    requested=st.tuples(st.one_of(st.none(), st.integers(1, 400)), st.integers(1, 2000)),
)
def test_a_runs_target_only_grows(tmp_path_factory, stored, requested):
    """Invariant: the effective target is the larger of the stored one and the requested one,
    per axis, never more problems than the dataset holds."""
    out = tmp_path_factory.mktemp("run")
    store = Store.open(out)
    if stored is not None:
        store.set_meta("target", {"problems": stored[0], "samples": stored[1]})
    limit, samples = requested
    cfg = RunConfig(
        servers="h", sampling=SamplingSettings(samples=samples, limit=limit), output=Output(out=str(out))
    )
    target_samples, problems = _target(cfg, store, 164)
    store.close()
    stored_problems, stored_samples = stored or (0, 0)
    assert target_samples == max(samples, stored_samples)
    assert problems == min(164, max(limit or 164, stored_problems))


def test_status_after_a_smaller_samples_never_exceeds_100_percent(tmp_path):
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 2, 20_000) as hosts:
        assert engine_run(hosts, out, "--samples", "6").returncode == 0
        again = engine_run(hosts, out, "--samples", "2")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["target"] == 12
    state = run_status(str(out))
    assert state["target"] == 12 and state["samples"] == 12 and state["remaining"] == 0
