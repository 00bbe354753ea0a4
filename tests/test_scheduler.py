import pytest
from engine.records import Problem
from engine.scheduler import (
    Admission,
    ServerState,
    admits,
    backoff_seconds,
    contiguous_runs,
    next_reopening,
    pick_server,
    plan_requests,
    problem_seed,
    record_failure,
    record_success,
)

P = [Problem(f"T/{i}", "p", "t", "f") for i in range(3)]


def test_contiguous_runs_split_on_gaps_and_size():
    assert list(contiguous_runs([0, 1, 2, 5, 6, 9], 64)) == [(0, 3), (5, 2), (9, 1)]
    assert list(contiguous_runs(range(10), 4)) == [(0, 4), (4, 4), (8, 2)]
    assert list(contiguous_runs([], 4)) == []


def test_plan_requests_skips_generated_samples_and_is_lazy():
    plan = plan_requests(P, 10, {"T/0": set(range(10)), "T/1": {0, 1, 5}}, 4)
    first = next(plan)
    assert (first.problem.task_id, first.start, first.n) == ("T/1", 2, 3)
    rest = [(r.problem.task_id, r.start, r.n) for r in plan]
    assert rest == [("T/1", 6, 4), ("T/2", 0, 4), ("T/2", 4, 4), ("T/2", 8, 2)]
    big = plan_requests(P * 100_000, 1000, {}, 64)  # 300k problems: nothing is built up front
    assert next(big).n == 64


def test_admission_bounds_reserved_slots():
    a = Admission(100)
    assert a.can_admit(64)
    a.reserve(64)
    assert not a.can_admit(64) and a.can_admit(36)
    a.release(30)
    assert a.can_admit(64)


def test_pick_server_least_outstanding_healthy_with_room():
    a, b, c = ServerState("a", 128, up=True), ServerState("b", 128, up=True), ServerState("c", 128, up=False)
    a.inflight_seqs = 64
    assert pick_server([a, b, c], 64, 0.0) is b
    b.inflight_seqs = 100
    assert pick_server([a, b, c], 64, 0.0) is a
    a.inflight_seqs = 100
    assert pick_server([a, b, c], 64, 0.0) is None


def test_pick_server_counts_what_the_server_reports_waiting_and_avoids_the_failed_one():
    a, b = ServerState("a", 256, up=True), ServerState("b", 256, up=True)
    a.inflight_seqs, b.inflight_seqs, b.waiting = 32, 0, 40  # b is busy with other clients' work
    assert pick_server([a, b], 16, 0.0) is a
    assert pick_server([a, b], 16, 0.0, avoid="a") is b
    b.inflight_seqs = 250
    assert pick_server([a, b], 16, 0.0, avoid="a") is a  # the only one with room
    b.retired = True
    b.inflight_seqs = 0
    assert pick_server([a, b], 16, 0.0, avoid="a") is a


def test_breaker_opens_after_consecutive_failures_then_half_opens():
    s = ServerState("s", 256, up=True)
    assert not record_failure(s, 0.0) and not record_failure(s, 0.0)
    assert admits(s, 0.0)
    assert record_failure(s, 0.0)  # third in a row opens it
    assert not admits(s, 1.0) and next_reopening([s], 1.0) == s.open_until
    later = s.open_until
    assert admits(s, later)  # half-open: one trial request
    s.inflight_requests = 1
    assert not admits(s, later)
    assert record_failure(s, later)  # the trial failed: open again, for longer
    assert s.open_until - later > later
    record_success(s)
    s.inflight_requests = 0
    assert s.trips == 0 and s.consecutive_failures == 0 and admits(s, s.open_until)


def test_retry_after_pauses_the_server_without_opening_the_breaker():
    s = ServerState("s", 256, up=True)
    assert not record_failure(s, 10.0, retry_after=7.0)
    assert not admits(s, 16.9) and admits(s, 17.0)


def test_seeds_are_stable_and_distinct_per_problem():
    assert problem_seed(0, "HumanEval/0") == problem_seed(0, "HumanEval/0")
    assert problem_seed(0, "HumanEval/0") != problem_seed(0, "HumanEval/1")
    assert problem_seed(0, "HumanEval/0") != problem_seed(1, "HumanEval/0")
    assert 0 <= problem_seed(7, "x") < 2**30


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(0, 0.5) == 0.5
    assert backoff_seconds(3, 0.5) == 4.0
    assert backoff_seconds(20, 0.99) <= 30 * 1.5


# -- adaptive policies -----------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.scheduler import AdaptivePlan  # noqa: E402


def drive(plan_for, outcomes: dict[str, list[bool]], choose) -> tuple[dict[str, list[int]], list[tuple]]:
    """Play a plan against known per-sample outcomes: verdicts of one outstanding request (picked
    by `choose`) arrive whenever the plan says to wait. Returns the indices each problem got and
    the log of (request, counts when it was made)."""
    counts = {t: (0, 0) for t in outcomes}
    outstanding: list = []
    got: dict[str, list[int]] = {t: [] for t in outcomes}
    log = []
    plan = plan_for(lambda: dict(counts))
    while True:
        try:
            request = next(plan)
        except StopIteration:
            break
        if request is None:
            assert outstanding, "the plan waits with nothing outstanding"
            r = outstanding.pop(choose(len(outstanding)))
            n, c = counts[r.problem.task_id]
            passed = sum(outcomes[r.problem.task_id][r.start:r.start + r.n])
            counts[r.problem.task_id] = (n + r.n, c + passed)
            continue
        assert all(o.problem.task_id != request.problem.task_id for o in outstanding), "two requests for one problem"
        log.append((request, dict(counts)))
        got[request.problem.task_id] += list(range(request.start, request.start + request.n))
        outstanding.append(request)
    return got, log


schedules = st.lists(st.lists(st.booleans(), min_size=12, max_size=12), min_size=1, max_size=5)


@given(schedules, st.integers(1, 3), st.integers(1, 12), st.randoms())
@settings(max_examples=80, deadline=None)
def test_until_solved_stops_each_problem_within_the_batch_of_its_mth_pass(rows, m, samples, rnd):
    """Invariant: a problem's samples are 0..T-1 once each, T <= samples; T reaches samples unless
    the m-th pass came earlier, and then the batch holding it was the last (sizes 1, 2, 4, ...)."""
    problems = [Problem(f"T/{i}", "p", "t", "f") for i in range(len(rows))]
    outcomes = {p.task_id: row for p, row in zip(problems, rows)}
    got, log = drive(lambda counts: AdaptivePlan(problems, samples, {}, 4, counts, "until-solved", m), outcomes,
                     lambda k: rnd.randrange(k))  # fmt: skip
    for task, indices in got.items():
        assert indices == list(range(len(indices))) and len(indices) <= samples
        passes = [i for i, ok in enumerate(outcomes[task][:samples]) if ok]
        if len(passes) < m:
            assert len(indices) == samples
        else:
            mth = passes[m - 1]
            last = [r for r, _ in log if r.problem.task_id == task][-1]
            assert last.start <= mth < last.start + last.n
    for request, counts in log:
        assert request.n == min(4, max(1, counts[request.problem.task_id][0]), samples - request.start)


@given(schedules, st.integers(1, 12), st.randoms())
@settings(max_examples=60, deadline=None)
def test_hardest_first_gives_each_request_to_a_problem_with_the_fewest_passes(rows, samples, rnd):
    """Invariant: every problem ends with all its samples, and each request went to a problem with
    no more passes than any other problem that was ready (every verdict in) and unfinished."""
    problems = [Problem(f"T/{i}", "p", "t", "f") for i in range(len(rows))]
    outcomes = {p.task_id: row for p, row in zip(problems, rows)}
    got, log = drive(lambda counts: AdaptivePlan(problems, samples, {}, 4, counts, "hardest-first"), outcomes,
                     lambda k: rnd.randrange(k))  # fmt: skip
    assert all(indices == list(range(samples)) for indices in got.values())
    for request, counts in log:
        issued_before = {t: 0 for t in outcomes}
        for r, _ in log:
            if r is request:
                break
            issued_before[r.problem.task_id] += r.n
        ready = [t for t in outcomes if counts[t][0] == issued_before[t] and issued_before[t] < samples]
        assert counts[request.problem.task_id][1] == min(counts[t][1] for t in ready)


def test_adaptive_plan_skips_generated_samples_and_counts_them_as_issued():
    counts = {"T/0": (3, 0), "T/1": (2, 1)}
    plan = AdaptivePlan(P[:2], 8, {"T/0": {0, 1, 2}, "T/1": {0, 1}}, 64, lambda: counts, "until-solved")
    first = next(plan)
    assert (first.problem.task_id, first.start, first.n) == ("T/0", 3, 3)  # T/1 is solved already; size doubles
    assert next(plan) is None and not plan.has_ready()  # T/0's verdicts are not in yet
    counts["T/0"] = (6, 0)
    last = next(plan)
    assert (last.start, last.n) == (6, 2)  # the cap
    with pytest.raises(StopIteration):  # nothing left to ask (the runner drains what is queued)
        next(plan)
