"""Sweep state in Prometheus: engine_sweep_* and engine_run_info come from the store and the
running counts, so they survive resumes; every served series carries the run's id."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from dataclasses import replace

import aiohttp
import orjson
import uvloop
from fleet_process import ENGINE, simulated_fleet
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.progress import Tally
from engine.records import Sample
from engine.run import run_sweep
from engine.store import Store, StoredVerdict
from engine.tasks import load_problems
from metrics.exporter import EngineMetrics
from metrics.http import serve_metrics
from metrics.page import PageData
from metrics.running import RunningPassAtK
from metrics.sweep_state import STATES, SweepState, SweepStateCollector
from vllm_sim import SimulatedFleet

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
    state = SweepState(
        run_id="r1",
        info={"run_id": "r1", "model": "m", "dataset": "d", "task": "humaneval", "sampling_hash": "h"},
        problems=[f"T/{p}" for p in range(len(table))],
        samples=samples,
        running=running,
        store_path=store.path,
        max_age_s=0,
    )
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
    assert (
        value(
            "engine_run_info",
            {"run_id": "r1", "model": "m", "dataset": "d", "task": "humaneval", "sampling_hash": "h"},
        )
        == 1
    )
    state.close()
    store.close()


def test_draining_while_running_then_stopped(tmp_path):
    """Invariant: while a sweep is attached, engine_sweep_state is its snapshot's state."""
    state, registry, store = _state(tmp_path, [["passed"]], 2)

    class Live:  # a sweep as the state reads it: through its snapshot
        state = "running"

        def snapshot(self):
            return replace(tally.snapshot(), state=self.state)

    tally, live = Tally(2, 1), Live()
    state.sweep = live
    assert registry.get_sample_value("engine_sweep_state", {"state": "running"}) == 1
    live.state = "draining"
    assert registry.get_sample_value("engine_sweep_state", {"state": "draining"}) == 1
    live.state = "stopped"
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
    assert {(s.name, s.labels.get("server")) for s in samples} == {
        ("engine_x", "http://a"),
        ("engine_y", None),
    }


PROBLEMS, SAMPLES = 3, 4


def test_state_survives_a_resume_and_run_id_is_kept_until_new_run(tmp_path):
    """A resumed sweep that has nothing left to do: its counters are 0, its sweep gauges say done,
    its run_id is the first run's; --new-run gets a new id."""

    async def one(urls, new_run=False):
        hosts = tmp_path / "hosts.txt"
        hosts.write_text("".join(u + "\n" for u in urls))
        registry = CollectorRegistry()
        cfg = RunConfig(
            servers=str(hosts),
            sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
            scheduling=Scheduling(request_n=4),
            sandbox=SandboxSettings(workers=2),
            output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False, new_run=new_run),
        )
        await run_sweep(cfg, registry=registry)
        return registry

    def run_id(registry):
        (family,) = [f for f in registry.collect() if f.name == "engine_run_info"]
        return family.samples[0].labels["run_id"]

    async def main():
        async with SimulatedFleet(
            2, problems=load_problems(limit=PROBLEMS), tokens_per_second=20_000
        ) as fleet:
            return [await one(fleet.urls), await one(fleet.urls), await one(fleet.urls, new_run=True)]

    first, resumed, fresh = uvloop.run(asyncio.wait_for(main(), 120))
    for registry in (first, resumed, fresh):
        value = registry.get_sample_value
        assert (
            value("engine_sweep_verified_samples")
            == value("engine_sweep_target_samples")
            == PROBLEMS * SAMPLES
        )
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
        with simulated_fleet(tmp_path, 1) as hosts:
            result = subprocess.run(
                [
                    *ENGINE,
                    "run",
                    "--servers",
                    str(hosts),
                    "--out",
                    str(tmp_path / "run"),
                    "--limit",
                    "1",
                    "--samples",
                    "1",
                    "--metrics-port",
                    str(port),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
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


SLEEP_PROGRAM = "import time\ntime.sleep({})\ndef check(candidate):\n    pass\n\ncheck(None)\n"


def test_sandbox_jails_by_state_through_busy_a_killed_worker_and_a_jail_that_cannot_restart(tmp_path):
    """engine_sandbox_jails{role,state}, read live from a real nsjail pool. Invariant at every
    read: each role's states add up to its jails (2 verify, 1 confirm). Busy while programs run;
    a worker killed from outside is restarting, then idle again; once the jail's staged files are
    gone (as a /tmp cleaner would leave it), a killed worker cannot restart and counts as broken."""
    import os
    import shutil
    import signal

    from sandbox import Limits, SandboxPool, Verdict

    state, registry, store = _state(tmp_path, [["passed"]], 1)

    def jails() -> dict[tuple[str, str], float]:
        counts = {
            (role, s): registry.get_sample_value("engine_sandbox_jails", {"role": role, "state": s})
            for role in ("verify", "confirm")
            for s in ("busy", "idle", "restarting", "broken")
        }
        for role, size in (("verify", 2), ("confirm", 1)):
            assert sum(n for (r, _), n in counts.items() if r == role) == size, counts
        return counts

    async def until(predicate, what: str):
        for _ in range(300):
            if predicate(jails()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never {what}: {jails()}")

    def kill_all(pool: SandboxPool) -> None:
        for pid in pool.backend.worker_pids():
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)  # the loop notices: uvloop then refuses to write to the dead jail

    async def main():
        pool = SandboxPool(workers=2, limits=Limits(timeout_s=5, cpu_time_s=5), backend="nsjail")
        state.jails = pool.jails
        assert {
            s.value for f in registry.collect() if f.name == "engine_sandbox_jails" for s in f.samples
        } == {0}
        async with pool:  # one jail of each kind ready, the other shared one joining
            await until(lambda j: j[("verify", "idle")] == 2 and j[("confirm", "idle")] == 1, "all ready")
            running = [asyncio.create_task(pool.run(SLEEP_PROGRAM.format(1))) for _ in range(2)]
            await until(lambda j: j[("verify", "busy")] == 2, "two busy")
            assert [o.verdict for o in await asyncio.gather(*running)] == [Verdict.passed] * 2
            assert jails()[("verify", "idle")] == 2
            kill_all(pool)  # the OOM killer, say: the next program finds its worker dead
            outcome = await pool.run(SLEEP_PROGRAM.format(0))
            assert outcome.verdict is Verdict.infra_error
            assert jails()[("verify", "restarting")] >= 1
            await until(
                lambda j: j[("verify", "restarting")] == 0 and j[("verify", "broken")] == 0, "restarted"
            )
            shutil.rmtree(pool.backend.launcher.layout.stage_dir)  # no jail can start any more
            kill_all(pool)
            for reserved in (False, False, True):
                await pool.run(SLEEP_PROGRAM.format(0), reserved=reserved)
            await until(lambda j: j[("verify", "broken")] >= 1 and j[("confirm", "broken")] == 1, "broken")
            outcome = await pool.run(SLEEP_PROGRAM.format(0))
            assert outcome.verdict is Verdict.infra_error and "cannot restart" in outcome.detail

    uvloop.run(asyncio.wait_for(main(), 120))
    state.close()
    store.close()


@settings(max_examples=15, deadline=None)
@given(counts=st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=0, max_size=4))
def test_pass_at_k_estimate_goes_out_with_the_run_id_like_every_series(counts):
    """engine_pass_at_k_estimate{k,method} is a custom collector: through the served registry,
    each of its samples carries run_id, and no unlabelled one is left (empty counts: no samples)."""
    from metrics.http import RunLabelled

    registry = CollectorRegistry()
    running = RunningPassAtK()
    for p, (n, c) in enumerate(counts):
        running.add(f"T/{p}", True, min(c, n))
        running.add(f"T/{p}", False, n - min(c, n))
    EngineMetrics(registry, running)
    served = CollectorRegistry(auto_describe=False)
    served.register(RunLabelled(registry, "abc"))
    text = generate_latest(served).decode()
    estimates = [
        s
        for f in text_string_to_metric_families(text)
        if f.name == "engine_pass_at_k_estimate"
        for s in f.samples
    ]
    assert all(
        s.labels.get("run_id") == "abc" for f in text_string_to_metric_families(text) for s in f.samples
    )
    methods = {s.labels["method"] for s in estimates}
    assert ("chen" in methods) == bool(counts)  # chen for every k as soon as a problem has a sample
    assert {s.labels["k"] for s in estimates if s.labels["method"] == "chen"} == {
        str(k) for k in running.scores()
    }


def test_the_page_and_engine_status_agree_on_one_store_during_an_outage(tmp_path):
    """Invariant: for one store, the live page's /api/state and `engine status --json` show the
    same verified and target, the same servers up (0 of 2 while the whole fleet is down), and the
    same stall: both stalled, no progress counted from the same moment (within the seconds between
    the two reads)."""
    import urllib.request

    from test_prometheus_live import free_port

    from engine.sweep.snapshot import STALL_AFTER_S

    port, out = free_port(), tmp_path / "run"

    def page() -> dict:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/state?since={time.time()}", timeout=10
        ) as r:
            return orjson.loads(r.read())

    def status() -> dict:
        result = subprocess.run(
            [*ENGINE, "status", str(out), "--json"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return orjson.loads(result.stdout)

    def both_see_the_stall() -> bool:
        try:
            p, s = page(), status()
        except OSError:  # not serving yet
            return False
        return (
            p["stalled"]
            and s["servers_up"] == 0
            and not any(x["up"] for x in p["servers"])
            and (s["no_progress_s"] or 0) >= STALL_AFTER_S
        )

    (tmp_path / "fleet").mkdir()
    with simulated_fleet(tmp_path / "fleet", 2, 600, "--faults", "fleet_down=@12s+45s") as hosts:
        engine = subprocess.Popen(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--out",
                str(out),
                "--limit",
                "4",
                "--samples",
                "200",
                "--metrics-port",
                str(port),
                "--workers",
                "1",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while not both_see_the_stall():
                assert engine.poll() is None and time.monotonic() < deadline, "no stall seen by both"
                time.sleep(0.5)
            before = time.monotonic()
            p, s = page(), status()
            apart = time.monotonic() - before
        finally:
            engine.send_signal(signal.SIGINT)
            time.sleep(0.5)
            engine.send_signal(signal.SIGINT)
            engine.communicate(timeout=120)

    assert p["verified"] == s["samples"] and p["target"] == s["target"] == 4 * 200
    assert (
        sum(x["up"] for x in p["servers"]) == s["servers_up"] == 0 and len(p["servers"]) == s["servers"] == 2
    )
    assert p["stalled"] and s["no_progress_s"] >= STALL_AFTER_S and p["state"] == "running" and s["running"]
    # Within the seconds between the two reads plus the page's age: its figure comes from the live
    # snapshot (refreshed every 1 s, engine/progress.py) through the page's own cache (up to 1 s,
    # metrics/page.py max_age_s), so it can be ~2 s older than `engine status`'s, which reads the
    # store at the moment (1.2-1.7 s seen on a loaded machine, the page the smaller); 0.5 s more for
    # the event loop's delay and two roundings to 0.1 s.
    assert abs(p["no_progress_s"] - s["no_progress_s"]) <= apart + 2.5, (
        p["no_progress_s"],
        s["no_progress_s"],
    )
    assert {role: sum(states.values()) for role, states in p["jails"].items()} == {"verify": 1, "confirm": 1}
    assert p["jails"]["verify"]["broken"] == 0 and p["dedup_hits"] >= 0
