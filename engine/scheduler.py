"""Server choice as plain synchronous functions: a server's state, its circuit breaker, and which
server gets a request. The sweep (engine/sweep/generate.py) only carries the decisions out;
what to request is engine/sweep/plan.py's, whether to admit it engine/sweep/admission.py's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
    ignores_n: bool = False  # answers one choice whatever n asks (llama.cpp-style servers, some gateways)
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


def pick_server(
    servers: Iterable[ServerState], n: int, now: float, avoid: str | None = None
) -> ServerState | None:
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
