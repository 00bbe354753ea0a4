"""Sweep state in Prometheus: engine_sweep_* and engine_run_info come from the store and the
running counts, so they survive resumes; every served series carries the run's id."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import aiohttp
import orjson
import uvloop
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from fleet_process import ENGINE, simulated_fleet
from engine.dataset import load_problems
from engine.records import Sample
from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.run import run_sweep
from engine.simulator import SimulatedFleet
from engine.store import Store, StoredVerdict
from metrics.exporter import EngineMetrics
from metrics.http import serve_metrics
from metrics.page import PageData
from metrics.running import RunningPassAtK
from metrics.sweep_state import STATES, SweepState, SweepStateCollector

VERDICTS = ("passed", "failed", "timeout", "oom", "error", "infra_error")


def _fill(store: Store, table: list[list[str | None]], failures: int) -> None:
    """table[p][i]: the verdict of sample i of problem p (None: generated, not verified)."""
    for p, verdicts in enumerate(table):
        for i, verdict in enumerate(verdicts):
            now = time.time()
            store.stage_sample(Sample(f"T/{p}", i, "pass", 3, "stop", "http://s", now, now, now))
            if verdict is not None:
                store.stage_verdict(StoredVerdict(f"T/{p}", i, verdict, "", "", 0.1, "none", {}))
    for i in range(failures):
        store.stage_failure("T/0", 1000 + i, "HTTP 500", 3)
    store.flush()


def _state(tmp_path, table, samples, phase="running") -> tuple[SweepState, CollectorRegistry, Store]:
    store = Store.open(tmp_path)
    running = RunningPassAtK()
    for p, verdicts in enumerate(table):
        for v in verdicts:
            if v is not None and v != "infra_error":  # not a verdict about the program: not in n
                running.add(f"T/{p}", v == "passed")
    state = SweepState(run_id="r1", info={"run_id": "r1", "model": "m", "dataset": "d", "task": "humaneval",
                                          "sampling_hash": "h"},
                       problems=[f"T/{p}" for p in range(len(table))], samples=samples, running=running,
                       store_path=store.path, max_age_s=0)
    state.phase = phase
    registry = CollectorRegistry()
    registry.register(SweepStateCollector(state))
    return state, registry, store


tables = st.lists(st.lists(st.sampled_from(VERDICTS + (None,)), max_size=6), max_size=5)


@settings(max_examples=40, deadline=None)
@given(table=tables, extra=st.integers(0, 3), failures=st.integers(0, 2), phase=st.sampled_from(STATES))
def test_sweep_gauges_match_the_store(tmp_path_factory, table, extra, failures, phase):
    """Invariant: verified + remaining == target; verified counts verdicts about programs only;
    solved = problems with a pass; exactly one state is 1; last progress = the latest verdict."""
    samples = max((len(v) for v in table), default=0) + extra
    state, registry, store = _state(tmp_path_factory.mktemp("run"), table, samples, phase)
    _fill(store, table, failures)
    value = registry.get_sample_value
    verified = sum(v is not None and v != "infra_error" for row in table for v in row)
    assert value("engine_sweep_target_samples") == len(table) * samples
    assert value("engine_sweep_verified_samples") == verified
    assert value("engine_sweep_remaining_samples") == len(table) * samples - verified
    assert value("engine_sweep_problems") == len(table)
    assert value("engine_sweep_problems_solved") == sum("passed" in row for row in table)
    assert value("engine_sweep_infra_errors") == sum(v == "infra_error" for row in table for v in row)
    assert value("engine_sweep_generation_failures") == failures
    assert [value("engine_sweep_state", {"state": s}) for s in STATES] == [float(s == phase) for s in STATES]
    any_verdict = any(v is not None for row in table for v in row)
    assert (value("engine_sweep_last_progress_timestamp_seconds") > 0) == any_verdict
    assert value("engine_run_info", {"run_id": "r1", "model": "m", "dataset": "d", "task": "humaneval",
                                     "sampling_hash": "h"}) == 1
    state.close()
    store.close()


def test_draining_while_running_then_stopped(tmp_path):
    state, registry, store = _state(tmp_path, [["passed"]], 2)
    stopping = False
    state.draining = lambda: stopping
    assert registry.get_sample_value("engine_sweep_state", {"state": "running"}) == 1
    stopping = True
    assert registry.get_sample_value("engine_sweep_state", {"state": "draining"}) == 1
    state.phase = "stopped"
    assert registry.get_sample_value("engine_sweep_state", {"state": "stopped"}) == 1
    state.close()
    store.close()


def test_every_served_series_carries_the_run_id():
    async def main():
        registry = CollectorRegistry()
        Gauge("engine_x", "x", ["server"], registry=registry).labels("http://a").set(2)
        Gauge("engine_y", "y", registry=registry).set(1)
        server, port = await serve_metrics(registry, "127.0.0.1", 0, run_id="abc")
        try:
            assert not await server.next_scrape(0.01)  # nobody scraped yet: nobody to wait for
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
            waiter = asyncio.create_task(server.next_scrape(5))
            await asyncio.sleep(0.01)
            async with aiohttp.ClientSession() as session:
                await (await session.get(f"http://127.0.0.1:{port}/metrics")).read()
            assert await waiter  # the final scrape arrived
        finally:
            await server.cleanup()
        return text

    text = uvloop.run(main())
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert samples and all(s.labels.get("run_id") == "abc" for s in samples)
    assert {(s.name, s.labels.get("server")) for s in samples} == {("engine_x", "http://a"), ("engine_y", None)}


PROBLEMS, SAMPLES = 3, 4


def test_state_survives_a_resume_and_run_id_is_kept_until_new_run(tmp_path):
    """A resumed sweep that has nothing left to do: its counters are 0, its sweep gauges say done,
    its run_id is the first run's; --new-run gets a new id."""
    async def one(urls, new_run=False):
        hosts = tmp_path / "hosts.txt"
        hosts.write_text("".join(u + "\n" for u in urls))
        registry = CollectorRegistry()
        cfg = RunConfig(servers=str(hosts), sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
                        scheduling=Scheduling(request_n=4), sandbox=SandboxSettings(workers=2),
                        output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False, new_run=new_run))
        await run_sweep(cfg, registry=registry)
        return registry

    def run_id(registry):
        (family,) = [f for f in registry.collect() if f.name == "engine_run_info"]
        return family.samples[0].labels["run_id"]

    async def main():
        async with SimulatedFleet(2, problems=load_problems(limit=PROBLEMS), tokens_per_second=20_000) as fleet:
            return [await one(fleet.urls), await one(fleet.urls), await one(fleet.urls, new_run=True)]

    first, resumed, fresh = uvloop.run(asyncio.wait_for(main(), 120))
    for registry in (first, resumed, fresh):
        value = registry.get_sample_value
        assert value("engine_sweep_verified_samples") == value("engine_sweep_target_samples") == PROBLEMS * SAMPLES
        assert value("engine_sweep_remaining_samples") == 0
        assert value("engine_sweep_state", {"state": "finished"}) == 1
        assert value("engine_queue_capacity") >= 1 and value("engine_queue_held") == 0
    assert resumed.get_sample_value("engine_samples_generated_total") == 0  # the counter restarted
    assert run_id(first) == run_id(resumed) != run_id(fresh)


def test_the_end_of_a_sweep_is_never_hidden_by_the_cache(tmp_path):
    """Figures are cached between scrapes, but a change of phase shows at the next read, with fresh
    counts: the final scrape must report the final state and figures."""
    state, registry, store = _state(tmp_path, [["passed"]], 2)
    state._max_age_s = 3600
    assert registry.get_sample_value("engine_sweep_verified_samples") == 1
    state.running.add("T/0", False)
    assert registry.get_sample_value("engine_sweep_verified_samples") == 1  # cached
    state.phase = "finished"
    assert registry.get_sample_value("engine_sweep_state", {"state": "finished"}) == 1
    assert registry.get_sample_value("engine_sweep_verified_samples") == 2
    state.close()
    store.close()


def test_a_metrics_port_in_use_is_one_line_and_status_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hosts = tmp_path / "hosts.txt"
        with simulated_fleet(tmp_path, 1) as hosts:
            result = subprocess.run(
                [*ENGINE, "run", "--servers", str(hosts), "--out", str(tmp_path / "run"), "--limit", "1",
                 "--samples", "1", "--metrics-port", str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line and "Traceback" not in result.stderr


def test_a_server_started_before_the_run_is_known_sends_no_unlabelled_series(tmp_path):
    """Started with run_id=None (before the store is open): /metrics holds no series and the page
    answers 503; once labelled and shown, every series carries the run_id and the page is served."""
    state, registry, store = _state(tmp_path, [["passed"]], 2)
    page = PageData(state, EngineMetrics(registry, state.running))

    async def get(session, url):
        async with session.get(url) as response:
            return response.status, await response.text()

    async def main():
        server, port = await serve_metrics(registry, "127.0.0.1", 0, run_id=None)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                before = [await get(session, base + path) for path in ("/metrics", "/", "/api/state")]
                server.label("r1")
                server.show(page)
                after = [await get(session, base + path) for path in ("/metrics", "/", "/api/state")]
        finally:
            await server.cleanup()
        return before, after

    before, after = uvloop.run(main())
    assert before[0] == (200, "") and before[1][0] == before[2][0] == 503
    assert [status for status, _ in after] == [200, 200, 200]
    samples = [s for family in text_string_to_metric_families(after[0][1]) for s in family.samples]
    assert samples and all(s.labels.get("run_id") == "r1" for s in samples)
    assert orjson.loads(after[2][1])["run_id"] == "r1"
    page.close()
    state.close()
    store.close()
