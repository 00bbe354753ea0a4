"""Whole sweeps against a simulated fleet that breaks its streams anywhere: at the end, every
sample of the target is either stored exactly once (with its verdict) or recorded as a
generation failure, and `engine run`'s exit status says which."""

from __future__ import annotations

import asyncio
import logging
import subprocess

import orjson
import pytest
import uvloop
from fleet_process import ENGINE, simulated_fleet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.run import exit_status, run_sweep
from engine.store import Store
from engine.tasks import load_problems
from sandbox import Limits
from vllm_sim import SimulatedFleet

PROBLEMS, SAMPLES = 4, 4
TARGET = PROBLEMS * SAMPLES

# Every stream fault of `engine simulate --faults` that breaks a stream (stalls and slow starts
# only delay it; test_faults_e2e covers them).
STREAM_FAULTS = (
    "reset",
    "cut",
    "cut:close",
    "malformed",
    "malformed:truncated",
    "inband",
    "dup",
    "bad_index",
    "bad_utf8",
    "surrogate",
    "usage",
    "kill:200ms",
)


def sweep(tmp_path, faults: str, retries: int = 3, **fleet_settings) -> tuple[dict, Store]:
    tmp_path.mkdir(parents=True, exist_ok=True)

    async def main():
        async with SimulatedFleet(
            2,
            problems=load_problems(limit=PROBLEMS),
            tokens_per_second=20000,
            faults=faults,
            faults_seed=1,
            min_step_s=0.002,
            **fleet_settings,
        ) as fleet:
            hosts = tmp_path / "hosts.txt"
            hosts.write_text("".join(u + "\n" for u in fleet.urls))
            cfg = RunConfig(
                servers=str(hosts),
                sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
                scheduling=Scheduling(request_n=4, retries=retries, idle_timeout_s=2.0),
                sandbox=SandboxSettings(workers=2, limits=Limits(timeout_s=1.0)),
                output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
            )
            return await run_sweep(cfg, registry=CollectorRegistry())

    summary = uvloop.run(asyncio.wait_for(main(), 120))
    return summary, Store.open(tmp_path / "run", create=False)


def assert_every_sample_accounted_for(summary: dict, store: Store) -> None:
    """stored samples + recorded generation failures == target, each sample in one place once."""
    stored = [(r["task_id"], r["sample_index"]) for r in store.rows()]
    failed = [
        tuple(row) for row in store._db.execute("SELECT task_id, sample_index FROM generation_failures")
    ]
    assert len(stored) == len(set(stored)) and len(failed) == len(set(failed))
    assert set(stored).isdisjoint(failed)
    assert len(stored) + len(failed) == TARGET
    assert all(r["verdict"] is not None for r in store.rows())
    assert summary["missing"] == len(failed) and summary["generation_failures"] == len(failed)
    assert exit_status(summary) == (1 if failed else 0)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(STREAM_FAULTS),
    position=st.one_of(
        st.builds("after={}".format, st.integers(0, 60)),  # from the start (60: past the end)
        st.builds("before={}".format, st.integers(0, 3)),
    ),  # from [DONE]: 0 = the last event
    rate=st.sampled_from([0.3, 1.0]),  # 1.0: every request, every retry too (recorded failures)
)
def test_for_any_fault_schedule_every_sample_is_stored_once_or_recorded_as_failed(
    tmp_path_factory, kind, position, rate
):
    name, _, option = kind.partition(":")
    spec = ":".join(filter(None, [f"{name}={rate}", option, position if name != "usage" else ""]))
    summary, store = sweep(tmp_path_factory.mktemp("sweep"), spec, retries=1 if rate == 1.0 else 3)
    assert_every_sample_accounted_for(summary, store)


def test_faults_on_the_last_event_used_to_lose_samples(tmp_path, caplog):
    """Issue 9's reproduction: faults at the very end of every stream. Nothing lost, no traceback."""
    caplog.set_level(logging.WARNING)
    summary, store = sweep(tmp_path, "inband=0.3:before=0,cut=0.3:before=0")
    assert_every_sample_accounted_for(summary, store)
    assert summary["samples"] == TARGET and exit_status(summary) == 0
    assert not [r for r in caplog.records if r.exc_info or "never retrieved" in r.getMessage()]


def test_a_fleet_that_ignores_n_gives_every_sample_and_the_same_ones(tmp_path, caplog):
    """One choice per request whatever n asks: detected, then one sample per request, with each
    sample's seed unchanged, so the samples are those a fleet that honours n gives."""
    caplog.set_level(logging.WARNING)
    summary, store = sweep(tmp_path / "a", "", ignore_n=True)
    assert_every_sample_accounted_for(summary, store)
    assert summary["samples"] == TARGET and summary["generation_failures"] == 0
    assert sum("ignores n" in r.getMessage() for r in caplog.records) == 2  # once per server
    _, honest = sweep(tmp_path / "b", "")
    completions = lambda s: {(r["task_id"], r["sample_index"]): r["completion"] for r in s.rows()}  # noqa: E731
    assert completions(store) == completions(honest)


def test_exit_status_from_the_stores_counts():
    done = {"stopped": False, "missing": 0, "generation_failures": 0}
    assert exit_status(done) == 0
    assert exit_status({**done, "missing": 3}) == 1
    assert exit_status({**done, "missing": 2, "generation_failures": 2}) == 1
    assert exit_status({**done, "infra_errors": 1}) == 1  # the hook for infrastructure errors
    assert exit_status({**done, "stopped": True, "missing": 5}) == 0  # a signal: resumable


def test_engine_run_exits_1_with_holes_and_0_once_the_same_command_fills_them(tmp_path):
    args = [
        "--limit",
        "2",
        "--samples",
        "4",
        "--request-n",
        "4",
        "--no-metrics",
        "--workers",
        "2",
        "--json",
        "--retries",
        "0",
        "--out",
        str(tmp_path / "run"),
    ]
    with simulated_fleet(tmp_path, 1, 20_000, "--faults", "reset=1:after=2") as hosts:
        broken = subprocess.run(
            [*ENGINE, "run", "--servers", str(hosts), *args], capture_output=True, text=True, timeout=300
        )
    summary = orjson.loads(broken.stdout)
    assert broken.returncode == 1, broken.stderr
    assert summary["missing"] == summary["generation_failures"] == 8 - summary["samples"] > 0
    assert "run the same command to retry them" in broken.stderr.splitlines()[-1]
    with simulated_fleet(tmp_path, 1, 20_000) as hosts:
        fixed = subprocess.run(
            [*ENGINE, "run", "--servers", str(hosts), *args], capture_output=True, text=True, timeout=300
        )
    assert fixed.returncode == 0, fixed.stderr
    assert orjson.loads(fixed.stdout)["samples"] == 8 and orjson.loads(fixed.stdout)["missing"] == 0


def test_a_bug_while_storing_a_sample_ends_the_sweep_with_it_instead_of_leaving_a_hole(tmp_path, monkeypatch):
    def broken(self, sample):
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(Store, "stage_sample", broken)
    with pytest.raises(RuntimeError, match="a bug in the engine"):
        sweep(tmp_path, "")
