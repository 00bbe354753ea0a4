from engine.fleet.state import ServerState, next_reopening, pick_server
from engine.records import Problem
from engine.sweep.admission import Admission
from engine.sweep.plan import backoff_seconds, contiguous_runs, plan_requests, problem_seed

P = [Problem(f"T/{i}", "p") for i in range(3)]


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
    a.admit(64)
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
    assert not s.record_failure(0.0) and not s.record_failure(0.0)
    assert s.admits(0.0)
    assert s.record_failure(0.0)  # third in a row opens it
    assert not s.admits(1.0) and next_reopening([s], 1.0) == s.open_until
    later = s.open_until
    assert s.admits(later)  # half-open: one trial request
    s.inflight_requests = 1
    assert not s.admits(later)
    assert s.record_failure(later)  # the trial failed: open again, for longer
    assert s.open_until - later > later
    s.record_success()
    s.inflight_requests = 0
    assert s.trips == 0 and s.consecutive_failures == 0 and s.admits(s.open_until)


def test_retry_after_pauses_the_server_without_opening_the_breaker():
    s = ServerState("s", 256, up=True)
    assert not s.record_failure(10.0, retry_after=7.0)
    assert not s.admits(16.9) and s.admits(17.0)


def test_seeds_are_stable_and_distinct_per_problem():
    assert problem_seed(0, "HumanEval/0") == problem_seed(0, "HumanEval/0")
    assert problem_seed(0, "HumanEval/0") != problem_seed(0, "HumanEval/1")
    assert problem_seed(0, "HumanEval/0") != problem_seed(1, "HumanEval/0")
    assert 0 <= problem_seed(7, "x") < 2**30


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(0, 0.5) == 0.5
    assert backoff_seconds(3, 0.5) == 4.0
    assert backoff_seconds(20, 0.99) <= 30 * 1.5


def test_a_server_that_ignores_n_takes_one_sample_of_a_request_and_leaves_the_rest():
    """Invariant: the part taken and the rest cover the request's samples exactly, in order."""
    from engine.sweep.plan import Request, take_for

    problem = Problem("t", "p")
    for n in (1, 2, 64):
        request = Request(problem, 10, n, attempt=2, avoid="http://a")
        honest, ignoring = ServerState("http://b", 8), ServerState("http://c", 8, ignores_n=True)
        assert take_for(request, honest) == (request, None)
        taken, rest = take_for(request, ignoring)
        assert (taken.start, taken.n, taken.attempt) == (10, 1, 2)
        assert rest is None if n == 1 else (rest.start, rest.n, rest.attempt) == (11, n - 1, 2)
