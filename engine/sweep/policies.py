"""Sampling policies beyond uniform: which request to make next, decided from the verdicts so
far. A plain synchronous iterator, like `plan.plan_requests`; the sweep carries it out."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from engine.records import Problem
from engine.sweep.plan import Request, contiguous_runs

POLICIES = ("uniform", "until-solved", "hardest-first")


class AdaptivePlan:
    """Requests decided by the verdicts so far (`counts()`: task_id -> (verified, passed)).

    A problem has one request at a time, the next only once the previous one's verdicts are in,
    and request sizes double (1, 2, 4 ... up to max_n), so that an easy problem costs few
    samples. `until-solved`: problems in order, each stopping after `stop_after` passes or at
    `samples`. `hardest-first` (Kazdan et al.'s dynamic sampling): each request to the problem
    with the fewest passes so far (then the fewest samples), every problem up to `samples`.

    next() gives a Request, None while every open problem waits for its verdicts, and stops
    when every problem is done."""

    def __init__(
        self,
        problems: list[Problem],
        samples: int,
        generated: dict[str, set[int]],
        max_n: int,
        counts: Callable[[], dict[str, tuple[int, int]]],
        policy: str,
        stop_after: int = 1,
    ):
        if policy not in POLICIES[1:]:
            raise ValueError(f"not an adaptive policy: {policy}")
        self._problems = list(problems)
        self._missing = {
            p.task_id: [i for i in range(samples) if i not in generated.get(p.task_id, ())] for p in problems
        }
        self._issued = {p.task_id: len(generated.get(p.task_id, ())) for p in problems}
        self._max_n = max_n
        self._counts = counts
        self._policy = policy
        self._stop_after = stop_after

    def __iter__(self) -> AdaptivePlan:
        return self

    def _open(self, counts: dict[str, tuple[int, int]]) -> list[Problem]:
        def done(p: Problem) -> bool:
            solved = self._policy == "until-solved" and counts.get(p.task_id, (0, 0))[1] >= self._stop_after
            return solved or not self._missing[p.task_id]

        return [p for p in self._problems if not done(p)]

    def _ready(self, counts: dict[str, tuple[int, int]]) -> list[Problem]:
        """Open problems whose every issued sample has its verdict."""
        return [p for p in self._open(counts) if counts.get(p.task_id, (0, 0))[0] >= self._issued[p.task_id]]

    def has_ready(self) -> bool:
        return bool(self._ready(self._counts()))

    def __next__(self) -> Request | None:
        counts = self._counts()
        if not self._open(counts):
            raise StopIteration
        ready = self._ready(counts)
        if not ready:
            return None
        if self._policy == "hardest-first":
            position = {p.task_id: i for i, p in enumerate(self._problems)}
            problem = min(
                ready,
                key=lambda p: (
                    counts.get(p.task_id, (0, 0))[1],
                    counts.get(p.task_id, (0, 0))[0],
                    position[p.task_id],
                ),
            )
        else:
            problem = ready[0]
        missing = self._missing[problem.task_id]
        size = min(self._max_n, max(1, counts.get(problem.task_id, (0, 0))[0]))
        start, n = next(contiguous_runs(missing, size))
        del missing[:n]
        self._issued[problem.task_id] += n
        return Request(problem, start, n)


def more_ready(plan: Iterator) -> bool:
    """After a drain: whether an adaptive plan has requests to make now."""
    return isinstance(plan, AdaptivePlan) and plan.has_ready()


def samples_owed(policy: str, samples: int, stop_after: int, n: int, c: int) -> int:
    """Samples a problem still lacks at the end of a run: an until-solved problem with its
    passes owes none (for `engine run`'s exit status and "missing" count)."""
    if policy == "until-solved" and c >= stop_after:
        return 0
    return max(0, samples - n)
