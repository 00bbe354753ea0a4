"""Scheduling decisions as plain synchronous functions: what to request and whether to admit
it (which server gets it: `engine.fleet.state`). The async runner only carries them out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from engine.fleet.state import ServerState
from engine.records import Problem


@dataclass(frozen=True, slots=True)
class Request:
    """Samples start .. start+n-1 of one problem, asked for in one streaming request."""

    problem: Problem
    start: int
    n: int
    attempt: int = 0  # failures so far of these samples
    avoid: str | None = None  # the server the last attempt failed on


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
        if start is not None and (i != prev + 1 or i - start >= max_n):
            yield start, prev - start + 1
            start = None
        if start is None:
            start = i
        prev = i
    if start is not None:
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


def take_for(request: Request, server: ServerState) -> tuple[Request, Request | None]:
    """The part of `request` that `server` gets now, and the rest for the next server (None when
    it takes all): a server that ignores `n` gets one sample per request."""
    if not server.ignores_n or request.n == 1:
        return request, None
    return replace(request, n=1), replace(request, start=request.start + 1, n=request.n - 1)


class Admission:
    """Backpressure: a request is admitted only while the bounded queue has room for every
    sample it will produce. Slots are held from admission until a sample's verdict is in, so
    live streams never wait on the queue and memory stays bounded."""

    __slots__ = ("capacity", "reserved")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reserved = 0

    def can_admit(self, n: int) -> bool:
        return self.reserved + n <= self.capacity

    def reserve(self, n: int) -> None:
        self.reserved += n

    def release(self, n: int = 1) -> None:
        self.reserved -= n
        assert self.reserved >= 0, "released more queue slots than were reserved"


def backoff_seconds(attempt: int, jitter: float, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5); `jitter` is a number in [0, 1)."""
    return min(cap, base * 2**attempt) * (0.5 + jitter)
