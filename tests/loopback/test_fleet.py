"""The fleet against real HTTP servers on 127.0.0.1: discovery, waiting, probes, hosts reloads."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
import uvloop
from aiohttp import web

from engine.errors import FleetError
from engine.fleet.probes import Fleet, _waiting_from_metrics
from engine.tasks import load_problems
from vllm_sim import SimulatedFleet

PROBLEMS = load_problems(limit=2)


def run(coro, timeout=60):
    return uvloop.run(asyncio.wait_for(coro, timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def not_vllm() -> tuple[web.AppRunner, str]:
    """Any other HTTP service: answers, but not as vLLM."""

    async def hello(request):
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_discovery_finds_the_model_and_marks_servers_up():
    async def main():
        async with SimulatedFleet(2, problems=PROBLEMS) as sim, aiohttp.ClientSession() as session:
            fleet = Fleet(sim.urls + [f"http://127.0.0.1:{free_port()}"], session, 64)
            model = await fleet.discover(None)
            return model, [s.up for s in fleet.servers]

    assert run(main()) == ("simulated-llama-8b", [True, True, False])


def test_a_service_that_is_not_vllm_is_refused_at_once():
    async def main():
        runner, url = await not_vllm()
        try:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(FleetError, match="no server answered as a vLLM server would"):
                    await Fleet([url], session, 64).discover(None, startup_timeout=60)
        finally:
            await runner.cleanup()

    run(main(), timeout=20)  # must not wait for the startup timeout


def test_wrong_model_is_refused():
    async def main():
        async with SimulatedFleet(1, problems=PROBLEMS) as sim, aiohttp.ClientSession() as session:
            with pytest.raises(FleetError, match="'other' is not served.*simulated-llama-8b"):
                await Fleet(sim.urls, session, 64).discover("other")

    run(main())


def test_discovery_waits_for_servers_that_are_still_loading():
    async def main():
        async with SimulatedFleet(1, problems=PROBLEMS) as sim, aiohttp.ClientSession() as session:
            await sim.stop_server(0)  # the port is known but nothing listens yet
            fleet = Fleet(sim.urls, session, 64)
            discovery = asyncio.create_task(fleet.discover(None, startup_timeout=30))
            await asyncio.sleep(1.5)
            assert not discovery.done()
            await sim.start_server(0)
            return await discovery

    assert run(main()) == "simulated-llama-8b"


def test_discovery_gives_up_after_the_startup_timeout():
    async def main():
        async with aiohttp.ClientSession() as session:
            fleet = Fleet([f"http://127.0.0.1:{free_port()}"], session, 64)
            with pytest.raises(FleetError, match="no server answered within 1 s"):
                await fleet.discover(None, startup_timeout=1)

    run(main())


def test_watch_marks_a_dead_server_down_and_back_up_and_follows_the_hosts_file(tmp_path):
    hosts = tmp_path / "hosts.txt"

    async def main():
        async with SimulatedFleet(3, problems=PROBLEMS) as sim, aiohttp.ClientSession() as session:
            a, b, c = sim.urls
            hosts.write_text(f"{a}\n{b}\n")
            fleet = Fleet([a, b], session, 64, hosts_path=str(hosts))
            await fleet.discover(None)
            watcher = asyncio.create_task(fleet.watch(interval=0.1))
            try:
                await sim.stop_server(1)
                await until(lambda: not state(fleet, b).up)
                await sim.start_server(1)
                await until(lambda: state(fleet, b).up, timeout=10)
                hosts.write_text(f"{a}\n{c}\n")  # b leaves, c joins
                await until(lambda: state(fleet, c) is not None and state(fleet, c).up)
                assert state(fleet, b) is None  # nothing ran there: forgotten at once
                hosts.write_text("garbage line\n")  # a broken edit keeps the fleet as it was
                await asyncio.sleep(0.5)
                return sorted(s.url for s in fleet.servers if s.up) == sorted([a, c])
            finally:
                watcher.cancel()

    assert run(main())


def state(fleet, url):
    return next((s for s in fleet.servers if s.url == url), None)


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def test_waiting_requests_are_read_from_vllm_metrics():
    text = (
        "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_waiting{engine="1",model_name="m"} 2.0\n'
        'vllm:num_requests_running{engine="0",model_name="m"} 9.0\n'
    )
    assert _waiting_from_metrics(text) == 5
    assert _waiting_from_metrics("other 1\n") is None
