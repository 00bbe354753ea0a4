"""Adaptive sampling policies (`engine run --policy`), played against known outcomes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.records import Problem
from engine.sweep.policies import AdaptivePlan

P = [Problem(f"T/{i}", "p") for i in range(3)]


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
            passed = sum(outcomes[r.problem.task_id][r.start : r.start + r.n])
            counts[r.problem.task_id] = (n + r.n, c + passed)
            continue
        assert all(o.problem.task_id != request.problem.task_id for o in outstanding), (
            "two requests for one problem"
        )
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
    problems = [Problem(f"T/{i}", "p") for i in range(len(rows))]
    outcomes = {p.task_id: row for p, row in zip(problems, rows)}
    got, log = drive(
        lambda counts: AdaptivePlan(problems, samples, {}, 4, counts, "until-solved", m),
        outcomes,
        lambda k: rnd.randrange(k),
    )
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
    problems = [Problem(f"T/{i}", "p") for i in range(len(rows))]
    outcomes = {p.task_id: row for p, row in zip(problems, rows)}
    got, log = drive(
        lambda counts: AdaptivePlan(problems, samples, {}, 4, counts, "hardest-first"),
        outcomes,
        lambda k: rnd.randrange(k),
    )
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
    assert (first.problem.task_id, first.start, first.n) == (
        "T/0",
        3,
        3,
    )  # T/1 is solved already; size doubles
    assert next(plan) is None and not plan.has_ready()  # T/0's verdicts are not in yet
    counts["T/0"] = (6, 0)
    last = next(plan)
    assert (last.start, last.n) == (6, 2)  # the cap
    with pytest.raises(StopIteration):  # nothing left to ask (the runner drains what is queued)
        next(plan)


@pytest.mark.parametrize(
    "policy,n,c,owed",
    [
        ("uniform", 3, 3, 7),
        ("uniform", 10, 0, 0),
        ("until-solved", 3, 1, 0),
        ("until-solved", 3, 0, 7),
        ("until-solved", 10, 0, 0),
        ("hardest-first", 3, 3, 7),
        ("uniform", 12, 1, 0),
    ],
)
def test_samples_owed_at_the_end_of_a_run(policy, n, c, owed):
    from engine.sweep.policies import samples_owed

    assert samples_owed(policy, 10, 1, n, c) == owed
