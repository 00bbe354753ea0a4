"""Checker programs: problems with several right answers (any permutation, any shortest path, a
float the checker compares its own way) carry a `checker`, Python 3 source that decides each test.

The contract (testlib's `checker input output answer`): the checker runs as a script whose
sys.argv[1:] are the paths of three files, the test's input, the candidate's output and the
expected answer, and exits 0 to accept, 1 or 2 to reject (testlib's wrong answer and
presentation error). Any other exit status, an uncaught exception, or its time limit
(CHECK_S of CPU per test) means the checker failed: the sample is `infra_error` (not judged, never
a pass; preflight refuses a dataset whose reference its checker does not accept). What the
checker prints goes nowhere.

A checker is untrusted dataset code: it runs in the sandbox, in a second run after the
candidate's (engine/tasks/checker_harness.py), never in the engine and never in the candidate's
process (the candidate never sees the expected answer). The candidate's outputs come from its
driver report, so they must fit the report's text budget (engine/tasks/programs.py: TEXT_BUDGET
per sample); a test whose output went over it fails ("output too long to check").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.records import Problem
from engine.tasks.base import Judgement
from engine.tasks.judging import TestRecord, judge_report, read_report
from sandbox.verdicts import Outcome, Verdict

CHECK_S = 5.0  # CPU seconds per test for the checker
HARNESS_SOURCE = (Path(__file__).parent / "checker_harness.py").read_text(encoding="utf-8")
CHECKER_FAILURES = frozenset(("fail", "crash", "timeout"))

RunProgram = Callable[[str, float], Awaitable[Outcome]]  # (program, wall-clock seconds) -> Outcome


@dataclass(frozen=True, slots=True)
class CheckResult:
    index: int
    result: str  # accept | reject | fail | crash | timeout
    status: int | None = None


def checker_program(
    source: str, cases: list[dict[str, Any]], *, run_all: bool, limit_s: float = CHECK_S
) -> str:
    """The harness with one call: check `cases` ({"k", "input", "output", "answer"}) in order."""
    config = {"source": source, "cases": cases, "limit_s": limit_s, "all": run_all}
    return HARNESS_SOURCE + f"\n_check_all({json.dumps(json.dumps(config))})\n"


def read_checks(output: str) -> dict[int, CheckResult] | None:
    """The harness's results by test index; None when its end line is missing (it did not finish)."""
    results: dict[int, CheckResult] = {}
    ended = False
    for line in output.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if "checked" in data:
            ended = True
        elif isinstance(data.get("k"), int) and isinstance(data.get("r"), str):
            status = data.get("c")
            results.setdefault(
                data["k"], CheckResult(data["k"], data["r"], status if isinstance(status, int) else None)
            )
    return results if ended else None


def wall_limit_s(cases: int, limit_s: float = CHECK_S) -> float:
    """The whole check run's wall clock: every case at its limit (the harness stops each sooner)."""
    return cases * (2 * limit_s + 1) + 5


async def check_outcome(
    problem: Problem, outcome: Outcome, run: RunProgram, *, run_all: bool
) -> Judgement | None:
    """The judgement of a candidate's outcome through the problem's checker; None when there is
    nothing to check (the caller judges the outcome as it stands)."""
    payload = problem.payload
    source = payload.get("checker")
    if not source or outcome.verdict is Verdict.infra_error or outcome.tests_total is not None:
        return None
    total = len(payload["outputs"])
    records = read_report(outcome.output).records
    cases = [
        {"k": i, "input": payload["inputs"][i], "output": r.text, "answer": payload["outputs"][i]}
        for i, r in sorted(records.items())
        if 0 <= i < total and r.status == "ok" and r.text is not None
    ]
    results: dict[int, CheckResult] = {}
    if cases:
        checked = await run(checker_program(source, cases, run_all=run_all), wall_limit_s(len(cases)))
        if checked.verdict is Verdict.infra_error:
            return Judgement(Verdict.infra_error, f"checker run: {checked.detail}")
        found = read_checks(checked.output)
        if found is None:
            return Judgement(Verdict.infra_error, f"the checker's run did not finish ({checked.detail})")
        results = found
    if (failure := _checker_failure(results)) is not None:
        return failure
    return judge_report(outcome, total, _accepted(results))


def _checker_failure(results: dict[int, CheckResult]) -> Judgement | None:
    """infra_error when the checker broke before any rejection (after one, the sample failed)."""
    for index, check in sorted(results.items()):
        if check.result == "reject":
            return None
        if check.result in CHECKER_FAILURES:
            said = f" (exit status {check.status})" if check.status is not None else ""
            return Judgement(Verdict.infra_error, f"checker {check.result}{said} on test {index + 1}")
    return None


def _accepted(results: dict[int, CheckResult]) -> Callable[[int, TestRecord], bool]:
    def match(index: int, record: TestRecord) -> bool:
        check = results.get(index)
        return check is not None and check.result == "accept"

    return match
