"""Reading the rows of the output-comparing kinds (stdin/stdout, call-based, EvalPlus-style):
fields that may be JSON text or already parsed, one-line errors naming the row, and the
fingerprint of everything a verdict depends on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DatasetError
from engine.records import Problem
from engine.tasks.programs import inputs_data


class RowError(ValueError):
    """What is wrong with one row; the kind adds the dataset and the row number."""


def row_error(source: str, line: int, exc: RowError) -> DatasetError:
    return DatasetError(f"dataset {source!r}: row {line}: {exc}")


def parsed(row: Mapping[str, Any], name: str) -> Any:
    """A field that datasets store either as JSON text (APPS) or as a value."""
    value = row.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise RowError(f"{name} is not valid JSON") from exc
    return value


def text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise RowError(f"lacks {name}")
    return value


def number(value: Any, what: str) -> float:
    """A non-negative number of seconds, a tolerance..."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RowError(f"{what} must be a non-negative number, not {value!r}")
    return float(value)


def strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise RowError(f"{what} must be a list of strings")
    return value


def argument_lists(value: Any, what: str) -> list[list[Any]]:
    if not isinstance(value, list) or not all(isinstance(x, list) for x in value):
        raise RowError(f"{what} must be a list of argument lists")
    return value


def fingerprint(source: str, problems: Sequence[Problem]) -> str:
    """`source@hash` of every problem's id, prompt and payload (tests, expected outputs, limits)."""
    digest = hashlib.sha256()
    for p in problems:
        digest.update(
            json.dumps([p.task_id, p.prompt, p.payload], sort_keys=True).encode("utf-8", "surrogatepass")
        )
    return f"{source}@{digest.hexdigest()[:16]}"


class DriverKind:
    """What the kinds judged outside the candidate (stdio, call, evalplus) share: their rows read
    one by one (a bad row is one error naming it), and the sample's program with its test
    inputs embedded, or reading them from the problem data sent to each jail once. A kind
    defines `_problem(row)` and `_program(problem, completion, inputs=...)`."""

    def __init__(self, run_all: bool = False):
        self.run_all = run_all

    def problems(self, rows: Sequence[Mapping[str, Any]], source: str) -> list[Problem]:
        problems = []
        for line, row in enumerate(rows, 1):
            try:
                problems.append(self._problem(row))
            except RowError as exc:
                raise row_error(source, line, exc) from None
        return problems

    def program(self, problem: Problem, completion: str, *, guards: bool) -> str:
        return self._program(problem, completion, inputs=True)

    def data(self, problem: Problem) -> bytes:
        """The test inputs, sent to each jail once (base.Task: optional)."""
        return inputs_data(problem.payload["inputs"])

    def program_with_data(self, problem: Problem, completion: str, *, guards: bool) -> str:
        return self._program(problem, completion, inputs=False)

    def _problem(self, row: Mapping[str, Any]) -> Problem:
        raise NotImplementedError

    def _program(self, problem: Problem, completion: str, *, inputs: bool) -> str:
        raise NotImplementedError
