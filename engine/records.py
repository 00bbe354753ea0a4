"""Records that cross module boundaries: frozen, slotted, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str | None = None


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
