"""Judging a driver's report (engine/tasks/driver.py) in the engine: the candidate's outputs, read
from the jail's captured output, against expected outputs the jail never saw.

    judgement = judge_report(outcome, total, match)    # match(index, record) -> bool

A pass needs the sandbox's positive signal (the driver ran to its end: Verdict.passed), the
driver's end line, and a matching "ok" record for every test. The first test that fails gives the
verdict: wrong output or a runtime error is `failed`, a test's time limit `timeout`, a
MemoryError `oom`, a runner killed by a signal `error`. When the report stops short (the driver
itself was stopped: the whole program's limits), the sandbox's verdict stands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from engine.tasks.base import Judgement
from sandbox.verdicts import Outcome, Verdict

STATUS_VERDICTS = {
    "exit": Verdict.failed,
    "exception": Verdict.failed,
    "unserialisable": Verdict.failed,
    "timeout": Verdict.timeout,
    "oom": Verdict.oom,
    "signal": Verdict.error,
}
STATUS_DETAILS = {
    "exit": "runtime error (non-zero exit)",
    "exception": "raised",
    "unserialisable": "returned a value that is not a plain builtin",
    "timeout": "time limit",
    "oom": "out of memory",
    "signal": "killed by a signal",
}


@dataclass(frozen=True, slots=True)
class TestRecord:
    """One test's line of the report."""

    index: int
    status: str
    digest: str | None = None  # of the canonical output, when the test ran to an output
    text: str | None = None  # the output itself, while the driver's text budget lasted
    error: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    records: dict[int, TestRecord]
    ended: bool  # the driver's end line arrived: it ran to its end


def read_report(output: str) -> Report:
    """The records of a captured output; lines that are not the driver's are skipped (the tail
    may start mid-line, and the driver's own crash would print a traceback)."""
    records: dict[int, TestRecord] = {}
    ended = False
    for line in output.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "end" in data:
            ended = True
        elif isinstance(data, dict) and (record := _record(data)) is not None:
            records.setdefault(record.index, record)
    return Report(records, ended)


def _record(data: dict) -> TestRecord | None:
    index, status = data.get("t"), data.get("s")
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(status, str):
        return None
    digest, text, error = data.get("d"), data.get("x"), data.get("e", "")
    return TestRecord(
        index,
        status,
        digest if isinstance(digest, str) else None,
        text if isinstance(text, str) else None,
        error if isinstance(error, str) else "",
    )


def already_judged(outcome: Outcome) -> Judgement | None:
    """The judgement an outcome carries when the Verifier has judged it already (its output may
    since have been cut short: a reused verdict keeps only a tail)."""
    if outcome.tests_total is None:
        return None
    return Judgement(
        outcome.verdict, outcome.detail, outcome.tests_passed, outcome.tests_total, outcome.base_passed
    )


def judge_report(outcome: Outcome, total: int, match: Callable[[int, TestRecord], bool]) -> Judgement:
    if (judged := already_judged(outcome)) is not None:
        return judged
    if outcome.verdict is Verdict.infra_error:
        return Judgement(outcome.verdict, outcome.detail)
    report = read_report(outcome.output)
    passed, failure = 0, None
    for index in range(total):
        record = report.records.get(index)
        if record is None:
            break
        verdict, detail = _test_verdict(record, match)
        if verdict is Verdict.passed:
            passed += 1
        elif failure is None:
            failure = verdict, detail
    if failure is not None:
        return Judgement(failure[0], failure[1], passed, total)
    if passed == total and report.ended and outcome.verdict is Verdict.passed:
        return Judgement(Verdict.passed, f"{total} tests passed", passed, total)
    if outcome.verdict is not Verdict.passed:
        return Judgement(outcome.verdict, outcome.detail, passed, total)
    return Judgement(Verdict.failed, f"the report stops after {passed} of {total} tests", passed, total)


def _test_verdict(record: TestRecord, match: Callable[[int, TestRecord], bool]) -> tuple[Verdict, str]:
    where = f"test {record.index + 1}"
    if record.status == "ok":
        if match(record.index, record):
            return Verdict.passed, ""
        return Verdict.failed, f"wrong answer on {where}"
    verdict = STATUS_VERDICTS.get(record.status, Verdict.failed)
    detail = STATUS_DETAILS.get(record.status, record.status)
    said = _last_line(record.error)
    return verdict, f"{detail} on {where}" + (f": {said}" if said else "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
