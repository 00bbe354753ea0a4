"""The exactly-once ledger: every planned sample ends in the store once, as a sample with its
verdict or as a generation failure, whatever fails when."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FAULTS, FakeFleet, FakeVerifier, Fault, MemoryStore, ScriptedClient, make_sweep, run

from engine.records import Sample

schedules = st.dictionaries(
    st.integers(0, 25), st.builds(Fault, st.sampled_from(FAULTS[:4]), st.integers(0, 5)), max_size=8
)


@settings(max_examples=50, deadline=None)
@given(
    faults=schedules,
    problem_count=st.integers(0, 3),
    samples=st.integers(0, 9),
    request_n=st.integers(1, 5),
    workers=st.integers(1, 3),
    dedup=st.booleans(),
    infra=st.booleans(),
)
def test_every_planned_sample_is_stored_once_or_failed_once(
    faults, problem_count, samples, request_n, workers, dedup, infra
):
    """Invariant, for any fault schedule (none, one, several, on the first or the last request):
    each (problem, index) of problems x samples is staged exactly once, as a sample or as a
    generation failure, never both; each staged sample has exactly one verdict; the running
    counts hold every verdict about a program (infrastructure errors aside); no slot is held."""
    store = MemoryStore()
    sweep = make_sweep(
        problem_count=problem_count,
        samples=samples,
        client=ScriptedClient(faults),
        store=store,
        verifier=FakeVerifier(dedup=dedup, infra=infra),
        fleet=FakeFleet(servers=3),
        workers=workers,
        request_n=request_n,
    )
    run(sweep)
    planned = {(f"T/{p}", i) for p in range(problem_count) for i in range(samples)}
    staged = Counter((s.task_id, s.sample_index) for s in store.samples)
    failed = Counter(store.failures)
    assert set(staged) | set(failed) == planned
    assert all(c == 1 for c in staged.values()) and all(c == 1 for c in failed.values())
    assert not set(staged) & set(failed)
    verdicts = Counter((v.task_id, v.sample_index) for v in store.verdicts)
    assert verdicts == staged
    infra_errors = sum(v.verdict == "infra_error" for v in store.verdicts)
    assert sum(n for n, _ in sweep.running.counts().values()) == len(store.verdicts) - infra_errors
    stats = sweep.stats
    assert (stats.samples_generated, stats.samples_verified + stats.infra_errors) == (
        len(staged),
        len(verdicts),
    )
    assert sweep.admission.held == 0 and not sweep.stopped and sweep.snapshot().state == "finished"


def test_samples_left_unverified_by_a_crash_are_verified_not_generated_again():
    """Invariant: on resume, a sample generated but never verified gets its verdict once and is
    not asked for again; the rest of the target is generated as usual."""
    left = [Sample("T/0", i, f"T/0:{i % 3}", 2, "stop", "http://s0", 0, 0, 0) for i in (0, 2)]
    store = MemoryStore(left_unverified=list(left))
    client = ScriptedClient()
    sweep = make_sweep(problem_count=1, samples=4, client=client, store=store, request_n=4)
    run(sweep)
    asked = sorted(i for _, r in client.calls for i in r.indices)
    assert asked == [1, 3]
    assert sorted(v.sample_index for v in store.verdicts) == [0, 1, 2, 3]
    assert sweep.admission.held == 0
