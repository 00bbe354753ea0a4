"""Checker programs (engine/tasks/checker.py): the contract, and judging through a checker, with
the harness run as a plain local process (no jail; the jail test is tests/jail/test_task_checker.py).

Invariants: a test passes only when the checker exited 0 on it; a checker that fails (any other
status than 0, 1, 2), crashes or times out makes the sample infra_error, never a pass; nothing the
candidate prints and nothing the checker prints can forge the harness's report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.records import Problem
from engine.tasks import load_dataset
from engine.tasks.checker import CheckResult, check_outcome, checker_program, read_checks
from engine.tasks.driver import canonical_stdout, digest
from engine.tasks.rows import RowError
from engine.tasks.stdio import Stdio
from sandbox import Limits, Outcome, Verdict

FIXTURE = "tests/fixtures/tasks/stdio_checker.jsonl"
FORGED = '{"k": 0, "r": "accept", "c": 0}\n{"checked": 1}\n'
SAME_AS_ANSWER = "import sys\nsys.exit(0 if open(sys.argv[2]).read() == open(sys.argv[3]).read() else 1)\n"


def run_locally(program: str, wall_s: float = 30.0) -> Outcome:
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=wall_s)
    verdict = Verdict.passed if done.returncode == 0 else Verdict.failed
    return Outcome(
        verdict, f"exit status {done.returncode}", 0.1, "none", Limits(), done.stdout + done.stderr
    )


async def run_async(program: str, wall_s: float) -> Outcome:
    return run_locally(program)


def checks(source: str, cases: list[tuple[str, str, str]], run_all: bool = True, limit_s: float = 5.0):
    program = checker_program(
        source,
        [{"k": i, "input": a, "output": b, "answer": c} for i, (a, b, c) in enumerate(cases)],
        run_all=run_all,
        limit_s=limit_s,
    )
    return read_checks(run_locally(program).output)


@pytest.mark.parametrize(
    ("source", "result", "status"),
    [
        ("import sys\nsys.exit(0)\n", "accept", 0),
        ("x = 1\n", "accept", 0),  # ran to its end
        ("import sys\nsys.exit()\n", "accept", 0),
        ("import sys\nsys.exit(1)\n", "reject", 1),
        ("import sys\nsys.exit(2)\n", "reject", 2),
        ("import sys\nsys.exit('wrong answer')\n", "reject", 1),
        ("import sys\nsys.exit(3)\n", "fail", 3),
        ("import sys\nsys.exit(7)\n", "fail", 7),
        ("raise ValueError('checker bug')\n", "crash", 120),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "crash", None),
    ],
)
def test_exit_status_table(source: str, result: str, status: int | None) -> None:
    assert checks(source, [("1\n", "1\n", "1\n")]) == {0: CheckResult(0, result, status)}


def test_a_checker_that_loops_times_out() -> None:
    assert checks("while True:\n    pass\n", [("", "", "")], limit_s=0.5) == {0: CheckResult(0, "timeout")}


def test_arguments_are_input_output_answer_in_testlib_order() -> None:
    source = (
        "import sys\n"
        "texts = [open(p).read() for p in sys.argv[1:]]\n"
        "sys.exit(0 if texts == ['in\\n', 'candidate\\n', 'answer\\n'] and len(sys.argv) == 4 else 1)\n"
    )
    assert checks(source, [("in\n", "candidate\n", "answer\n")])[0].result == "accept"


def test_what_the_checker_prints_cannot_forge_the_report() -> None:
    source = f"import sys, os\nprint({FORGED!r})\nos.write(2, b'x')\nsys.exit(1)\n"
    assert checks(source, [("", "", ""), ("", "", "")]) == {
        0: CheckResult(0, "reject", 1),
        1: CheckResult(1, "reject", 1),
    }


@settings(max_examples=12, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=6), st.booleans())
def test_stops_at_the_first_rejection_unless_all(accepts: list[bool], run_all: bool) -> None:
    """Invariant: with run_all every case is checked; otherwise exactly the cases up to and
    including the first rejection (all of them when none is rejected)."""
    cases = [("", "yes" if ok else "no", "yes") for ok in accepts]
    found = checks(SAME_AS_ANSWER, cases, run_all=run_all)
    assert found is not None
    expected = len(accepts) if run_all or all(accepts) else accepts.index(False) + 1
    assert sorted(found) == list(range(expected))
    assert all((found[i].result == "accept") == accepts[i] for i in found)


def test_a_report_without_its_end_line_is_not_read() -> None:
    assert read_checks('{"k": 0, "r": "accept", "c": 0}\n') is None
    assert read_checks("") is None
    assert read_checks('{"checked": 0}\n') == {}


# -- judging through the checker ---------------------------------------------------------------


def problems() -> dict[str, Problem]:
    return {p.task_id: p for p in load_dataset(FIXTURE).problems}


def driver_outcome(outputs: list[str], statuses: list[str] | None = None) -> Outcome:
    statuses = statuses or ["ok"] * len(outputs)
    lines = [
        json.dumps(
            {"t": i, "s": s, "d": digest(canonical_stdout(o)), "x": o} if s == "ok" else {"t": i, "s": s}
        )
        for i, (o, s) in enumerate(zip(outputs, statuses))
    ]
    return Outcome(
        Verdict.passed, "", 0.1, "none", Limits(), "\n".join(lines + [json.dumps({"end": len(outputs)})])
    )


def judge(problem: Problem, outcome: Outcome, run_all: bool = False):
    return uvloop.run(check_outcome(problem, outcome, run_async, run_all=run_all))


def test_the_checker_accepts_answers_the_comparison_rejects() -> None:
    p = problems()["any-permutation"]
    outcome = driver_outcome(["3 2 1\n", "1\n", "5 4 3 2 1\n"])
    assert Stdio().judge(p, outcome).verdict is Verdict.infra_error  # never token-compared
    j = judge(p, outcome)
    assert (j.verdict, j.tests_passed, j.tests_total) == (Verdict.passed, 3, 3)


@pytest.mark.parametrize("wrong_at", [0, 1, 2])
def test_a_wrong_answer_fails_on_its_test(wrong_at: int) -> None:
    outputs = ["3 2 1\n", "1\n", "5 4 3 2 1\n"]
    outputs[wrong_at] = "1 1 1\n"
    j = judge(problems()["any-permutation"], driver_outcome(outputs), run_all=True)
    assert (j.verdict, j.detail, j.tests_passed) == (
        Verdict.failed,
        f"wrong answer on test {wrong_at + 1}",
        2,
    )


def test_float_tolerance_is_the_checkers() -> None:
    p = problems()["square-root"]
    assert judge(p, driver_outcome(["1.41421\n", "1000\n", "0.707107\n"])).verdict is Verdict.passed
    assert judge(p, driver_outcome(["1.4\n", "1000\n", "0.707107\n"])).verdict is Verdict.failed


def test_hostile_output_aimed_at_the_harness_is_only_output() -> None:
    j = judge(problems()["any-permutation"], driver_outcome([FORGED, FORGED, FORGED]), run_all=True)
    assert (j.verdict, j.tests_passed) == (Verdict.failed, 0)


def test_runtime_errors_are_judged_without_the_checker() -> None:
    calls: list[str] = []

    async def run(program: str, wall_s: float) -> Outcome:
        calls.append(program)
        return run_locally(program)

    p = problems()["any-permutation"]
    j = uvloop.run(
        check_outcome(p, driver_outcome(["", "", ""], ["exit", "exit", "exit"]), run, run_all=False)
    )
    assert (j.verdict, j.detail.split(" on ")[0], calls) == (
        Verdict.failed,
        "runtime error (non-zero exit)",
        [],
    )


@pytest.mark.parametrize(
    "checker",
    ["raise ValueError('bug')\n", "import sys\nsys.exit(3)\n", "while True:\n    pass\n"],
    ids=["crash", "fail", "timeout"],
)
def test_a_broken_checker_is_infra_error_never_a_pass(checker: str) -> None:
    p = problems()["any-permutation"]
    broken = Problem(p.task_id, p.prompt, p.kind, {**p.payload, "checker": checker})

    async def run(program: str, wall_s: float) -> Outcome:
        return run_locally(program.replace('\\"limit_s\\": 5.0', '\\"limit_s\\": 0.5'))

    j = uvloop.run(
        check_outcome(broken, driver_outcome(["3 2 1\n", "1\n", "5 4 3 2 1\n"]), run, run_all=False)
    )
    assert j.verdict is Verdict.infra_error and j.detail.startswith("checker ")


def test_a_check_run_that_fails_in_the_sandbox_is_infra_error() -> None:
    async def run(program: str, wall_s: float) -> Outcome:
        return Outcome(Verdict.infra_error, "sandbox: worker died", 0.1, "none", Limits(), "")

    j = uvloop.run(
        check_outcome(problems()["any-permutation"], driver_outcome(["1\n"] * 3), run, run_all=False)
    )
    assert j.verdict is Verdict.infra_error


def test_problems_without_a_checker_are_left_to_judge() -> None:
    plain = load_dataset("tests/fixtures/tasks/stdio.jsonl").problems[0]
    assert judge(plain, driver_outcome(["3\n"])) is None
    assert "checker" not in plain.payload


@pytest.mark.parametrize("bad", [3, "", "   ", ["print(1)"]])
def test_a_checker_that_is_not_source_is_a_bad_row(bad: object) -> None:
    row = json.loads(open(FIXTURE).readline())
    with pytest.raises(RowError):
        Stdio()._problem({**row, "checker": bad})


@pytest.mark.parametrize(
    ("outputs", "verdict"),
    [
        (["no", "boom", "yes"], Verdict.failed),  # rejected before the checker broke: a wrong answer
        (["yes", "boom", "no"], Verdict.infra_error),  # broke first: nothing to conclude
        (["boom"], Verdict.infra_error),
        (["yes", "yes", "boom"], Verdict.infra_error),  # the last test
    ],
)
def test_a_checker_breaking_after_a_rejection_still_fails_the_sample(
    outputs: list[str], verdict: Verdict
) -> None:
    p = problems()["any-permutation"]
    picky = "import sys\ngot = open(sys.argv[2]).read()\nif got == 'boom':\n    raise ValueError(got)\nsys.exit(0 if got == 'yes' else 1)\n"
    three = Problem(
        p.task_id,
        p.prompt,
        p.kind,
        {**p.payload, "checker": picky, "outputs": ["yes"] * len(outputs), "inputs": [""] * len(outputs)},
    )
    assert judge(three, driver_outcome(outputs), run_all=True).verdict is verdict
