"""stop(), abort() and a crash: what a sweep leaves behind when it ends early."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import Fault, MemoryStore, ScriptedClient, make_sweep, run

from engine.errors import UnauthorizedError


@settings(max_examples=40, deadline=None)
@given(after_samples=st.integers(0, 24))
def test_stop_admits_nothing_new_and_drains_what_runs(after_samples):
    """Invariant: once stop() is called (before the first sample, after any, or after the last),
    no request is started; every sample that was generated has its verdict (the queue drains); no
    slot is held; the sweep says it stopped."""
    store = MemoryStore()
    sweep = make_sweep(problem_count=3, samples=8, store=store, request_n=2)
    generator = sweep.generator
    started_after_stop = []
    start, deliver = generator.start, generator._deliver

    def start_watched(server, request):
        if sweep.stopped:
            started_after_stop.append(request)
        start(server, request)

    def deliver_then_stop(sample):
        deliver(sample)
        if len(store.samples) == after_samples:
            sweep.stop()

    generator.start, generator._deliver = start_watched, deliver_then_stop
    if after_samples == 0:
        sweep.stop()
    run(sweep)
    assert not started_after_stop
    assert sorted((v.task_id, v.sample_index) for v in store.verdicts) == sorted(
        (s.task_id, s.sample_index) for s in store.samples
    )
    assert sweep.admission.held == 0 and sweep.stopped and sweep.snapshot().state == "stopped"


def test_abort_ends_a_sweep_whose_streams_never_finish():
    """Invariant: abort() returns run() at once, without an error, even with every stream hung;
    what was stored stays (one flush at the end)."""
    store = MemoryStore()
    sweep = make_sweep(problem_count=2, samples=4, client=ScriptedClient(hang=True), store=store)

    async def main():
        running = asyncio.create_task(sweep.run())
        while len(store.samples) < 2:
            await asyncio.sleep(0.001)
        sweep.abort()
        await asyncio.wait_for(running, 5)

    asyncio.run(main())
    assert sweep.stopped and sweep.snapshot().state == "stopped" and store.flushes >= 1
    assert not sweep.generator.inflight or all(t.done() for t in sweep.generator.inflight)


def test_a_server_that_refuses_our_credentials_ends_the_sweep_with_one_error():
    """Invariant: a 401 is not retried: run() raises UnauthorizedError naming the server."""
    sweep = make_sweep(problem_count=1, samples=4, client=ScriptedClient({0: Fault("unauthorized", 1)}))
    with pytest.raises(UnauthorizedError, match="http://s"):
        run(sweep)


def test_a_bug_in_the_request_path_ends_the_sweep_instead_of_leaving_a_hole():
    """Invariant: an exception that is not a StreamError ends run() with that exception."""
    client = ScriptedClient()

    async def broken(url, request, on_sample, on_tokens):
        raise KeyError("a bug")

    client.stream = broken
    with pytest.raises(KeyError):
        run(make_sweep(problem_count=1, samples=2, client=client))
