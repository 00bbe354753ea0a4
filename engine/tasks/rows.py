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
