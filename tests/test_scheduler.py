from engine.records import Problem
from engine.scheduler import (
    Admission,
    ServerState,
    backoff_seconds,
    contiguous_runs,
    pick_server,
    plan_requests,
    problem_seed,
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
    assert pick_server([a, b, c], 64) is b
    b.inflight_seqs = 100
    assert pick_server([a, b, c], 64) is a
    a.inflight_seqs = 100
    assert pick_server([a, b, c], 64) is None


def test_seeds_are_stable_and_distinct_per_problem():
    assert problem_seed(0, "HumanEval/0") == problem_seed(0, "HumanEval/0")
    assert problem_seed(0, "HumanEval/0") != problem_seed(0, "HumanEval/1")
    assert problem_seed(0, "HumanEval/0") != problem_seed(1, "HumanEval/0")
    assert 0 <= problem_seed(7, "x") < 2**30


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(0, 0.5) == 0.5
    assert backoff_seconds(3, 0.5) == 4.0
    assert backoff_seconds(20, 0.99) <= 30 * 1.5
