"""`engine verify`'s feed (engine/verify.py `_feed`): a sample the verifier defers behind the
others stops counting against the samples kept in flight, so loops do not hold the others up.

Invariant, over which samples are deferred, when their verdicts come and how many are kept in
flight: every sample is recorded exactly once, and with one in flight the samples after a
deferred one are recorded before it."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.progress import Tally
from engine.verify import _feed
from sandbox import Limits, Outcome, Verdict


class Deferring:
    """Answers each sample after `delay` loop turns; the deferred ones (completion "loop") are
    told so at once and answered after `late` more turns."""

    defers = True  # as a Verifier with loops last on (sandbox/verifier.py)

    def __init__(self, late: int):
        self.late = late
        self.in_flight = 0
        self.most_in_flight = 0

    def submit(self, problem, completion, done, deferred=None):
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

        async def answer() -> None:
            await asyncio.sleep(0)
            if completion == "loop":
                self.in_flight -= 1  # no longer counted by the feed
                if deferred is not None:
                    deferred()
                for _ in range(self.late):
                    await asyncio.sleep(0)
                done(Outcome(Verdict.timeout, "CPU-time limit 1.0 s", 1.0, "fake", Limits(), ""))
            else:
                self.in_flight -= 1
                done(Outcome(Verdict.passed, "", 0.01, "fake", Limits(), ""))

        task = loop.create_task(answer())
        return task.cancel


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["loop", "quick"]), max_size=12),
    in_flight=st.integers(1, 4),
    late=st.integers(0, 40),
)
def test_every_sample_is_recorded_once_and_deferred_ones_do_not_hold_places(kinds, in_flight, late):
    recorded: list[int] = []
    verifier = Deferring(late)
    jobs = [(i, None, kind) for i, kind in enumerate(kinds)]

    async def main() -> None:
        await asyncio.wait_for(
            _feed(verifier, jobs, in_flight, lambda key, outcome: recorded.append(key), Tally(len(jobs))), 10
        )

    asyncio.run(main())
    assert sorted(recorded) == list(range(len(kinds)))
    assert verifier.most_in_flight <= max(in_flight, 1)  # counting only the samples not deferred
    if in_flight == 1 and late >= 3 * len(kinds) + 5:  # the loops answer after everything else
        quick = [i for i in recorded if kinds[i] == "quick"]
        assert recorded[: len(quick)] == quick
