"""Call-based problems (APPS and LiveCodeBench "functional"): the program defines a function (or a
method of LeetCode's `class Solution`) that is called with each test's JSON arguments.

Rows (APPS' shape): problem_id (or task_id), question, starter_code, input_output
({"inputs": [[args...], ...], "outputs": [...], "fn_name": NAME}, as JSON text or a value),
optionally solutions (programs, the first is the reference) and incorrect_solutions. Each test
has a CPU limit of `time_limit` seconds (default 2 s; its wall clock 3x that + 1 s).

The driver (engine/tasks/driver.py) returns each value with type tags; the engine compares
(engine/tasks/compare.py) as APPS and LiveCodeBench do: the value with tuples made lists (JSON
has no tuples) must equal the expected JSON value, or, APPS' leniency, its only element when the
expected value is a one-element list. Fail fast by default; `Call(run_all=True)` runs every test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine.records import Problem
from engine.tasks import rows as R
from engine.tasks.base import Judgement
from engine.tasks.chat import code_from_answer, fenced_messages
from engine.tasks.compare import Malformed, decode
from engine.tasks.encoding import Unserialisable, canonical_json, digest, encode
from engine.tasks.judging import TestRecord, judge_report
from engine.tasks.programs import REPORT_BYTES, call_program
from sandbox.verdicts import Outcome

NAME = "call"
FIELDS = frozenset(("question", "starter_code", "input_output"))
DEFAULT_TEST_S = 2.0
STOP = ("\ndef", "\nclass", "\nif", "\nprint", "\n#", "\n```")
SYSTEM_PROMPT = (
    "You are an expert Python programmer. Solve the problem the user gives you by completing the "
    "starter code. Answer with the whole code in one ```python code block."
)
KNOWN_BAD = {
    "raises": "raise RuntimeError('preflight: a known-bad program')\n",
    "exits 0 at once": "import os\nos._exit(0)\n",
}
_DEF = re.compile(r"^([ \t]*)def\s+\w+\s*\(.*?:\s*$", re.MULTILINE)


def prompt_for(question: str, starter_code: str) -> str:
    """The question as a docstring, then the starter code ending where its body starts."""
    body = question.replace('"""', "'''").strip()
    head = f'"""\n{body}\n"""\nfrom typing import *\n\n'
    starter = starter_code.rstrip()
    if not starter:
        return head
    defs = _DEF.findall(starter)
    indent = (defs[-1] + "    ") if defs and starter.endswith(":") else ""
    return head + starter + "\n" + indent


class Call(R.DriverKind):
    name = NAME
    fields = FIELDS
    stop = STOP
    system_prompt = SYSTEM_PROMPT
    report_bytes = REPORT_BYTES  # the driver's report: the sandbox keeps this much output

    def _problem(self, row: Mapping[str, Any]) -> Problem:
        tests = R.parsed(row, "input_output")
        if not isinstance(tests, Mapping) or not isinstance(tests.get("fn_name"), str):
            raise R.RowError("input_output has no fn_name: a stdin/stdout problem? (--task stdio)")
        inputs = R.argument_lists(tests.get("inputs"), "input_output.inputs")
        outputs = tests.get("outputs")
        if not isinstance(outputs, list) or len(outputs) != len(inputs) or not inputs:
            raise R.RowError("input_output needs as many outputs as inputs, at least one")
        task_id = row.get("problem_id", row.get("task_id"))
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
            raise R.RowError("lacks problem_id")
        starter = row.get("starter_code") or ""
        payload = {
            "fn_name": tests["fn_name"],
            "inputs": inputs,
            "outputs": outputs,
            "test_s": R.number(row.get("time_limit") or DEFAULT_TEST_S, "time_limit"),
            "solutions": R.strings(R.parsed(row, "solutions") or [], "solutions"),
            "incorrect": R.strings(R.parsed(row, "incorrect_solutions") or [], "incorrect_solutions"),
            "starter": starter if isinstance(starter, str) else "",
        }
        prompt = prompt_for(R.text(row, "question"), payload["starter"])
        # The reference as a completion of the prompt (what preflight and `engine simulate` use).
        solutions = payload["solutions"]
        payload["canonical_solution"] = (
            _completion(prompt, tests["fn_name"], solutions[0]) if solutions else None
        )
        payload["entry_point"] = tests["fn_name"]
        return Problem(str(task_id), prompt, NAME, payload)

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        return R.fingerprint(source, problems)

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        return fenced_messages(system_prompt, problem.prompt)

    def extract(self, problem: Problem, answer: str) -> str:
        """A whole definition in the answer follows a `pass` that closes the prompt's stub (the
        later definition wins); a bare body continues the stub as a base model's would."""
        return _completion(problem.prompt, problem.payload["fn_name"], code_from_answer(answer))

    def _program(self, problem: Problem, completion: str, *, inputs: bool) -> str:
        p = problem.payload
        code = problem.prompt + completion
        return call_program(
            code, p["fn_name"], p["inputs"] if inputs else None, p["test_s"], run_all=self.run_all
        )

    def reference(self, problem: Problem) -> str | None:
        return problem.payload["canonical_solution"]

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        """Generic wrong programs only (a dataset's incorrect solutions may pass weak tests)."""
        return {name: _closing(problem.prompt) + code for name, code in KNOWN_BAD.items()}

    def incorrect(self, problem: Problem) -> list[str]:
        """The dataset's incorrect solutions, as completions (tests use them)."""
        return [self.extract(problem, s) for s in problem.payload["incorrect"]]

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        expected: list[Any] = problem.payload["outputs"]

        def match(index: int, record: TestRecord) -> bool:
            want = expected[index]
            value = _value(record)
            if value is _MISSING:  # too large for the report: compared by digest, exactly
                return record.digest is not None and record.digest == _digest(want)
            return value == want or (isinstance(want, list) and len(want) == 1 and value == want[0])

        return judge_report(outcome, len(expected), match)


_MISSING = object()


def _value(record: TestRecord) -> Any:
    """The returned value as JSON would carry it (tuples as lists); _MISSING when not readable."""
    if record.text is None:
        return _MISSING  # over the report's budget: too large to compare (see README)
    try:
        return _as_json(decode(json.loads(record.text)))
    except (ValueError, Malformed, RecursionError):
        return _MISSING


def _digest(value: Any) -> str | None:
    try:
        return digest(canonical_json(encode(value)))
    except Unserialisable:
        return None


def _as_json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_json(x) for x in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


def _completion(prompt: str, fn_name: str, code: str) -> str:
    """Code as a completion of the prompt: a whole definition follows a `pass` that closes the
    prompt's stub (the later definition wins); a bare body continues the stub."""
    if re.search(rf"^\s*def\s+{re.escape(fn_name)}\s*\(", code, re.MULTILINE):
        return _closing(prompt) + "\n" + code
    return code


def _closing(prompt: str) -> str:
    """What ends the prompt's stub, so that a whole program can follow it."""
    return "pass\n" if prompt.endswith(" ") else ""
