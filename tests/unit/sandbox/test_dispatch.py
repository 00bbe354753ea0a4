"""sandbox/forkserver/dispatch.py: which jail gets the next program."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from sandbox.forkserver.dispatch import QUEUE_BEHIND_S, choose


@dataclass
class Jail:
    in_flight: int
    head_started: float
    depth: int = 2


jails = st.lists(
    st.builds(Jail, st.integers(0, 2), st.floats(0, 10, allow_nan=False), st.integers(1, 3)), max_size=6
)


@given(jails, st.floats(0, 20, allow_nan=False))
def test_the_least_loaded_jail_that_is_not_full_nor_stuck_behind_a_long_program(pool, now) -> None:
    """Invariant: the choice has a free place; no other eligible jail holds fewer programs; a
    jail whose program has run past QUEUE_BEHIND_S never gets a second one; None only when no
    jail is eligible (including no jails at all)."""

    def eligible(j: Jail) -> bool:
        return j.in_flight < j.depth and not (j.in_flight and now - j.head_started > QUEUE_BEHIND_S)

    chosen = choose(pool, now=now)
    if chosen is None:
        assert not any(eligible(j) for j in pool)
    else:
        assert eligible(chosen)
        assert all(chosen.in_flight <= j.in_flight for j in pool if eligible(j))


def test_idle_first_then_the_most_recent_then_stand_ins() -> None:
    idle, fresh, old = Jail(0, 0.0), Jail(1, 9.9), Jail(1, 9.8)
    assert choose([fresh, idle, old], now=10.0) is idle
    assert choose([old, fresh], now=10.0) is fresh
    broken = Jail(0, 0.0, depth=1)
    assert choose([Jail(2, 9.9)], [broken], now=10.0) is broken
    assert choose([Jail(1, 1.0)], now=10.0) is None  # its program has run 9 s: probably a loop
    assert choose([], now=10.0) is None
