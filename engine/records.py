"""Records that cross module boundaries: frozen, slotted, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a dataset, whatever its kind (engine/tasks/ says what kinds there are).

    `prompt` is what a base model continues (/v1/completions); `payload` is what only the kind
    reads (e.g. the tests, the function's name, a reference solution): plain JSON-able values,
    treated as read-only, stored with the run. `kind` names its task kind (engine.tasks.TASKS)."""

    task_id: str
    prompt: str
    kind: str = ""  # "": none (records built by hand, in tests of the parts that never judge)
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished generation, before verification."""

    task_id: str
    sample_index: int
    completion: str
    completion_tokens: int
    finish_reason: str
    server: str
    requested_at: float  # unix seconds
    first_token_at: float | None
    finished_at: float
    response: str | None = None  # a chat model's whole answer, when `completion` was cut out of it
