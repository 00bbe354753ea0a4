"""A whole `--api chat` sweep on simulated servers: /v1/chat/completions streams, code cut out of
the answers' python fences, verified in the sandbox, stored once each, tokens as the servers
counted them."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import aiohttp
import orjson
import uvloop
from prometheus_client import CollectorRegistry

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.run import run_sweep
from engine.store import Store
from engine.sweep.plan import problem_seed
from engine.tasks import extract_completion, load_problems
from engine.tasks.chat import fenced_messages as chat_messages
from engine.tasks.humaneval import SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT
from vllm_sim import SimulatedFleet, SyntheticModel
from vllm_sim.model.instruct import Message

PROBLEMS, SAMPLES, MAX_TOKENS = 5, 8, 512


async def generated_tokens(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    match = re.search(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M)
    assert match is not None
    return float(match.group(1))


def test_chat_sweep_stores_every_sample_once_with_code_from_the_fence(tmp_path):
    problems = load_problems(limit=PROBLEMS)

    async def main():
        async with SimulatedFleet(2, problems=problems, tokens_per_second=20_000) as fleet:
            hosts = tmp_path / "hosts.txt"
            hosts.write_text("".join(u + "\n" for u in fleet.urls))
            registry = CollectorRegistry()
            cfg = RunConfig(
                servers=str(hosts),
                sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS, api="chat", max_tokens=MAX_TOKENS),
                scheduling=Scheduling(request_n=3, queue_size=16),
                sandbox=SandboxSettings(workers=2),
                output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
            )
            summary = await run_sweep(cfg, registry=registry)
            async with aiohttp.ClientSession() as session:
                served = sum([await generated_tokens(session, url) for url in fleet.urls])
            engine_tokens = sum(
                s.value
                for m in registry.collect()
                if m.name == "engine_generated_tokens"
                for s in m.samples
                if s.name == "engine_generated_tokens_total"
            )
            return summary, served, engine_tokens, fleet.config.seed

    summary, served, engine_tokens, model_seed = uvloop.run(asyncio.wait_for(main(), 240))

    store = Store.open(tmp_path / "run", create=False)
    rows = list(store.rows())
    assert sorted((r["task_id"], r["sample_index"]) for r in rows) == [
        (f"HumanEval/{t}", i) for t in range(PROBLEMS) for i in range(SAMPLES)
    ]  # all 40, each exactly once

    # Every stored answer is the simulated model's answer for that sample's seed, and the stored
    # completion is the code cut out of its fence.
    model = SyntheticModel(problems, seed=model_seed)
    by_task = {p.task_id: p for p in problems}
    whole_functions = 0
    kinds = {}
    for row in rows:
        problem = by_task[row["task_id"]]
        messages = [
            Message(m["role"], m["content"]) for m in chat_messages(DEFAULT_SYSTEM_PROMPT, problem.prompt)
        ]
        sample = model.chat_sample(messages, problem_seed(0, problem.task_id) + row["sample_index"])
        kinds[row["task_id"], row["sample_index"]] = sample.kind
        tokens = min(len(sample.head) + 1, MAX_TOKENS)  # its tokens and the end of sequence, unless cut
        assert row["response"] == "".join(sample.head[:tokens])
        assert row["completion_tokens"] == tokens  # what the server counted in its usage for this choice
        assert row["finish_reason"] == ("stop" if tokens == len(sample.head) + 1 else "length")
        assert row["completion"] == extract_completion(problem, row["response"])
        code = row["response"].partition("```python\n")[2]
        if code.startswith("def "):
            whole_functions += 1
            if code.startswith(f"def {problem.payload['entry_point']}("):
                assert row["completion"].startswith(f"\ndef {problem.payload['entry_point']}(")
    assert whole_functions >= SAMPLES * PROBLEMS // 2

    # Verdicts: right answers pass, wrong ones do not, and both happen.
    verdicts = store.verdict_counts()
    assert verdicts.get("passed", 0) > 0 and verdicts.get("failed", 0) > 0
    for row in rows:
        assert row["verdict"] in {"passed", "failed", "timeout", "oom", "error"}
        if kinds[row["task_id"], row["sample_index"]] == "canonical":
            assert row["verdict"] == "passed", (row["task_id"], row["sample_index"], row["detail"])
    assert sum(r["verdict"] == "passed" for r in rows) == sum(k == "canonical" for k in kinds.values())

    # Tokens: the store, the summary, the engine's counter and the servers' own count agree.
    assert store.totals()["tokens"] == summary["tokens"] == engine_tokens == served
    assert summary["samples"] == 40 and sum(summary["verdicts"].values()) == 40


def test_cli_run_with_api_chat_against_simulate(tmp_path):
    hosts = tmp_path / "hosts.txt"
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "simulate",
            "--servers",
            "1",
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
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "run",
                "--servers",
                str(hosts),
                "--api",
                "chat",
                "--limit",
                "2",
                "--samples",
                "3",
                "--out",
                str(tmp_path / "run"),
                "--metrics-port",
                "0",
                "--json",
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr
        summary = orjson.loads(run.stdout)
        assert summary["samples"] == 6 and sum(summary["verdicts"].values()) == 6 and summary["tokens"] > 0
        rows = list(Store.open(tmp_path / "run", create=False).rows())
        assert all(r["response"] and "```python" in r["response"] for r in rows)
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(timeout=30)
    assert simulator.returncode == 0
