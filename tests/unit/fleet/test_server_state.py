"""engine.fleet.state without a loop: ServerState's methods, merge_hosts, ProbeSchedule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fleet.state import (
    MAX_PROBE_BACKOFF_S,
    REFUSED_PROBE_DELAY_S,
    ProbeSchedule,
    ServerState,
    merge_hosts,
    pick_server,
)

# A request's life on a server: started with n choices, some finish, then it ends.
LIVES = st.lists(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), max_size=20)


@settings(max_examples=200, deadline=None)
@given(LIVES, st.randoms(use_true_random=False))
def test_in_flight_counts_return_to_zero_whatever_the_interleaving(lives, rng):
    """Invariant: however requests interleave, the counts are never negative, and once every
    request ended nothing is in flight."""
    s = ServerState("http://a", 64, up=True)
    steps = {i: ["start"] + ["finish"] * done + ["end"] for i, (_, done) in enumerate(lives)}
    finished = dict.fromkeys(steps, 0)
    while any(steps.values()):
        i = rng.choice([i for i, left in steps.items() if left])
        n = lives[i][0]
        step = steps[i].pop(0)
        if step == "start":
            s.request_started(n)
        elif step == "finish":
            s.choice_finished()
            finished[i] += 1
        else:
            s.request_ended(n - finished[i])
        assert s.inflight_requests >= 0 and s.inflight_seqs >= 0
    assert s.inflight_requests == 0 and s.inflight_seqs == 0


def test_mark_ignores_n_is_news_once():
    s = ServerState("http://a", 8)
    assert s.mark_ignores_n() and s.ignores_n
    assert not s.mark_ignores_n() and s.ignores_n


def test_set_up_says_when_a_server_came_up_and_serving_needs_it_in_the_hosts_file():
    s = ServerState("http://a", 8)
    assert not s.set_up(False) and not s.serving
    assert s.set_up(True) and s.serving
    assert not s.set_up(True)  # already up: no news
    s.set_retired(True)
    assert s.up and not s.serving and not s.admits(0.0)


def test_pick_server_skips_a_server_without_room_for_n():
    a, b = ServerState("a", 16, up=True), ServerState("b", 16, up=True)
    a.request_started(10)
    assert pick_server([a, b], 8, 0.0) is b
    b.request_started(10)
    assert pick_server([a, b], 8, 0.0) is None and pick_server([a, b], 6, 0.0) is a


def test_merge_hosts_joins_rejoins_retires_and_forgets():
    a, b, c = (ServerState(u, 8, up=True) for u in ("http://a", "http://b", "http://c"))
    b.request_started(2)  # b leaves with a request running: kept until it ends
    change = merge_hosts([a, b, c], ["http://a", "http://d"], 8)
    assert [s.url for s in change.servers] == ["http://a", "http://b", "http://d"]
    assert change.joined == ["http://d"] and change.rejoined == [] and change.left == ["http://b", "http://c"]
    assert b.retired and not change.servers[2].up  # new servers are down until probed
    again = merge_hosts(change.servers, ["http://a", "http://b", "http://d"], 8)
    assert again.rejoined == ["http://b"] and not b.retired and again.left == [] and again.joined == []


def test_merge_hosts_with_no_change_and_with_an_empty_file():
    servers = [ServerState("http://a", 8, up=True)]
    same = merge_hosts(servers, ["http://a"], 8)
    assert same.servers == servers and (same.joined, same.rejoined, same.left) == ([], [], [])
    empty = merge_hosts(servers, [], 8)
    assert empty.servers == [] and empty.left == ["http://a"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), max_size=30))
def test_probe_backoff_doubles_while_down_up_to_the_cap_and_resets_when_up(healthy):
    """Invariant: a down server's delay is 1 s doubling per failed probe, never above the cap;
    a healthy probe brings it back to the fleet's interval."""
    schedule, now, down_in_a_row = ProbeSchedule(), 0.0, 0
    for up in healthy:
        assert schedule.due("u", now)
        if up:
            schedule.healthy("u", now, 2.0)
            down_in_a_row, delay = 0, 2.0
        else:
            delay = schedule.unhealthy("u", now)
            down_in_a_row += 1
            assert delay == min(MAX_PROBE_BACKOFF_S, 2.0 ** (down_in_a_row - 1))
        assert not schedule.due("u", now + delay - 0.01)
        now += delay


def test_a_refused_connection_is_probed_soon_then_backs_off_from_there():
    schedule = ProbeSchedule()
    schedule.refused("u", 10.0)
    assert not schedule.due("u", 10.0) and schedule.due("u", 10.0 + REFUSED_PROBE_DELAY_S)
    assert schedule.unhealthy("u", 11.0) == 2 * REFUSED_PROBE_DELAY_S
    assert schedule.due("other", 0.0)  # never probed: due at once
