"""Simulated servers over real HTTP on 127.0.0.1: consistency of streams, seeds, pacing,
queueing, metrics, disconnects, restarts."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest
import uvloop

from engine.tasks import load_problems
from vllm_sim import SimulatedFleet

HUMANEVAL_STOPS = ["\ndef", "\nclass", "\nif", "\nprint"]  # what the engine sends: vLLM takes at most 4


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def fast_fleet(servers: int, problems, **settings) -> SimulatedFleet:
    """A fleet that generates quickly: for tests of content, not timing."""
    return SimulatedFleet(servers, problems=problems, tokens_per_second=20000, min_step_s=0.002, **settings)


def run(coro, timeout: float = 60):
    return uvloop.run(asyncio.wait_for(coro, timeout))


async def complete(session: aiohttp.ClientSession, url: str, **body) -> dict:
    async with session.post(url + "/v1/completions", json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def stream(session: aiohttp.ClientSession, url: str, **body) -> list[dict]:
    async with session.post(url + "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    events = [e[len(b"data: ") :] for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assemble(chunks: list[dict]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    return texts


async def metric(session: aiohttp.ClientSession, url: str, name: str, labels: str = "") -> float:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    pattern = rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$"
    return float(re.search(pattern, text, re.MULTILINE).group(1))


def test_streamed_choices_equal_the_completion_and_usage_adds_up(problems):
    async def main():
        async with fast_fleet(1, problems) as fleet, aiohttp.ClientSession() as s:
            url = fleet.urls[0]
            for p in problems[:3]:
                body = dict(prompt=p.prompt, n=6, seed=11, max_tokens=200, stop=HUMANEVAL_STOPS)
                whole = await complete(s, url, **body)
                chunks = await stream(
                    s, url, **body, stream_options={"include_usage": True, "continuous_usage_stats": True}
                )
                texts = assemble(chunks)
                assert texts == {c["index"]: c["text"] for c in whole["choices"]}
                last = {}
                for chunk in chunks[:-1]:
                    last[chunk["choices"][0]["index"]] = chunk
                per_choice = [last[i]["usage"]["completion_tokens"] for i in range(6)]
                assert chunks[-1]["usage"]["completion_tokens"] == sum(per_choice)
                assert whole["usage"]["completion_tokens"] == sum(per_choice)
                assert chunks[-1]["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
                assert [last[i]["choices"][0]["finish_reason"] for i in range(6)] == [
                    c["finish_reason"] for c in whole["choices"]
                ]

    run(main())


def test_choice_i_with_seed_s_is_choice_0_with_seed_s_plus_i(problems):
    async def main():
        async with fast_fleet(1, problems) as fleet, aiohttp.ClientSession() as s:
            url, prompt = fleet.urls[0], problems[5].prompt
            many = await complete(s, url, prompt=prompt, n=4, seed=40, max_tokens=150, stop=HUMANEVAL_STOPS)
            for i in range(4):
                one = await complete(
                    s, url, prompt=prompt, n=1, seed=40 + i, max_tokens=150, stop=HUMANEVAL_STOPS
                )
                assert one["choices"][0]["text"] == many["choices"][i]["text"]

    run(main())


def test_same_seed_same_text_on_every_server_and_after_restart(problems):
    body = dict(prompt=problems[7].prompt, n=8, seed=3, max_tokens=150, stop=HUMANEVAL_STOPS)

    async def texts(session, url):
        return [c["text"] for c in (await complete(session, url, **body))["choices"]]

    async def main():
        async with aiohttp.ClientSession() as s:
            async with fast_fleet(2, problems, seed=5) as fleet:
                first = await texts(s, fleet.urls[0])
                assert await texts(s, fleet.urls[1]) == first
                port = fleet.servers[0].port
                await fleet.stop_server(0)
                with pytest.raises(aiohttp.ClientConnectionError):
                    await complete(s, fleet.urls[0], **body)
                await fleet.start_server(0)
                assert fleet.servers[0].port == port
                assert await texts(s, fleet.urls[0]) == first
            async with fast_fleet(1, problems, seed=5) as fleet:
                assert await texts(s, fleet.urls[0]) == first
            # (generic text below: a HumanEval problem may well be solved by all 8 samples, whatever the seed)
            generic = dict(prompt="import os\n", n=4, max_tokens=40)
            async with fast_fleet(1, problems, seed=5) as fleet:
                seeded = await complete(s, fleet.urls[0], **generic, seed=1)
                unseeded = [await complete(s, fleet.urls[0], **generic) for _ in range(2)]
            async with fast_fleet(1, problems, seed=6) as fleet:
                other_seed = await complete(s, fleet.urls[0], **generic, seed=1)
            text = lambda answer: [c["text"] for c in answer["choices"]]  # noqa: E731
            assert text(other_seed) != text(seeded)
            assert text(unseeded[0]) != text(unseeded[1])

    run(main())


def test_two_prompts_index_by_prompt_then_choice(problems):
    async def main():
        async with fast_fleet(1, problems) as fleet, aiohttp.ClientSession() as s:
            prompts = [problems[0].prompt, "import os\n"]
            whole = await complete(s, fleet.urls[0], prompt=prompts, n=2, seed=1, max_tokens=20)
            assert [c["index"] for c in whole["choices"]] == [0, 1, 2, 3]
            first = await complete(s, fleet.urls[0], prompt=prompts[0], n=2, seed=1, max_tokens=20)
            second = await complete(s, fleet.urls[0], prompt=prompts[1], n=2, seed=1, max_tokens=20)
            assert [c["text"] for c in whole["choices"]] == [
                c["text"] for c in first["choices"] + second["choices"]
            ]
            assert (
                whole["usage"]["prompt_tokens"]
                == first["usage"]["prompt_tokens"] + second["usage"]["prompt_tokens"]
            )

    run(main())


def test_pacing_reaches_the_configured_rate():
    """A sanity bound only (timing on a shared box); bench/simulator.py measures precisely."""

    async def main():
        async with SimulatedFleet(1, tokens_per_second=2000) as fleet, aiohttp.ClientSession() as s:
            url = fleet.urls[0]
            body = dict(prompt="import os\n", n=16, max_tokens=2000)  # 64 sequences: 32 ms steps
            tasks = [asyncio.create_task(complete(s, url, **body)) for _ in range(4)]
            await asyncio.sleep(0.5)
            t0, n0 = time.monotonic(), await metric(s, url, "vllm:generation_tokens_total")
            await asyncio.sleep(2.0)
            t1, n1 = time.monotonic(), await metric(s, url, "vllm:generation_tokens_total")
            for task in tasks:
                task.cancel()
            return (n1 - n0) / (t1 - t0)

    rate = run(main())
    assert 0.8 * 2000 <= rate <= 1.1 * 2000, rate


def test_waiting_beyond_max_num_seqs_and_load_metrics(problems):
    async def main():
        async with (
            SimulatedFleet(1, tokens_per_second=2000, max_num_seqs=8) as fleet,
            aiohttp.ClientSession() as s,
        ):
            url = fleet.urls[0]
            task = asyncio.create_task(complete(s, url, prompt="import os\n", n=12, max_tokens=60))
            await asyncio.sleep(0.1)
            assert await metric(s, url, "vllm:num_requests_running") == 8
            assert await metric(s, url, "vllm:num_requests_waiting") == 4
            async with s.get(url + "/load") as r:
                assert await r.json() == {"server_load": 12}
            assert 0 < await metric(s, url, "vllm:kv_cache_usage_perc") < 1
            await task
            assert await metric(s, url, "vllm:num_requests_running") == 0
            assert await metric(s, url, "vllm:generation_tokens_total") == 12 * 60
            assert await metric(s, url, "vllm:request_success_total", 'finished_reason="length"') == 12
            assert await metric(s, url, "vllm:prompt_tokens_total") == 12 * 3

    run(main())


def test_client_disconnect_stops_generation(problems):
    async def main():
        async with SimulatedFleet(1, tokens_per_second=2000) as fleet, aiohttp.ClientSession() as s:
            url = fleet.urls[0]
            async with s.post(
                url + "/v1/completions", json=dict(prompt="import os\n", n=2, max_tokens=3000, stream=True)
            ) as r:
                await r.content.readuntil(b"\n\n")
                r.close()  # drop the connection mid-stream
            await asyncio.sleep(0.2)
            assert await metric(s, url, "vllm:num_requests_running") == 0
            made = await metric(s, url, "vllm:generation_tokens_total")
            await asyncio.sleep(0.2)
            assert await metric(s, url, "vllm:generation_tokens_total") == made < 100
            for reason in ("stop", "length", "abort"):  # vLLM does not count a disconnect as a success
                assert await metric(s, url, "vllm:request_success_total", f'finished_reason="{reason}"') == 0

    run(main())


def test_stopping_a_server_cuts_its_streams(problems):
    async def main():
        async with SimulatedFleet(2, tokens_per_second=2000) as fleet, aiohttp.ClientSession() as s:
            async with s.post(
                fleet.urls[0] + "/v1/completions", json=dict(prompt="a", max_tokens=3000, stream=True)
            ) as r:
                await r.content.readuntil(b"\n\n")
                await fleet.stop_server(0)
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
            assert (await complete(s, fleet.urls[1], prompt="a", max_tokens=3))["choices"][0]["finish_reason"]

    run(main())


def test_include_stop_str_in_output_keeps_the_stop_string(problems):
    async def main():
        async with fast_fleet(1, problems) as fleet, aiohttp.ClientSession() as s:
            body = dict(prompt=problems[3].prompt, seed=2, max_tokens=300, stop=HUMANEVAL_STOPS)
            plain = (await complete(s, fleet.urls[0], **body))["choices"][0]
            kept = (await complete(s, fleet.urls[0], **body, include_stop_str_in_output=True))["choices"][0]
            assert kept["text"] == plain["text"] + plain["stop_reason"]
            assert kept["stop_reason"] == plain["stop_reason"] and kept["finish_reason"] == "stop"

    run(main())


def test_temperature_zero_is_greedy_for_every_choice(problems):
    async def main():
        async with fast_fleet(1, problems) as fleet, aiohttp.ClientSession() as s:
            whole = await complete(
                s, fleet.urls[0], prompt=problems[9].prompt, n=3, temperature=0, max_tokens=100
            )
            assert len({c["text"] for c in whole["choices"]}) == 1

    run(main())
