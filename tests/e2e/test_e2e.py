"""A whole sweep on simulated servers, through the real client, sandbox and store."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
import uvloop
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.run import run_sweep
from engine.store import Store
from engine.tasks import load_problems
from metrics.http import serve_metrics
from metrics.passk import pass_at_k_table
from vllm_sim import SimulatedFleet

PROBLEMS, SAMPLES = 20, 8


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


async def sweep_and_scrape(tmp_path, fleet_urls: list[str]) -> tuple[dict, dict]:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(u + "\n" for u in fleet_urls))
    registry = CollectorRegistry()
    runner, port = await serve_metrics(registry, "127.0.0.1", 0)
    try:
        cfg = RunConfig(
            servers=str(hosts),
            sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
            scheduling=Scheduling(request_n=5, queue_size=32),
            sandbox=SandboxSettings(workers=2),
            output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
        )
        summary = await run_sweep(cfg, registry=registry)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = scrape(await response.text())
    finally:
        await runner.cleanup()
    return summary, metrics


def test_sweep_on_three_servers_stores_every_verdict_once_and_metrics_agree(tmp_path):
    async def main():
        async with SimulatedFleet(
            3, problems=load_problems(limit=PROBLEMS), tokens_per_second=20_000
        ) as fleet:
            first = await sweep_and_scrape(tmp_path, fleet.urls)
            again = await sweep_and_scrape(tmp_path, fleet.urls)
            return first, again

    (summary, metrics), (summary2, metrics2) = uvloop.run(asyncio.wait_for(main(), 240))

    store = Store.open(tmp_path / "run", create=False)
    rows = list(store.rows())
    assert len(rows) == PROBLEMS * SAMPLES == 160
    assert {(r["task_id"], r["sample_index"]) for r in rows} == {
        (f"HumanEval/{t}", i) for t in range(PROBLEMS) for i in range(SAMPLES)
    }
    assert all(r["verdict"] in {"passed", "failed", "timeout", "oom", "error"} for r in rows)
    # calibrated per problem: max(floor 2 s, 10 x the canonical solution's time), at most 30 s
    assert all(2.0 <= orjson.loads(r["limits"])["timeout_s"] <= 30.0 for r in rows)
    assert all(r["backend"] == "nsjail" and r["cpu_s"] is not None for r in rows)
    reused = [r for r in rows if r["reused"]]
    assert all(r["cpu_s"] == 0 for r in reused) and all(r["cpu_s"] > 0 for r in rows if not r["reused"])
    # the simulated model repeats itself (canonical solution or a few wrong variants): dedup must show
    assert reused and metrics[("engine_verify_dedup_total", ())] == len(reused)
    first_of = {(r["task_id"], r["completion"]): r for r in rows if not r["reused"]}
    assert all(
        r["verdict"] == first_of[(r["task_id"], r["completion"])]["verdict"]
        for r in reused
        if (r["task_id"], r["completion"]) in first_of
    )
    verdicts = store.verdict_counts()
    # The simulated model solves some samples and fails others: both must show up.
    assert verdicts.get("passed", 0) > 0 and verdicts.get("failed", 0) > 0

    # /metrics tell the same story as the store
    for verdict in ("passed", "failed", "timeout", "oom", "error"):
        assert metrics[("engine_samples_verified_total", (("verdict", verdict),))] == verdicts.get(verdict, 0)
    assert metrics[("engine_samples_generated_total", ())] == 160
    tokens = sum(v for (name, _), v in metrics.items() if name == "engine_generated_tokens_total")
    assert tokens == store.totals()["tokens"] == summary["tokens"]
    expected = pass_at_k_table(store.pass_counts())
    for k, score in expected.items():
        assert metrics[("engine_pass_at_k", (("k", str(k)),))] == pytest.approx(score)
    assert metrics[("engine_queue_depth", ())] == 0
    assert all(v == 0 for (name, _), v in metrics.items() if name == "engine_inflight_requests")
    assert summary["samples"] == 160 and summary["verdicts"] == {
        v: verdicts.get(v, 0) for v in summary["verdicts"]
    }
    assert summary["pass_at_k"] == {str(k): pytest.approx(v, abs=1e-6) for k, v in expected.items()}

    # Running the same sweep again adds nothing and asks the servers for nothing
    assert summary2["new_samples"] == 0 and summary2["new_tokens"] == 0
    assert metrics2[("engine_samples_generated_total", ())] == 0
    assert len(list(store.rows())) == 160
    assert summary2["pass_at_k"] == summary["pass_at_k"]


def test_cli_run_against_simulate_prints_one_json_summary(tmp_path):
    hosts = tmp_path / "hosts.txt"
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "simulate",
            "--servers",
            "2",
            "--hosts-file",
            str(hosts),
            "--tokens-per-second",
            "20000",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not hosts.exists():
            assert simulator.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "run",
                "--servers",
                str(hosts),
                "--limit",
                "3",
                "--samples",
                "4",
                "--out",
                str(tmp_path / "run"),
                "--metrics-port",
                "0",
                "--json",
                "--workers",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        summary = orjson.loads(out)  # exactly one JSON object on stdout
        assert summary["samples"] == 12 and sum(summary["verdicts"].values()) == 12
        assert set(summary["pass_at_k"]) == {"1", "2", "4"}
        assert summary["tokens"] > 0 and summary["elapsed_s"] > 0
        assert "metrics on http://127.0.0.1:" in err
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(timeout=30)
    assert simulator.returncode == 0
