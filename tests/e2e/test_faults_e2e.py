"""The fault matrix: whole sweeps against a simulated fleet that misbehaves in every way a
real one does. Every sample must end in the store exactly once, with metrics that agree."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.run import run_sweep
from engine.store import Store
from engine.tasks import load_problems
from sandbox import Limits
from vllm_sim import SimulatedFleet

PROBLEMS, SAMPLES = 8, 8
TOTAL = PROBLEMS * SAMPLES

FAULTS = {
    "http500": "http500=0.25",
    "http503 with Retry-After": "http503=0.25:retry=1s",
    "http429 with Retry-After": "http429=0.25:retry=1s",
    "slow first tokens": "slow_first=0.3:400ms",
    "stall past the idle timeout": "stall=0.2:3s:after=2",
    "short stall": "stall=0.3:300ms:after=2",
    "connection reset": "reset=0.25:after=1-6",
    "cut before [DONE]": "cut=0.25:after=1-6",
    "cut, connection closed": "cut=0.25:after=3:close",
    "malformed SSE": "malformed=0.25:after=2",
    "truncated JSON": "malformed=0.25:after=2:truncated",
    "error event in a 200 stream": "inband=0.25:after=3",
    "server killed mid-stream": "kill=0.1:1s:after=2",
    "server killed on schedule": "kill=server1@0.3s+2s",
    "whole fleet down": "fleet_down=@0.3s+3s",
    "degraded health and errors": "degrade=server0@0.2s+2s:errors",
    "mixed": "reset=0.05,http503=0.05,cut=0.05,malformed=0.05,inband=0.05,stall=0.05:3s,kill=server2@0.5s+1s",
}


def sweep(tmp_path, faults: str) -> tuple[dict, CollectorRegistry, dict[str, int]]:
    async def main():
        async with SimulatedFleet(
            3, problems=load_problems(limit=PROBLEMS), tokens_per_second=8000, faults=faults, faults_seed=3
        ) as fleet:
            hosts = tmp_path / "hosts.txt"
            hosts.write_text("".join(u + "\n" for u in fleet.urls))
            registry = CollectorRegistry()
            cfg = RunConfig(
                servers=str(hosts),
                sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
                scheduling=Scheduling(request_n=4, retries=8, idle_timeout_s=1.0),
                sandbox=SandboxSettings(workers=2, limits=Limits(timeout_s=1.0)),
                output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
            )
            summary = await run_sweep(cfg, registry=registry)
            return summary, registry, fleet.fault_counts()

    return uvloop.run(asyncio.wait_for(main(), 180))


@pytest.mark.parametrize("faults", list(FAULTS.values()), ids=list(FAULTS))
def test_every_sample_ends_in_the_store_exactly_once(tmp_path, faults, caplog):
    caplog.set_level(logging.WARNING, logger="engine")
    summary, registry, injected = sweep(tmp_path, faults)
    assert sum(injected.values()) > 0, "the fault never happened: the test would prove nothing"

    store = Store.open(tmp_path / "run", create=False)
    keys = [(r["task_id"], r["sample_index"]) for r in store.rows()]
    assert len(keys) == len(set(keys)) == TOTAL
    assert summary["generation_failures"] == 0 and summary["samples"] == TOTAL
    assert all(r["verdict"] is not None for r in store.rows())

    value = registry.get_sample_value
    assert value("engine_samples_generated_total") == TOTAL
    verdicts = store.verdict_counts()
    for verdict in ("passed", "failed", "timeout", "oom", "error"):
        assert value("engine_samples_verified_total", {"verdict": verdict}) == verdicts.get(verdict, 0)
    received = sum(value("engine_generated_tokens_total", {"server": s}) or 0 for s in _servers(registry))
    assert received >= store.totals()["tokens"]  # tokens of unfinished choices were received too
    errors = sum(value("engine_generation_errors_total", {"server": s}) or 0 for s in _servers(registry))
    stream_faults = {
        k: v for k, v in injected.items() if v and k not in ("slow_first", "fleet_down", "degrade")
    }
    if injected.get("stall") and "300ms" in faults:
        assert errors == 0  # shorter than the idle timeout: waited out, not an error
    elif stream_faults:
        assert errors >= 1
    assert value("engine_queue_depth") == 0
    if injected.get("fleet_down"):  # said once when it happens, once when it is over
        messages = [r.getMessage() for r in caplog.records]
        assert sum("servers are down" in m for m in messages) == 1
        assert sum("fleet back" in m for m in messages) == 1


def _servers(registry) -> set[str]:
    return {
        s.labels["server"] for family in registry.collect() for s in family.samples if "server" in s.labels
    }
