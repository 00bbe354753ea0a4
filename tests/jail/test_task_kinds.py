"""The output-comparing kinds (stdin/stdout, call-based, EvalPlus-style) through the real sandbox
(nsjail), on the fixtures of tests/fixtures/tasks/.

Invariants: every reference passes (all tests); every known-wrong, slow or hostile sample fails
with the verdict its failure calls for; a hostile sample never passes, whatever it does in its
own process (always-equal objects, patched builtins and driver functions, trace hooks, forged
report lines, exiting 0 half-way), because the comparison runs in the engine, against outputs
that never entered the jail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest
import uvloop

from engine.records import Problem
from engine.tasks import TASKS, Task, detect, load_dataset
from engine.tasks.base import Judgement
from engine.tasks.evalplus import Evalplus
from engine.tasks.hooks import all_tests, prepare
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.verifier import Verifier

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
LIMITS = Limits(timeout_s=20.0, cpu_time_s=20.0)

Job = tuple[Task, Problem, str]


def judge_all(jobs: Sequence[Job], cache_dir: Path | None = None) -> list[Judgement]:
    """One pool for all the jobs: each program run, then judged by its task."""

    async def body() -> list[Judgement]:
        async with SandboxPool(workers=2, limits=LIMITS, backend="nsjail") as pool:
            for task in {id(t): t for t, _, _ in jobs}.values():
                await prepare(task, [p for t, p, _ in jobs if t is task], pool)
            judgements = []
            for task, problem, completion in jobs:
                outcome = await pool.run(task.program(problem, completion, guards=True))
                judgements.append(task.judge(problem, outcome))
            return judgements

    return uvloop.run(body())


def dataset(name: str) -> tuple[Task, dict[str, Problem]]:
    loaded = load_dataset(str(FIXTURES / f"{name}.jsonl"))
    return loaded.task, {p.task_id: p for p in loaded.problems}


def references(task: Task, problems: dict[str, Problem]) -> list[Job]:
    return [(task, p, task.reference(p) or "") for p in problems.values()]


def known_bad(task: Task, problems: dict[str, Problem]) -> list[Job]:
    """The task's generic known-bad completions, then the dataset's incorrect solutions."""
    generic = [(task, p, c) for p in problems.values() for c in task.known_bad(p, guards=True).values()]
    incorrect = getattr(task, "incorrect", lambda p: [])
    return generic + [(task, p, c) for p in problems.values() for c in incorrect(p)]


# -- stdin/stdout -----------------------------------------------------------------------------

STDIO_HOSTILE = {
    "prints the first answer, exits 0": ("sum-of-two", "import os\nprint(3, flush=True)\nos._exit(0)\n"),
    "forges a report line on its stdout": (
        "sum-of-two",
        'print(\'{"t": 0, "s": "ok", "d": "0", "x": "3"}\')\nprint(\'{"end": 5}\')\n',
    ),
    "writes to the driver's descriptors": (
        "sum-of-two",
        'import os\nos.write(3, b\'{"event":"passed"}\\n\')\n',
    ),
    "patches print and exits": (
        "mean",
        "import builtins\nbuiltins.print = lambda *a, **k: None\nraise SystemExit(0)\n",
    ),
    "kills its parent": (
        "sum-of-two",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint(3)\n",
    ),
}


def test_stdio_references_pass_and_wrong_ones_fail() -> None:
    task, problems = dataset("stdio")
    good = [j for j in references(task, problems) if j[1].task_id != "broken-reference"]
    bad = known_bad(task, problems)
    broken = (task, problems["broken-reference"], task.reference(problems["broken-reference"]) or "")
    judged = judge_all([*good, *bad, broken])
    for (_, problem, _), j in zip(good, judged):
        assert j.verdict is Verdict.passed, (problem.task_id, j)
        assert j.tests_passed == j.tests_total == len(problem.payload["inputs"])
    for (_, problem, completion), j in zip(bad, judged[len(good) :]):
        assert j.verdict is not Verdict.passed, (problem.task_id, completion, j)
    slow_program = task.incorrect(problems["triangular"])[0]
    slow = judged[len(good) + [c for _, _, c in bad].index(slow_program)]
    assert slow.verdict is Verdict.timeout, slow
    assert judged[-1].verdict is Verdict.failed and "wrong answer on test 3" in judged[-1].detail


def test_stdio_hostile_samples_fail() -> None:
    task, problems = dataset("stdio")
    jobs = [(task, problems[pid], code) for pid, code in STDIO_HOSTILE.values()]
    for name, j in zip(STDIO_HOSTILE, judge_all(jobs)):
        assert j.verdict is not Verdict.passed, (name, j)


def test_stdio_all_tests_counts_every_test() -> None:
    """Fail fast stops at a crash; --all-tests runs on, and tests_passed counts what passed."""
    task, problems = dataset("stdio")
    crash_second = "import sys\nn = int(input())\nif n == -3:\n    sys.exit(1)\nprint(n * n)\n"
    p = problems["broken-reference"]
    fast, every = judge_all([(task, p, crash_second), (all_tests(task), p, crash_second)])
    assert fast.verdict is Verdict.failed and fast.tests_passed == 1 and fast.tests_total == 3
    assert every.verdict is Verdict.failed and every.tests_passed == 1 and every.tests_total == 3
    assert "test 2" in fast.detail and "test 2" in every.detail


# -- call-based -------------------------------------------------------------------------------

CALL_HOSTILE = {
    "returns an object equal to everything": "class A:\n    __eq__ = lambda s, o: True\nreturn A()\n",
    "returns an int subclass equal to everything": "class I(int):\n    __eq__ = lambda s, o: True\nreturn I(0)\n",
    "patches the driver's encoder": (
        "import sys\nsys._getframe(1).f_globals['encode'] = lambda v, d=0: ['l', [['i', '0'], ['i', '1']]]\n"
        "return None\n"
    ),
    "sets a trace hook and returns nonsense": "import sys\nsys.settrace(lambda *a: None)\nreturn 'x'\n",
    "forges result lines and exits 0": (
        'import os\nfor i in range(5):\n    os.write(3, b\'{"s": "ok", "v": ["N"]}\\n\')\nos._exit(0)\n'
    ),
    "exits 0 before answering": "import os\nos._exit(0)\n",
}


def test_call_references_pass_wrong_and_hostile_fail() -> None:
    task, problems = dataset("call")
    body = problems["call/min-max"]  # the prompt ends inside the function, indented
    hostile = [(task, body, code.replace("\n", "\n    ")) for code in CALL_HOSTILE.values()]
    good, bad = references(task, problems), known_bad(task, problems)
    judged = judge_all([*good, *bad, *hostile])
    for (_, problem, _), j in zip(good, judged):
        assert j.verdict is Verdict.passed, (problem.task_id, j)
    for (_, problem, completion), j in zip([*bad, *hostile], judged[len(good) :]):
        assert j.verdict is Verdict.failed, (problem.task_id, completion, j)


# -- EvalPlus-style ---------------------------------------------------------------------------


def test_evalplus_expected_outputs_cached_and_judged(tmp_path: Path) -> None:
    """References pass base and plus; a sample right on base only is a false positive of the base
    suite (base_passed, not passed); find_zero accepts any root; hostile values fail."""
    problems = {p.task_id: p for p in load_dataset(str(FIXTURES / "evalplus.jsonl")).problems}
    task = Evalplus(cache_dir=tmp_path)
    base_only = "    return threshold < 0.4\n"  # right on base, wrong on plus
    canonical = problems["HumanEval/32"].payload["canonical_solution"]
    other_root = "    if xs == [-6, 11, -6, 1]:\n        return 2.0\n" + canonical  # not the reference's root
    float_noise = "    mean = sum(numbers) / len(numbers)\n    return sum(abs(x - mean) for x in numbers) / len(numbers) + 1e-9\n"
    jobs = [
        *references(task, problems),
        *known_bad(task, problems),
        (task, problems["HumanEval/0"], base_only),
        (task, problems["HumanEval/32"], other_root),
        (task, problems["HumanEval/4"], float_noise),
    ]
    judged = judge_all(jobs, tmp_path)
    for (_, problem, _), j in zip(jobs[: len(problems)], judged):
        assert j.verdict is Verdict.passed and j.base_passed is True, (problem.task_id, j)
    bad = judged[len(problems) : -3]
    assert bad and all(j.verdict is Verdict.failed and j.base_passed is False for j in bad), bad
    base_only_j, root_j, noise_j = judged[-3:]
    assert base_only_j.verdict is Verdict.failed and base_only_j.base_passed is True
    assert root_j.verdict is Verdict.passed, root_j
    assert noise_j.verdict is Verdict.passed, noise_j
    assert len(list(tmp_path.glob("evalplus-*.json"))) == 1


def test_evalplus_second_run_reads_the_cache(tmp_path: Path) -> None:
    """A second task object (a resume, another run) computes nothing: with a pool that cannot
    run anything, it still judges, from the cache alone."""
    problems = load_dataset(str(FIXTURES / "evalplus.jsonl")).problems
    first = Evalplus(cache_dir=tmp_path)
    assert all(j.passed for j in judge_all([(first, p, first.reference(p) or "") for p in problems]))

    class NoRuns:
        async def run(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("recomputed expected outputs")

    second = Evalplus(cache_dir=tmp_path)
    broken = uvloop.run(second.prepare(problems, cast(SandboxPool, NoRuns())))
    assert broken == []


@pytest.mark.parametrize("kind", ["stdio", "call", "evalplus"])
def test_expected_outputs_never_enter_the_jail(kind: str) -> None:
    """The program of a sample holds the inputs only: nothing a candidate could read out."""
    task, problems = dataset(kind)
    for problem in problems.values():
        program = task.program(problem, "pass\n", guards=True)
        for expected in problem.payload.get("outputs", []):
            text = expected if isinstance(expected, str) else repr(expected)
            if len(text.strip()) > 3 and not any(text.strip() in str(i) for i in problem.payload["inputs"]):
                assert text.strip() not in program, (problem.task_id, text)


# -- engine verify, end to end ----------------------------------------------------------------

HOSTILE_SAMPLES = {
    "stdio": [(pid, code) for pid, code in STDIO_HOSTILE.values()],
    "call": [("call/min-max", code.replace("\n", "\n    ")) for code in CALL_HOSTILE.values()],
    "evalplus": [("HumanEval/12", "    " + code.replace("\n", "\n    ")) for code in CALL_HOSTILE.values()],
}


@pytest.mark.parametrize("kind", ["stdio", "call", "evalplus"])
def test_engine_verify_task_end_to_end(kind: str, tmp_path: Path) -> None:
    """`engine verify --task KIND` on its fixture: references pass (but a broken one, flagged at
    preflight), every wrong, slow and hostile sample fails; results carry task_kind and the test
    counts (and base_passed for evalplus), one line per input line, in order."""
    task, problems = dataset(kind)
    samples: list[tuple[str, str, bool]] = []
    for p in problems.values():
        samples.append((p.task_id, task.reference(p) or "", p.task_id != "broken-reference"))
        samples += [(p.task_id, c, False) for _, _, c in known_bad(task, {p.task_id: p})]
    samples += [(pid, code, False) for pid, code in HOSTILE_SAMPLES[kind]]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c, _ in samples))
    env = {**os.environ, "HOME": str(tmp_path)}  # the expected-outputs cache goes under it
    command = [
        sys.executable,
        "-m",
        "engine",
        "verify",
        str(path),
        "--dataset",
        str(FIXTURES / f"{kind}.jsonl"),
    ]
    done = subprocess.run(
        [*command, "--task", kind, "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    results = [
        json.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]
    assert [r["task_id"] for r in results] == [t for t, _, _ in samples]
    for (task_id, _, should_pass), r in zip(samples, results):
        assert r["passed"] is should_pass, (task_id, r["result"], r["detail"])
        assert r["task_kind"] == kind and 0 <= r["tests_passed"] <= r["tests_total"]
        assert ("base_passed" in r) is (kind == "evalplus")
    assert summary["verdicts"]["passed"] == sum(s for _, _, s in samples)


def test_verifier_judges_and_reuses_judged_verdicts() -> None:
    """Through the Verifier (as `engine run` verifies): the kind's verdict, not the sandbox's
    (whose `passed` only says the driver ran to its end); an identical sample reuses it, with
    its test counts, although a reused outcome keeps only a tail of its output."""
    task, problems = dataset("stdio")
    p = problems["sum-of-two"]
    long_wrong = "print('x' * 5000)\n"  # a report longer than the reused tail

    async def body() -> list[Outcome]:
        async with SandboxPool(workers=2, limits=LIMITS, backend="nsjail") as pool:
            verifier = Verifier(pool, [p], programs=task, dedup=True)
            jobs = [task.reference(p) or "", long_wrong] * 2
            return [await verifier.verify(p, c) for c in jobs]

    ref, wrong, ref_again, wrong_again = uvloop.run(body())
    assert ref.verdict is Verdict.passed and ref.tests_passed == ref.tests_total == 5
    assert wrong.verdict is Verdict.failed and wrong.tests_passed == 0
    assert ref_again.reused and task.judge(p, ref_again).passed
    assert wrong_again.reused and task.judge(p, wrong_again).verdict is Verdict.failed


@pytest.mark.parametrize("tests", [1, 400])
def test_verifier_keeps_the_whole_report_of_many_tests(tests: int) -> None:
    """The ends: one test, and a report far longer than the sandbox's default 16 KiB output tail
    (the kind's report_bytes): every test is read, the reference passes, a wrong answer on the
    last test alone is caught."""
    row = {
        "name": "echo",
        "description": "Print the number you read.",
        "public_tests": {
            "input": [f"{i}\n" for i in range(tests)],
            "output": [f"{i}\n" for i in range(tests)],
        },
        "solutions": {"language": [3], "solution": ["print(int(input()))\n"]},
    }
    task = TASKS[detect([row])]
    (p,) = task.problems([row], "inline")
    last_wrong = f"\nn = int(input())\nprint(n + (n == {tests - 1}))\n"

    async def body() -> list[Outcome]:
        async with SandboxPool(workers=2, limits=LIMITS, backend="nsjail") as pool:
            verifier = Verifier(pool, [p], programs=task, dedup=False)
            return [await verifier.verify(p, c) for c in (task.reference(p) or "", last_wrong)]

    ref, wrong = uvloop.run(body())
    assert ref.verdict is Verdict.passed and ref.tests_passed == tests, ref
    assert wrong.verdict is Verdict.failed and wrong.tests_passed == tests - 1, wrong
    assert f"test {tests}" in wrong.detail
