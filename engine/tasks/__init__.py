"""Task kinds: what a problem is and how a completion is judged (the seam: engine/tasks/base.py).

    dataset = load_dataset("humaneval")             # or a path, a hub name; task=None: detected
    dataset.task.program(dataset.problems[0], completion, guards=True)

TASKS maps each kind's name (`--task NAME`, the stored `task_kind`) to its Task; `detect(rows)`
names the kind a dataset's fields fit. A new kind is one module here plus one line in TASKS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import DatasetError
from engine.records import Problem
from engine.tasks.base import Judgement, Task
from engine.tasks.call import Call
from engine.tasks.evalplus import Evalplus
from engine.tasks.humaneval import HumanEval
from engine.tasks.humaneval import problem as legacy_problem
from engine.tasks.mbpp import Mbpp
from engine.tasks.source import EMBEDDED, read_rows
from engine.tasks.stdio import Stdio

TASKS: dict[str, Task] = {task.name: task for task in (HumanEval(), Mbpp(), Stdio(), Call(), Evalplus())}
DEFAULT_KIND = HumanEval.name  # the embedded dataset's kind
# Runs stored before task kinds existed are of this kind; legacy_problem() rebuilds their problems.
LEGACY_KIND = HumanEval.name

__all__ = [
    "DEFAULT_KIND",
    "EMBEDDED",
    "LEGACY_KIND",
    "TASKS",
    "Dataset",
    "Judgement",
    "Problem",
    "Task",
    "chat_messages",
    "detect",
    "extract_completion",
    "get_task",
    "legacy_problem",
    "load_dataset",
    "load_problems",
]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset loaded as one kind's problems (all of them: `limit` is the sweep's business)."""

    source: str  # what --dataset said
    task: Task
    problems: list[Problem]

    @property
    def fingerprint(self) -> str:
        return self.task.fingerprint(self.source, self.problems)


def get_task(name: str) -> Task:
    """The kind named `name`; DatasetError (one line) listing the known ones if there is none."""
    if name not in TASKS:
        raise DatasetError(f"unknown task kind {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]


def detect(rows: Sequence[Mapping[str, Any]], source: str = "dataset") -> str:
    """The kind whose fields the rows have; of several, the one that asks for the most fields
    (the most specific: an EvalPlus row is also a HumanEval row). DatasetError if none fits."""
    if not rows:
        raise DatasetError(f"dataset {source!r}: no rows")
    present = {field for field, value in rows[0].items() if value is not None}  # Parquet fills gaps with None
    fitting = [task for task in TASKS.values() if task.fields <= present]
    if not fitting:
        raise DatasetError(
            f"dataset {source!r}: its fields ({', '.join(sorted(present)) or 'none'}) fit no task kind;"
            f" name one with --task ({', '.join(TASKS)})"
        )
    return max(fitting, key=lambda task: len(task.fields)).name


def load_dataset(dataset: str = EMBEDDED, task: str | None = None) -> Dataset:
    """Read a dataset and turn its rows into the problems of `task` (detected when None)."""
    chosen = get_task(task) if task is not None else None
    rows = read_rows(dataset)
    kind = chosen or TASKS[detect(rows, dataset)]
    problems = kind.problems(rows, dataset)
    _check_unique(problems, dataset)
    return Dataset(dataset, kind, problems)


def load_problems(
    dataset: str = EMBEDDED, limit: int | None = None, task: str | None = None
) -> list[Problem]:
    """The first `limit` problems of a dataset (all when None), in file order."""
    problems = load_dataset(dataset, task).problems
    return problems[:limit] if limit is not None else problems


def _check_unique(problems: list[Problem], dataset: str) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.task_id in seen:
            raise DatasetError(f"dataset {dataset!r}: task_id {p.task_id!r} appears twice")
        seen.add(p.task_id)


def chat_messages(problem: Problem, system_prompt: str) -> list[dict[str, str]]:
    """The problem's prompt in chat form, as its kind writes it."""
    return TASKS[problem.kind].chat_messages(problem, system_prompt)


def extract_completion(problem: Problem, answer: str) -> str:
    """The completion in a chat answer to the problem, as its kind takes it out."""
    return TASKS[problem.kind].extract(problem, answer)
