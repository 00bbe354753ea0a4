"""MBPP-style assert lists (Austin et al., 2021): write a Python function from a description;
the problem's asserts call it by name.

Rows: task_id (a string, or MBPP's integers), `text` (or `prompt`, as sanitized MBPP names it),
`code` (the reference), `test_list` (assert statements), optional `test_setup_code` and
`challenge_test_list` (kept in the payload, not run: MBPP's own evaluation runs `test_list`).
The function's name is the first one the asserts call that the reference defines (or, without
a reference, the first called that is not a builtin).

The prompt is the usual one of the evaluation harnesses for base models: the description and
the first test in a docstring; the completion is the whole function. The program is setup +
completion + the asserts; guarded, the asserts run as `check` (sandbox/program.py).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DatasetError
from engine.records import Problem
from engine.tasks.base import Judgement, judged_by_sandbox
from engine.tasks.chat import code_from_answer
from sandbox.program import check_program
from sandbox.verdicts import Outcome

NAME = "mbpp"
FIELDS = frozenset(("task_id", "code", "test_list"))
# A completion is a whole function (helpers too), so no "\ndef": it ends where tests or prose start.
STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n```")
SYSTEM_PROMPT = (
    "You are an expert Python programmer. Write the Python function the user describes; it must pass"
    " the test shown. Answer with the whole function in one ```python code block."
)


def problem(
    task_id: str, text: str, test_list: Sequence[str], code: str | None = None, test_setup_code: str = ""
) -> Problem:
    """An MBPP problem from its fields (tests build them by hand)."""
    tests = list(test_list)
    payload = {
        "text": text,
        "test_list": tests,
        "test_setup_code": test_setup_code,
        "code": code,
        "entry_point": function_name(tests, code),
    }
    return Problem(task_id, _prompt(text, tests[0]), NAME, payload)


def function_name(test_list: Sequence[str], code: str | None) -> str | None:
    """The function the asserts call: the first called name the reference defines, else the
    first called name that is not a builtin; None if the asserts call nothing."""
    called = [name for test in test_list for name in _called_names(test)]
    defined = _defined_names(code or "")
    for candidates in ([n for n in called if n in defined], [n for n in called if not hasattr(builtins, n)]):
        if candidates:
            return candidates[0]
    return None


def _called_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = [
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    calls.sort(key=lambda node: (node.lineno, node.col_offset))  # in reading order
    return [node.func.id for node in calls if isinstance(node.func, ast.Name)]


def _defined_names(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _prompt(text: str, first_test: str) -> str:
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


class Mbpp:
    name = NAME
    fields = FIELDS
    stop = STOP
    system_prompt = SYSTEM_PROMPT

    def problems(self, rows: Sequence[Mapping[str, Any]], source: str) -> list[Problem]:
        return [self._problem(row, line, source) for line, row in enumerate(rows, 1)]

    def _problem(self, row: Mapping[str, Any], line: int, source: str) -> Problem:
        where = f"dataset {source!r}: row {line}"
        task_id, text, tests = row.get("task_id"), row.get("text") or row.get("prompt"), row.get("test_list")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool) or task_id == "":
            raise DatasetError(f"{where} lacks task_id")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where} lacks text (or prompt): the description")
        if (
            not isinstance(tests, list)
            or not tests
            or not all(isinstance(t, str) and t.strip() for t in tests)
        ):
            raise DatasetError(f"{where}: test_list must be a non-empty list of assert statements")
        code, setup = row.get("code"), row.get("test_setup_code") or ""
        made = problem(str(task_id), text, tests, code if isinstance(code, str) and code else None, setup)
        if made.payload["entry_point"] is None:
            raise DatasetError(f"{where}: its asserts call no function, so none can be tested")
        challenge = row.get("challenge_test_list") or []
        return Problem(
            made.task_id, made.prompt, NAME, {**made.payload, "challenge_test_list": list(challenge)}
        )

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        digest = hashlib.sha256(b"mbpp\0")
        for p in problems:
            tests = "\1".join(p.payload["test_list"])
            digest.update(f"{p.task_id}\0{p.prompt}\0{p.payload['test_setup_code']}\0{tests}\0".encode())
        return f"{source}@{digest.hexdigest()[:16]}"

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        p = problem.payload
        user = f"{p['text'].strip()}\nYour code should pass this test:\n```python\n{p['test_list'][0].strip()}\n```"
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return [*messages, {"role": "user", "content": user}]

    def extract(self, problem: Problem, answer: str) -> str:
        return code_from_answer(answer)

    def program(self, problem: Problem, completion: str, *, guards: bool) -> str:
        p = problem.payload
        candidate = (p["test_setup_code"] + "\n" if p["test_setup_code"] else "") + completion
        asserts = "\n".join(test.strip() for test in p["test_list"])
        if not guards:  # as MBPP's own evaluation runs it: one exec of code then asserts
            return candidate + "\n" + asserts
        check = "def check(candidate):\n" + textwrap.indent(asserts, "    ") + "\n"
        return check_program(candidate, check, p["entry_point"], guards=True)

    def reference(self, problem: Problem) -> str | None:
        return problem.payload.get("code")

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        name = problem.payload["entry_point"]
        bad = {
            "raises": f"def {name}(*args, **kwargs):\n    raise AssertionError('preflight: a known-bad completion')\n",
            "exits 0 before the asserts": "import os\nos._exit(0)\n",
        }
        if guards:  # passes any assert that compares with ==, unguarded
            bad["returns an object equal to everything"] = (
                f"def {name}(*args, **kwargs):\n    class Anything:\n        __eq__ = lambda self, other: True\n"
                "    return Anything()\n"
            )
        return bad

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        return judged_by_sandbox(outcome)
