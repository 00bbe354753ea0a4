"""Scheduling decisions as plain synchronous functions: what to request, whether to admit it,
and which server gets it. The async runner only carries them out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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

    def __init__(self, problems: list[Problem], samples: int, generated: dict[str, set[int]], max_n: int,
                 counts: Callable[[], dict[str, tuple[int, int]]], policy: str, stop_after: int = 1):  # fmt: skip
        if policy not in POLICIES[1:]:
            raise ValueError(f"not an adaptive policy: {policy}")
        self._problems = list(problems)
        self._missing = {p.task_id: [i for i in range(samples) if i not in generated.get(p.task_id, ())] for p in problems}
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
            problem = min(ready, key=lambda p: (counts.get(p.task_id, (0, 0))[1], counts.get(p.task_id, (0, 0))[0], position[p.task_id]))
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


@dataclass(slots=True)
class ServerState:
    url: str
    max_seqs: int
    up: bool = False
    retired: bool = False  # gone from the hosts file: finish what runs there, start nothing new
    inflight_requests: int = 0
    inflight_seqs: int = 0
    waiting: int = 0  # requests queued inside the server, as it reports them (other clients too)
    consecutive_failures: int = 0
    open_until: float = 0.0  # circuit breaker: no new request before this (monotonic seconds)
    trips: int = 0  # breaker openings in a row; each doubles the cooldown


BREAKER_THRESHOLD = 3  # consecutive failures that open a server's breaker
BREAKER_COOLDOWN_S = 5.0
BREAKER_MAX_COOLDOWN_S = 60.0


def admits(s: ServerState, now: float) -> bool:
    """Whether the server may get a new request. After its breaker's cooldown a server is
    half-open: one trial request at a time until one succeeds."""
    if not s.up or s.retired or now < s.open_until:
        return False
    return not (s.trips and s.inflight_requests)


def pick_server(servers: Iterable[ServerState], n: int, now: float, avoid: str | None = None) -> ServerState | None:
    """The admitting server with the least outstanding work (our sequences in flight plus what
    it reports waiting) that has room for n more sequences; `avoid` (the server a retry failed
    on) is taken only when no other has room."""
    best, best_key = None, None
    for s in servers:
        if not admits(s, now) or s.inflight_seqs + n > s.max_seqs:
            continue
        key = (s.url == avoid, s.inflight_seqs + s.waiting, s.consecutive_failures)
        if best_key is None or key < best_key:
            best, best_key = s, key
    return best


def record_success(s: ServerState) -> None:
    s.consecutive_failures = 0
    s.trips = 0


def record_failure(s: ServerState, now: float, retry_after: float | None = None) -> bool:
    """Count a failed request; returns True when this opens the server's breaker. A server's
    own Retry-After pauses it for at least that long."""
    s.consecutive_failures += 1
    if retry_after:
        s.open_until = max(s.open_until, now + retry_after)
    if s.consecutive_failures < BREAKER_THRESHOLD and not s.trips:
        return False
    s.open_until = max(s.open_until, now + min(BREAKER_MAX_COOLDOWN_S, BREAKER_COOLDOWN_S * 2**s.trips))
    s.trips += 1
    return True


def next_reopening(servers: Iterable[ServerState], now: float) -> float | None:
    """When the next paused server may take work again, if any is paused."""
    times = [s.open_until for s in servers if s.up and not s.retired and s.open_until > now]
    return min(times) if times else None


def backoff_seconds(attempt: int, jitter: float, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5); `jitter` is a number in [0, 1)."""
    return min(cap, base * 2**attempt) * (0.5 + jitter)
