"""Judging a driver's report (engine/tasks/judging.py) and the kinds' judges on synthetic outcomes:
no jail. The report reaches the engine as the jail's captured output, so these tests feed it
whole, cut anywhere, and mixed with noise."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.tasks import load_dataset
from engine.tasks.driver import canonical_stdout, digest
from engine.tasks.judging import judge_report, read_report
from sandbox import Limits, Outcome, Verdict

FIXTURES = "tests/fixtures/tasks"


def outcome(output: str, verdict: Verdict = Verdict.passed, detail: str = "") -> Outcome:
    return Outcome(verdict, detail, 0.1, "none", Limits(), output)


def line(**record: object) -> str:
    return json.dumps(record) + "\n"


def report(outputs: list[str], statuses: list[str] | None = None, end: bool = True) -> str:
    statuses = statuses or ["ok"] * len(outputs)
    lines = [
        line(t=i, s=s, d=digest(canonical_stdout(o)), x=o)
        if s == "ok"
        else line(t=i, s=s, e="Traceback\nValueError: x")
        for i, (o, s) in enumerate(zip(outputs, statuses))
    ]
    return "".join(lines) + (line(end=len(outputs)) if end else "")


def exact(expected: list[str]):
    return lambda index, record: record.text is not None and record.text == expected[index]


@pytest.mark.parametrize(
    "statuses, outputs, sandbox, verdict, passed",
    [
        (["ok", "ok"], ["a", "b"], Verdict.passed, Verdict.passed, 2),
        (["ok", "ok"], ["a", "X"], Verdict.passed, Verdict.failed, 1),  # wrong answer, the last test
        (["ok", "timeout"], ["a", ""], Verdict.passed, Verdict.timeout, 1),
        (["oom"], [""], Verdict.passed, Verdict.oom, 0),
        (["signal"], [""], Verdict.passed, Verdict.error, 0),
        (["exit"], [""], Verdict.passed, Verdict.failed, 0),
        (["unserialisable"], [""], Verdict.passed, Verdict.failed, 0),
        (["exception", "ok"], ["", "b"], Verdict.passed, Verdict.failed, 1),  # all-tests: counted on
        (["made-up"], [""], Verdict.passed, Verdict.failed, 0),
        (["ok", "ok"], ["a", "b"], Verdict.timeout, Verdict.timeout, 2),  # no positive signal
    ],
)
def test_verdict_table(statuses, outputs, sandbox, verdict, passed) -> None:
    j = judge_report(
        outcome(report(outputs, statuses), sandbox), 2 if len(outputs) == 2 else 1, exact(["a", "b"])
    )
    assert (j.verdict, j.tests_passed) == (verdict, passed)


def test_the_first_failure_gives_the_verdict() -> None:
    j = judge_report(outcome(report(["X", "", "c"], ["ok", "timeout", "ok"])), 3, exact(["a", "b", "c"]))
    assert j.verdict is Verdict.failed and j.detail == "wrong answer on test 1" and j.tests_passed == 1


def test_infra_error_stays_infra_error() -> None:
    j = judge_report(outcome(report(["a"]), Verdict.infra_error, "sandbox fault"), 1, exact(["a"]))
    assert j.verdict is Verdict.infra_error and j.tests_total is None


def test_a_report_without_its_end_or_a_test_is_not_a_pass() -> None:
    assert (
        judge_report(outcome(report(["a", "b"], end=False)), 2, exact(["a", "b"])).verdict is Verdict.failed
    )
    j = judge_report(outcome(report(["a"])), 2, exact(["a", "b"]))
    assert j.verdict is Verdict.failed and j.tests_passed == 1 and "stops after 1 of 2" in j.detail


def test_empty_output_and_zero_tests() -> None:
    assert judge_report(outcome(""), 1, exact(["a"])).verdict is Verdict.failed
    assert judge_report(outcome("", Verdict.oom), 1, exact(["a"])).verdict is Verdict.oom


@given(st.integers(min_value=0))
def test_cut_anywhere_before_the_end_is_never_a_pass(cut: int) -> None:
    """Invariant: a passing report cut at any position (the output tail kept only a part, the
    driver was killed) passes only if the cut keeps every line whole, the end line included."""
    text = report(["a", "b", "c"])
    cut %= len(text) + 1
    j = judge_report(outcome(text[:cut]), 3, exact(["a", "b", "c"]))
    assert j.passed == (cut >= len(text) - 1)


@given(st.text(max_size=300))
def test_noise_in_the_output_never_raises_and_never_passes(noise: str) -> None:
    """Anything at all in the captured output (a driver's traceback, a tail cut mid-line)."""
    read_report(noise)
    assert not judge_report(outcome(noise), 1, exact(["a"])).passed or '"end"' in noise


def test_duplicate_records_keep_the_first() -> None:
    text = line(t=0, s="ok", x="X", d="0") + line(t=0, s="ok", x="a", d="0") + line(end=1)
    assert judge_report(outcome(text), 1, exact(["a"])).verdict is Verdict.failed


# -- the kinds' judges, on the fixtures -------------------------------------------------------


def test_stdio_judge_uses_digest_then_tolerance() -> None:
    loaded = load_dataset(f"{FIXTURES}/stdio.jsonl")
    mean = next(p for p in loaded.problems if p.task_id == "mean")
    outputs = ["2.5", "1.3333333", "-7"]  # equal as decimals, within 1e-6, equal as decimals
    assert loaded.task.judge(mean, outcome(report(outputs))).passed
    digest_only = "".join(
        line(t=i, s="ok", d=digest(canonical_stdout(o))) for i, o in enumerate(mean.payload["outputs"])
    )
    assert loaded.task.judge(mean, outcome(digest_only + line(end=3))).passed  # text over the budget
    assert not loaded.task.judge(mean, outcome(line(t=0, s="ok", d="0") + line(end=3))).passed


def test_call_judge_reads_tuples_as_lists() -> None:
    loaded = load_dataset(f"{FIXTURES}/call.jsonl")
    minmax = next(p for p in loaded.problems if p.task_id == "call/min-max")

    def value(v: object) -> str:
        return json.dumps(v, separators=(",", ":"))

    def judged(tagged: list) -> Verdict:
        text = "".join(line(t=i, s="ok", x=value(v), d="0") for i, v in enumerate(tagged)) + line(end=3)
        return loaded.task.judge(minmax, outcome(text)).verdict

    five, a = ["i", "5"], ["i", "a"]
    # a tuple for a JSON list; [5, 5] for [5, 5]; (-1, 10)
    assert (
        judged([["t", [["i", "1"], ["i", "3"]]], ["l", [five, five]], ["t", [["i", "-1"], a]]])
        is Verdict.passed
    )
    assert (
        judged([["t", [["i", "1"], ["i", "3"]]], ["l", [five, ["f", "5.5"]]], ["t", [["i", "-1"], a]]])
        is Verdict.failed
    )
    assert (
        judged([["?", [["i", "1"], ["i", "3"]]], ["l", [five, five]], ["t", [["i", "-1"], a]]])
        is Verdict.failed
    )


@given(st.integers(min_value=0, max_value=200), st.sampled_from(["ok", "timeout", "exit"]))
def test_judging_a_judged_outcome_gives_the_same_even_cut(keep: int, status: str) -> None:
    """Invariant: the Verifier stores the judgement in the outcome and keeps only a tail of a
    reused outcome's output; judging that again gives the same judgement, whatever is left."""
    raw = outcome(report(["a", "b"], ["ok", status]))
    first = judge_report(raw, 2, exact(["a", "b"]))
    judged = replace(
        raw,
        verdict=first.verdict,
        detail=first.detail,
        tests_passed=first.tests_passed,
        tests_total=first.tests_total,
        output=raw.output[-keep:] if keep else "",
    )
    assert judge_report(judged, 2, exact(["a", "b"])) == first
