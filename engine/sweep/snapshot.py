"""A read-only snapshot of a running sweep: every live fact (progress, rates, servers, queue,
stall) computed once, in one place, and read by the progress line, the Prometheus sweep state
and the live page alike, so they cannot disagree."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

STALL_AFTER_S = 10.0  # running with work left and no verdict for this long: stalled (everywhere)
RATE_WINDOW_S = 30.0  # rates are measured over this much of the recent past
_READINGS_KEPT = 4096  # a bound on the meter's memory, however often it is read


@dataclass(frozen=True, slots=True)
class ServerView:
    url: str
    up: bool  # answers its health check and is still in the hosts file
    inflight: int  # our open streaming requests to it


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: str  # running, draining (a stop was asked for), finished or stopped
    target: int  # problems x samples per problem
    verified: int  # samples of the target with a verdict, resumes included
    problems: int
    solved: int  # problems with at least one passing sample
    pass_at_1: float | None
    tokens: int  # completion tokens received by this process
    samples_per_s: float  # over the last RATE_WINDOW_S
    tokens_per_s: float
    fleet: tuple[ServerView, ...]
    queue_depth: int  # samples waiting for a sandbox
    queue_held: int  # samples admitted and not yet verified
    queue_capacity: int
    no_progress_s: float  # since the last verdict, or since the sweep started if it had none

    @property
    def servers_up(self) -> int:
        return sum(s.up for s in self.fleet)

    @property
    def servers(self) -> int:
        return len(self.fleet)

    @property
    def remaining(self) -> int:
        return max(0, self.target - self.verified)

    @property
    def stalled(self) -> bool:
        """Running with work left and no verdict for STALL_AFTER_S."""
        return self.state == "running" and self.remaining > 0 and self.no_progress_s >= STALL_AFTER_S

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None when it cannot be told (no rate, or a stall)."""
        if not self.remaining:
            return 0.0
        if self.samples_per_s <= 0 or self.stalled:
            return None
        return self.remaining / self.samples_per_s


class ServerLike(Protocol):
    url: str
    up: bool
    retired: bool
    inflight_requests: int


def fleet_view(servers: Iterable[ServerLike]) -> tuple[ServerView, ...]:
    """The fleet as the snapshot shows it: a retired server (gone from the hosts file) is not up."""
    return tuple(ServerView(s.url, s.up and not s.retired, s.inflight_requests) for s in servers)


def progress_of(counts: dict[str, tuple[int, int]], problems: Iterable[str]) -> tuple[int, int]:
    """(verified, solved) over the sweep's problems, from task_id -> (verified, passed)."""
    wanted = [counts.get(t, (0, 0)) for t in problems]
    return sum(n for n, _ in wanted), sum(1 for _, c in wanted if c > 0)


class Meter:
    """Rates over the last RATE_WINDOW_S, from readings of (time, verified, tokens) taken
    whenever a snapshot is. The oldest reading kept is the newest one at least a window old,
    so after a window of silence the rate is 0, not the last one seen."""

    def __init__(self, now: float, verified: int, tokens: int = 0):
        self._readings: deque[tuple[float, int, int]] = deque(
            [(now, verified, tokens)], maxlen=_READINGS_KEPT
        )

    def rates(self, now: float, verified: int, tokens: int) -> tuple[float, float]:
        """(samples/s, tokens/s), after recording this reading."""
        readings = self._readings
        readings.append((now, verified, tokens))
        while len(readings) > 2 and now - readings[1][0] >= RATE_WINDOW_S:
            readings.popleft()
        then, verified_then, tokens_then = readings[0]
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        return (verified - verified_then) / span, (tokens - tokens_then) / span
