"""The verification queue: a twin waits beside the sample it repeats, not in the queue."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FakeVerifier, problems

from engine.records import Sample
from engine.sweep.admission import Admission
from engine.sweep.verify import Verification
from sandbox import Limits, Outcome, Verdict


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


class DeferringVerifier(FakeVerifier):
    """FakeVerifier whose samples ending in ":9" are deferred: `verify_or_defer` returns a future
    of the verdict at once, answered after `delays[n]` loop turns (an exception for ":8:9")."""

    def __init__(self, delays: list[int]):
        super().__init__(dedup=False)
        self.delays = delays
        self.deferred = 0

    async def verify_or_defer(self, problem, completion):
        if not completion.endswith(":9"):
            return await self.verify(problem, completion)
        future = asyncio.get_running_loop().create_future()
        delay = self.delays[self.deferred % len(self.delays)]
        self.deferred += 1

        async def answer():
            for _ in range(delay):
                await asyncio.sleep(0)
            if not future.done():
                if completion.endswith(":8:9"):
                    future.set_exception(RuntimeError("a task kind's fault"))
                else:
                    future.set_result(
                        Outcome(Verdict.timeout, "CPU-time limit 1.0 s", 1.0, "fake", Limits(), "")
                    )

        asyncio.get_running_loop().create_task(answer())
        return future


@settings(max_examples=100, deadline=None)
@given(
    completions=st.lists(st.sampled_from(["T/0:0", "T/0:1", "T/0:9", "T/0:8:9"]), max_size=12),
    workers=st.integers(1, 3),
    delays=st.lists(st.integers(0, 20), min_size=1, max_size=4),
)
def test_deferred_samples_free_their_worker_and_are_recorded_once(completions, workers, delays):
    """Invariant: a sample the verifier defers frees its worker for the next one, and is recorded
    exactly once when its verdict comes (drain waits for it); a deferred verification's error
    goes to on_error, its sample unrecorded; every admission slot is released for the recorded."""
    recorded, errors = [], []
    problem = problems(1)[0]
    verifier = DeferringVerifier(delays)

    async def main():
        admission = Admission(max(1, len(completions)))
        verification = Verification(
            verifier=verifier,
            problems={problem.task_id: problem},
            admission=admission,
            record=lambda sample, outcome: recorded.append((sample.sample_index, outcome.verdict)),
            on_error=errors.append,
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
        return admission.held

    held = asyncio.run(main())
    failing = [i for i, c in enumerate(completions) if c.endswith(":8:9")]
    assert sorted(i for i, _ in recorded) == [i for i in range(len(completions)) if i not in failing]
    assert len(errors) == len(failing) and all(isinstance(e, RuntimeError) for e in errors)
    assert held == len(failing)  # a failed verification's sample keeps its slot: the sweep stops
    expected = {"T/0:0": Verdict.passed, "T/0:1": Verdict.failed, "T/0:9": Verdict.timeout}
    assert all(verdict is expected[completions[i]] for i, verdict in recorded)


def test_a_deferred_sample_withdrawn_at_the_end_is_left_unverified():
    """The sweep ends while a sample waits behind the others: it is not recorded (it stays
    unverified in the store, verified when the run resumes) and the queue settles."""
    recorded = []
    problem = problems(1)[0]
    verifier = DeferringVerifier([10**6])  # never answered on its own

    async def main():
        verification = Verification(
            verifier=verifier,
            problems={problem.task_id: problem},
            admission=Admission(2),
            record=lambda sample, outcome: recorded.append(sample.sample_index),
        )
        verification.admission.hold(2)
        for i, completion in enumerate(["T/0:9", "T/0:0"]):
            verification.enqueue(Sample(problem.task_id, i, completion, 1, "stop", "http://s", 0, 0, 0))
        task = asyncio.create_task(verification.worker())
        for _ in range(20):
            await asyncio.sleep(0)
        assert recorded == [1]  # the second sample went ahead of the deferred one
        verification.withdraw_deferred()
        await asyncio.wait_for(verification.drain(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert recorded == [1]
