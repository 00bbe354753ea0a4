"""The verification queue: a twin waits beside the sample it repeats, not in the queue."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FakeVerifier, problems

from engine.records import Sample
from engine.sweep.admission import Admission
from engine.sweep.verify import Verification


def _verify_all(completions: list[str], workers: int, verifier: FakeVerifier) -> tuple[list, list[int]]:
    """Enqueue one sample per completion (all at once), run `workers` tasks until the queue is
    drained; the verdicts recorded and the queue depths seen."""
    recorded, depths = [], []
    problem = problems(1)[0]
    admission = Admission(max(1, len(completions)))

    async def main():
        verification = Verification(
            verifier=verifier,
            problems={problem.task_id: problem},
            admission=admission,
            record=lambda sample, outcome: recorded.append((sample.sample_index, outcome)),
            on_depth=depths.append,
        )
        if completions:
            admission.hold(len(completions))
        for i, completion in enumerate(completions):
            verification.enqueue(Sample(problem.task_id, i, completion, 1, "stop", "http://s", 0, 0, 0))
        tasks = [asyncio.create_task(verification.worker()) for _ in range(workers)]
        await asyncio.wait_for(verification.drain(), 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert admission.held == 0

    asyncio.run(main())
    return recorded, depths


@settings(max_examples=100, deadline=None)
@given(
    completions=st.lists(st.sampled_from(["T/0:0", "T/0:1", "T/0:2"]), max_size=12),
    workers=st.integers(1, 4),
    dedup=st.booleans(),
)
def test_twins_wait_beside_the_sample_they_repeat(completions, workers, dedup):
    """Invariant: with dedup, each distinct completion is run once and the queue never holds two
    of the same (its depth never exceeds the distinct completions); every sample gets exactly one
    verdict, the twins' reused. Without dedup, every sample runs and queues."""
    verifier = FakeVerifier(dedup=dedup)
    recorded, depths = _verify_all(completions, workers, verifier)
    assert sorted(i for i, _ in recorded) == list(range(len(completions)))
    distinct = len(set(completions))
    if dedup:
        assert verifier.runs == distinct
        assert max(depths, default=0) <= distinct
        assert sum(outcome.reused for _, outcome in recorded) == len(completions) - distinct
    else:
        assert verifier.runs == len(completions) and not any(o.reused for _, o in recorded)


@given(copies=st.integers(1, 6), workers=st.integers(1, 3))
def test_twins_of_a_sandbox_fault_run_for_themselves(copies, workers):
    """Invariant: an infrastructure error is never reused: each twin of a sample whose sandbox
    failed is run for itself, and each gets its own verdict."""
    verifier = FakeVerifier(dedup=True, infra=True)
    recorded, _ = _verify_all(["T/0:2"] * copies, workers, verifier)
    assert verifier.runs == copies and len(recorded) == copies
    assert all(outcome.verdict.value == "infra_error" and not outcome.reused for _, outcome in recorded)
