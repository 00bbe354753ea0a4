"""Planning requests, as plain synchronous code: which samples to ask for, in which requests, with
which seeds, and when a failed request's samples are asked for again. No I/O, no event loop."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from engine.records import Problem


@dataclass(frozen=True, slots=True)
class Request:
    """Samples start .. start+n-1 of one problem, asked for in one streaming request."""

    problem: Problem
    start: int
    n: int
    attempt: int = 0  # failures so far of these samples
    avoid: str | None = None  # the server the last attempt failed on

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.n)


def problem_seed(base_seed: int, task_id: str) -> int:
    """A stable per-problem seed. vLLM gives choice i of a request with seed s the seed s+i, so
    asking for sample k with seed problem_seed + k makes every sample reproducible however the
    samples are split into requests (and whichever server answers)."""
    digest = hashlib.sha256(f"{base_seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x3FFFFFFF


def contiguous_runs(indices: Iterable[int], max_n: int) -> Iterator[tuple[int, int]]:
    """Sorted sample indices as (start, n) runs of consecutive indices, each n <= max_n."""
    start = prev = None
    for i in indices:
        if start is not None and prev is not None and (i != prev + 1 or i - start >= max_n):
            yield start, prev - start + 1
            start = None
        if start is None:
            start = i
        prev = i
    if start is not None and prev is not None:
        yield start, prev - start + 1


def plan_requests(
    problems: Iterable[Problem], samples: int, generated: dict[str, set[int]], max_n: int
) -> Iterator[Request]:
    """Requests for every sample not yet generated, problem by problem, produced lazily so
    memory does not grow with the size of the sweep."""
    for problem in problems:
        done = generated.get(problem.task_id, set())
        missing = (i for i in range(samples) if i not in done)
        for start, n in contiguous_runs(missing, max_n):
            yield Request(problem, start, n)


class TakesN(Protocol):
    ignores_n: bool  # answers one choice whatever n asks


def take_for(request: Request, server: TakesN) -> tuple[Request, Request | None]:
    """The part of `request` that `server` gets now, and the rest for the next server (None when
    it takes all): a server that ignores `n` gets one sample per request."""
    if not server.ignores_n or request.n == 1:
        return request, None
    return replace(request, n=1), replace(request, start=request.start + 1, n=request.n - 1)


def backoff_seconds(attempt: int, jitter: float, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5); `jitter` is a number in [0, 1)."""
    return min(cap, base * 2**attempt) * (0.5 + jitter)


def retry_requests(
    request: Request, indices: list[int], attempt: int, max_n: int, avoid: str | None
) -> list[Request]:
    """The samples of `request` still owed (`indices`, sorted), asked for again: exactly those,
    in runs of at most max_n."""
    return [
        Request(request.problem, start, n, attempt, avoid=avoid)
        for start, n in contiguous_runs(indices, max_n)
    ]


class RetryQueue:
    """Requests waiting for their retry time, earliest first (ties in the order they came)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Request]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, requests: Iterable[Request], due: float) -> None:
        for request in requests:
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, request))

    def pop_due(self, now: float) -> Request | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        """Forget every retry: a stopping sweep asks for them again when it resumes."""
        self._heap.clear()
