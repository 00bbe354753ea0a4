"""Retries: a request that fails after k of its n choices is asked again for exactly the rest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FakeFleet, Fault, MemoryStore, ScriptedClient, make_sweep, problems, run

from engine.sweep.plan import Request, RetryQueue, retry_requests


def _requested(client: ScriptedClient) -> list[tuple[str, int, int, int, str | None]]:
    return [(r.problem.task_id, r.start, r.n, r.attempt, r.avoid) for _, r in client.calls]


def _indices(requests) -> list[int]:
    return sorted(i for _, start, n, _, _ in requests for i in range(start, start + n))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 8), k=st.integers(0, 8), max_n=st.integers(1, 8))
def test_a_request_that_fails_after_k_of_n_is_retried_for_exactly_the_rest(n, k, max_n):
    """Invariant: when the first request (n samples) breaks after k < n choices, the retries ask
    for samples k..n-1 exactly once each (in requests of at most request_n), as attempt 1, away
    from the server that failed; when k >= n (every choice finished, then the stream broke),
    nothing is asked again."""
    client = ScriptedClient({0: Fault("retryable", k)})
    sweep = make_sweep(problem_count=1, samples=n, client=client, request_n=max(max_n, n), fleet=FakeFleet(2))
    run(sweep)  # request_n >= n: the plan asks for all n at once
    first_server, first = client.calls[0][0], client.calls[0][1]
    assert (first.start, first.n) == (0, n)
    retries = _requested(client)[1:]
    assert _indices(retries) == list(range(min(k, n), n))
    assert all(attempt == 1 and avoid == first_server for _, _, _, attempt, avoid in retries)
    assert all(r[2] <= sweep.options.request_n for r in retries)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8))
def test_a_server_that_ignores_n_gets_the_rest_one_sample_per_request(n):
    """Invariant: after one choice where n were asked, the other n-1 samples are asked for again
    at once, as no failure (attempt 0, no server avoided), one sample per request."""
    client = ScriptedClient({0: Fault("ignores_n")})
    fleet = FakeFleet(1)
    sweep = make_sweep(problem_count=1, samples=n, client=client, fleet=fleet, request_n=8)
    run(sweep)
    assert fleet.servers[0].ignores_n
    rest = _requested(client)[1:]
    assert _indices(rest) == list(range(1, n))
    assert all(n_ == 1 and attempt == 0 for _, _, n_, attempt, _ in rest)


def test_retries_run_out_into_generation_failures():
    """Invariant: a sample that fails retries + 1 times is recorded as failed, once, and never
    verified; the others of the problem are stored as usual."""
    faults = {call: Fault("retryable", 0) for call in range(4)}  # the first request and 3 retries
    store = MemoryStore()
    sweep = make_sweep(problem_count=1, samples=2, client=ScriptedClient(faults), store=store, retries=3)
    run(sweep)
    assert sorted(store.failures) == [("T/0", 0), ("T/0", 1)]
    assert not store.samples and not store.verdicts


def test_a_refused_request_is_not_retried():
    """Invariant: a request refused for good (HTTP 400) is not asked again: its owed samples are
    recorded as failed at once."""
    store = MemoryStore()
    client = ScriptedClient({0: Fault("fatal", 1)})
    sweep = make_sweep(problem_count=1, samples=3, client=client, store=store, request_n=4)
    run(sweep)
    assert len(client.calls) == 1 and sorted(store.failures) == [("T/0", 1), ("T/0", 2)]
    assert [s.sample_index for s in store.samples] == [0]


@given(indices=st.lists(st.integers(0, 50), unique=True).map(sorted), max_n=st.integers(1, 8))
def test_retry_requests_cover_the_owed_samples_exactly(indices, max_n):
    """Invariant: the retry requests of any owed set ask for each owed sample once and for no other,
    none larger than max_n (empty owed: no request)."""
    request = Request(problems(1)[0], 0, 51)
    retries = retry_requests(request, indices, 2, max_n, "http://s0")
    assert sorted(i for r in retries for i in r.indices) == indices
    assert all(1 <= r.n <= max_n and r.attempt == 2 and r.avoid == "http://s0" for r in retries)


def test_the_retry_queue_hands_out_only_what_is_due_earliest_first():
    """Invariant: nothing before its time; earliest first, ties in arrival order; clear() empties."""
    p = problems(1)[0]
    queue = RetryQueue()
    assert queue.pop_due(1e9) is None and queue.next_due() is None
    queue.push([Request(p, 5, 1)], due=2.0)
    queue.push([Request(p, 1, 1), Request(p, 2, 1)], due=1.0)
    assert queue.pop_due(0.5) is None and queue.next_due() == 1.0
    assert [queue.pop_due(3.0).start for _ in range(3)] == [1, 2, 5]
    queue.push([Request(p, 0, 1)], due=0.0)
    queue.clear()
    assert len(queue) == 0
