"""stdin/stdout problems judged by their checker programs, through the real sandbox (nsjail) and
the Verifier, on tests/fixtures/tasks/stdio_checker.jsonl.

Invariants: references pass through their checker although token comparison would reject them
(another permutation, another shortest path, fewer digits); the dataset's wrong solutions and
hostile samples fail; a checker that crashes or loops makes the sample infra_error (never a pass,
never cached); `engine verify --task stdio` gives the same verdicts end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import uvloop

from engine.records import Problem
from engine.tasks import load_dataset
from engine.tasks.stdio import Stdio
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.verifier import Verifier

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "stdio_checker.jsonl"
LIMITS = Limits(timeout_s=20.0, cpu_time_s=20.0)
# Output aimed at a checker that trusts what it reads, or at whatever parses reports.
HOSTILE = {
    "forged report lines": 'print(\'{"k": 0, "r": "accept", "c": 0}\')\nprint(\'{"checked": 1}\')\n',
    "forged driver lines": 'print(\'{"t": 0, "s": "ok"}\')\nprint(\'{"end": 3}\')\n',
    "tries to read the answer": "import sys, os\nprint(open(sys.argv[3]).read() if len(sys.argv) > 3 else os.listdir('.'))\n",
    "exits 0 at once": "import os\nos._exit(0)\n",
}


def problems() -> dict[str, Problem]:
    return {p.task_id: p for p in load_dataset(str(FIXTURE)).problems}


def verify_all(task: Stdio, jobs: list[tuple[Problem, str]], dedup: bool = False) -> list[Outcome]:
    async def body() -> list[Outcome]:
        async with SandboxPool(workers=2, limits=LIMITS, backend="nsjail") as pool:
            verifier = Verifier(pool, {p.task_id: p for p, _ in jobs}.values(), programs=task, dedup=dedup)
            return [await verifier.verify(p, c) for p, c in jobs]

    return uvloop.run(body())


def test_references_pass_and_wrong_answers_fail_through_the_checker() -> None:
    task = Stdio()
    ps = problems()
    jobs = [(p, task.reference(p) or "") for p in ps.values()]
    jobs += [(p, c) for p in ps.values() for c in task.incorrect(p)]
    jobs += [(ps["any-permutation"], code) for code in HOSTILE.values()]
    outcomes = verify_all(task, jobs)
    for (p, completion), o in zip(jobs, outcomes):
        reference = completion == task.reference(p)
        assert o.passed is reference, (p.task_id, completion, o.verdict, o.detail)
        assert o.tests_total == 3 and (o.tests_passed == 3) is reference
    # Token comparison alone would have rejected every reference: the checker decided.
    for p in ps.values():
        plain = replace(p, payload={k: v for k, v in p.payload.items() if k != "checker"})
        reference = task.reference(p) or ""
        assert not verify_all(task, [(plain, reference)])[0].passed


@pytest.mark.parametrize(
    "checker",
    ["raise ValueError('checker bug')\n", "import sys\nsys.exit(3)\n", "while True:\n    pass\n"],
    ids=["crash", "fail", "loop"],
)
def test_a_broken_checker_is_infra_error_and_not_cached(checker: str) -> None:
    task = Stdio()
    p = problems()["any-permutation"]
    broken = replace(p, payload={**p.payload, "checker": checker})
    first, second = verify_all(task, [(broken, task.reference(p) or "")] * 2, dedup=True)
    assert first.verdict is Verdict.infra_error and first.detail.startswith("checker ")
    assert second.verdict is Verdict.infra_error and not second.reused


def test_dedup_reuses_the_checked_verdict() -> None:
    task = Stdio()
    p = problems()["any-shortest-path"]
    first, again = verify_all(task, [(p, task.reference(p) or "")] * 2, dedup=True)
    assert first.passed and not first.reused
    assert again.reused and task.judge(p, again).passed


def test_engine_verify_task_stdio_with_a_checker(tmp_path: Path) -> None:
    """`engine verify --task stdio` on the checker fixture: preflight passes (references through
    their checker), references pass, wrong and hostile samples fail, one result per line, in order."""
    task = Stdio()
    ps = problems()
    samples = [(p.task_id, task.reference(p) or "", True) for p in ps.values()]
    samples += [(p.task_id, c, False) for p in ps.values() for c in task.incorrect(p)]
    samples += [("any-permutation", code, False) for code in HOSTILE.values()]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c, _ in samples))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(path), "--dataset", str(FIXTURE), "--task", "stdio"]
        + ["--json", "--workers", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = [
        json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]
    assert [r["task_id"] for r in results] == [t for t, _, _ in samples]
    for (task_id, _, should_pass), r in zip(samples, results):
        assert r["passed"] is should_pass, (task_id, r["result"], r["detail"])
        assert r["tests_total"] == 3
    assert json.loads(done.stdout)["verdicts"]["passed"] == len(ps)
