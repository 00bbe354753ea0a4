"""The batch engine with fake connections: writes per step, slow clients, disconnects."""

from __future__ import annotations

import asyncio
import json
import random
import re

import uvloop

from vllm_sim.api.server_metrics import ServerMetrics
from vllm_sim.api.wire import ChunkEncoder
from vllm_sim.gpu.batch import BatchEngine, Job
from vllm_sim.gpu.plans import PlanCache
from vllm_sim.model.synthetic import SyntheticModel


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closing = False
        self.backlog = 0

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def abort(self) -> None:
        self.closing = True


def make_engine() -> BatchEngine:
    holder: dict = {}
    metrics = ServerMetrics(
        "m", lambda: len(holder["e"].running), lambda: holder["e"].num_waiting(), lambda: 0.0
    )
    holder["e"] = BatchEngine(50_000, 64, 0.001, metrics, random.Random(0))
    return holder["e"]


def make_job(
    plans: PlanCache, model: SyntheticModel, transport, n: int, max_tokens: int, prompt: str = "x"
) -> Job:
    job = Job(
        "cmpl-0123456789abcdef",
        1,
        ChunkEncoder("cmpl-0123456789abcdef", 1, "m", "fp"),
        transport,
        stream=True,
        include_usage=True,
    )
    for j in range(n):
        job.add(j, plans.get(model.sample(prompt, j), ()), 1, max_tokens)
    job.prompt_tokens = 1
    return job


def dechunk(write: bytes) -> list[bytes]:
    """The HTTP chunks in one write; each must hold exactly one whole SSE event."""
    events = []
    while write:
        size, _, rest = write.partition(b"\r\n")
        size = int(size, 16)
        event, write = rest[:size], rest[size + 2 :]
        assert rest[size : size + 2] == b"\r\n"
        assert re.fullmatch(rb"data: [^\n]+\n\n", event), event
        events.append(event)
    return events


def test_one_write_per_step_each_event_its_own_chunk():
    async def main():
        engine, model = make_engine(), SyntheticModel([], seed=0)
        plans = PlanCache(model)
        transport = FakeTransport()
        job = make_job(plans, model, transport, n=4, max_tokens=30)
        task = asyncio.create_task(engine.run())
        engine.submit(job)
        await job.done
        task.cancel()
        return transport.writes

    writes = uvloop.run(main())
    indices_per_write = []
    for write in writes:
        events = dechunk(write)
        chunks = [json.loads(e[6:]) for e in events if e != b"data: [DONE]\n\n"]
        indices = [c["choices"][0]["index"] for c in chunks if c["choices"]]
        assert len(indices) == len(set(indices)) <= 4, "one token per choice per step"
        indices_per_write.append(indices)
    assert writes[-1].endswith(b"data: [DONE]\n\n\r\n")
    assert sum(map(len, indices_per_write)) == 4 * 30
    assert 30 <= len(writes) <= 31  # a choice or two may start one step late


def test_a_backlogged_client_gets_no_tokens_until_it_drains():
    async def main():
        engine, model = make_engine(), SyntheticModel([], seed=0)
        plans = PlanCache(model)
        slow, fast = FakeTransport(), FakeTransport()
        slow_job = make_job(plans, model, slow, n=1, max_tokens=400)
        fast_job = make_job(plans, model, fast, n=1, max_tokens=100)
        task = asyncio.create_task(engine.run())
        engine.submit(slow_job)
        engine.submit(fast_job)
        await asyncio.sleep(0.02)
        slow.backlog = 10 << 20
        await asyncio.sleep(0.01)
        stalled_at = slow_job.seqs[0].k
        await fast_job.done
        assert slow_job.seqs[0].k == stalled_at and not slow_job.done.done()
        slow.backlog = 0
        await slow_job.done
        task.cancel()
        assert slow_job.seqs[0].k == 400

    uvloop.run(main())


def test_a_client_that_goes_away_is_aborted():
    async def main():
        engine, model = make_engine(), SyntheticModel([], seed=0)
        plans = PlanCache(model)
        transport = FakeTransport()
        job = make_job(plans, model, transport, n=3, max_tokens=3000)
        task = asyncio.create_task(engine.run())
        engine.submit(job)
        await asyncio.sleep(0.02)
        transport.closing = True
        await asyncio.wait_for(job.done, 1)
        await asyncio.sleep(0.01)
        task.cancel()
        assert job.aborted and not engine.running and max(s.k for s in job.seqs) < 3000
        assert (
            engine.metrics.registry.get_sample_value(
                "vllm:request_success_total", {"engine": "0", "model_name": "m", "finished_reason": "length"}
            )
            == 0.0
        )

    uvloop.run(main())


def test_max_num_seqs_bounds_the_batch():
    async def main():
        engine, model = make_engine(), SyntheticModel([], seed=0)
        engine.max_num_seqs = 5
        plans = PlanCache(model)
        job = make_job(plans, model, FakeTransport(), n=12, max_tokens=50)
        task = asyncio.create_task(engine.run())
        engine.submit(job)
        peak = 0
        while not job.done.done():
            peak = max(peak, len(engine.running))
            assert len(engine.running) + engine.num_waiting() <= 12
            await asyncio.sleep(0)
        task.cancel()
        assert peak == 5

    uvloop.run(main())
