"""stdin/stdout problems (CodeContests, Codeforces-style; the shape of DeepMind's CodeContests):
a program reads a test's input on stdin and writes its answer on stdout.

Rows: name, description, public_tests / private_tests / generated_tests (each
{"input": [...], "output": [...]}), optionally solutions and incorrect_solutions
({"language": [...], "solution": [...]}; language 3 is Python 3), time_limit ({"seconds": S}
or a number: each test's CPU limit, default 2 s), float_tolerance (default 1e-6; 0: exact
decimals, LiveCodeBench's rule) and checker (Python 3 source deciding each test in place of the
comparison, for problems with several right answers: engine/tasks/checker.py). The tests are
public + private + generated, in that order.

The program is the driver (engine/tasks/driver.py) running prompt + completion once per test;
stdout is compared in the engine (engine/tasks/compare.py). Fail fast by default: the run ends at
the first test that crashes or times out (a wrong answer shows only in the engine, so the later
tests still run); `Stdio(run_all=True)` (`--all-tests`) runs every test, for the fraction passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.records import Problem
from engine.tasks import rows as R
from engine.tasks.base import Judgement
from engine.tasks.chat import code_from_answer
from engine.tasks.checker import RunProgram, check_outcome
from engine.tasks.compare import stdout_matches
from engine.tasks.encoding import canonical_stdout, digest
from engine.tasks.judging import TestRecord, already_judged, judge_report
from engine.tasks.programs import REPORT_BYTES, stdio_program
from sandbox.verdicts import Outcome, Verdict

NAME = "stdio"
FIELDS = frozenset(("description", "public_tests"))
SUITES = ("public_tests", "private_tests", "generated_tests")
PYTHON3 = 3  # CodeContests' language id
DEFAULT_TEST_S = 2.0
DEFAULT_TOLERANCE = 1e-6
# A base model writes a whole program after the prompt; it ends where prose or a fence would start.
STOP = ('\n"""', "\n'''", "\n```")
SYSTEM_PROMPT = (
    "You are an expert competitive programmer. Solve the problem the user gives you with a Python 3 "
    "program that reads standard input and writes standard output. Answer with the whole program "
    "in one ```python code block."
)
KNOWN_BAD = {
    "prints nothing and exits 0": "import os\nos._exit(0)\n",
    "raises": "raise RuntimeError('preflight: a known-bad program')\n",
}


def prompt_for(description: str) -> str:
    """The problem as a docstring, then the program's first line (a base model continues it)."""
    body = description.replace('"""', "'''").strip()
    return f'"""\n{body}\n"""\n# Python 3: read standard input, write standard output.\nimport sys\n'


class Stdio(R.DriverKind):
    name = NAME
    fields = FIELDS
    stop = STOP
    system_prompt = SYSTEM_PROMPT
    report_bytes = REPORT_BYTES  # the driver's report: the sandbox keeps this much output
    references_may_fail = True  # CodeContests: some references fail their own tests (flagged at preflight)

    def _problem(self, row: Mapping[str, Any]) -> Problem:
        inputs: list[str] = []
        outputs: list[str] = []
        for suite in SUITES:
            tests = R.parsed(row, suite) or {}
            if not isinstance(tests, Mapping):
                raise R.RowError(f"{suite} must be {{'input': [...], 'output': [...]}}")
            suite_in, suite_out = (R.strings(tests.get(k, []), f"{suite}.{k}") for k in ("input", "output"))
            if len(suite_in) != len(suite_out):
                raise R.RowError(f"{suite} has {len(suite_in)} inputs but {len(suite_out)} outputs")
            inputs += suite_in
            outputs += suite_out
        if not inputs:
            raise R.RowError("has no tests")
        task_id = row.get("name") or row.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise R.RowError("lacks name")
        solutions = _python3(R.parsed(row, "solutions"))
        checker = row.get("checker")
        if checker is not None and (not isinstance(checker, str) or not checker.strip()):
            raise R.RowError("checker must be Python source (a non-empty string)")
        payload = {
            "inputs": inputs,
            "outputs": outputs,
            "test_s": _seconds(row.get("time_limit")),
            "tolerance": R.number(row.get("float_tolerance", DEFAULT_TOLERANCE), "float_tolerance"),
            "solutions": solutions,
            "incorrect": _python3(R.parsed(row, "incorrect_solutions")),
            # The reference as a completion of the prompt (what preflight and `engine simulate` use).
            "canonical_solution": "\n" + solutions[0] if solutions else None,
        }
        if checker is not None:
            payload["checker"] = checker  # only then: the fingerprints of other datasets stay
        return Problem(task_id, prompt_for(R.text(row, "description")), NAME, payload)

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        return R.fingerprint(source, problems)

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return messages + [{"role": "user", "content": problem.prompt.split('"""')[1].strip()}]

    def extract(self, problem: Problem, answer: str) -> str:
        return code_from_answer(answer)

    def _program(self, problem: Problem, completion: str, *, inputs: bool) -> str:
        p = problem.payload
        code = problem.prompt + completion
        return stdio_program(code, p["inputs"] if inputs else None, p["test_s"], run_all=self.run_all)

    def reference(self, problem: Problem) -> str | None:
        return problem.payload["canonical_solution"]

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        """Generic wrong programs only: a dataset's incorrect solutions may time out, or even pass
        weak tests (CodeContests), so they prove nothing about the sandbox."""
        return KNOWN_BAD if any(canonical_stdout(out) for out in problem.payload["outputs"]) else {}

    def incorrect(self, problem: Problem) -> list[str]:
        """The dataset's incorrect solutions, as completions (tests use them)."""
        return [_as_completion(problem, s) for s in problem.payload["incorrect"]]

    async def check(self, problem: Problem, outcome: Outcome, run: RunProgram) -> Judgement | None:
        """The optional async hook (engine/tasks/base.py): problems with a checker are judged by
        it, in a second sandbox run; None for the others (`judge` decides)."""
        return await check_outcome(problem, outcome, run, run_all=self.run_all)

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        if problem.payload.get("checker") and already_judged(outcome) is None:
            if outcome.verdict is Verdict.infra_error:
                return Judgement(outcome.verdict, outcome.detail)
            # Only `check` can judge these: the token comparison would be wrong for them.
            return Judgement(Verdict.infra_error, "not judged: this problem needs its checker")
        expected: list[str] = problem.payload["outputs"]
        tolerance: float = problem.payload["tolerance"]

        def match(index: int, record: TestRecord) -> bool:
            if record.digest == digest(canonical_stdout(expected[index])):
                return True
            return record.text is not None and stdout_matches(record.text, expected[index], tolerance)

        return judge_report(outcome, len(expected), match)


def _as_completion(problem: Problem, program: str) -> str:
    """A whole program as a completion of the prompt (which only adds a docstring and an import)."""
    return "\n" + program


def _seconds(value: Any) -> float:
    if isinstance(value, Mapping):
        value = float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    if value is None or value == 0:
        return DEFAULT_TEST_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise R.RowError(f"time_limit must be seconds, not {value!r}")
    return float(value)


def _python3(value: Any) -> list[str]:
    """The Python 3 programs of a CodeContests solutions field (or a plain list of programs)."""
    if not value:
        return []
    if isinstance(value, list):
        return R.strings(value, "solutions")
    if not isinstance(value, Mapping):
        raise R.RowError("solutions must be {'language': [...], 'solution': [...]} or a list")
    languages, programs = value.get("language", []), R.strings(value.get("solution", []), "solution")
    return [s for lang, s in zip(languages, programs) if lang == PYTHON3]
