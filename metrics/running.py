"""Running per-problem counts, from which pass@k is computed whenever someone asks."""

from __future__ import annotations

from metrics.passk import ks_for, pass_at_k_table


class RunningPassAtK:
    """n (verified samples) and c (passed) per problem, updated as verdicts arrive."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}

    def add(self, task_id: str, passed: bool, count: int = 1) -> None:
        nc = self._counts.setdefault(task_id, [0, 0])
        nc[0] += count
        if passed:
            nc[1] += count

    def counts(self) -> dict[str, tuple[int, int]]:
        return {task: (n, c) for task, (n, c) in self._counts.items()}

    def scores(self, ks: list[int] | None = None) -> dict[int, float]:
        """{k: mean pass@k over problems with at least k samples}; by default every k up to the
        most samples any problem has."""
        if ks is None and self._counts:
            ks = ks_for(max(n for n, _ in self._counts.values()))
        return pass_at_k_table(self.counts(), ks)
