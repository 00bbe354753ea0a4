"""What the store keeps of a verdict."""

from __future__ import annotations

from dataclasses import dataclass

from engine.tasks import Judgement
from sandbox import Outcome


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    task_id: str
    sample_index: int
    verdict: str
    detail: str
    output: str
    wall_s: float
    backend: str
    limits: dict
    cpu_s: float = 0.0
    reused: bool = False
    tests_passed: int | None = None  # multi-test kinds only
    tests_total: int | None = None
    base_passed: bool | None = None  # EvalPlus-style only

    @classmethod
    def of(
        cls, task_id: str, sample_index: int, outcome: Outcome, judged: Judgement | None = None
    ) -> StoredVerdict:
        """Everything the store keeps of an Outcome, judged by its task kind (the Verifier's own
        judgement when `judged` is None): the one way a verdict is recorded."""
        j = judged or Judgement(
            outcome.verdict, outcome.detail, outcome.tests_passed, outcome.tests_total, outcome.base_passed
        )
        return cls(
            task_id,
            sample_index,
            j.verdict.value,
            j.detail,
            outcome.output,
            outcome.wall_s,
            outcome.backend,
            outcome.limits.to_dict(),
            outcome.cpu_s,
            outcome.reused,
            j.tests_passed,
            j.tests_total,
            j.base_passed,
        )
