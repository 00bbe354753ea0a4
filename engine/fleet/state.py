"""What the engine knows about each server, and the decisions made from it: pure, no I/O.

`ServerState` is changed only through its methods: the sweep's requests (in flight, `n`
ignored), the circuit breaker, and what the fleet's probes find (up, retired, waiting). The
functions below decide from a list of them: which server gets a request, when the next paused
one reopens, how a changed hosts file merges in, and when a down server is probed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

BREAKER_THRESHOLD = 3  # consecutive failures that open a server's breaker
BREAKER_COOLDOWN_S = 5.0
BREAKER_MAX_COOLDOWN_S = 60.0
MAX_PROBE_BACKOFF_S = 30.0
REFUSED_PROBE_DELAY_S = 1.0  # a server that refused a connection is probed again this soon


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

    # -- the sweep's requests -------------------------------------------------------------------

    def request_started(self, n: int) -> None:
        self.inflight_requests += 1
        self.inflight_seqs += n

    def choice_finished(self) -> None:
        self.inflight_seqs -= 1

    def request_ended(self, unfinished: int) -> None:
        """The request is over; its `unfinished` choices no longer occupy the server."""
        self.inflight_requests -= 1
        self.inflight_seqs -= unfinished

    def mark_ignores_n(self) -> bool:
        """From now on one sample per request; True when this is news."""
        news, self.ignores_n = not self.ignores_n, True
        return news

    # -- the circuit breaker --------------------------------------------------------------------

    def admits(self, now: float) -> bool:
        """Whether the server may get a new request. After its breaker's cooldown a server is
        half-open: one trial request at a time until one succeeds."""
        if not self.up or self.retired or now < self.open_until:
            return False
        return not (self.trips and self.inflight_requests)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.trips = 0

    def record_failure(self, now: float, retry_after: float | None = None) -> bool:
        """Count a failed request; returns True when this opens the breaker. A server's own
        Retry-After pauses it for at least that long."""
        self.consecutive_failures += 1
        if retry_after:
            self.open_until = max(self.open_until, now + retry_after)
        if self.consecutive_failures < BREAKER_THRESHOLD and not self.trips:
            return False
        cooldown = min(BREAKER_MAX_COOLDOWN_S, BREAKER_COOLDOWN_S * 2**self.trips)
        self.open_until = max(self.open_until, now + cooldown)
        self.trips += 1
        return True

    # -- what the probes find -------------------------------------------------------------------

    def set_up(self, up: bool) -> bool:
        """Record a health verdict; True when the server just came up (it may take work again)."""
        came_up, self.up = up and not self.up, up
        return came_up

    def set_waiting(self, waiting: int) -> None:
        self.waiting = waiting

    def set_retired(self, retired: bool) -> None:
        self.retired = retired

    @property
    def serving(self) -> bool:
        """Up and in the hosts file: what `engine_server_up` shows."""
        return self.up and not self.retired


def pick_server(
    servers: Iterable[ServerState], n: int, now: float, avoid: str | None = None
) -> ServerState | None:
    """The admitting server with the least outstanding work (our sequences in flight plus what
    it reports waiting) that has room for n more sequences; `avoid` (the server a retry failed
    on) is taken only when no other has room."""
    best, best_key = None, None
    for s in servers:
        if not s.admits(now) or s.inflight_seqs + n > s.max_seqs:
            continue
        key = (s.url == avoid, s.inflight_seqs + s.waiting, s.consecutive_failures)
        if best_key is None or key < best_key:
            best, best_key = s, key
    return best


def next_reopening(servers: Iterable[ServerState], now: float) -> float | None:
    """When the next paused server may take work again, if any is paused."""
    times = [s.open_until for s in servers if s.serving and s.open_until > now]
    return min(times) if times else None


@dataclass(frozen=True, slots=True)
class HostsChange:
    servers: list[ServerState]  # the fleet after the change
    joined: list[str] = field(default_factory=list)
    rejoined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # retired: their running requests finish


def merge_hosts(servers: list[ServerState], urls: list[str], max_seqs: int) -> HostsChange:
    """The fleet after the hosts file changed to `urls`: new servers join (down until probed),
    retired ones come back, missing ones retire, and retired ones with nothing running are
    forgotten. Changes the states it keeps."""
    known = {s.url: s for s in servers}
    kept = list(servers)
    joined, rejoined, left = [], [], []
    for url in urls:
        if url not in known:
            joined.append(url)
            kept.append(ServerState(url, max_seqs))
        elif known[url].retired:
            known[url].set_retired(False)
            rejoined.append(url)
    wanted = set(urls)
    for server in kept:
        if server.url not in wanted and not server.retired:
            server.set_retired(True)
            left.append(server.url)
    kept = [s for s in kept if not (s.retired and s.inflight_requests == 0)]
    return HostsChange(kept, joined, rejoined, left)


@dataclass(slots=True)
class ProbeSchedule:
    """When each server is probed next: at the fleet's interval while it is healthy, with
    exponential back-off (1 s doubling to MAX_PROBE_BACKOFF_S) while it is down."""

    _next: dict[str, tuple[float, float]] = field(default_factory=dict)  # url -> (due, backoff)

    def due(self, url: str, now: float) -> bool:
        return self._next.get(url, (0.0, 0.0))[0] <= now

    def healthy(self, url: str, now: float, interval: float) -> None:
        self._next[url] = (now + interval, 0.0)

    def unhealthy(self, url: str, now: float) -> float:
        """Back off; returns the delay before the next probe."""
        backoff = min(MAX_PROBE_BACKOFF_S, max(1.0, self._next.get(url, (0.0, 0.0))[1] * 2))
        self._next[url] = (now + backoff, backoff)
        return backoff

    def refused(self, url: str, now: float) -> None:
        """A request could not connect: probe soon, backing off from there."""
        self._next[url] = (now + REFUSED_PROBE_DELAY_S, REFUSED_PROBE_DELAY_S)
